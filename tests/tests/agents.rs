//! The coding agents' own CLIs through the gateway, unchanged: Claude Code
//! (`claude -p`, Anthropic's API, streamed, with its 87 KB system prompt
//! and tools) and Codex (`codex exec`, the Responses API), each pointed at
//! the gateway with a `tg-` key, the bundled mock answering as the
//! provider. The versions are pinned in `.ci/run`, which installs them
//! from npm into `target/clis` and sets `TOLLGATE_CLI_DIR`; without them
//! the tests say so and pass, except in CI (`TOLLGATE_REQUIRE_CLIS`).

use std::path::PathBuf;
use std::process::Command;

use tollgate_e2e::*;

/// The directory holding `claude` and `codex`, when installed.
fn clis() -> Option<PathBuf> {
    let dir = std::env::var_os("TOLLGATE_CLI_DIR").map(PathBuf::from);
    let found = dir.filter(|d| d.join("claude").exists() && d.join("codex").exists());
    if found.is_none() {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_CLIS").is_none(), "the agent CLIs are required (TOLLGATE_CLI_DIR)");
        eprintln!("skipped: set TOLLGATE_CLI_DIR to a directory with claude and codex (see .ci/run)");
    }
    found
}

/// Claude models on an Anthropic provider, `gpt-5-codex` on a provider
/// that serves the Responses API, and two models Codex reaches through the
/// gateway's translation (on the Anthropic and on a Gemini provider), all
/// the mock; records in `logs`. The team may offer web search: Codex
/// offers it on every request, and OpenAI bills its calls apart from
/// tokens (`hosted_tools`).
fn config(mock: std::net::SocketAddr, logs: &TempDir) -> String {
    format!(
        r#"
[server]
workers = 2

[logging]
dir = "{logs}"

[[providers]]
name = "claude"
kind = "anthropic"
base_url = "http://{mock}/v1"
api_key_env = "TOLLGATE_E2E_ANTHROPIC_KEY"
forward_headers = ["x-mock-*"]

[[providers]]
name = "openai"
kind = "openai-compatible"
base_url = "http://{mock}/v1"
responses_api = true
forward_headers = ["x-mock-*"]

[[models]]
name = "claude-sonnet-4-5"
targets = [{{ provider = "claude" }}]

[[models]]
name = "claude-haiku-4-5"
targets = [{{ provider = "claude" }}]

[[providers]]
name = "google"
kind = "gemini"
base_url = "http://{mock}/v1beta"
api_key_env = "TOLLGATE_E2E_ANTHROPIC_KEY"
forward_headers = ["x-mock-*"]

[[models]]
name = "gpt-5-codex"
targets = [{{ provider = "openai" }}]

[[models]]
name = "codex-on-claude"
targets = [{{ provider = "claude", model = "claude-sonnet-4-5" }}]

[[models]]
name = "codex-on-gemini"
targets = [{{ provider = "google", model = "gemini-2.5-pro" }}]

{team_and_key}"#,
        logs = logs.0.display(),
        team_and_key = team_and_key().replace("models = [\"*\"]", "models = [\"*\"]\nhosted_tools = [\"web_search\"]")
    )
}

/// The mock, a records directory, a home for the CLI, and the gateway.
fn start(name: &str) -> (Proc, TempDir, TempDir, Proc) {
    let mock = start_mock(&[]);
    let logs = TempDir::new(name);
    let home = TempDir::new(&format!("{name}-home"));
    let gw = start_gateway(&config(mock.addr, &logs), &[], &[("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")]);
    (mock, logs, home, gw)
}

/// The records of a tool call round trip made after the first `before`:
/// exactly two answered requests, the call and the answer to its result.
fn tool_round_trip(logs: &TempDir, before: usize) -> Vec<serde_json::Value> {
    let turns = wait_records(&logs.0, before + 2).split_off(before);
    assert_eq!(turns.len(), 2, "a call, then the answer to its result: {turns:#?}");
    assert!(turns.iter().all(|r| r["status"] == 200), "{turns:#?}");
    turns
}

