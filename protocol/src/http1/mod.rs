//! HTTP/1.1 (RFC 9112): heads, body framing and the errors that close a
//! connection.
//!
//! The framing rules here are the gateway's defence against request
//! smuggling: a message whose length two parties could read differently is
//! refused, never guessed at. See [`RequestError`] for each refused case and
//! the one status it maps to.

mod body;
mod error;
pub(crate) mod head;

pub use body::{chunk_header, BodyFraming, ChunkedDecoder, DecodeProgress, LengthDecoder, CHUNK_END, LAST_CHUNK};
pub use error::{RequestError, ResponseError};
pub use head::{
    find_head_end, named_by_connection, HeadLimits, HeadScan, Header, Method, RequestHead, ResponseHead, HEADERS_MAX,
};

#[cfg(test)]
mod tests;
