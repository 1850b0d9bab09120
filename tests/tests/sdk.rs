//! Real clients: the official OpenAI Python SDK and curl against the gateway.
//!
//! CI installs the SDK and sets TOLLGATE_REQUIRE_SDK=1, so there a missing
//! client fails the test instead of skipping it.

use std::process::Command;

use tollgate_e2e::*;

fn available(cmd: &str, args: &[&str]) -> bool {
    let ok = Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(), "{cmd} {args:?} is required but unavailable");
        eprintln!("skipped: {cmd} {args:?} is not available here");
    }
    ok
}

#[test]
fn openai_python_sdk_round_trip() {
    if !available("python3", &["-c", "import openai"]) {
        return;
    }
    let mock = start_mock(&[]);
    // `native` is served by a provider that speaks the Responses API
    // itself; the others' `/v1/responses` are translated to chat. With the
    // answer cache (one worker: every request finds the same store).
    let config = config_for(mock.addr, 1, "").replacen(
        "[[teams]]",
        &format!(
            "[[providers]]\nname = \"native\"\nkind = \"openai-compatible\"\nbase_url = \"http://{}/v1\"\nresponses_api = true\nforward_headers = [\"x-mock-*\"]\n\n[[models]]\nname = \"native\"\ntargets = [{{ provider = \"native\" }}]\n\n[cache]\n\n[[teams]]",
            mock.addr
        ),
        1,
    );
    let gw = start_gateway(&config, &[], &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/openai_chat.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}/v1", gw.addr))
        .arg(KEY)
        .env("TOLLGATE_SDK_CACHE", "1")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("openai sdk cache: ok"), "the cache's part ran");
}

#[test]
fn curl_streams_through_the_gateway() {
    if !available("curl", &["--version"]) {
        return;
    }
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let out = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "20", "-H", "content-type: application/json", "-d", STREAM_CHAT])
        .args(["-H", &format!("authorization: Bearer {KEY}")])
        .arg(format!("http://{}/v1/chat/completions", gw.addr))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = sse_data(&out.stdout);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
}
