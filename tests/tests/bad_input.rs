//! Request bodies the gateway must refuse itself, with a 400 in OpenAI's
//! error shape naming the problem, rather than forward.

use tollgate_e2e::*;

#[test]
fn malformed_fields_and_invalid_utf8_are_refused_before_anything_is_sent() {
    // The upstream echoes what it receives: nothing must reach it.
    let mock = start_mock(&[]);
    let gw = start_gateway(&config_for(mock.addr, 1, ""), &[], &[]);
    let cases: &[(&[u8], &str)] = &[
        (br#"{"model":"gpt-4o-mini","messages":"nope"}"#, "messages"),
        (br#"{"model":"gpt-4o-mini","messages":[],"max_tokens":-5}"#, "max_tokens"),
        (br#"{"model":"gpt-4o-mini","messages":[],"max_tokens":"9"}"#, "max_tokens"),
        (br#"{"model":"gpt-4o-mini","messages":[],"stream":"true"}"#, "stream"),
        (br#"{"model":"gpt-4o-mini","messages":["hi"]}"#, "messages[0]"),
        (
            br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a"},{"content":"b"}]}"#,
            "messages[1]: `role`",
        ),
        (br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":7}]}"#, "messages[0]: `content`"),
        (b"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9 \xff\"}]}", "UTF-8"),
    ];
    for (body, names) in cases {
        let mut raw = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        let r = one_request(gw.addr, &raw);
        assert_eq!(r.status, 400, "{}: {}", String::from_utf8_lossy(body), r.text());
        assert_eq!(r.error_code(), "invalid_body");
        let message = r.json()["error"]["message"].as_str().unwrap_or("").to_string();
        assert!(message.contains(names), "{message:?} should name {names}");
    }
}
