//! A hostile tenant trying to pay less than it used, through the real
//! gateway and the bundled mock.

use std::time::Duration;

use tollgate_e2e::*;

/// The e2e configuration with records in `logs` (and `server`, more of
/// `[server]`), its provider serving the Responses API itself (as OpenAI
/// does: a conversation is kept there), `profiles` before the team and
/// `team` more of the team's lines.
fn stored_config(mock: &Proc, logs: &TempDir, server: &str, profiles: &str, team: &str) -> String {
    let team_head = "[[teams]]\nname = \"e2e\"\nmodels = [\"*\"]";
    config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"\n{server}", logs.0.display()))
        .replacen("forward_headers = [\"x-mock-*\"]\n", "forward_headers = [\"x-mock-*\"]\nresponses_api = true\n", 1)
        .replace(team_head, &format!("{profiles}{team_head}\n{team}"))
}

/// A stream whose client says it does not want usage (`false`, `null`,
/// `{}`) is still billed from the provider's counts: the gateway asks for
/// them and keeps the usage chunk from the client.
#[test]
fn a_stream_that_declines_usage_is_billed_from_the_providers_counts() {
    let mock = start_mock(&["--chunks", "4"]);
    let logs = TempDir::new("evasion");
    let config = config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()));
    let mut gw = start_gateway(&config, &[], &[]);
    for options in [r#"{"include_usage":false}"#, "null", "{}"] {
        let body = format!(
            r#"{{"model":"gpt-4o","stream":true,"stream_options":{options},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let r = one_request(gw.addr, &chat_request(&body, ""));
        assert_eq!(r.status, 200, "{options}");
        let data = sse_data(&r.body);
        assert!(data.iter().all(|d| !d.contains("\"usage\":{")), "{options}: the client did not ask: {data:?}");
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{options}");
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    for rec in &recs {
        assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p > 0), "{rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's counts: {rec}");
        assert!(rec["cost_micro_usd"].as_u64().is_some_and(|c| c > 0), "{rec}");
    }
}

/// A prompt written as `"data: ..."` (what a `data:` URL starts with) is
/// text to the provider, and to the count that bills a request the
/// provider never answered: cut by the drain, it is billed about as many
/// prompt tokens as the same text under another first word.
#[test]
fn a_prompt_that_starts_like_a_data_url_is_still_billed() {
    let text = "the prompt a tenant would rather not pay for. ".repeat(200);
    let billed = |first: &str| {
        let mock = start_mock(&[]);
        let logs = TempDir::new("evasion-data-url");
        let extra = format!("[logging]\ndir = \"{}\"\n[server.timeouts]\ndrain_ms = 300", logs.0.display());
        let mut gw = start_gateway(&config_for(mock.addr, 1, &extra), &[], &[]);
        let body = format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{first}: {text}"}}]}}"#);
        std::thread::scope(|s| {
            let client = s.spawn(|| one_request(gw.addr, &chat_request(&body, "x-mock-latency-ms: 5000\r\n")));
            wait_until(Duration::from_secs(10), "the request in flight", || admin_stats(&gw)["in_flight"] == 1);
            gw.signal(libc::SIGTERM);
            client.join().expect("client");
        });
        assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
        let recs = read_records(&logs.0);
        assert_eq!(recs.len(), 1, "{recs:#?}");
        assert_eq!(recs[0]["tokens"]["estimated"], true, "{}", recs[0]);
        recs[0]["tokens"]["prompt"].as_u64().expect("prompt tokens")
    };
    let (hidden, plain) = (billed("data"), billed("note"));
    assert!(plain > 1500, "{plain}");
    assert!(hidden.abs_diff(plain) <= 2, "billed {hidden} for the data: prompt, {plain} for the plain one");
}

