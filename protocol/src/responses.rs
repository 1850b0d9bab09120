//! OpenAI's Responses API (`POST /v1/responses`): what the gateway reads
//! of its stream events, and the shapes it writes itself (an answer it
//! withheld, a stream it ended, an error inside a stream).
//!
//! A Responses stream repeats its text: each piece arrives once in a
//! `*.delta` event (`"delta": "..."`) and the whole of it again in the
//! `*.done`, `response.content_part.done`, `response.output_item.done` and
//! `response.completed` events. The gateway counts, guards and captures
//! the deltas as the answer's text ([`read_event`] says which string that
//! is, read by structure at the event's top level, and which events end a
//! text and so release what a guard holds of it), checks a delta event's
//! other strings and every other event whole, and counts nothing twice.
//! The request body is read by [`crate::openai::scan_request`] (`model`,
//! `stream`, `max_output_tokens`, `background`); usage by
//! [`crate::openai::read_answer`] (a top-level `usage`, or the
//! `response`'s in a stream event).
//!
//! [`chat`] translates between the Responses API and chat completions, for
//! providers that do not serve it.

pub mod chat;

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use crate::openai::{members, number, write_json_string, Cursor};

/// What the gateway reads of one Responses stream event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFacts {
    /// The raw span of the event's streamed text (the top-level `delta`
    /// string of a text, refusal, arguments, reasoning or transcript
    /// delta), and whether it holds escapes.
    pub delta: Option<(Range<usize>, bool)>,
    /// The output item and content part the text belongs to: parallel
    /// texts never share one guard's hold.
    pub output_index: Option<u64>,
    pub content_index: Option<u64>,
    /// A reasoning summary's part (`summary_index`): its own text to a
    /// client, as a content part is.
    pub summary_index: Option<u64>,
    /// The raw span of the event's `type` where it has a text `delta`.
    pub text_type: Option<Range<usize>>,
    /// The response's last event (`response.completed`, `.incomplete` or
    /// `.failed`).
    pub last: bool,
    /// The event ends a text (a `*.done`, the response's last event, or an
    /// `error`): what a guard holds of it must go before it.
    pub ends: bool,
    /// The raw span of the top-level `sequence_number` value, so that a
    /// relay that adds events can number them again.
    pub sequence: Option<Range<usize>>,
}

/// Event types whose `delta` is not text: base64 audio.
const NOT_TEXT_DELTAS: &[&[u8]] = &[b"response.audio.delta"];

/// Reads an event's [`EventFacts`] from its top level only, whatever the
/// order of its keys; `None` when it is not a JSON object. A `delta`
/// counts as text only in an event whose `type` is a `*.delta`: a string
/// named `delta` anywhere else (inside a tool's output, or beside another
/// type) is not taken for the answer's text, and is checked whole with
/// the rest of its event.
pub fn read_event(doc: &[u8]) -> Option<EventFacts> {
    let mut c = Cursor { buf: doc, pos: 0, depth_max: usize::MAX };
    c.ws();
    let mut facts = EventFacts::default();
    let mut kind: Option<Range<usize>> = None;
    let mut delta = None;
    members(&mut c, &mut |c, key| {
        // A key written with escapes is the one it decodes to, as an SDK
        // reads it (found by a review: an escaped `delta` was no delta, and
        // each was scanned alone).
        const KEYS: &[&[u8]] =
            &[b"type", b"delta", b"output_index", b"content_index", b"summary_index", b"sequence_number"];
        let key = match key.contains(&b'\\') {
            true => KEYS.iter().copied().find(|k| crate::json::decodes_to(key, k)).unwrap_or(key),
            false => key,
        };
        match key {
            b"type" if c.peek() == Some(b'"') => {
                let s = c.string().ok()?;
                kind = Some(s.start as usize..s.end as usize);
            }
            b"delta" if c.peek() == Some(b'"') => {
                let s = c.string().ok()?;
                let raw = s.start as usize..s.end as usize;
                delta = Some((raw.clone(), doc[raw].contains(&b'\\')));
            }
            b"output_index" => facts.output_index = number(c)?,
            b"content_index" => facts.content_index = number(c)?,
            b"summary_index" => facts.summary_index = number(c)?,
            b"sequence_number" => {
                let start = c.pos;
                c.value().ok()?;
                facts.sequence = Some(start..c.pos);
            }
            _ => c.value().ok()?,
        }
        Some(())
    })?;
    c.ws();
    if c.pos != doc.len() {
        return None;
    }
    let type_span = kind.clone();
    let kind = kind.map_or(&b""[..], |k| &doc[k]);
    // A type written with escapes is the one it decodes to, as an SDK reads
    // it (found by a review: `response.output_text.delt\u0061` was no delta,
    // and each piece was scanned alone).
    let mut decoded = Vec::new();
    let kind = match kind.contains(&b'\\') && crate::json::unescape(kind, &mut decoded).is_ok() {
        true => &decoded[..],
        false => kind,
    };
    facts.last = matches!(kind, b"response.completed" | b"response.incomplete" | b"response.failed");
    facts.ends = facts.last || kind.ends_with(b".done") || kind == b"error";
    if kind.ends_with(b".delta") && !NOT_TEXT_DELTAS.contains(&kind) {
        facts.delta = delta;
        facts.text_type = type_span;
    }
    Some(facts)
}

