//! The request record: one JSON line per request, written off the request
//! path and flushed on shutdown.

use std::io::{Read, Write};
use std::time::Duration;

use tollgate_e2e::*;

#[test]
fn every_request_leaves_a_record_flushed_on_shutdown() {
    let mock = start_mock(&["--chunks", "6", "--chunk-delay-ms", "60"]);
    let dead = closed_addr();
    let logs = TempDir::new("records");
    let config = config_for(mock.addr, 2, &format!("[logging]\ndir = \"{}\"", logs.0.display()))
        .replace(
            "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]",
            "[[models]]\nname = \"gpt-4o\"\ntargets = [{ provider = \"up\" }]\nprice = { input_per_mtok = 2.5, output_per_mtok = 10.0 }",
        )
        .replace(
            "[[teams]]",
            &format!("[[providers]]\nname = \"dead\"\nkind = \"openai-compatible\"\nbase_url = \"http://{dead}/v1\"\n\n[[models]]\nname = \"fb\"\ntargets = [{{ provider = \"dead\" }}, {{ provider = \"up\" }}]\n\n[[teams]]"),
        );
    let mut gw = start_gateway(&config, &[], &[]);

    // A plain request, priced; its id comes back as x-request-id.
    let plain =
        one_request(gw.addr, &chat_request(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#, ""));
    let plain_id = plain.header("x-request-id").expect("x-request-id").to_string();
    // A stream that asks for usage.
    let stream = one_request(
        gw.addr,
        &chat_request(
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#,
            "",
        ),
    );
    assert_eq!(stream.status, 200);
    // One served by the fallback.
    assert_eq!(one_request(gw.addr, &chat_request(r#"{"model":"fb","messages":[]}"#, "")).status, 200);
    // One refused.
    assert_eq!(
        one_request(gw.addr, &chat_request_with_key(SMALL_CHAT, "Authorization: Bearer tg-nope\r\n")).status,
        401
    );
    // A client that hangs up in the middle of a stream.
    let mut c = std::net::TcpStream::connect(gw.addr).unwrap();
    c.write_all(&chat_request(STREAM_CHAT, "")).unwrap();
    let mut first = [0u8; 256];
    let _ = c.read(&mut first).unwrap();
    drop(c);
    // The gateway notices the hang-up and ends that request too: all five
    // are counted.
    wait_until(Duration::from_secs(10), "all five requests counted", || admin_stats(&gw)["requests"] == 5);

    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 5, "{recs:#?}");
    let by = |f: &dyn Fn(&serde_json::Value) -> bool| {
        recs.iter().find(|r| f(r)).cloned().unwrap_or_else(|| panic!("{recs:#?}"))
    };

    let r = by(&|r| r["id"] == plain_id.as_str());
    assert_eq!(r["team"], "e2e");
    assert_eq!(r["key"], "e2e");
    assert_eq!(r["model"], "gpt-4o");
    assert_eq!(r["provider"], "up");
    assert_eq!(r["status"], 200);
    assert_eq!(r["end"], "completed");
    assert_eq!(r["stream"], false);
    let (prompt, completion) = (r["tokens"]["prompt"].as_u64().unwrap(), r["tokens"]["completion"].as_u64().unwrap());
    assert_eq!(completion, 16);
    // Integer micro-dollars at $2.50 / $10.00 per million tokens.
    assert_eq!(
        r["cost_micro_usd"].as_u64().unwrap(),
        (prompt * 2_500_000 + completion * 10_000_000).div_ceil(1_000_000)
    );
    assert!(r["latency_ms"]["total"].as_f64().unwrap() >= r["latency_ms"]["upstream"].as_f64().unwrap());
    // The latency breakdown: first byte on the client's socket, and what
    // the gateway added to it beyond the upstream's own time.
    let (ttft, upstream, added) = (
        r["latency_ms"]["ttft"].as_f64().unwrap(),
        r["latency_ms"]["upstream"].as_f64().unwrap(),
        r["latency_ms"]["gateway"].as_f64().unwrap(),
    );
    assert!(ttft >= upstream && (ttft - upstream - added).abs() < 0.01, "{r}");

    let s = by(&|r| r["stream"] == true && r["end"] == "completed");
    assert_eq!(s["tokens"]["completion"], 16, "usage read from the stream's usage chunk");

    let f = by(&|r| r["model"] == "fb");
    let attempts = f["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["provider"], "dead");
    assert_eq!(attempts[0]["upstream_model"], "fb");
    assert_eq!(attempts[0]["error"], "upstream_unreachable");
    assert_eq!(attempts.last().unwrap()["status"], 200);
    assert_eq!(f["provider"], "up");

    let x = by(&|r| r["status"] == 401);
    assert_eq!((x["end"].as_str(), x["key"].is_null()), (Some("rejected"), true));

    // The tokens generated before the client left are still billed: the
    // prompt counted from the request, the completion from the deltas that
    // passed, marked as the gateway's estimate.
    let gone = by(&|r| r["end"] == "client_gone");
    assert_eq!(gone["stream"], true);
    assert_eq!(gone["tokens"]["estimated"], true, "{gone}");
    assert!(gone["tokens"]["prompt"].as_u64().unwrap() > 5, "{gone}");
    assert!(gone["tokens"]["completion"].as_u64().unwrap() >= 1, "{gone}");
    assert!(gone["cost_micro_usd"].is_u64(), "{gone}");
    assert!(s["tokens"]["estimated"].is_null(), "the provider's own counts are not estimates");
}

/// A stream whose client did not ask for usage is still billed from the
/// provider's counts: the gateway asks the upstream for the usage chunk
/// and keeps that chunk from the client.
#[test]
fn streams_are_billed_even_when_the_client_did_not_ask_for_usage() {
    let mock = start_mock(&["--chunks", "4"]);
    let logs = TempDir::new("stream-usage");
    let config = config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()));
    let mut gw = start_gateway(&config, &[], &[]);

    // What the upstream receives: the request with stream_options added.
    let echoed = one_request(gw.addr, &chat_request(STREAM_CHAT, "x-mock-echo: body\r\n"));
    let sent: serde_json::Value = serde_json::from_slice(&echoed.body).expect("JSON");
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(sent["model"], "gpt-4o-mini");

    // What the client sees: no usage chunk, [DONE] last.
    let r = one_request(gw.addr, &chat_request(STREAM_CHAT, ""));
    assert_eq!(r.status, 200);
    let events = sse_data(&r.body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(!r.text().contains("\"usage\""), "{}", r.text());

    // A client that asks gets the chunk, as the upstream sent it.
    let asks = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let r = one_request(gw.addr, &chat_request(asks, ""));
    assert!(r.text().contains("\"usage\""));

    gw.signal(libc::SIGTERM);
    gw.wait_exit(Duration::from_secs(10)).expect("exits");
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 3);
    for r in &recs[1..] {
        assert!(r["tokens"]["completion"].as_u64().unwrap() > 0, "billed: {r}");
    }
}

/// With `capture_bodies`, records carry the prompt and the answer (JSON or
/// a stream's text), redacted of personal data and secrets even for a team
/// without a guardrail profile.
#[test]
fn captured_bodies_are_redacted() {
    let mock = start_mock(&["--chunks", "5"]);
    let logs = TempDir::new("capture");
    let config = config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"\ncapture_bodies = true", logs.0.display()));
    let mut gw = start_gateway(&config, &[], &[]);
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"my mail is ann@example.com"}]}"#;
    let reply = "x-mock-reply: call me at 415-555-2671 please\r\n";
    assert_eq!(one_request(gw.addr, &chat_request(body, reply)).status, 200);
    let stream = body.replace("\"messages\"", "\"stream\":true,\"messages\"");
    assert_eq!(one_request(gw.addr, &chat_request(&stream, reply)).status, 200);
    gw.signal(libc::SIGTERM);
    gw.wait_exit(Duration::from_secs(10)).expect("exits");
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        let prompt = r["capture"]["prompt"].as_str().unwrap();
        let answer = r["capture"]["answer"].as_str().unwrap();
        assert!(prompt.contains("my mail is [EMAIL]") && !prompt.contains("ann@"), "{prompt}");
        assert!(answer.contains("call me at [PHONE] please") && !answer.contains("2671"), "{answer}");
    }
    assert_eq!(recs[1]["capture"]["answer"], "call me at [PHONE] please", "a stream's text, whole");
}

