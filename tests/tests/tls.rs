//! HTTPS upstreams: verification always on, a custom CA per provider.

use std::time::Duration;

use tollgate_e2e::*;

fn tls_config(port: u16, host: &str, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file.map(|p| format!("ca_file = \"{}\"\n", p.display())).unwrap_or_default();
    let base = config_for("127.0.0.1:9".parse().unwrap(), 1, "[routing]\nmax_attempts = 1\nbreaker_failures = 100");
    base.replace("base_url = \"http://127.0.0.1:9/v1\"\n", &format!("base_url = \"https://{host}:{port}/v1\"\n{ca}"))
}

#[test]
fn tls_upstream_with_a_custom_ca_serves_json_and_streams() {
    let pki = TestPki::new(&["localhost"]);
    let args = pki.mock_args();
    let mock = start_mock(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let gw = start_gateway(&tls_config(mock.addr.port(), "localhost", Some(&pki.ca)), &[], &[]);
    let mut c = Client::connect(gw.addr);
    let mut conns = Vec::new();
    for _ in 0..3 {
        c.send(&chat_request(SMALL_CHAT, ""));
        let r = c.read_response().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["object"], "chat.completion");
        conns.push(r.header("x-mock-connection").unwrap().to_string());
    }
    conns.dedup();
    assert_eq!(conns.len(), 1, "one pooled TLS connection serves all three");
    assert!(!mock.log_contains("TLS session resumed", Duration::from_millis(50)), "nothing to resume yet");
    // A second upstream connection, opened while the first is busy with a
    // slow stream, resumes the first one's session.
    let mut busy = Client::connect(gw.addr);
    busy.send(&chat_request(STREAM_CHAT, "x-mock-chunk-delay-ms: 100\r\n"));
    std::thread::sleep(Duration::from_millis(100));
    c.send(&chat_request(SMALL_CHAT, ""));
    let r = c.read_response().unwrap();
    assert_ne!(r.header("x-mock-connection").unwrap(), conns[0], "a second upstream connection");
    assert!(mock.log_contains("TLS session resumed", Duration::from_secs(5)), "the second handshake resumed");
    assert_eq!(sse_data(&busy.read_response().unwrap().body).last().map(String::as_str), Some("[DONE]"));
    let r = one_request(gw.addr, &chat_request(STREAM_CHAT, ""));
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    // Request bodies cross TLS byte for byte.
    let echoed = one_request(gw.addr, &chat_request(SMALL_CHAT, "x-mock-echo: body\r\n"));
    assert_eq!(echoed.text(), SMALL_CHAT);
}

#[test]
fn an_untrusted_or_misnamed_certificate_is_refused_with_a_502_naming_the_tls_error() {
    let pki = TestPki::new(&["localhost"]);
    let args = pki.mock_args();
    let mock = start_mock(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // No ca_file: the system roots do not know the test CA.
    let gw = start_gateway(&tls_config(mock.addr.port(), "localhost", None), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_tls_error"), "{}", r.text());
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("TLS error") && message.contains("UnknownIssuer"), "{message}");
    // The right CA but another name than the certificate's.
    let gw = start_gateway(&tls_config(mock.addr.port(), "127.0.0.1", Some(&pki.ca)), &[], &[]);
    let r = one_request(gw.addr, &chat_request(SMALL_CHAT, ""));
    assert_eq!((r.status, r.error_code().as_str()), (502, "upstream_tls_error"), "{}", r.text());
    assert!(r.text().contains("not valid for name"), "{}", r.text());
}
