//! Virtual keys, teams and access control, keygen, and hot reload, end to
//! end against the real gateway.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tollgate_e2e::*;

/// `config_for` plus a narrow team, an expired, a revoked and a narrowed key.
fn access_config(upstream: std::net::SocketAddr, workers: usize) -> String {
    format!(
        r#"{base}
[[teams]]
name = "search"
models = ["gpt-4o-mini"]

[[keys]]
name = "search-prod"
team = "search"
sha256 = "{search}"

[[keys]]
name = "old"
team = "e2e"
sha256 = "{old}"
expires = 2020-01-01

[[keys]]
name = "gone"
team = "e2e"
sha256 = "{gone}"
revoked = true

[[keys]]
name = "narrow"
team = "e2e"
sha256 = "{narrow}"
models = ["gpt-4o-mini"]
"#,
        base = config_for(upstream, workers, ""),
        search = key_hash("tg-search"),
        old = key_hash("tg-old"),
        gone = key_hash("tg-gone"),
        narrow = key_hash("tg-narrow"),
    )
}

fn chat_as(addr: std::net::SocketAddr, headers: &str, model: &str) -> Response {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    one_request(addr, &chat_request_with_key(&body, headers))
}

#[test]
fn every_authentication_and_access_error_path() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&access_config(mock.addr, 1), &[], &[]);
    let cases: &[(&str, &str, u16, &str, &[&str])] = &[
        ("", "gpt-4o-mini", 401, "missing_api_key", &["missing API key"]),
        ("Authorization: Bearer tg-nope\r\n", "gpt-4o-mini", 401, "invalid_api_key", &["invalid API key"]),
        ("Authorization: Basic dTpw\r\n", "gpt-4o-mini", 401, "missing_api_key", &[]),
        ("Authorization: Bearer tg-old\r\n", "gpt-4o-mini", 401, "expired_api_key", &["`old`", "expired"]),
        ("Authorization: Bearer tg-gone\r\n", "gpt-4o-mini", 401, "revoked_api_key", &["`gone`", "revoked"]),
        // A model the key may not use is answered exactly as one that does
        // not exist: no tenant can list another's models by probing.
        ("Authorization: Bearer tg-search\r\n", "gpt-4o", 404, "model_not_found", &["`gpt-4o`"]),
        ("Authorization: Bearer tg-narrow\r\n", "gpt-4o", 404, "model_not_found", &["`gpt-4o`"]),
        ("Authorization: Bearer tg-search\r\n", "no-such-model", 404, "model_not_found", &["`no-such-model`"]),
        ("Authorization: Bearer tg-search\r\n", "gpt-4o-mini", 200, "", &[]),
        ("x-api-key: tg-search\r\n", "gpt-4o-mini", 200, "", &[]),
        ("Authorization: bearer  tg-narrow \r\n", "gpt-4o-mini", 200, "", &[]),
    ];
    let mut unknown_to_search = Vec::new();
    for (headers, model, status, code, words) in cases {
        let r = chat_as(gw.addr, headers, model);
        if headers.contains("tg-search") && *status == 404 {
            // Same status, code, type and message but for the name.
            let mut e = r.json()["error"].clone();
            e["message"] = e["message"].as_str().unwrap_or("").replace(model, "M").into();
            unknown_to_search.push(e);
        }
        assert_eq!(r.status, *status, "{headers:?} {model}: {}", r.text());
        if *status != 200 {
            assert_eq!(r.error_code(), *code, "{headers:?}");
            let message = r.json()["error"]["message"].as_str().unwrap().to_string();
            for w in *words {
                assert!(message.contains(w), "{message:?} should name {w}");
            }
        }
    }
    assert_eq!(unknown_to_search.len(), 2);
    assert_eq!(unknown_to_search[0], unknown_to_search[1], "a forbidden model and a missing one look alike");
    // The model list is the key's, and needs a key.
    let models = |key: &str| {
        let r = one_request(
            gw.addr,
            format!("GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n\r\n").as_bytes(),
        );
        (
            r.status,
            r.json()["data"]
                .as_array()
                .map(|a| a.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()),
        )
    };
    assert_eq!(models("tg-search"), (200, Some(vec!["gpt-4o-mini".to_string()])));
    assert_eq!(models("tg-nope").0, 401);
    // Health endpoints need no key.
    assert_eq!(one_request(gw.addr, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n").status, 200);
}

/// Keys change on one keep-alive connection (a proxy that shares its
/// connections between teams): each request is its own key's, whatever
/// key the one before presented (the connection remembers its last key's
/// digest), and a key's look-alikes (one byte more, one less, another
/// case) are refused.
#[test]
fn each_request_on_a_connection_is_its_own_keys() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&access_config(mock.addr, 1), &[], &[]);
    let mut c = Client::connect(gw.addr);
    let bearer = |key: &str| format!("Authorization: Bearer {key}\r\n");
    // The team's key may use every model; `tg-narrow` only gpt-4o-mini.
    let steps: &[(&str, &str, u16)] = &[
        (KEY, "gpt-4o", 200),
        ("tg-narrow", "gpt-4o", 404),
        (KEY, "gpt-4o", 200),
        ("tg-search", "gpt-4o-mini", 200),
        ("tg-narrow", "gpt-4o-mini", 200),
        ("TG-NARROW", "gpt-4o-mini", 401),
        ("tg-narrow", "gpt-4o-mini", 200),
        ("tg-narrox", "gpt-4o-mini", 401),
        ("tg-narrowx", "gpt-4o-mini", 401),
        ("tg-narro", "gpt-4o-mini", 401),
        ("tg-gone", "gpt-4o-mini", 401),
        ("tg-narrow", "gpt-4o-mini", 200),
    ];
    for &(key, model, status) in steps {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        c.send(&chat_request_with_key(&body, &bearer(key)));
        assert_eq!(c.read_response().expect("an answer on the same connection").status, status, "{key} {model}");
    }
}

