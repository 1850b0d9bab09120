//! A hostile tenant trying to pay less than it used, through the real
//! gateway and the bundled mock.

use std::time::Duration;

use tollgate_e2e::*;

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
