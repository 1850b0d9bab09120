//! The turn store's bounds and scope, and the bodies it makes: by
//! structure, whatever the whitespace.

use super::*;

fn span_of(body: &str, value: &str) -> Span {
    let start = body.find(value).unwrap();
    Span::new(start, start + value.len())
}

#[test]
fn turns_are_found_with_their_key_until_they_expire_and_the_oldest_make_room() {
    let now = Instant::now();
    let t = Turns::new(16 * 1000, Duration::from_secs(60));
    t.put("k1", "resp_1", Bytes::from_static(b"[1]"), now);
    assert_eq!(t.get("k1", "resp_1", now).as_deref(), Some(&b"[1]"[..]));
    assert_eq!(t.get("k2", "resp_1", now), None, "another key's turn is not found");
    assert_eq!(t.get("k1", "resp_1", now + Duration::from_secs(60)), None, "expired");
    // A shard holds 1,000 bytes: turns of 300 bytes in one shard push the
    // oldest out, and the bytes never pass the bound.
    let big = Bytes::from(vec![b'x'; 300]);
    for i in 0..200 {
        t.put("k", &format!("r{i}"), big.clone(), now);
        assert!(t.bytes() <= 16 * 1000);
    }
    assert!(t.get("k", "r199", now).is_some());
    assert!(t.get("k", "r0", now).is_none(), "the oldest made room");
    // Larger than a shard: not kept.
    t.put("k", "huge", Bytes::from(vec![b'x'; 2000]), now);
    assert!(t.get("k", "huge", now).is_none());
    // Kept again under the same id: replaced, counted once.
    let before = t.bytes();
    t.put("k", "r199", big.clone(), now);
    assert_eq!(t.bytes(), before);
}

#[test]
fn a_continued_body_puts_the_stored_items_first() {
    let stored = br#"[{"role":"user","content":"hi"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"hello"}]}]"#;
    for body in [
        r#"{"model":"m","previous_response_id":"resp_1","input":"and again"}"#,
        "{ \"input\" : \"and again\" ,\n \"previous_response_id\" : \"resp_1\", \"model\":\"m\" }",
    ] {
        let input = span_of(body, "\"and again\"");
        let previous = span_of(body, "resp_1");
        let out = continued(body.as_bytes(), input, previous, stored).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["previous_response_id"], serde_json::Value::Null);
        let items = v["input"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1]["content"][0]["text"], "hello");
        assert_eq!(items[2], serde_json::json!({"role": "user", "content": "and again"}));
    }
    // An array input is appended item by item; an empty stored list adds
    // nothing.
    let body = r#"{"model":"m","input":[{"role":"user","content":"x"}],"previous_response_id":"r"}"#;
    // The id `r`: the one-byte string just before the closing brace.
    let at = body.rfind("\"r\"").unwrap() + 1;
    let array = span_of(body, r#"[{"role":"user","content":"x"}]"#);
    let out = continued(body.as_bytes(), array, Span::new(at, at + 1), b"[]").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["input"], serde_json::json!([{"role": "user", "content": "x"}]));
}

#[test]
fn the_conversation_kept_is_the_input_and_the_output_without_ids() {
    let body = r#"{"model":"m","input":"hi"}"#;
    let input = span_of(body, "\"hi\"");
    let answer = br#"{"id":"resp_9","object":"response","status":"completed","output":[{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"hello"}]},{"id":"fc_1","type":"function_call","call_id":"c1","name":"f","arguments":"{}"}]}"#;
    let (id, items) = conversation(body.as_bytes(), input, answer, false).unwrap();
    assert_eq!(id, "resp_9");
    let v: serde_json::Value = serde_json::from_slice(&items).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
        ])
    );
    // From a stream: its `response.completed`.
    let stream = format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"resp_9\",\"output\":[]}}}}\n\nevent: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{}}}\n\n",
        String::from_utf8_lossy(answer)
    );
    let (sid, sitems) = conversation(body.as_bytes(), input, stream.as_bytes(), true).unwrap();
    assert_eq!((sid, sitems), (id, items));
    // A stream that never completed keeps nothing.
    assert!(conversation(body.as_bytes(), input, b"event: response.created\ndata: {}\n\n", true).is_none());
}

/// A conversation's size is found by the key that made it only, within
/// its time, and is never taken for a turn of that key (nor a turn for a
/// size).
#[test]
fn a_conversations_size_is_kept_per_key_beside_the_turns() {
    let turns = Turns::new(1 << 20, Duration::from_secs(60));
    let now = Instant::now();
    turns.put_context("team-a", "resp_1", 90_016, now);
    assert_eq!(turns.context("team-a", "resp_1", now), Some(90_016));
    assert_eq!(turns.context("team-b", "resp_1", now), None);
    assert_eq!(turns.get("team-a", "resp_1", now), None, "a size is not a turn");
    assert!(turns.put("team-a", "resp_2", Bytes::from_static(b"[]"), now));
    assert_eq!(turns.context("team-a", "resp_2", now), None, "a turn is not a size");
    assert_eq!(turns.context("team-a", "resp_1", now + Duration::from_secs(61)), None, "expired");
}

/// A response's owner is kept apart from the turns: for as long as OpenAI
/// keeps the response (30 days), whatever the turns' time and however
/// full the turns' store (a tenant's own turns cannot push it out).
#[test]
fn owners_outlive_the_turns_and_their_bound() {
    let now = Instant::now();
    let t = Turns::new(16 * 1000, Duration::from_secs(60));
    t.put_owner("resp_1", "team-a", now);
    let big = Bytes::from(vec![b'x'; 300]);
    for i in 0..500 {
        t.put("k", &format!("r{i}"), big.clone(), now);
    }
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(t.owner("resp_1", now + 29 * day).as_deref(), Some(&b"team-a"[..]));
    assert_eq!(t.owner("resp_1", now + 31 * day), None);
    assert_eq!(t.owner("resp_2", now), None);
    // A turns store of no bytes still keeps owners.
    let none = Turns::new(0, Duration::ZERO);
    none.put_owner("resp_1", "team-a", now);
    assert!(none.owner("resp_1", now + day).is_some());
}