/// A request whose prompt the gateway cannot count (the provider reads
/// stored input: a previous response, a conversation, a prompt template;
/// or the body holds a file or an image, which the provider bills at its
/// own rates; or a tool the provider runs, or reasoning it never streams)
/// and whose client hangs up at the first event is billed what
/// the provider reads (90,000 tokens here, as the mock reports them): the
/// gateway reads the answer to its end for the provider's usage.
/// Counting the body's text would bill a dozen tokens. A text prompt's
/// answer is not read on: its count is the gateway's own.
#[test]
fn a_prompt_the_gateway_cannot_count_is_billed_when_the_client_hangs_up() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-stored");
    // The team may offer web search (a fee per call the gateway does not
    // price: `a_tool_the_provider_bills_per_call_needs_the_teams_leave`).
    let team = "hosted_tools = [\"web_search\"]";
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", "", team), &[], &[]);
    let responses = |field: &str| format!(r#"{{"model":"gpt-4o","stream":true,"input":"go on",{field}}}"#);
    let chat = |part: &str| {
        format!(
            r#"{{"model":"gpt-4o","stream":true,"messages":[{{"role":"user","content":[{{"type":"text","text":"read it"}},{part}]}}]}}"#
        )
    };
    let uncounted = [
        ("/v1/responses", responses(r#""previous_response_id":"resp_big""#)),
        ("/v1/responses", responses(r#""conversation" : "conv_big""#)),
        ("/v1/responses", responses(r#""prompt":{"id":"pmpt_big"}"#)),
        // What a tool the provider runs reads, and a model's reasoning.
        ("/v1/responses", responses(r#""tools":[{"type":"web_search"}]"#)),
        ("/v1/responses", responses(r#""reasoning":{"effort":"high"}"#)),
        (
            "/v1/chat/completions",
            chat(r#"{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0xLjcKJeLjz9MK"}}"#),
        ),
        ("/v1/chat/completions", chat(r#"{"type":"image_url","image_url":{"url":"https://example.com/page.png"}}"#)),
    ];
    let headers = "x-mock-cache: 90000,0\r\nx-mock-chunks: 40\r\nx-mock-chunk-delay-ms: 25\r\n";
    let hang_up = |path: &str, body: &str| {
        let mut c = Client::connect(gw.addr);
        c.send(&post_json(path, body, headers));
        assert_eq!(c.read_head().map(|h| h.0), Some(200), "{body}");
        // Gone at the first event, a second before the stream's end.
        drop(c);
    };
    for (path, body) in &uncounted {
        hang_up(path, body);
    }
    hang_up("/v1/chat/completions", &chat(r#"{"type":"text","text":"and this"}"#));
    let recs = wait_records(&logs.0, uncounted.len() + 1);
    for rec in &recs {
        assert_eq!(rec["end"], "client_gone", "{rec}");
        let prompt = rec["tokens"]["prompt"].as_u64().expect("prompt tokens");
        if prompt < 90_000 {
            // The text prompt: counted, marked so, not read on.
            assert!(prompt < 100 && rec["tokens"]["estimated"] == true, "{rec}");
        } else {
            assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's usage: {rec}");
        }
    }
    assert_eq!(recs.iter().filter(|r| r["tokens"]["prompt"].as_u64() < Some(90_000)).count(), 1, "{recs:#?}");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A tenant that hangs up on a stream's last text, by a reset, before the
/// usage the provider sends after it (here a tenth of a second later, the
/// finish between them), is
/// billed that usage: the gateway reads a stream whose client left for a
/// quarter of a second more (`relay::USAGE_GRACE`). Its own count of the
/// prompt would be a dozen tokens where the provider counts 90,000 (as
/// another model's tokenizer counts more than the gateway's). One that
/// leaves a second before the end is not read on.
#[test]
fn a_client_that_hangs_up_before_the_usage_is_billed_the_usage() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-last");
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", "", ""), &[], &[]);
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"say it"}]}"#;
    let hang_up = |reply: &str, until: &str| {
        let headers = format!("x-mock-cache: 90000,0\r\nx-mock-reply: {reply}\r\nx-mock-chunk-delay-ms: 50\r\n");
        let mut c = Client::connect(gw.addr);
        c.send(&post_json("/v1/chat/completions", body, &headers));
        c.read_until(until);
        // A reset, so that the gateway's next write fails at once.
        c.reset();
    };
    // Gone after the last text, the finish and the usage a twentieth of
    // a second apart behind it.
    hang_up("alpha beta omega", "omega");
    let recs = wait_records(&logs.0, 1);
    assert_eq!(recs[0]["end"], "client_gone", "{}", recs[0]);
    let prompt = recs[0]["tokens"]["prompt"].as_u64().expect("prompt tokens");
    assert!(prompt >= 90_000 && recs[0]["tokens"]["estimated"].is_null(), "billed the provider's usage: {}", recs[0]);
    // Gone at the first text, with 20 events (a second) to come: not read
    // on, billed its count.
    hang_up("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty", "one");
    let recs = wait_records(&logs.0, 2);
    let prompt = recs[1]["tokens"]["prompt"].as_u64().expect("prompt tokens");
    assert!(prompt < 100 && recs[1]["tokens"]["estimated"] == true, "{}", recs[1]);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A model that reasons before it answers bills that reasoning as output
/// without streaming it (OpenAI's o-series and GPT-5, Gemini 2.5), and
/// Anthropic's thinking is billed whole but streamed as a summary. A
/// tenant that asks one and hangs up at the first event would otherwise
/// pay for its text and a token or two. The gateway reads such an answer
/// to its end for the provider's usage: for a model on the built-in list
/// (`o3`, whatever the body says of its reasoning), one configured
/// `reasoning = true`, and a body asking for thinking; not for a model
/// configured `reasoning = false`, nor for a text prompt to another.
#[test]
fn a_reasoning_model_is_billed_its_unseen_reasoning_when_the_client_hangs_up() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-reasoning");
    let models = concat!(
        "[[models]]\nname = \"o3\"\ntargets = [{ provider = \"up\" }]\n\n",
        "[[models]]\nname = \"thinker\"\ntargets = [{ provider = \"up\", model = \"house-model\" }]\nreasoning = true\n\n",
        "[[models]]\nname = \"fast\"\ntargets = [{ provider = \"up\", model = \"gpt-5-mini\" }]\nreasoning = false\n\n",
    );
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", models, ""), &[], &[]);
    let chat = |model: &str, more: &str| {
        format!(r#"{{"model":"{model}","stream":true,"messages":[{{"role":"user","content":"think hard"}}]{more}}}"#)
    };
    // (body, read on for the provider's usage)
    let cases = [
        (chat("o3", ""), true),
        (chat("thinker", ""), true),
        (chat("gpt-4o", r#","thinking":{"type":"enabled","budget_tokens":4096}"#), true),
        // A switch that says the reasoning is off does not make it so (a
        // translation may drop it, the provider's API ignore it).
        (chat("o3", r#", "reasoning_effort" : "none""#), true),
        (chat("o3", r#","thinking":{"type":"disabled"}"#), true),
        (chat("fast", ""), false),
        (chat("gpt-4o", ""), false),
    ];
    let headers = "x-mock-cache: 90000,0\r\nx-mock-chunks: 40\r\nx-mock-chunk-delay-ms: 25\r\n";
    for (i, (body, _)) in cases.iter().enumerate() {
        let mut c = Client::connect(gw.addr);
        c.send(&post_json("/v1/chat/completions", body, headers));
        assert_eq!(c.read_head().map(|h| h.0), Some(200), "{body}");
        // Gone at the first event, a second before the stream's end.
        drop(c);
        // One at a time, so that the records come in the cases' order.
        wait_records(&logs.0, i + 1);
    }
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), cases.len(), "{recs:#?}");
    for ((body, read_on), rec) in cases.iter().zip(&recs) {
        assert_eq!(rec["end"], "client_gone", "{rec}");
        let prompt = rec["tokens"]["prompt"].as_u64().expect("prompt tokens");
        if *read_on {
            assert!(prompt >= 90_000 && rec["tokens"]["estimated"].is_null(), "{body}: {rec}");
        } else {
            assert!(prompt < 100 && rec["tokens"]["estimated"] == true, "{body}: {rec}");
        }
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A provider that serves a request at its priority tier bills up to
/// twice the standard rates, whether the request asked for it (a team
/// that allows it) or the OpenAI project's default tier is priority: the
/// gateway bills the tier the answer reports (gpt-4o: $2.50 in and $10
/// out, twice that at priority, half at flex), JSON and streamed, to an
/// OpenAI client and to an Anthropic one. Flex is half at OpenAI itself
/// (the mock as `kind = "openai"`); from an OpenAI-compatible server,
/// which may echo a request's tier without discounting it, it is billed
/// at the standard rates.
#[test]
fn the_tier_an_answer_reports_is_billed() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-tier");
    let config = config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display()));
    let mut gw = start_gateway(&config.replace("kind = \"openai-compatible\"", "kind = \"openai\""), &[], &[]);
    let json = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let stream = json.replace("\"messages\"", "\"stream\":true,\"messages\"");
    let cases = [("priority", 2000), ("flex", 500), ("default", 1000)];
    let mut sent = 0;
    for (tier, _) in cases {
        for body in [json, stream.as_str()] {
            let r = one_request(gw.addr, &chat_request(body, &format!("x-mock-tier: {tier}\r\n")));
            assert_eq!(r.status, 200, "{tier}: {}", r.text());
            sent += 1;
            wait_records(&logs.0, sent);
        }
    }
    // An Anthropic client's stream over chat: the tier is in each chunk,
    // not in the usage.
    let messages = r#"{"model":"gpt-4o","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = one_request(gw.addr, &post_json("/v1/messages", messages, "x-mock-tier: priority\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    wait_records(&logs.0, 7);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 7, "{recs:#?}");
    for (rec, (tier, permille)) in recs.iter().zip(cases.iter().flat_map(|c| [c, c]).chain([&cases[0]])) {
        let t = &rec["tokens"];
        let named = if *tier == "default" { None } else { Some(*tier) };
        assert_eq!(t["tier"].as_str(), named, "{rec}");
        let (prompt, completion) = (t["prompt"].as_u64().unwrap(), t["completion"].as_u64().unwrap());
        let want = (prompt * 2_500 * permille + completion * 10_000 * permille).div_ceil(1_000_000);
        assert_eq!(rec["cost_micro_usd"].as_u64(), Some(want), "{rec}");
    }
    let logs = TempDir::new("evasion-tier-compatible");
    let mut gw =
        start_gateway(&config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display())), &[], &[]);
    let r = one_request(gw.addr, &chat_request(json, "x-mock-tier: flex\r\n"));
    assert_eq!(r.status, 200, "{}", r.text());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let rec = read_records(&logs.0).swap_remove(0);
    let t = &rec["tokens"];
    assert_eq!(t["tier"], "flex", "{rec}");
    let (prompt, completion) = (t["prompt"].as_u64().unwrap(), t["completion"].as_u64().unwrap());
    let standard = (prompt * 2_500 * 1000 + completion * 10_000 * 1000).div_ceil(1_000_000);
    assert_eq!(rec["cost_micro_usd"].as_u64(), Some(standard), "billed at the standard rates: {rec}");
}

/// A spoken answer's audio costs many times its text
/// (gpt-4o-audio-preview: $40 a million tokens heard, $80 spoken; text at
/// gpt-4o's $2.50 and $10): the provider's audio counts are billed at
/// those rates, JSON and streamed, and a client that leaves a spoken stream
/// at its first event does not make the audio free: the answer is read on
/// for the provider's usage.
#[test]
fn spoken_answers_are_billed_at_the_audio_rates() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-audio");
    let models =
        "[[models]]\nname = \"voice\"\ntargets = [{ provider = \"up\", model = \"gpt-4o-audio-preview\" }]\n\n";
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", models, ""), &[], &[]);
    let body = r#"{"model":"voice","modalities":["text","audio"],"audio":{"voice":"alloy","format":"pcm16"},"messages":[{"role":"user","content":"say hi"}]}"#;
    let stream = body.replace("\"modalities\"", "\"stream\":true,\"modalities\"");
    let audio = "x-mock-audio: 300,2000\r\n";
    assert_eq!(one_request(gw.addr, &chat_request(body, audio)).status, 200);
    wait_records(&logs.0, 1);
    assert_eq!(one_request(gw.addr, &chat_request(&stream, audio)).status, 200);
    wait_records(&logs.0, 2);
    let mut c = Client::connect(gw.addr);
    c.send(&post_json(
        "/v1/chat/completions",
        &stream,
        &format!("{audio}x-mock-chunks: 40\r\nx-mock-chunk-delay-ms: 25\r\n"),
    ));
    assert_eq!(c.read_head().map(|h| h.0), Some(200));
    // Gone at the first event, a second before the stream's end.
    drop(c);
    wait_records(&logs.0, 3);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    for rec in &recs {
        let t = &rec["tokens"];
        assert_eq!((t["audio_prompt"].as_u64(), t["audio_completion"].as_u64()), (Some(300), Some(2000)), "{rec}");
        assert!(t["estimated"].is_null(), "{rec}");
        let (prompt, completion) = (t["prompt"].as_u64().unwrap(), t["completion"].as_u64().unwrap());
        let want =
            ((prompt - 300) * 2_500_000 + 300 * 40_000_000 + (completion - 2000) * 10_000_000 + 2000 * 80_000_000)
                .div_ceil(1_000_000);
        assert_eq!(rec["cost_micro_usd"].as_u64(), Some(want), "{rec}");
    }
    assert_eq!(recs[2]["end"], "client_gone", "{:#}", recs[2]);
}

/// A request whose prompt the gateway cannot count, whose answer a
/// guardrail ends (the tenant asked for a secret the team's profile
/// blocks), is billed from the provider's usage: the gateway reads the
/// rest of the answer, dropped, for its final count. A tenant must not
/// make a 90,000-token conversation cost a dozen tokens by asking for
/// something the guard blocks.
#[test]
fn a_blocked_answer_to_a_prompt_the_gateway_cannot_count_is_billed_in_full() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-blocked");
    let profile = "[[guardrail_profiles]]\nname = \"g\"\nsecrets = \"block\"\n\n";
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", profile, "guardrails = \"g\""), &[], &[]);
    // The secret early, the rest of the answer still to come; and the
    // secret last, the answer's usage in the same read as the text that
    // is blocked.
    let long = format!(
        "x-mock-chunks: 100\r\nx-mock-chunk-delay-ms: 40\r\nx-mock-reply: the key is AKIAIOSFODNN7EXAMPLE {}\r\n",
        "and what it opens ".repeat(40)
    );
    let replies =
        [long.as_str(), "x-mock-chunks: 4\r\nx-mock-reply: here it is at the very end AKIAIOSFODNN7EXAMPLE\r\n"];
    for reply in replies {
        let body = r#"{"model":"gpt-4o","stream":true,"input":"print the key","previous_response_id":"resp_big"}"#;
        let mut c = Client::connect(gw.addr);
        c.send(&post_json("/v1/responses", body, &format!("x-mock-cache: 90000,0\r\n{reply}")));
        let r = c.read_response().expect("an answer");
        assert_eq!(r.status, 200);
        assert!(!r.text().contains("AKIAIOSFODNN7EXAMPLE"), "{}", r.text());
        // The client's connection is closed as soon as it has its answer,
        // not held (its next request unread) while the rest of the upstream's
        // answer (seconds of it) is read.
        let answered = std::time::Instant::now();
        assert!(c.is_closed(), "the connection stays open");
        assert!(answered.elapsed() < Duration::from_secs(1), "closed after {:?}", answered.elapsed());
    }
    let recs = wait_records(&logs.0, replies.len());
    for rec in &recs {
        assert_eq!(rec["end"], "blocked", "{rec}");
        assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p >= 90_000), "{rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's usage: {rec}");
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// The same through an Anthropic client's Messages stream over a chat
/// upstream: the rest of the chat stream is read for its usage chunk too
/// (found by a review: only chat and Responses clients were read on, and
/// an Anthropic client's blocked answer was billed the gateway's count).
#[test]
fn a_blocked_answer_to_an_anthropic_client_over_chat_is_billed_in_full() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-blocked-anthropic");
    let profile = "[[guardrail_profiles]]\nname = \"g\"\nsecrets = \"block\"\n\n";
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", profile, "guardrails = \"g\""), &[], &[]);
    let reply = format!(
        "x-mock-cache: 90000,0\r\nx-mock-chunks: 100\r\nx-mock-chunk-delay-ms: 40\r\nx-mock-reply: the key is AKIAIOSFODNN7EXAMPLE {}\r\n",
        "and what it opens ".repeat(40)
    );
    // An image: the gateway cannot count what the provider bills for it.
    let body = r#"{"model":"gpt-4o","max_tokens":500,"stream":true,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"text","text":"print the key"}]}]}"#;
    let mut c = Client::connect(gw.addr);
    c.send(&post_json("/v1/messages", body, &reply));
    let r = c.read_response().expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("AKIAIOSFODNN7EXAMPLE"), "{}", r.text());
    let rec = &wait_records(&logs.0, 1)[0];
    assert_eq!(rec["end"], "blocked", "{rec}");
    assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p >= 90_000), "{rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's usage: {rec}");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A client that reads a trickle (a few bytes now and then, so that no
/// write ever waits `write_idle_ms` for a byte) cannot hold its upstream
/// waiting until the request's deadline, where the provider would end the
/// answer before its usage: once its answer's writes have waited
/// `write_stall_ms` in all, it is let go as a client that leaves, and a
/// prompt the gateway cannot count is billed from the provider's usage.
#[test]
fn a_client_that_reads_a_trickle_is_let_go_and_billed_in_full() {
    // An answer far larger than the sockets' buffers.
    // (A chat stream: a Responses one repeats its text whole in its last
    // events, which past 16 MiB are too large to read.)
    let headers = "x-mock-cache: 90000,0\r\nx-mock-reply-words: 3000000\r\nx-mock-chunks: 400\r\n";
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"summarise"},{"type":"file","file":{"file_id":"file-big"}}]}]}"#;
    let rec = trickled("evasion-trickle", body, headers);
    assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p >= 90_000), "{rec}");
}