/// An answer from the cache is captured as a relayed one is: the prompt,
/// and the JSON answer or the stream's text, redacted (hits were captured
/// with neither).
#[test]
fn cache_hits_are_captured_too() {
    let mock = start_mock(&["--chunks", "5"]);
    let logs = TempDir::new("capture-hits");
    let config = config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"\ncapture_bodies = true", logs.0.display()))
        .replace("[[teams]]\nname = \"e2e\"", "[cache]\nttl_s = 60\n\n[[teams]]\nname = \"e2e\"");
    let mut gw = start_gateway(&config, &[], &[]);
    let body = r#"{"model":"gpt-4o-mini","temperature":0,"messages":[{"role":"user","content":"my mail is ann@example.com"}]}"#;
    let stream = body.replace("\"messages\"", "\"stream\":true,\"messages\"");
    let reply = "x-mock-reply: call me at 415-555-2671 please\r\n";
    for b in [body, stream.as_str()] {
        for want in ["miss", "hit"] {
            let r = one_request(gw.addr, &chat_request(b, reply));
            assert_eq!((r.status, r.header("x-tollgate-cache")), (200, Some(want)), "{}", r.text());
        }
    }
    gw.signal(libc::SIGTERM);
    gw.wait_exit(Duration::from_secs(10)).expect("exits");
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        let prompt = r["capture"]["prompt"].as_str().unwrap_or_else(|| panic!("no prompt captured: {r}"));
        let answer = r["capture"]["answer"].as_str().unwrap_or_else(|| panic!("no answer captured: {r}"));
        assert!(prompt.contains("my mail is [EMAIL]") && !prompt.contains("ann@"), "{prompt}");
        assert!(answer.contains("call me at [PHONE] please") && !answer.contains("2671"), "{answer}");
    }
    let hits: Vec<_> = recs.iter().filter(|r| r["cache"]["outcome"] == "hit").collect();
    assert_eq!(hits.len(), 2, "{recs:?}");
    assert!(hits.iter().any(|r| r["capture"]["answer"] == "call me at [PHONE] please"), "a stream's text: {hits:?}");
}

