//! Sans-IO wire formats for Tollgate.
//!
//! This crate owns every byte-level format the gateway reads or writes:
//! HTTP/1.1 heads and body framing ([`http1`]), Server-Sent Events ([`sse`]),
//! the few fields of OpenAI-style JSON bodies that routing needs
//! ([`openai`]) and of the Responses API's stream events ([`responses`]), and RESP, the Redis protocol of the cluster tier ([`resp`]);
//! the token counts the gateway makes itself ([`tokens`]), with images and
//! audio estimated from their headers ([`media`]).
//! It never touches a socket, a runtime or the clock, so every
//! rule is tested with plain byte strings and every parser is fuzzed.
//!
//! Parsers borrow and report progress, in the manner of `httparse`: they take
//! the caller's buffer and answer with spans into it and how many bytes they
//! consumed; "need more bytes" is a normal answer, not an error. Heads are
//! parsed once, their spans recorded as offsets, and the buffer frozen into
//! [`bytes::Bytes`] so that callers slice instead of copying.

pub mod anthropic;
pub mod bedrock;
pub mod canonical;
pub mod eventstream;
pub mod gemini;
pub mod http1;
pub mod json;
pub mod media;
pub mod openai;
pub mod resp;
pub mod responses;
pub mod sigv4;
pub mod span;
pub mod sse;
pub mod tokens;

pub use span::Span;