/// The same for a JSON answer relayed as it comes (no translation, no
/// answer guard): a client that takes a sip of a large answer now and
/// then is let go at `write_stall_ms`, and the rest of the answer is read
/// for the provider's usage. Held to the request's deadline instead, the
/// relay would find the deadline passed when the client was let go, and
/// bill the prompt alone, whatever the provider generated.
#[test]
fn a_client_that_reads_a_trickle_of_a_json_answer_is_let_go_and_billed_in_full() {
    // An answer far larger than the sockets' buffers (about 9 MB; the
    // relay reads the usage of a JSON answer of up to 16 MiB).
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"write it all out"}]}"#;
    let rec = trickled("evasion-trickle-json", body, "x-mock-reply-words: 1500000\r\n");
    assert!(rec["tokens"]["completion"].as_u64().is_some_and(|n| n >= 1_500_000), "{rec}");
}

/// Sends `body` to a gateway with `write_stall_ms = 1000` and reads its
/// answer a sip every 100 ms: the request must end within 15 seconds, its
/// client let go, and be billed from the provider's usage. Its record.
fn trickled(name: &str, body: &str, headers: &str) -> serde_json::Value {
    let mock = start_mock(&[]);
    let logs = TempDir::new(name);
    let config = stored_config(&mock, &logs, "[server.timeouts]\nwrite_stall_ms = 1000", "", "");
    let gw = start_gateway(&config, &[], &[]);
    let mut c = Client::connect(gw.addr);
    c.send(&chat_request(body, headers));
    let started = std::time::Instant::now();
    wait_until(Duration::from_secs(10), "the request counted in flight", || admin_stats(&gw)["in_flight"] == 1);
    let mut sip = [0u8; 512];
    let let_go = holds_within(Duration::from_secs(15), || {
        // A sip every 100 ms: never idle for write_idle_ms (30 s).
        let _ = std::io::Read::read(&mut c.stream, &mut sip);
        std::thread::sleep(Duration::from_millis(100));
        admin_stats(&gw)["in_flight"] == 0
    });
    assert!(let_go, "still relaying to the trickling client after {:?}", started.elapsed());
    let rec = wait_records(&logs.0, 1).swap_remove(0);
    assert_eq!(rec["end"], "client_gone", "{rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's usage: {rec}");
    rec
}