/// Capture per team: a team's own `capture_bodies` overrides
/// `[logging]`'s (both ways: the other way is in the configuration's unit
/// tests); with `capture_retention_days`, a file whose
/// day is past it loses its captured bodies (and keeps the rest) once the
/// gateway starts.
#[test]
fn capture_is_per_team_and_bodies_past_their_retention_are_removed() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("capture-teams");
    const OTHER_KEY: &str = "tg-other-capture-0123456789";
    // A file from three days ago with a captured body.
    let day = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400 - 3;
    let (y, m, d) = civil(day as i64);
    let old = logs.0.join(format!("tollgate-requests-{y:04}-{m:02}-{d:02}.jsonl"));
    std::fs::write(&old, "{\"id\":\"old\",\"team\":\"e2e\",\"cost_usd\":0.25,\"capture\":{\"prompt\":\"secret plans\",\"answer\":\"ok\"}}\n").unwrap();
    // Capture off for the node, on for team e2e; team other follows the
    // node.
    let config = format!(
        "{}\n[[teams]]\nname = \"other\"\nmodels = [\"*\"]\n\n[[keys]]\nname = \"other\"\nteam = \"other\"\nsha256 = \"{}\"\n",
        config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"\ncapture_retention_days = 2", logs.0.display()))
            .replace("name = \"e2e\"\nmodels = [\"*\"]", "name = \"e2e\"\nmodels = [\"*\"]\ncapture_bodies = true"),
        key_hash(OTHER_KEY)
    );
    let mut gw = start_gateway(&config, &[], &[]);
    wait_until(Duration::from_secs(10), "the old file's bodies removed", || {
        !std::fs::read_to_string(&old).unwrap_or_default().contains("secret plans")
    });
    let kept: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&old).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!((&kept["id"], &kept["cost_usd"]), (&"old".into(), &0.25.into()), "the rest stays: {kept}");
    assert!(kept.get("capture").is_none() && kept["capture_removed_ms"].as_u64().is_some(), "{kept}");

    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    let other = chat_request_with_key(SMALL_CHAT, &format!("Authorization: Bearer {OTHER_KEY}\r\n"));
    assert_eq!(one_request(gw.addr, &other).status, 200);
    gw.signal(libc::SIGTERM);
    gw.wait_exit(Duration::from_secs(10)).expect("exits");
    let recs: Vec<serde_json::Value> = read_records(&logs.0).into_iter().filter(|r| r["id"] != "old").collect();
    assert_eq!(recs.len(), 2);
    for r in &recs {
        match r["team"].as_str() {
            Some("e2e") => {
                assert!(r["capture"]["prompt"].as_str().is_some_and(|p| p.contains("Say hello")), "{r}");
                assert!(r["capture"]["answer"].as_str().is_some_and(|a| !a.is_empty()), "the answer too: {r}");
            }
            Some("other") => assert!(r.get("capture").is_none(), "team other follows the node (off): {r}"),
            t => panic!("team {t:?}"),
        }
    }
}

