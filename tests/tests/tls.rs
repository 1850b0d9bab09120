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
    // The stream's first bytes (peeked, left for the read below) mean the
    // pooled connection is busy relaying it.
    let mut first = [0u8; 1];
    assert_eq!(busy.stream.peek(&mut first).expect("the stream starts"), 1);
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

/// curl over TLS to the gateway: `args` and the path; the status, or 0
/// when curl could not connect (its exit code is in the text).
fn curl_https(gw: &Proc, args: &[&str], path: &str) -> (u16, String) {
    let url = format!("https://localhost:{}{path}", gw.addr.port());
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/stderr", "-w", "%{http_code} %{http_version}", "--max-time", "10"])
        .args(["-H", &format!("Authorization: Bearer {KEY}"), "-H", "Content-Type: application/json"])
        .args(args)
        .arg(&url)
        .output()
        .expect("curl runs");
    let status = String::from_utf8_lossy(&out.stdout).split(' ').next().unwrap_or("0").parse().unwrap_or(0);
    (status, format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn listener_tls(mock: &Proc, tls: &str) -> String {
    config_for(mock.addr, 1, &format!("\n[server.tls]\n{tls}\n"))
}

/// The client listener terminates TLS 1.2 and 1.3 with ALPN http/1.1,
/// JSON and streams; plain HTTP on it gets nothing.
#[test]
fn the_listener_terminates_tls() {
    let pki = TestPki::new(&["localhost"]);
    let mock = start_mock(&[]);
    let tls = format!("cert_file = \"{}\"\nkey_file = \"{}\"", pki.cert.display(), pki.key.display());
    let gw = start_gateway_tls(&listener_tls(&mock, &tls));
    let ca = pki.ca.display().to_string();
    for version in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"]] {
        let mut args = vec!["--cacert", ca.as_str(), "-v", "-d", SMALL_CHAT];
        args.extend_from_slice(version);
        let (status, text) = curl_https(&gw, &args, "/v1/chat/completions");
        assert_eq!(status, 200, "{version:?}: {text}");
        assert!(text.contains("\"chat.completion\""), "{text}");
        assert!(text.contains("ALPN: server accepted http/1.1"), "{text}");
    }
    let (status, text) = curl_https(&gw, &["--cacert", &ca, "-N", "-d", STREAM_CHAT], "/v1/chat/completions");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    // Without the CA, curl refuses the certificate: verification is real.
    let (status, _) = curl_https(&gw, &["-d", SMALL_CHAT], "/v1/chat/completions");
    assert_eq!(status, 0);
    // Plain HTTP to the TLS port: no HTTP answer.
    let mut c = Client::connect(gw.addr);
    c.send(&chat_request(SMALL_CHAT, ""));
    assert!(c.read_response().is_none_or(|r| r.status == 0), "no plain answer on a TLS listener");
    // The gateway still serves after those.
    assert_eq!(curl_https(&gw, &["--cacert", &ca], "/healthz").0, 200);
}

/// mTLS: with `client_ca_file`, a client without a certificate signed by
/// it is refused in the handshake; `optional` lets it in.
#[test]
fn client_certificates() {
    let pki = TestPki::new(&["localhost"]);
    let mock = start_mock(&[]);
    let (ca, cert, key) = (pki.ca.display().to_string(), pki.cert.display().to_string(), pki.key.display().to_string());
    let base = format!("cert_file = \"{cert}\"\nkey_file = \"{key}\"\nclient_ca_file = \"{ca}\"");
    let gw = start_gateway_tls(&listener_tls(&mock, &base));
    // The test PKI's leaf is signed by its CA: it serves as a client
    // certificate too.
    let (status, text) = curl_https(&gw, &["--cacert", &ca, "--cert", &cert, "--key", &key], "/v1/models");
    assert_eq!(status, 200, "{text}");
    let (status, _) = curl_https(&gw, &["--cacert", &ca], "/v1/models");
    assert_eq!(status, 0, "no client certificate, no connection");
    let other = TestPki::new(&["localhost"]);
    let (oc, ok) = (other.cert.display().to_string(), other.key.display().to_string());
    let (status, _) = curl_https(&gw, &["--cacert", &ca, "--cert", &oc, "--key", &ok], "/v1/models");
    assert_eq!(status, 0, "a certificate from another CA is refused");

    let gw = start_gateway_tls(&listener_tls(&mock, &format!("{base}\nclient_auth = \"optional\"")));
    assert_eq!(curl_https(&gw, &["--cacert", &ca], "/v1/models").0, 200);
}

/// A renewed certificate is picked up by a reload; open connections keep
/// their session.
#[test]
fn a_reload_picks_up_a_new_certificate() {
    let (old, new) = (TestPki::new(&["localhost"]), TestPki::new(&["localhost"]));
    let mock = start_mock(&[]);
    let dir = TempDir::new("listener-cert");
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    std::fs::copy(&old.cert, &cert).unwrap();
    std::fs::copy(&old.key, &key).unwrap();
    let tls = format!("cert_file = \"{}\"\nkey_file = \"{}\"", cert.display(), key.display());
    let gw = start_gateway_tls(&listener_tls(&mock, &tls));
    let (old_ca, new_ca) = (old.ca.display().to_string(), new.ca.display().to_string());
    assert_eq!(curl_https(&gw, &["--cacert", &old_ca], "/healthz").0, 200);
    std::fs::copy(&new.cert, &cert).unwrap();
    std::fs::copy(&new.key, &key).unwrap();
    assert_eq!(curl_https(&gw, &["--cacert", &old_ca], "/healthz").0, 200, "not before the reload");
    gw.signal(libc::SIGHUP);
    assert!(gw.log_contains("configuration reloaded", Duration::from_secs(5)));
    assert_eq!(curl_https(&gw, &["--cacert", &new_ca], "/healthz").0, 200, "the new certificate");
    assert_eq!(curl_https(&gw, &["--cacert", &old_ca], "/healthz").0, 0, "the old one is gone");
    // A broken key file is a refused reload: the certificate in use stays.
    std::fs::write(&key, "not a key").unwrap();
    gw.signal(libc::SIGHUP);
    assert!(gw.log_contains("reload refused", Duration::from_secs(5)));
    assert_eq!(curl_https(&gw, &["--cacert", &new_ca], "/healthz").0, 200);
}

/// SIGTERM closes idle TLS keep-alive connections at once, as it does
/// plain ones, instead of waiting out the drain time.
#[test]
fn a_drain_closes_idle_tls_connections() {
    let pki = TestPki::new(&["localhost"]);
    let mock = start_mock(&[]);
    let tls = format!("cert_file = \"{}\"\nkey_file = \"{}\"", pki.cert.display(), pki.key.display());
    let mut gw = start_gateway_tls(&listener_tls(&mock, &tls));
    // One request answered, then the connection stays open and idle: the
    // script's time.sleep(30) holds it (the scenario, not a wait).
    let script = format!(
        "import socket, ssl, sys, time\n\
         ctx = ssl.create_default_context(cafile='{}')\n\
         s = ctx.wrap_socket(socket.create_connection(('localhost', {})), server_hostname='localhost')\n\
         s.sendall(b'GET /healthz HTTP/1.1\\r\\nHost: gw\\r\\n\\r\\n')\n\
         print(s.recv(4096).split(b'\\r\\n')[0].decode(), flush=True)\n\
         time.sleep(30)\n",
        pki.ca.display(),
        gw.addr.port()
    );
    let mut idle = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(idle.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "HTTP/1.1 200 OK");
    let started = std::time::Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let _ = idle.kill();
    let _ = idle.wait();
}