#[test]
fn a_refused_request_does_not_poison_its_connection() {
    let mock = start_mock(&[]);
    let gw = start_gateway(&access_config(mock.addr, 1), &[], &[]);
    let mut c = Client::connect(gw.addr);
    c.send(&chat_request_with_key(SMALL_CHAT, "Authorization: Bearer tg-nope\r\n"));
    assert_eq!(c.read_response().unwrap().status, 401);
    c.send(&chat_request(SMALL_CHAT, ""));
    assert_eq!(c.read_response().expect("same connection still serves").status, 200);
}

#[test]
fn official_sdk_raises_its_own_exceptions() {
    if Command::new("python3").args(["-c", "import openai"]).output().map_or(true, |o| !o.status.success()) {
        assert!(std::env::var_os("TOLLGATE_REQUIRE_SDK").is_none(), "the openai SDK is required");
        return;
    }
    let mock = start_mock(&[]);
    let gw = start_gateway(&access_config(mock.addr, 1), &[], &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/openai_chat.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}/v1", gw.addr))
        .arg(KEY)
        .arg("tg-narrow")
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn keygen_prints_a_working_key_once_with_its_entry() {
    let out = Command::new(bin("tollgate")).args(["keygen", "--team", "e2e", "--name", "fresh"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text.lines().next().unwrap().to_string();
    assert!(key.starts_with("tg-") && key.len() == 3 + 40, "{key}");
    assert_eq!(text.matches(&key).count(), 1, "the key is printed exactly once");
    let entry = &text[text.find("[[keys]]").expect("a [[keys]] entry")..];
    assert!(entry.contains(&key_hash(&key)));
    let again = Command::new(bin("tollgate")).args(["keygen", "--team", "e2e", "--name", "x"]).output().unwrap();
    assert_ne!(String::from_utf8(again.stdout).unwrap().lines().next().unwrap(), key, "keys are random");

    let mock = start_mock(&[]);
    let gw = start_gateway(&format!("{}\n{entry}", config_for(mock.addr, 1, "")), &[], &[]);
    assert_eq!(chat_as(gw.addr, &format!("Authorization: Bearer {key}\r\n"), "gpt-4o-mini").status, 200);
    // With --config, the team must exist.
    let bad = Command::new(bin("tollgate"))
        .args(["keygen", "--team", "nope", "--name", "n", "--config"])
        .arg(gw.config_path.as_ref().unwrap())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no team \"nope\""));
}

#[test]
fn keygen_prints_working_admin_and_viewer_tokens_once_with_their_entries() {
    let admin = Command::new(bin("tollgate")).args(["keygen", "--admin"]).output().unwrap();
    let viewer = Command::new(bin("tollgate")).args(["keygen", "--viewer", "e2e"]).output().unwrap();
    assert!(admin.status.success() && viewer.status.success());
    let (admin, viewer) = (String::from_utf8(admin.stdout).unwrap(), String::from_utf8(viewer.stdout).unwrap());
    let admin_token = admin.lines().next().unwrap().to_string();
    let viewer_token = viewer.lines().next().unwrap().to_string();
    assert!(admin_token.starts_with("tga-") && viewer_token.starts_with("tgv-"), "{admin_token} {viewer_token}");
    assert_eq!(admin.matches(&admin_token).count() + viewer.matches(&viewer_token).count(), 2, "each printed once");
    let admin_entry = admin.lines().find(|l| l.starts_with("admin_tokens = ")).expect("an admin_tokens line");
    let viewer_entry = &viewer[viewer.find("[[server.viewer_tokens]]").expect("a viewer entry")..];
    assert!(viewer_entry.contains("teams = [\"e2e\"]"), "{viewer_entry}");
    let bad = Command::new(bin("tollgate")).args(["keygen", "--viewer"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "--viewer needs its teams");

    // The printed entries, pasted, let the printed tokens in.
    let mock = start_mock(&[]);
    let config =
        config_for(mock.addr, 1, "").replace(&format!("admin_tokens = [\"{}\"]", key_hash(ADMIN_TOKEN)), admin_entry);
    let gw = start_gateway(&format!("{config}\n{viewer_entry}"), &[], &[]);
    let admin_addr = gw.admin.expect("admin listener");
    let get = |token: &str| {
        let raw = format!("GET /admin/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n");
        one_request(admin_addr, raw.as_bytes())
    };
    let as_admin = get(&admin_token);
    assert_eq!(as_admin.status, 200, "{}", as_admin.text());
    assert!(as_admin.json()["scope"].is_null());
    let as_viewer = get(&viewer_token);
    assert_eq!(as_viewer.status, 200, "{}", as_viewer.text());
    assert_eq!(as_viewer.json()["scope"], serde_json::json!(["e2e"]));
    assert_eq!(get(ADMIN_TOKEN).status, 401, "the test's own admin token is no longer configured");
}

#[test]
fn an_invalid_configuration_refuses_to_start_with_exit_2() {
    let dir = TempDir::new("bad");
    let path = dir.0.join("gateway.toml");
    std::fs::write(&path, "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"nope\" }]\n\n[[teams]]\nname = \"search\"\nmodels = [\"gpt4o\"]\n").unwrap();
    let out =
        Command::new(bin("tollgate")).arg("--config").arg(&path).args(["--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gateway.toml:3:25: model \"gpt-4o\" routes to unknown provider \"nope\""), "{err}");
    assert!(
        err.contains("gateway.toml:7:11: team \"search\" allows unknown model \"gpt4o\"; did you mean \"gpt-4o\"?"),
        "{err}"
    );
}

fn admin_config(gw: &Proc) -> serde_json::Value {
    admin_get(gw.admin.unwrap(), "/admin/config").json()
}

#[test]
fn reload_by_admin_and_sighup_swaps_keys_and_refuses_bad_files() {
    let mock = start_mock(&[]);
    let base = config_for(mock.addr, 2, "");
    let gw = start_gateway(&base, &[], &[]);
    let path = gw.config_path.clone().unwrap();
    let before = admin_config(&gw);
    assert_eq!(before["generation"], 1);
    assert_eq!(before["sha256"].as_str().unwrap().len(), 64);

    // Add a key: it works as soon as the reload returns.
    let added = format!("{base}\n[[keys]]\nname = \"new\"\nteam = \"e2e\"\nsha256 = \"{}\"\n", key_hash("tg-new"));
    std::fs::write(&path, &added).unwrap();
    let r = admin_reload(&gw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 2);
    assert_ne!(r.json()["sha256"], before["sha256"]);
    assert_eq!(chat_as(gw.addr, "Authorization: Bearer tg-new\r\n", "gpt-4o-mini").status, 200);

    // A broken file is refused with its problems; the old one keeps serving.
    std::fs::write(&path, added.replace("team = \"e2e\"\nsha256", "team = \"e2f\"\nsha256")).unwrap();
    let r = admin_reload(&gw);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_config");
    assert!(r.text().contains("unknown team \\\"e2f\\\"; did you mean \\\"e2e\\\"?"), "{}", r.text());
    assert_eq!(admin_config(&gw)["generation"], 2);
    assert_eq!(chat_as(gw.addr, "Authorization: Bearer tg-new\r\n", "gpt-4o-mini").status, 200);

    // SIGHUP: remove the key again.
    std::fs::write(&path, &base).unwrap();
    gw.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(10), "SIGHUP to reload (generation 3)", || admin_config(&gw)["generation"] == 3);
    assert_eq!(chat_as(gw.addr, "Authorization: Bearer tg-new\r\n", "gpt-4o-mini").status, 401);
}

#[test]
fn reload_under_load_fails_no_request_and_applies_on_every_worker() {
    let mock = start_mock(&["--latency-ms", "2", "--threads", "2"]);
    let base = config_for(mock.addr, 2, "");
    let with_k1 = format!("{base}\n[[keys]]\nname = \"k1\"\nteam = \"e2e\"\nsha256 = \"{}\"\n", key_hash("tg-k1"));
    let with_k2 = format!("{base}\n[[keys]]\nname = \"k2\"\nteam = \"e2e\"\nsha256 = \"{}\"\n", key_hash("tg-k2"));
    let gw = start_gateway(&with_k1, &[], &[]);
    let path = gw.config_path.clone().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..64)
        .map(|i| {
            let (stop, served, failed, addr) = (stop.clone(), served.clone(), failed.clone(), gw.addr);
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    let body = if i % 4 == 0 { STREAM_CHAT } else { SMALL_CHAT };
                    c.send(&chat_request(body, ""));
                    match c.read_response() {
                        Some(r) if r.status == 200 => served.fetch_add(1, Ordering::Relaxed),
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            c = Client::connect(addr);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    let served_now = || served.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(10), "the load to be under way", || served_now() >= 64);
    for round in 0..6 {
        let (config, added) = if round % 2 == 0 { (&with_k2, "tg-k2") } else { (&with_k1, "tg-k1") };
        std::fs::write(&path, config).unwrap();
        let before = served_now();
        assert_eq!(admin_reload(&gw).status, 200);
        // The new configuration reaches both workers (each accepts the key
        // it added), and serves the load for a while before the next one.
        let probe = chat_request_with_key(SMALL_CHAT, &format!("Authorization: Bearer {added}\r\n"));
        wait_every_worker(&gw, 2, Duration::from_secs(10), "accept the reloaded key", &probe, |r| r.status == 200);
        wait_until(Duration::from_secs(10), "load served under the reloaded configuration", || {
            served_now() >= before + 100
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests failed during reloads");
    assert!(served.load(Ordering::Relaxed) > 500, "too little load: {}", served.load(Ordering::Relaxed));
    // The last reload installed k1 and removed k2. Forty fresh connections
    // spread over both workers (SO_REUSEPORT hashes each one).
    for _ in 0..40 {
        assert_eq!(chat_as(gw.addr, "Authorization: Bearer tg-k1\r\n", "gpt-4o-mini").status, 200);
        assert_eq!(chat_as(gw.addr, "Authorization: Bearer tg-k2\r\n", "gpt-4o-mini").status, 401);
    }
}