/// Runs a CLI (at most two minutes) with a home of its own; its stdout.
fn run(cli: PathBuf, args: &[&str], env: &[(&str, &str)], home: &TempDir) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg(&cli)
        .args(args)
        .env("HOME", &home.0)
        .envs(env.iter().copied())
        .current_dir(&home.0)
        .output()
        .expect("the CLI runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed: {}\n{stdout}\n{}",
        cli.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn claude_code_streams_calls_tools_and_thinks_through_the_gateway() {
    let Some(dir) = clis() else { return };
    let (_mock, logs, home, gw) = start("claude-code");
    let base = format!("http://{}", gw.addr);
    let env = |headers: &'static str| {
        vec![
            ("ANTHROPIC_BASE_URL", base.clone()),
            ("ANTHROPIC_API_KEY", KEY.to_string()),
            ("ANTHROPIC_CUSTOM_HEADERS", headers.to_string()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_string()),
        ]
    };
    let claude = |args: &[&str], headers: &'static str| {
        let env = env(headers);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(dir.join("claude"), args, &env, &home)
    };
    // Streamed: the mock's answer reaches the terminal.
    let said = claude(&["-p", "Say hello", "--model", "claude-sonnet-4-5"], "");
    assert!(said.contains("Tollgate counts every token"), "{said}");
    let records = wait_records(&logs.0, 1);
    let r = &records[0];
    assert_eq!((r["status"].as_u64(), r["stream"].as_bool()), (Some(200), Some(true)), "{r}");
    // Its ~87 KB request is billed from the provider's own usage, not
    // estimated.
    assert!(r["bytes_in"].as_u64().unwrap_or(0) > 40_000, "{r}");
    assert!(r["tokens"].get("estimated").is_none() && r["tokens"]["prompt"].as_u64() > Some(5_000), "{r}");
    // The provider's cache reads and writes, as Anthropic reports them in
    // a stream, are billed as such.
    let before = read_records(&logs.0).len();
    let cached = claude(&["-p", "Say hello", "--model", "claude-sonnet-4-5"], "x-mock-cache: 6000,1500");
    assert!(cached.contains("Tollgate counts every token"), "{cached}");
    let r = wait_records(&logs.0, before + 1).remove(before);
    assert_eq!((r["tokens"]["cached"].as_u64(), r["tokens"]["cache_write"].as_u64()), (Some(6000), Some(1500)), "{r}");
    // Extended thinking: blocks with signatures relayed as they came.
    let thought = claude(&["-p", "Say hello", "--model", "claude-sonnet-4-5"], "x-mock-thinking: 1");
    assert!(thought.contains("Tollgate counts every token"), "{thought}");
    // A tool call round trip: the mock calls Bash, Claude Code answers
    // with the tool's result in its next request, and the mock's words
    // end the run. (The thinking run's record is waited for first: records
    // are written off the request path.)
    let before = wait_records(&logs.0, before + 2).len();
    let done =
        claude(&["-p", "List the files", "--model", "claude-sonnet-4-5", "--max-turns", "4"], "x-mock-tool: Bash");
    assert!(done.contains("Tollgate counts every token"), "{done}");
    let turns = tool_round_trip(&logs, before);
    assert!(
        turns[1]["bytes_in"].as_u64() > turns[0]["bytes_in"].as_u64(),
        "the second turn carries the tool's result: {turns:#?}"
    );
}