/// (year, month, day) of a day number, for file names.
fn civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// SIGTERM under load: every request in flight completes, and every one
/// leaves its record (with its tokens) before the process exits.
#[test]
fn sigterm_under_load_completes_every_request_and_flushes_every_record() {
    let mock = start_mock(&["--chunks", "6", "--chunk-delay-ms", "60"]);
    let logs = TempDir::new("sigterm-load");
    let config = config_for(mock.addr, 2, &format!("[logging]\ndir = \"{}\"", logs.0.display()));
    let mut gw = start_gateway(&config, &[], &[]);
    let addr = gw.addr;
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let body = if i % 2 == 0 { STREAM_CHAT } else { SMALL_CHAT };
                let r = one_request(addr, &chat_request(body, "x-mock-latency-ms: 300\r\n"));
                (r.status, i % 2 == 1 || sse_data(&r.body).last().map(String::as_str) == Some("[DONE]"))
            })
        })
        .collect();
    // Every request is connected and waiting on the upstream's 300 ms.
    wait_until(Duration::from_secs(10), "all sixteen requests in flight", || admin_stats(&gw)["in_flight"] == 16);
    gw.signal(libc::SIGTERM);
    for c in clients {
        assert_eq!(c.join().unwrap(), (200, true), "every request in flight completes");
    }
    assert!(gw.wait_exit(Duration::from_secs(15)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 16, "every record flushed");
    assert!(
        recs.iter().all(|r| r["end"] == "completed" && r["tokens"]["completion"].as_u64() == Some(16)),
        "{recs:#?}"
    );
}