/// The id of the response an answer carries, read by structure: a stream
/// event's `response.id` (`response.created` and the last events carry
/// the response), else a JSON answer's top-level `id`. Only a plain id
/// (no escapes, at most 128 bytes) is taken: the gateway keeps it as a key.
pub fn response_id(doc: &[u8]) -> Option<&[u8]> {
    let mut c = Cursor { buf: doc, pos: 0, depth_max: usize::MAX };
    c.ws();
    let (mut top, mut inner) = (None, None);
    members(&mut c, &mut |c, key| {
        match key {
            b"id" if c.peek() == Some(b'"') => top = Some(c.string().ok()?),
            b"response" if c.peek() == Some(b'{') => members(c, &mut |c, key| {
                match key {
                    b"id" if c.peek() == Some(b'"') => inner = Some(c.string().ok()?),
                    _ => c.value().ok()?,
                }
                Some(())
            })?,
            _ => c.value().ok()?,
        }
        Some(())
    })?;
    let id = inner.or(top)?.get(doc);
    (!id.is_empty() && id.len() <= 128 && !id.contains(&b'\\')).then_some(id)
}

/// A `response` object the gateway makes: its status `incomplete` with
/// `reason` (`content_filter` or `max_output_tokens`), and, for a withheld
/// answer, one assistant message whose content is the refusal.
fn write_response(
    out: &mut BytesMut,
    (id, model, created): (&str, &str, u64),
    reason: &str,
    refusal: Option<&str>,
    usage: Option<(u64, u64)>,
) {
    out.extend_from_slice(b"{\"id\":");
    write_json_string(out, id);
    out.extend_from_slice(b",\"object\":\"response\",\"created_at\":");
    out.extend_from_slice(itoa::Buffer::new().format(created).as_bytes());
    out.extend_from_slice(b",\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":");
    write_json_string(out, reason);
    out.extend_from_slice(b"},\"error\":null,\"model\":");
    write_json_string(out, model);
    out.extend_from_slice(b",\"output\":[");
    if let Some(refusal) = refusal {
        out.extend_from_slice(
            b"{\"type\":\"message\",\"id\":\"msg_withheld\",\"status\":\"incomplete\",\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\",\"refusal\":",
        );
        write_json_string(out, refusal);
        out.extend_from_slice(b"}]}");
    }
    out.extend_from_slice(b"],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],\"usage\":");
    match usage {
        Some((input, output)) => {
            let mut n = itoa::Buffer::new();
            out.extend_from_slice(b"{\"input_tokens\":");
            out.extend_from_slice(n.format(input).as_bytes());
            out.extend_from_slice(b",\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":");
            out.extend_from_slice(n.format(output).as_bytes());
            out.extend_from_slice(b",\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":");
            out.extend_from_slice(n.format(input + output).as_bytes());
            out.put_u8(b'}');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.put_u8(b'}');
}

/// An answer the gateway withheld: a response `incomplete` for
/// `content_filter`, the refusal as the assistant's content, and the usage
/// that was still spent.
pub fn write_withheld(
    out: &mut BytesMut,
    (id, model, created): (&str, &str, u64),
    refusal: &str,
    usage: Option<(u64, u64)>,
) {
    write_response(out, (id, model, created), "content_filter", Some(refusal), usage);
}

/// The event that ends a stream the gateway stopped: `response.incomplete`
/// with `reason` (`content_filter` when a guardrail withheld the rest,
/// `max_output_tokens` when a ceiling was reached), numbered `sequence`,
/// the response named `id` as the stream's first events named it (a
/// client that continues from the last response it read must find it).
pub fn write_stream_end(out: &mut BytesMut, (id, model, created): (&str, &str, u64), reason: &str, sequence: u64) {
    let mut data = BytesMut::new();
    data.extend_from_slice(b"{\"type\":\"response.incomplete\",\"sequence_number\":");
    data.extend_from_slice(itoa::Buffer::new().format(sequence).as_bytes());
    data.extend_from_slice(b",\"response\":");
    write_response(&mut data, (id, model, created), reason, None, None);
    data.put_u8(b'}');
    crate::sse::write_event(out, Some(b"response.incomplete"), &data);
}

/// An `error` event ending a stream the gateway cannot finish, in the
/// Responses API's shape.
pub fn write_error_event(out: &mut BytesMut, message: &str, code: &str, sequence: u64) {
    let mut data = BytesMut::new();
    data.extend_from_slice(b"{\"type\":\"error\",\"sequence_number\":");
    data.extend_from_slice(itoa::Buffer::new().format(sequence).as_bytes());
    data.extend_from_slice(b",\"code\":");
    write_json_string(&mut data, code);
    data.extend_from_slice(b",\"message\":");
    write_json_string(&mut data, message);
    data.extend_from_slice(b",\"param\":null}");
    crate::sse::write_event(out, Some(b"error"), &data);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response's id from an event's `response` or a JSON answer's top
    /// level, in any key order; an id inside an output item or a tool's
    /// arguments is not it.
    #[test]
    fn the_response_id_is_read_by_structure() {
        let cases: [(&str, Option<&str>); 6] = [
            (
                r#"{"type":"response.created","sequence_number":0,"response":{"output":[{"id":"msg_1"}],"id":"resp_1","status":"in_progress"}}"#,
                Some("resp_1"),
            ),
            (
                r#"{ "object" : "response", "output":[{"type":"function_call","id":"fc_1","arguments":"{\"id\":\"x\"}"}], "id" : "resp_2" }"#,
                Some("resp_2"),
            ),
            (r#"{"type":"response.output_text.delta","item_id":"msg_1","delta":"id"}"#, None),
            (r#"{"id":"evt_1","response":{"id":"resp_3"}}"#, Some("resp_3")),
            (r#"{"id":"resp_\u0031"}"#, None),
            ("[1]", None),
        ];
        for (doc, id) in cases {
            assert_eq!(response_id(doc.as_bytes()), id.map(str::as_bytes), "{doc}");
        }
    }

    #[test]
    fn text_deltas_are_read_by_structure_in_any_key_order() {
        let doc = br#"{ "delta" : "h\"i", "content_index":1, "type":"response.output_text.delta", "output_index" : 2 , "item_id":"msg_1","sequence_number":4}"#;
        let f = read_event(doc).expect("an object");
        let (raw, escaped) = f.delta.clone().expect("a text delta");
        assert_eq!(&doc[raw], br#"h\"i"#);
        assert!(escaped);
        assert_eq!((f.output_index, f.content_index, f.last), (Some(2), Some(1), false));
        for (doc, text) in [
            (&br#"{"type":"response.function_call_arguments.delta","delta":"{\"a\""}"#[..], true),
            (br#"{"type":"response.reasoning_summary_text.delta","delta":"x"}"#, true),
            (br#"{"type":"response.refusal.delta","delta":"no"}"#, true),
            // Base64 audio is not text.
            (br#"{"type":"response.audio.delta","delta":"UklGRg=="}"#, false),
            // A `delta` in a summary, or nested, is not the streamed text.
            (br#"{"type":"response.output_text.done","delta":"x","text":"whole"}"#, false),
            (br#"{"type":"response.output_text.delta","item":{"delta":"x"}}"#, false),
        ] {
            assert_eq!(read_event(doc).expect("object").delta.is_some(), text, "{}", String::from_utf8_lossy(doc));
        }
        for kind in ["response.completed", "response.incomplete", "response.failed"] {
            let doc = format!(r#"{{"response":{{"type":"x"}},"type":"{kind}"}}"#);
            assert!(read_event(doc.as_bytes()).expect("object").last);
        }
        assert!(!read_event(br#"{"type":"response.created","response":{"status":"in_progress"}}"#).unwrap().last);
        // What ends a text, and indexes as parsers read them.
        for (kind, ends) in [
            ("response.output_text.done", true),
            ("error", true),
            ("response.output_item.added", false),
            ("response.output_text.delta", false),
        ] {
            let doc = format!(r#"{{"type":"{kind}","content_index":-0,"output_index":1.0,"sequence_number":12}}"#);
            let f = read_event(doc.as_bytes()).expect("object");
            assert_eq!(f.ends, ends, "{kind}");
            assert_eq!((f.content_index, f.output_index), (Some(0), None));
            assert_eq!(&doc.as_bytes()[f.sequence.expect("numbered")], b"12");
        }
        assert_eq!(read_event(b"[DONE]"), None);
        assert_eq!(read_event(br#"{"type":"x"} trailing"#), None);
    }

    #[test]
    fn made_shapes_are_json_whatever_the_names_hold() {
        let mut out = BytesMut::new();
        write_withheld(&mut out, ("resp_\"1", "m\"x", 7), "rule `a`\n", Some((3, 4)));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(v["id"], "resp_\"1");
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"]["reason"], "content_filter");
        assert_eq!(v["model"], "m\"x");
        assert_eq!(v["output"][0]["content"][0]["refusal"], "rule `a`\n");
        assert_eq!(v["usage"]["total_tokens"], 7);
        let mut out = BytesMut::new();
        write_stream_end(&mut out, ("resp_9", "m", 7), "max_output_tokens", 9);
        write_error_event(&mut out, "up \"x\" failed", "upstream_stream_error", 10);
        let text = std::str::from_utf8(&out).expect("utf-8");
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2);
        let data = |e: &str| -> serde_json::Value {
            serde_json::from_str(e.split_once("\ndata: ").expect("data").1).expect("JSON")
        };
        let end = data(events[0]);
        assert!(events[0].starts_with("event: response.incomplete\n"));
        assert_eq!(end["sequence_number"], 9);
        assert_eq!(end["response"]["id"], "resp_9");
        assert_eq!(end["response"]["incomplete_details"]["reason"], "max_output_tokens");
        assert!(end["response"]["usage"].is_null());
        let err = data(events[1]);
        assert_eq!((err["type"].as_str(), err["message"].as_str()), (Some("error"), Some("up \"x\" failed")));
    }
}