#[test]
fn codex_works_over_the_responses_api_through_the_gateway() {
    let Some(dir) = clis() else { return };
    let (_mock, logs, home, gw) = start("codex");
    std::fs::create_dir_all(home.0.join(".codex")).unwrap();
    std::fs::write(
        home.0.join(".codex/config.toml"),
        format!(
            "model = \"gpt-5-codex\"\nmodel_provider = \"tollgate\"\n\n[model_providers.tollgate]\nname = \"Tollgate\"\nbase_url = \"http://{addr}/v1\"\nenv_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"\n\n\
             [model_providers.tooled]\nname = \"Tollgate, the mock calling a tool\"\nbase_url = \"http://{addr}/v1\"\nenv_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"\nhttp_headers = {{ \"x-mock-tool\" = \"exec_command\" }}\n",
            addr = gw.addr
        ),
    )
    .unwrap();
    let said = run(dir.join("codex"), &["exec", "--skip-git-repo-check", "Say hello"], &[("TOLLGATE_KEY", KEY)], &home);
    assert!(said.contains("Tollgate counts every token"), "{said}");
    let records = wait_records(&logs.0, 1);
    let r = &records[0];
    assert_eq!((r["model"].as_str(), r["status"].as_u64()), (Some("gpt-5-codex"), Some(200)), "{r}");
    assert!(r["tokens"]["prompt"].as_u64() > Some(1_000) && r["tokens"].get("estimated").is_none(), "{r}");
    // A tool call round trip: the mock calls `exec_command`, Codex runs it
    // (or reports why not) and sends the result back as a
    // `function_call_output`, and the mock's words end the turn.
    let before = read_records(&logs.0).len();
    let done = run(
        dir.join("codex"),
        &["exec", "--skip-git-repo-check", "-c", "model_provider=\"tooled\"", "List the files"],
        &[("TOLLGATE_KEY", KEY)],
        &home,
    );
    assert!(done.contains("Tollgate counts every token"), "{done}");
    tool_round_trip(&logs, before);
}

/// Codex against providers that do not serve the Responses API: its
/// requests (function tools, a sub-agent namespace and a hosted web search
/// among its tools; reasoning settings) are translated through chat, the
/// tool it calls runs, and its result goes back, on Anthropic and Gemini.
#[test]
fn codex_works_through_providers_without_the_responses_api() {
    let Some(dir) = clis() else { return };
    let (_mock, logs, home, gw) = start("codex-translated");
    std::fs::create_dir_all(home.0.join(".codex")).unwrap();
    std::fs::write(
        home.0.join(".codex/config.toml"),
        format!(
            "model = \"codex-on-claude\"\nmodel_provider = \"tollgate\"\n\n[model_providers.tollgate]\nname = \"Tollgate\"\nbase_url = \"http://{addr}/v1\"\nenv_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"\n\n\
             [model_providers.tooled]\nname = \"Tollgate, the mock calling a tool\"\nbase_url = \"http://{addr}/v1\"\nenv_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"\nhttp_headers = {{ \"x-mock-tool\" = \"exec_command\" }}\n",
            addr = gw.addr
        ),
    )
    .unwrap();
    for model in ["codex-on-claude", "codex-on-gemini"] {
        let pick = format!("model=\"{model}\"");
        let before = read_records(&logs.0).len();
        let said = run(
            dir.join("codex"),
            &["exec", "--skip-git-repo-check", "-c", &pick, "Say hello"],
            &[("TOLLGATE_KEY", KEY)],
            &home,
        );
        assert!(said.contains("Tollgate counts every token"), "{model}: {said}");
        let r = wait_records(&logs.0, before + 1).remove(before);
        assert_eq!((r["model"].as_str(), r["status"].as_u64()), (Some(model), Some(200)), "{r}");
        let before = read_records(&logs.0).len();
        let done = run(
            dir.join("codex"),
            &["exec", "--skip-git-repo-check", "-c", &pick, "-c", "model_provider=\"tooled\"", "List the files"],
            &[("TOLLGATE_KEY", KEY)],
            &home,
        );
        assert!(done.contains("Tollgate counts every token"), "{model}: {done}");
        tool_round_trip(&logs, before);
    }
}