/// Every `/v1` request leaves one record, answered by the gateway itself
/// or not: the model list (with a good key and a bad one), an unknown
/// `/v1` path, a model that does not exist and one the key may not use
/// (each naming the model asked for), with the bytes of the error body the
/// client got.
#[test]
fn requests_the_gateway_answers_itself_are_recorded_too() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("records-local");
    let config = config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()))
        .replace("[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]", "[[teams]]\nname = \"e2e\"\nmodels = [\"gpt-4o*\"]");
    let mut gw = start_gateway(&config, &[], &[]);
    assert_eq!(one_request(gw.addr, &get("/v1/models")).status, 200);
    let bad = one_request(gw.addr, b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tg-nope\r\n\r\n");
    assert_eq!(bad.status, 401);
    let unknown_path = one_request(gw.addr, &get("/v1/nothing"));
    assert_eq!(unknown_path.status, 404);
    let missing = one_request(gw.addr, &chat_request(r#"{"model":"no-such","messages":[]}"#, ""));
    assert_eq!(missing.status, 404);
    let forbidden = one_request(gw.addr, &chat_request(r#"{"model":"alias","messages":[]}"#, ""));
    assert_eq!(forbidden.status, 404);
    // A name of 200 KB with a C1 control and a right-to-left override:
    // shown short and escaped, in the error and the record.
    let hostile = format!("x\u{9d}52;c\u{202e}{}", "y".repeat(200_000));
    let long = one_request(gw.addr, &chat_request(&format!(r#"{{"model":"{hostile}","messages":[]}}"#), ""));
    assert_eq!(long.status, 404);
    assert!(long.body.len() < 2048, "{} bytes of error", long.body.len());
    assert_eq!(one_request(gw.addr, &get("/healthz")).status, 200);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 6, "one per /v1 request, none for health: {recs:#?}");
    let find = |status: u64, what: &dyn Fn(&serde_json::Value) -> bool| {
        recs.iter().find(|r| r["status"] == status && what(r)).unwrap_or_else(|| panic!("{status}: {recs:#?}")).clone()
    };
    let models = find(200, &|_| true);
    assert_eq!((models["team"].as_str(), models["end"].as_str()), (Some("e2e"), Some("completed")));
    assert!(models["bytes_out"].as_u64().is_some_and(|b| b > 0));
    let bad_rec = find(401, &|_| true);
    assert_eq!(bad_rec["bytes_out"].as_u64(), Some(bad.body.len() as u64), "{bad_rec}");
    let missing_rec = find(404, &|r| r["model"] == "no-such");
    assert_eq!(missing_rec["bytes_out"].as_u64(), Some(missing.body.len() as u64), "{missing_rec}");
    let forbidden_rec = find(404, &|r| r["model"] == "alias");
    assert_eq!(forbidden_rec["team"], "e2e", "{forbidden_rec}");
    find(404, &|r| r["model"].is_null());
    let long_rec = find(404, &|r| r["model"].as_str().is_some_and(|m| m.starts_with('x')));
    let shown = long_rec["model"].as_str().unwrap();
    assert!(shown.starts_with("x\\u{9d}52;c\\u{202e}yyy") && shown.ends_with('…') && shown.len() < 300, "{shown}");
}

/// A client that hangs up while it waits for its answer (a JSON one, or a
/// short stream that arrives whole) did not get it: the record says
/// `client_gone`, not `completed`, though the kernel would have taken the
/// write.
#[test]
fn a_client_that_hangs_up_before_its_answer_is_recorded_gone() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("hang-up");
    let config = config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()));
    let mut gw = start_gateway(&config, &[], &[]);
    for body in [SMALL_CHAT, STREAM_CHAT] {
        let mut c = Client::connect(gw.addr);
        c.send(&chat_request(body, "x-mock-latency-ms: 300\r\n"));
        // Gone before the upstream answers.
        drop(c);
    }
    // One that waits gets its answer, recorded completed.
    assert_eq!(one_request(gw.addr, &chat_request(SMALL_CHAT, "")).status, 200);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    let ends: Vec<(bool, &str)> = recs.iter().map(|r| (r["stream"] == true, r["end"].as_str().unwrap_or(""))).collect();
    assert_eq!(ends.iter().filter(|e| e.1 == "client_gone").count(), 2, "{ends:?}");
    assert!(ends.contains(&(true, "client_gone")) && ends.contains(&(false, "client_gone")), "{ends:?}");
    assert!(ends.contains(&(false, "completed")), "{ends:?}");
    // The upstream did the work: each is billed.
    for r in recs.iter().filter(|r| r["end"] == "client_gone") {
        assert!(r["tokens"]["prompt"].as_u64().is_some_and(|p| p > 0), "{r}");
    }
}