/// A JSON answer too large for the relay to keep whole (past 16 MiB: a
/// tenant can ask for one with `n` and `top_logprobs`) is billed its
/// provider's usage, picked out of the top level as it passes. It was
/// billed its prompt alone and no completion, estimated.
#[test]
fn a_json_answer_too_large_to_keep_is_billed_its_usage() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-large-json");
    let mut gw =
        start_gateway(&config_for(mock.addr, 1, &format!("[logging]\ndir = \"{}\"", logs.0.display())), &[], &[]);
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"write it all out"}]}"#;
    let r = one_request(gw.addr, &chat_request(body, "x-mock-reply-words: 3000000\r\n"));
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 16 << 20, "{} bytes", r.body.len());
    let reported = r.json()["usage"]["completion_tokens"].as_u64().expect("the provider's count");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let rec = &recs[0];
    assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's usage: {rec}");
    assert_eq!(rec["tokens"]["completion"].as_u64(), Some(reported), "{rec}");
}

/// A Responses stream repeats its whole answer in its last events, the
/// usage in `response.completed`: past 1 MiB (a thousand tokens or so with
/// log probabilities) that event failed the stream after every delta had
/// passed, the client never got it, and the provider's usage (with the
/// input of files the gateway cannot count) was never read.
#[test]
fn a_responses_stream_whose_last_events_pass_a_mebibyte_is_billed_its_usage() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-large-event");
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", "", ""), &[], &[]);
    // A conversation the provider stores: its input the gateway cannot count.
    let body = r#"{"model":"gpt-4o","stream":true,"input":"go on","previous_response_id":"resp_big"}"#;
    let r = one_request(
        gw.addr,
        &post_json("/v1/responses", body, "x-mock-cache: 90000,0\r\nx-mock-reply-words: 400000\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let completed = text.lines().find(|l| l.starts_with("data: ") && l.contains("\"response.completed\""));
    let completed = completed.expect("the client gets response.completed");
    assert!(completed.len() > 2 << 20, "{} bytes: larger than the old bound", completed.len());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let rec = &recs[0];
    assert_eq!(rec["end"], "completed", "{rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "billed from the provider's usage: {rec}");
    assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p >= 90_000), "{rec}");
    assert!(rec["tokens"]["completion"].as_u64().is_some_and(|n| n >= 400_000), "{rec}");
}

