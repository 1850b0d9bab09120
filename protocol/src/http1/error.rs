//! Why a message was refused. Small `Copy` enums in the manner of
//! `httparse::Error`: a parser error carries no allocation and no text beyond
//! a static reason, so it is cheap on the hot path and safe to return for
//! hostile input.

use std::fmt;

/// A client request the gateway refuses. Every variant closes the connection
/// after the answer, because the framing of whatever follows can no longer
/// be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The head did not end within `head_bytes_max`.
    HeadTooLarge,
    /// More header fields than [`super::HEADERS_MAX`].
    TooManyHeaders,
    /// The request target is longer than `uri_bytes_max`.
    UriTooLong,
    /// Request line or header syntax that `httparse` rejects.
    Syntax(&'static str),
    /// A CR not followed by LF inside the head.
    BareCr,
    /// A LF not preceded by CR: a line end that httparse accepts, and a
    /// proxy in front may not (it would read the lines otherwise).
    BareLf,
    /// NUL or another control byte inside the head.
    ControlByte,
    /// A header line continued on the next line (obs-fold, RFC 9112 5.2).
    ObsFold,
    /// HTTP/1.1 without exactly one Host header, or a Host that is not a
    /// host and port.
    BadHost,
    /// A request target that is not origin-form (or absolute-form, or `*`
    /// for OPTIONS), or that carries a fragment.
    BadTarget,
    /// Both Transfer-Encoding and Content-Length (RFC 9112 6.3 rule 3).
    LengthAndTransferEncoding,
    /// Content-Length that is not a plain decimal number.
    InvalidContentLength,
    /// Several Content-Length fields or list members.
    MultipleContentLength,
    /// A transfer coding other than `chunked`.
    UnsupportedTransferCoding,
    /// `chunked` present but not the final coding, or given twice.
    ChunkedNotFinal,
    /// Transfer-Encoding on an HTTP/1.0 request (RFC 9112 6.1).
    TransferEncodingOnHttp10,
    /// A chunk-size line that is not hex digits plus an optional extension.
    BadChunkSize,
    /// A chunk size that does not fit in 64 bits.
    ChunkSizeOverflow,
    /// Chunk data not followed by CRLF, or malformed trailer section.
    BadChunkFraming,
    /// The body is longer than `body_bytes_max`.
    BodyTooLarge,
    /// An HTTP version other than 1.0 and 1.1.
    UnsupportedVersion,
}

impl RequestError {
    /// The one HTTP status each refusal maps to.
    pub fn status(self) -> u16 {
        use RequestError::*;
        match self {
            HeadTooLarge | TooManyHeaders => 431,
            UriTooLong => 414,
            BodyTooLarge => 413,
            UnsupportedTransferCoding => 501,
            UnsupportedVersion => 505,
            Syntax(_)
            | BareCr
            | BareLf
            | ControlByte
            | ObsFold
            | BadHost
            | BadTarget
            | LengthAndTransferEncoding
            | InvalidContentLength
            | MultipleContentLength
            | ChunkedNotFinal
            | TransferEncodingOnHttp10
            | BadChunkSize
            | ChunkSizeOverflow
            | BadChunkFraming => 400,
        }
    }

    /// A stable machine-readable code for the error body.
    pub fn code(self) -> &'static str {
        use RequestError::*;
        match self {
            HeadTooLarge => "head_too_large",
            TooManyHeaders => "too_many_headers",
            UriTooLong => "uri_too_long",
            Syntax(_) => "malformed_request",
            BareCr => "bare_cr",
            BareLf => "bare_lf",
            ControlByte => "control_byte_in_head",
            ObsFold => "obsolete_line_folding",
            BadHost => "bad_host_header",
            BadTarget => "bad_request_target",
            LengthAndTransferEncoding => "content_length_with_transfer_encoding",
            InvalidContentLength => "invalid_content_length",
            MultipleContentLength => "multiple_content_length",
            UnsupportedTransferCoding => "unsupported_transfer_coding",
            ChunkedNotFinal => "chunked_not_final",
            TransferEncodingOnHttp10 => "transfer_encoding_on_http10",
            BadChunkSize => "bad_chunk_size",
            ChunkSizeOverflow => "chunk_size_overflow",
            BadChunkFraming => "bad_chunk_framing",
            BodyTooLarge => "body_too_large",
            UnsupportedVersion => "unsupported_http_version",
        }
    }

    pub fn message(self) -> &'static str {
        use RequestError::*;
        match self {
            HeadTooLarge => "request head exceeds the size limit",
            TooManyHeaders => "request has too many header fields",
            UriTooLong => "request target exceeds the size limit",
            Syntax(why) => why,
            BareCr => "request head contains a CR not followed by LF",
            BareLf => "request head ends a line with LF alone; end each line with CRLF",
            ControlByte => "request head contains a NUL or control byte",
            ObsFold => "request head uses obsolete line folding",
            BadHost => "HTTP/1.1 request needs exactly one Host header, holding a host and an optional port",
            BadTarget => "the request target must be a path (origin-form), with no fragment",
            LengthAndTransferEncoding => "request has both Content-Length and Transfer-Encoding",
            InvalidContentLength => "Content-Length is not a decimal number",
            MultipleContentLength => "request has more than one Content-Length",
            UnsupportedTransferCoding => "only the chunked transfer coding is supported",
            ChunkedNotFinal => "chunked must be the final transfer coding, given once",
            TransferEncodingOnHttp10 => "Transfer-Encoding is not allowed in HTTP/1.0",
            BadChunkSize => "malformed chunk size line",
            ChunkSizeOverflow => "chunk size overflows",
            BadChunkFraming => "malformed chunked framing",
            BodyTooLarge => "request body exceeds the size limit",
            UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for RequestError {}

/// An upstream response the gateway cannot relay safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseError {
    HeadTooLarge,
    Syntax(&'static str),
    /// The framing rules refused it; the inner error says which one.
    Framing(RequestError),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::HeadTooLarge => f.write_str("upstream response head too large"),
            ResponseError::Syntax(why) => write!(f, "upstream response malformed: {why}"),
            ResponseError::Framing(e) => write!(f, "upstream response framing: {e}"),
        }
    }
}

impl std::error::Error for ResponseError {}
