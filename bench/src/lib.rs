//! Realistic inputs for Tollgate's benchmarks, shared by the criterion
//! benches so that every stage is measured on the same bytes.

pub mod pipeline;

/// Ordinary English prose, with the odd number, as prompts carry it: the
/// guard bench's clean text, and what `tollgate-guard-scan` counts.
pub const GUARD_PROSE: &str = "The quarterly review went well overall. Our team shipped the new onboarding flow, \
    and customers told us the setup now takes about half the time it used to. Support tickets about \
    passwords dropped after we added the reset link to the login page. Next quarter we want to improve \
    search, reduce the time it takes to load large reports, and write better documentation for the \
    reporting features. Please summarize these notes for the leadership meeting on Thursday and keep \
    the tone friendly but direct. Mention that 3 of the 12 planned items slipped into next quarter. ";

/// A request head as the OpenAI Python SDK sends it.
pub const CHAT_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Accept-Encoding: gzip, deflate\r\n\
Connection: keep-alive\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.54.4\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Package-Version: 1.54.4\r\n\
X-Stainless-OS: Linux\r\n\
X-Stainless-Arch: x64\r\n\
X-Stainless-Runtime: CPython\r\n\
X-Stainless-Runtime-Version: 3.11.7\r\n\
Authorization: Bearer tg-3f8a9c2e1b7d4f6a8c0e2b4d6f8a0c2e\r\n\
X-Stainless-Async: false\r\n\
x-stainless-retry-count: 0\r\n\
Content-Length: 1024\r\n\r\n";

/// A chat request body of about `bytes` bytes.
pub fn chat_body(bytes: usize) -> Vec<u8> {
    let mut content = String::new();
    while content.len() + 120 < bytes {
        content.push_str("Summarise the quarterly report for the finance team and list the three largest costs. ");
    }
    format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{content}"}}],"temperature":0.2,"stream":false}}"#
    )
    .into_bytes()
}

/// An OpenAI-style SSE stream of `events` content chunks.
pub fn sse_stream(events: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..events {
        out.extend_from_slice(
            format!(
                "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i} café\"}},\"finish_reason\":null}}]}}\n\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// `payload` in chunked framing, `chunk` bytes per chunk.
pub fn chunked(payload: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in payload.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}