/// Through an answer guardrail, which reads a JSON answer whole, one too
/// large to read (past 16 MiB) is refused with a 502 naming why, and read
/// to its end for its usage, which is billed: it was billed nothing.
#[test]
fn a_guarded_json_answer_too_large_to_read_is_refused_and_billed() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-large-guarded");
    let profile = "[[guardrail_profiles]]\nname = \"g\"\nsecrets = \"block\"\n\n";
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", profile, "guardrails = \"g\""), &[], &[]);
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"write it all out"}]}"#;
    let mut c = Client::connect(gw.addr);
    c.send(&chat_request(body, "x-mock-reply-words: 3000000\r\n"));
    let r = c.read_response().expect("an answer");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("larger than the 16 MiB"), "{}", r.text());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let rec = &recs[0];
    assert_eq!(rec["status"], 502, "{rec}");
    assert!(rec["tokens"]["completion"].as_u64().is_some_and(|n| n >= 3_000_000), "{rec}");
    assert!(rec["cost_micro_usd"].as_u64().is_some_and(|c| c > 1_000_000), "{rec}");
}

/// A Responses conversation kept at the provider, continued with
/// `previous_response_id`, costs what the provider stores of it: the
/// gateway notes each passed-through response's size (input and output)
/// under its id, and a request continuing it counts that in its prompt.
/// Here a ceiling of 3 output tokens ends the second request's stream,
/// and the provider's connection breaks before its usage comes (the
/// gateway reads on past the ceiling for it: the provider bills what it
/// stores): it is billed the 90,000-token conversation, estimated, not the
/// dozen tokens of its own input.
#[test]
fn a_continued_conversation_cut_by_a_ceiling_is_billed_what_the_provider_stores() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-context");
    let config = stored_config(&mock, &logs, "", "", "budget = { request_output_tokens = 3 }");
    let mut gw = start_gateway(&config, &[], &[]);
    let first = one_request(
        gw.addr,
        &post_json("/v1/responses", r#"{"model":"gpt-4o","input":"the long history"}"#, "x-mock-cache: 90000,0\r\n"),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let id = first.json()["id"].as_str().expect("a response id").to_string();
    let next = format!(r#"{{"model":"gpt-4o","stream":true,"input":"and then?","previous_response_id":"{id}"}}"#);
    let broken = "x-mock-chunks: 20\r\nx-mock-fail: reset-mid-stream\r\n";
    let r = one_request(gw.addr, &post_json("/v1/responses", &next, broken));
    assert_eq!(r.status, 200);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let (first, second) = (&recs[0], &recs[1]);
    assert_eq!(first["tokens"]["prompt"], 90_000, "{first}");
    let stored = 90_000 + first["tokens"]["completion"].as_u64().expect("completion");
    assert_eq!(second["end"], "capped", "{second}");
    assert_eq!(second["tokens"]["estimated"], true, "{second}");
    let prompt = second["tokens"]["prompt"].as_u64().expect("prompt tokens");
    assert!(prompt > stored && prompt < stored + 50, "billed {prompt} for a conversation of {stored}: {second}");
}

/// With `[cluster]`, a conversation's size one node saw goes to Redis with
/// the turns' time, and the node a continuation comes to counts it.
#[test]
fn a_conversation_continued_on_another_node_is_billed_what_the_provider_stores() {
    let Some(redis) = Redis::start() else { return };
    let mock = start_mock(&[]);
    let node = |id: &str| {
        let logs = TempDir::new(&format!("evasion-context-{id}"));
        let config = stored_config(&mock, &logs, "", "", "budget = { request_output_tokens = 3 }");
        let config =
            format!("{config}\n[cluster]\nredis_urls = [\"{}\"]\nnode_id = \"{id}\"\ntimeout_ms = 200\n", redis.url());
        (start_gateway(&config, &[], &[]), logs)
    };
    let ((a, _la), (mut b, lb)) = (node("a"), node("b"));
    let first = one_request(
        a.addr,
        &post_json("/v1/responses", r#"{"model":"gpt-4o","input":"the long history"}"#, "x-mock-cache: 90000,0\r\n"),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let id = first.json()["id"].as_str().expect("a response id").to_string();
    wait_until(Duration::from_secs(5), "the conversation's size in Redis", || {
        !redis.cli(&["--scan", "--pattern", "tollgate:c:*"]).trim().is_empty()
    });
    let next = format!(r#"{{"model":"gpt-4o","stream":true,"input":"and then?","previous_response_id":"{id}"}}"#);
    let broken = "x-mock-chunks: 20\r\nx-mock-fail: reset-mid-stream\r\n";
    assert_eq!(one_request(b.addr, &post_json("/v1/responses", &next, broken)).status, 200);
    b.signal(libc::SIGTERM);
    assert!(b.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&lb.0);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["end"], "capped", "{}", recs[0]);
    let prompt = recs[0]["tokens"]["prompt"].as_u64().expect("prompt tokens");
    assert!(prompt > 90_000, "billed {prompt} on node b: {}", recs[0]);
}

/// A ceiling on one request holds for a model that reasons before it
/// answers: the reasoning is billed as output but never streamed, so the
/// gateway's own cut (counting what passes) would let o3 reason 5,000
/// tokens under a 300-token ceiling, and a JSON answer is never cut. The
/// request goes with its output limit lowered to the ceiling (or one
/// added: `max_completion_tokens` for a model that reasons), in whatever
/// API the client speaks, so that the provider stops there; what the
/// provider reports is billed. A cost ceiling is sent as the tokens it
/// leaves once the prompt is paid for.
#[test]
fn a_request_ceiling_holds_for_a_model_that_reasons_unseen() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-ceiling-reasoning");
    let models = concat!(
        "[[models]]\nname = \"o3\"\ntargets = [{ provider = \"up\" }]\n",
        "price = { input_per_mtok = 2.0, output_per_mtok = 8.0 }\n\n",
    );
    // The same mock as OpenAI itself (`kind = "openai"`).
    let openai = format!(
        "[[providers]]\nname = \"oa\"\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\nforward_headers = [\"x-mock-*\"]\n\n[[models]]\nname = \"gpt-4o-at-openai\"\ntargets = [{{ provider = \"oa\", model = \"gpt-4o\" }}]\n\n",
        mock.addr
    );
    let config =
        stored_config(&mock, &logs, "", &format!("{models}{openai}"), "budget = { request_output_tokens = 300 }");
    let mut gw = start_gateway(&config, &[], &[]);
    let reasons = "x-mock-reasoning: 5000\r\n";
    let chat = |more: &str| format!(r#"{{"model":"o3"{more},"messages":[{{"role":"user","content":"think hard"}}]}}"#);
    // (path, body, the completion the provider bills)
    let cases = [
        ("/v1/chat/completions", chat(""), 300),
        ("/v1/chat/completions", chat(r#","stream":true"#), 300),
        ("/v1/chat/completions", chat(r#", "max_tokens" : 100000 ,"stream":true"#), 300),
        ("/v1/chat/completions", chat(r#","max_completion_tokens":null,"max_tokens":7000"#), 300),
        // A limit under the ceiling is the client's to keep.
        ("/v1/chat/completions", chat(r#","max_completion_tokens":120"#), 120),
        // Two answers share the ceiling.
        ("/v1/chat/completions", chat(r#","n":2"#), 150),
        // Messages, translated to chat for this provider.
        (
            "/v1/messages",
            r#"{"model":"o3","max_tokens":64000,"stream":true,"messages":[{"role":"user","content":"think hard"}]}"#
                .to_string(),
            300,
        ),
    ];
    for (i, (path, body, _)) in cases.iter().enumerate() {
        let r = one_request(gw.addr, &post_json(path, body, reasons));
        assert_eq!(r.status, 200, "{body}: {}", r.text());
        wait_records(&logs.0, i + 1);
    }
    let recs = read_records(&logs.0);
    for ((_, body, billed), rec) in cases.iter().zip(&recs) {
        assert_eq!(rec["tokens"]["completion"], *billed, "{body}: {rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "the provider's count: {body}: {rec}");
    }
    // The limit added is one the model's API takes.
    let echo = |model: &str| {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        one_request(gw.addr, &post_json("/v1/chat/completions", &body, "x-mock-echo: body\r\n")).text()
    };
    assert!(echo("o3").starts_with(r#"{"max_completion_tokens":300,"model":"o3""#), "{}", echo("o3"));
    assert!(echo("gpt-4o").starts_with(r#"{"max_tokens":300,"model":"gpt-4o""#), "{}", echo("gpt-4o"));
    // More answers than the ceiling has tokens: refused, naming both (at
    // one token each they would pass it).
    let many = one_request(gw.addr, &post_json("/v1/chat/completions", &chat(r#","n":301"#), reasons));
    assert_eq!(many.status, 400, "{}", many.text());
    assert_eq!(many.error_code(), "choices_over_ceiling");
    assert!(many.text().contains("301 answers"), "{}", many.text());
    // OpenAI itself takes `max_completion_tokens` for every model.
    let at_openai = echo("gpt-4o-at-openai");
    assert!(at_openai.starts_with(r#"{"max_completion_tokens":300,"model":"gpt-4o""#), "{at_openai}");
    // Every limit above the ceiling is lowered, beside the model's own
    // name for the provider: spans enough to go as slices, and more.
    for (more, want) in [
        (
            r#""max_tokens":5000,"max_completion_tokens":null,"#,
            r#"{"model":"real-model","max_tokens":300,"max_completion_tokens":null,"messages":[]}"#,
        ),
        (
            r#""max_tokens":5000,"max_completion_tokens":4000,"max_output_tokens":301,"#,
            r#"{"model":"real-model","max_tokens":300,"max_completion_tokens":300,"max_output_tokens":300,"messages":[]}"#,
        ),
    ] {
        let body = format!(r#"{{"model":"alias",{more}"messages":[]}}"#);
        let r = one_request(gw.addr, &post_json("/v1/chat/completions", &body, "x-mock-echo: body\r\n"));
        assert_eq!(r.text(), want);
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());

    // $0.004 a request at $2 and $8 per million: the prompt's dozen
    // tokens leave 496 of output.
    let logs = TempDir::new("evasion-cost-ceiling-reasoning");
    // A chain whose first target is too dear for a long prompt, whose
    // second fits it (built-in prices: $2.50 and $0.15 in).
    let chain = "[[models]]\nname = \"chain\"\ntargets = [{ provider = \"up\", model = \"gpt-4o\" }, { provider = \"up\", model = \"gpt-4o-mini\" }]\n\n";
    let mut gw = start_gateway(
        &stored_config(&mock, &logs, "", &format!("{models}{chain}"), "budget = { request_usd = 0.004 }"),
        &[],
        &[],
    );
    for more in ["", r#","stream":true"#] {
        let r = one_request(gw.addr, &post_json("/v1/chat/completions", &chat(more), reasons));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for rec in wait_records(&logs.0, 2) {
        let completion = rec["tokens"]["completion"].as_u64().expect("completion");
        assert!((480..=500).contains(&completion), "{rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "{rec}");
    }
    // A prompt that costs more than the ceiling by itself (3,000 tokens:
    // $0.006) is refused before it is sent, stream or not, with an output
    // limit or without; sent with one output token, it was billed in full.
    // One of 1,900 tokens ($0.0038) still goes, with what is left: 25
    // output tokens at $8 a million.
    let long = |words: usize, more: &str| {
        format!(r#"{{"model":"o3"{more},"messages":[{{"role":"user","content":"{}"}}]}}"#, "hello ".repeat(words))
    };
    for more in ["", r#","stream":true"#, r#","max_tokens":5"#] {
        let r = one_request(gw.addr, &post_json("/v1/chat/completions", &long(3_000, more), reasons));
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.error_code(), "prompt_over_ceiling");
        assert!(r.text().contains("$0.004"), "{}", r.text());
    }
    let r = one_request(gw.addr, &post_json("/v1/chat/completions", &long(1_900, ""), reasons));
    assert_eq!(r.status, 200, "{}", r.text());
    // Too dear at the chain's first target, the prompt goes to the next,
    // which it fits, rather than being refused (found by a review).
    let r = one_request(gw.addr, &post_json("/v1/chat/completions", &long(3_000, "").replace("o3", "chain"), ""));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-tollgate-route"), Some("up/gpt-4o-mini"));
    let recs = wait_records(&logs.0, 7);
    assert_eq!(recs.iter().filter(|r| r["status"] == 400).count(), 3, "{recs:#?}");
    let last = recs.iter().find(|r| r["status"] == 200 && r["tokens"]["prompt"].as_u64() > Some(1_000)).expect("sent");
    assert!(last["tokens"]["completion"].as_u64().is_some_and(|c| (1..=25).contains(&c)), "{last}");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A stream a ceiling ends, whose prompt the gateway cannot count (a file
/// the provider reads), is read on for the provider's usage, as an answer
/// its client leaves is: otherwise the ceiling's cut would bill a
/// 90,000-token prompt as the dozen tokens of its text. (This provider
/// ignores the output limit sent; the rest it generates is billed too.)
#[test]
fn a_capped_answer_to_a_prompt_the_gateway_cannot_count_is_billed_in_full() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-capped-file");
    let mut gw =
        start_gateway(&stored_config(&mock, &logs, "", "", "budget = { request_output_tokens = 30 }"), &[], &[]);
    let body = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"summarise"},{"type":"file","file":{"file_id":"file-big"}}]}]}"#;
    let headers = "x-mock-cache: 90000,0\r\nx-mock-reply-words: 400\r\nx-mock-chunks: 40\r\n";
    let r = one_request(gw.addr, &post_json("/v1/chat/completions", body, headers));
    assert_eq!(r.status, 200);
    let events = sse_data(&r.body);
    let last: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{}", r.text());
    let rec = &wait_records(&logs.0, 1)[0];
    assert_eq!(rec["end"], "capped", "{rec}");
    assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p >= 90_000), "{rec}");
    assert_eq!(rec["tokens"]["completion"], 400, "{rec}");
    assert!(rec["tokens"]["estimated"].is_null(), "{rec}");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A stream a tokens-per-minute limit ends is not read on, even where the
/// gateway cannot count what the provider bills and a ceiling's output
/// limit went with the request: that cut is there to stop the spend (only
/// the ceiling's own cut reads on, bounded by the limit it sent).
#[test]
fn a_stream_cut_by_tokens_per_minute_is_not_read_on() {
    start_early_in_a_minute();
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-tpm-cut");
    let models = "[[models]]\nname = \"o3\"\ntargets = [{ provider = \"up\" }]\n\n";
    let team = "budget = { request_output_tokens = 100000 }\nrate_limit = { tokens_per_minute = 200 }";
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", models, team), &[], &[]);
    // This provider ignores the limit: it says 20, then generates 400.
    let body = r#"{"model":"o3","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"Say hello"}]}"#;
    let headers = "x-mock-reply-words: 400\r\nx-mock-chunks: 100\r\nx-mock-chunk-delay-ms: 5\r\n";
    let r = one_request(gw.addr, &post_json("/v1/chat/completions", body, headers));
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = &wait_records(&logs.0, 1)[0];
    assert_eq!(rec["end"], "capped", "{rec}");
    assert_eq!(rec["tokens"]["estimated"], true, "not read on for the provider's count: {rec}");
    assert!(rec["tokens"]["completion"].as_u64().is_some_and(|c| c < 400), "{rec}");
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// The e2e configuration with a Gemini provider (model `flash`,
/// `gemini-2.5-flash`, which reasons) and a Bedrock one (model `claude`,
/// marked `reasoning = true`), both the bundled mock, `team` more of the
/// team's lines; and the environment their keys come from.
fn translated(
    gemini: &Proc,
    bedrock: &Proc,
    logs: &TempDir,
    team: &str,
) -> (String, [(&'static str, &'static str); 3]) {
    let providers = format!(
        concat!(
            "[[providers]]\nname = \"google\"\nkind = \"gemini\"\nbase_url = \"http://{}/v1beta\"\n",
            "forward_headers = [\"x-mock-*\"]\napi_key_env = \"TOLLGATE_E2E_GEMINI_KEY\"\n\n",
            "[[providers]]\nname = \"aws\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"http://{}\"\n",
            "forward_headers = [\"x-mock-*\"]\n\n",
            "[[models]]\nname = \"flash\"\ntargets = [{{ provider = \"google\", model = \"gemini-2.5-flash\" }}]\n\n",
            "[[models]]\nname = \"claude\"\ntargets = [{{ provider = \"aws\", model = \"anthropic.claude-sonnet-4\" }}]\n",
            "reasoning = true\n\n",
        ),
        gemini.addr, bedrock.addr
    );
    let env = [
        ("TOLLGATE_E2E_GEMINI_KEY", "AIza-e2e"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
    ];
    (stored_config(gemini, logs, "", &providers, team), env)
}

const AWS_SECRET: &str = "bedrock-e2e-secret/K7MDENG+bPxRfiCYEXAMPLEKEY";

/// A stream of a model that reasons, from Gemini or Bedrock (made chat
/// by the gateway), that a ceiling ends is read on for the provider's
/// usage too: their translators keep the usage each event reports after
/// the chat they write has stopped. (These providers here ignore the
/// output limit sent; the rest they generate is billed.)
#[test]
fn a_capped_stream_from_gemini_or_bedrock_is_billed_the_providers_usage() {
    let (gemini, bedrock) = (start_mock(&[]), start_mock(&["--aws-secret", AWS_SECRET]));
    let logs = TempDir::new("evasion-capped-translated");
    let (config, env) = translated(&gemini, &bedrock, &logs, "budget = { request_output_tokens = 5 }");
    let mut gw = start_gateway(&config, &[], &env);
    let headers = "x-mock-cache: 90000,0\r\nx-mock-reply-words: 400\r\nx-mock-chunks: 40\r\n";
    for (i, model) in ["flash", "claude"].into_iter().enumerate() {
        let body = format!(r#"{{"model":"{model}","stream":true,"messages":[{{"role":"user","content":"think"}}]}}"#);
        let r = one_request(gw.addr, &post_json("/v1/chat/completions", &body, headers));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let rec = &wait_records(&logs.0, i + 1)[i];
        assert_eq!(rec["end"], "capped", "{model}: {rec}");
        assert!(rec["tokens"]["prompt"].as_u64().is_some_and(|p| p >= 90_000), "{model}: {rec}");
        assert!(rec["tokens"]["completion"].as_u64().is_some_and(|c| c >= 400), "{model}: {rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "{model}: {rec}");
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A Gemini or Bedrock JSON answer too large to translate (past 16 MiB)
/// is refused with a 502 and billed the usage its provider reported, in
/// that provider's terms (`usageMetadata`, Converse's `usage`), picked
/// out as the body passes: it was billed nothing.
#[test]
fn a_gemini_or_bedrock_answer_too_large_to_translate_is_billed() {
    let (gemini, bedrock) = (start_mock(&[]), start_mock(&["--aws-secret", AWS_SECRET]));
    let logs = TempDir::new("evasion-large-translated");
    let (config, env) = translated(&gemini, &bedrock, &logs, "");
    let mut gw = start_gateway(&config, &[], &env);
    for model in ["flash", "claude"] {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"write it all out"}}]}}"#);
        let r = one_request(gw.addr, &post_json("/v1/chat/completions", &body, "x-mock-reply-words: 3000000\r\n"));
        assert_eq!(r.status, 502, "{model}: {}", r.text());
        assert!(r.text().contains("larger than the 16 MiB"), "{}", r.text());
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    for rec in &recs {
        assert_eq!(rec["status"], 502, "{rec}");
        assert!(rec["tokens"]["completion"].as_u64().is_some_and(|n| n >= 3_000_000), "{rec}");
        assert!(rec["tokens"]["estimated"].is_null(), "{rec}");
    }
}

/// A request for `n` answers reserves tokens for each of them: with one
/// answer's worth reserved, a tenant passed its tokens-per-minute limit
/// (and a budget near its end) by asking for many answers at once.
#[test]
fn a_request_for_many_answers_reserves_tokens_for_each() {
    start_early_in_a_minute();
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-many-answers");
    let team = "rate_limit = { tokens_per_minute = 1000 }";
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", "", team), &[], &[]);
    let body = |n: u32| {
        format!(
            r#"{{"model":"gpt-4o-mini","max_tokens":50,"n":{n},"messages":[{{"role":"user","content":"Say hello"}}]}}"#
        )
    };
    let r = one_request(gw.addr, &post_json("/v1/chat/completions", &body(30), ""));
    assert_eq!(r.status, 429, "30 answers of 50 tokens under a 1,000-token minute: {}", r.text());
    assert!(r.text().contains("tokens"), "{}", r.text());
    let r = one_request(gw.addr, &post_json("/v1/chat/completions", &body(5), ""));
    assert_eq!(r.status, 200, "5 answers of 50 fit: {}", r.text());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A tool the provider runs bills per call (a web search, a code
/// interpreter's container, a generated image) beyond the tokens the
/// gateway prices: offered through any front, it is refused 403 naming
/// the tool unless the team allows it (`hosted_tools`), so a tenant cannot
/// run up fees its spend never shows. (Where every target translates the
/// request, it is not offered them: `responses.rs`.)
#[test]
fn a_tool_the_provider_bills_per_call_needs_the_teams_leave() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-hosted-tools");
    // Messages go to Anthropic as they are (to another provider, translated,
    // with function tools only).
    let claude = format!(
        "[[providers]]\nname = \"claude\"\nkind = \"anthropic\"\nbase_url = \"http://{}/v1\"\napi_key_env = \"TOLLGATE_E2E_ANTHROPIC_KEY\"\n\n[[models]]\nname = \"claude\"\ntargets = [{{ provider = \"claude\", model = \"claude-haiku-4-5\" }}]\n\n",
        mock.addr
    );
    let env = [("TOLLGATE_E2E_ANTHROPIC_KEY", "sk-ant-test")];
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", &claude, ""), &[], &env);
    let offered = [
        ("/v1/responses", r#"{"model":"gpt-4o","input":"search","tools":[{"type":"web_search"}]}"#, "web_search"),
        (
            "/v1/responses",
            r#"{"model":"gpt-4o","input":"plot it","tools":[{"type":"function","name":"f"},{"type":"code_interpreter","container":{"type":"auto"}}]}"#,
            "code_interpreter",
        ),
        (
            "/v1/messages",
            r#"{"model":"claude","max_tokens":100,"messages":[{"role":"user","content":"search"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
            "web_search_20250305",
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","web_search_options":{},"messages":[{"role":"user","content":"search"}]}"#,
            "web_search_options",
        ),
        // OpenRouter's web search, as its plugin, through chat and the
        // legacy completions (which go to an OpenAI-style provider as
        // they come).
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"search"}],"plugins":[{"id":"web"}]}"#,
            "plugins",
        ),
        ("/v1/completions", r#"{"model":"gpt-4o","prompt":"search","plugins":[{"id":"web"}]}"#, "plugins"),
    ];
    for (path, body, tool) in offered {
        let r = one_request(gw.addr, &post_json(path, body, ""));
        assert_eq!(r.status, 403, "{body}: {}", r.text());
        assert_eq!(r.error_code(), "tool_not_allowed", "{}", r.text());
        assert!(r.text().contains(tool) && r.text().contains("hosted_tools"), "{}", r.text());
    }
    // The client's own tools pass.
    let function = r#"{"model":"gpt-4o","input":"x","tools":[{"type":"function","name":"f"}]}"#;
    assert_eq!(one_request(gw.addr, &post_json("/v1/responses", function, "")).status, 200);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    // A team that allows web search sends it.
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", &claude, "hosted_tools = [\"web_search\"]"), &[], &env);
    let r = one_request(gw.addr, &post_json("/v1/responses", offered[0].1, ""));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = one_request(gw.addr, &post_json("/v1/responses", offered[1].1, ""));
    assert_eq!(r.status, 403, "web search only: {}", r.text());
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}

/// A provider's own fallback list (OpenRouter's `models`, other
/// aggregators' `fallbacks`) lets the provider answer with another model
/// when the first fails, and a tenant can make it fail (a prompt longer
/// than its context): a model the team may not use, at that model's price
/// while the gateway bills the one it routed. Refused 400 through every
/// front, before anything goes upstream; the record says so.
#[test]
fn a_providers_fallback_list_cannot_reach_another_model() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-fallbacks");
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", "", ""), &[], &[]);
    let sent = [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","models":["openai/o1-pro","anthropic/claude-opus-4"],"route":"fallback","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        ("/v1/responses", r#"{ "input" : "hi" , "models" : [ "openai/o1-pro" ] , "model" : "gpt-4o" }"#),
        (
            "/v1/messages",
            r#"{"model":"gpt-4o","max_tokens":10,"fallbacks":[{"model":"claude-opus-4-1"}],"messages":[{"role":"user","content":"hi"}]}"#,
        ),
    ];
    for (path, body) in sent {
        let r = one_request(gw.addr, &post_json(path, body, "x-mock-echo: body\r\n"));
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.error_code(), "invalid_body", "{}", r.text());
        assert!(r.text().contains("`models` and `fallbacks`"), "{}", r.text());
    }
    let plain = r#"{"model":"gpt-4o","models":null,"messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(one_request(gw.addr, &post_json("/v1/chat/completions", plain, "")).status, 200);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let recs = read_records(&logs.0);
    assert_eq!(recs.iter().filter(|r| r["end"] == "rejected" && r["status"] == 400).count(), 3, "{recs:#?}");
    assert!(recs.iter().all(|r| r["end"] != "rejected" || r["attempts"].as_array().is_some_and(|a| a.is_empty())));
}

/// A service tier priced above standard (OpenAI's priority processing
/// costs up to twice the standard price the gateway bills) is refused 403
/// naming the tier unless the team allows it; `auto`, `default` and
/// `flex` pass.
#[test]
fn a_service_tier_above_standard_needs_the_teams_leave() {
    let mock = start_mock(&[]);
    let logs = TempDir::new("evasion-tier");
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", "", ""), &[], &[]);
    let chat = |tier: &str| {
        format!(r#"{{"model":"gpt-4o","service_tier":"{tier}","messages":[{{"role":"user","content":"hi"}}]}}"#)
    };
    let responses = |tier: &str| format!(r#"{{"model":"gpt-4o","service_tier":"{tier}","input":"hi"}}"#);
    for (path, body) in [("/v1/chat/completions", chat("priority")), ("/v1/responses", responses("scale"))] {
        let r = one_request(gw.addr, &post_json(path, &body, ""));
        assert_eq!(r.status, 403, "{body}: {}", r.text());
        assert_eq!(r.error_code(), "service_tier_not_allowed", "{}", r.text());
        assert!(r.text().contains("service_tiers"), "{}", r.text());
    }
    for tier in ["auto", "default", "flex"] {
        assert_eq!(one_request(gw.addr, &post_json("/v1/chat/completions", &chat(tier), "")).status, 200, "{tier}");
    }
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
    let mut gw = start_gateway(&stored_config(&mock, &logs, "", "", "service_tiers = [\"priority\"]"), &[], &[]);
    assert_eq!(one_request(gw.addr, &post_json("/v1/chat/completions", &chat("priority"), "")).status, 200);
    gw.signal(libc::SIGTERM);
    assert!(gw.wait_exit(Duration::from_secs(10)).expect("exits").success());
}
