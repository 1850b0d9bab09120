//! Request and response heads: finding where a head ends, then one
//! `httparse` pass that records every header as a pair of [`Span`]s into the
//! frozen head buffer. No `String` is made per header and nothing is copied.

use bytes::Bytes;

use super::body::BodyFraming;
use super::error::{RequestError, ResponseError};
use crate::Span;

/// Header fields kept per head; a request with more is refused with 431.
/// Real clients send 5 to 20; 64 leaves room for proxies in front of us.
pub const HEADERS_MAX: usize = 64;

/// Size limits applied while reading a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    pub head_bytes_max: usize,
    pub uri_bytes_max: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits { head_bytes_max: 16 * 1024, uri_bytes_max: 8 * 1024 }
    }
}

/// Incremental search for the blank line that ends a head.
///
/// Keeps a cursor so that a head arriving one byte at a time costs linear,
/// not quadratic, work: each call resumes at the last line feed it could not
/// yet judge.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeadScan {
    scanned: usize,
}

impl HeadScan {
    /// Length of the head (blank line included) once `buf` holds all of it.
    /// `buf` must be the same growing buffer on every call until `reset`.
    pub fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        let mut pos = self.scanned;
        while let Some(i) = memchr::memchr(b'\n', &buf[pos.min(buf.len())..]) {
            let lf = pos + i;
            match (buf.get(lf + 1), buf.get(lf + 2)) {
                (Some(b'\n'), _) => return Some(self.done(lf + 2)),
                (Some(b'\r'), Some(b'\n')) => return Some(self.done(lf + 3)),
                (None, _) | (Some(b'\r'), None) => {
                    self.scanned = lf;
                    return None;
                }
                _ => pos = lf + 1,
            }
        }
        self.scanned = buf.len();
        None
    }

    fn done(&mut self, end: usize) -> usize {
        self.scanned = 0;
        end
    }

    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}

/// Whether `headers`' `Connection` fields name `name`: a header for this
/// hop alone (RFC 9110 7.6.1), which a proxy neither forwards nor relays.
/// Every `Connection` line is one list (a second line's names count).
pub fn named_by_connection<'h>(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>, name: &[u8]) -> bool {
    headers
        .filter(|(h, _)| h.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
}

/// One-shot form of [`HeadScan::find_end`].
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    HeadScan::default().find_end(buf)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Other,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// A header field as spans into its head's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    pub value: Span,
}

/// Fields kept inside the head; a head with more keeps them on the heap.
/// An OpenAI SDK sends 10 to 15 fields, a load generator 4.
const INLINE_FIELDS: usize = 16;

/// The header table shared by requests and responses: the fields of a
/// typical head inline, so that it costs no heap allocation beyond the
/// frozen buffer it borrows, and the rest (up to [`HEADERS_MAX`]) on the
/// heap. Not all 64 inline: a head is moved several times on its way
/// into a request's exchange, and 64 fields made each move 1 KB
/// (`bench/scripts/callgrind-gateway.sh` counted those copies).
#[derive(Clone)]
struct HeaderTable {
    len: usize,
    inline: [Header; INLINE_FIELDS],
    /// Every field, when there are more than fit inline (else empty).
    spilled: Vec<Header>,
}

impl HeaderTable {
    fn from_httparse(buf: &[u8], parsed: &[httparse::Header<'_>]) -> HeaderTable {
        let field =
            |h: &httparse::Header<'_>| Header { name: Span::of(buf, h.name.as_bytes()), value: Span::of(buf, h.value) };
        let mut table =
            HeaderTable { len: parsed.len(), inline: [Header::default(); INLINE_FIELDS], spilled: Vec::new() };
        if parsed.len() <= INLINE_FIELDS {
            for (slot, h) in table.inline.iter_mut().zip(parsed) {
                *slot = field(h);
            }
        } else {
            table.spilled = parsed.iter().map(field).collect();
        }
        table
    }

    fn fields(&self) -> &[Header] {
        if self.len <= INLINE_FIELDS {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    fn iter<'a>(&'a self, buf: &'a [u8]) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.fields().iter().map(move |h| (h.name.get(buf), h.value.get(buf)))
    }

    fn get<'a>(&'a self, buf: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
        self.iter(buf).find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
}

/// What the framing headers of one message said, before the rules judge it.
#[derive(Default)]
struct FramingFields {
    content_length: Option<u64>,
    content_length_count: usize,
    content_length_invalid: bool,
    content_length_list: bool,
    transfer_encoding: bool,
    chunked_final: bool,
    chunked_not_final: bool,
    other_coding: bool,
    host_count: usize,
    /// A Host value with bytes no host may hold (userinfo's `@`, spaces).
    host_invalid: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
}

impl FramingFields {
    fn read(table: &HeaderTable, buf: &[u8]) -> FramingFields {
        let mut f = FramingFields::default();
        for (name, value) in table.iter(buf) {
            if name.eq_ignore_ascii_case(b"content-length") {
                f.content_length_count += 1;
                let v = trim_ows(value);
                if v.contains(&b',') {
                    f.content_length_list = true;
                } else {
                    match parse_decimal(v) {
                        Some(n) => f.content_length = Some(n),
                        None => f.content_length_invalid = true,
                    }
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                f.transfer_encoding = true;
                for coding in value.split(|&b| b == b',').map(trim_ows).filter(|c| !c.is_empty()) {
                    if f.chunked_final {
                        // Anything after `chunked`, including a second `chunked`.
                        f.chunked_not_final = true;
                        f.chunked_final = false;
                    }
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        if !f.chunked_not_final {
                            f.chunked_final = true;
                        }
                    } else {
                        f.other_coding = true;
                    }
                }
            } else if name.eq_ignore_ascii_case(b"host") {
                f.host_count += 1;
                // RFC 9110 7.2 / RFC 3986: a host (reg-name or IP literal)
                // and a port; no userinfo, no space, nothing else.
                let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%:[]".contains(b);
                f.host_invalid |= !value.iter().all(allowed);
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(trim_ows) {
                    f.connection_close |= token.eq_ignore_ascii_case(b"close");
                    f.connection_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                f.expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
            }
        }
        f
    }

    /// RFC 9112 section 6.3, strict: whatever two readers could frame
    /// differently is an error.
    fn request_framing(&self, minor_version: u8) -> Result<BodyFraming, RequestError> {
        if self.transfer_encoding {
            if minor_version == 0 {
                return Err(RequestError::TransferEncodingOnHttp10);
            }
            if self.content_length_count > 0 {
                return Err(RequestError::LengthAndTransferEncoding);
            }
            if self.chunked_not_final {
                return Err(RequestError::ChunkedNotFinal);
            }
            if self.other_coding {
                return Err(RequestError::UnsupportedTransferCoding);
            }
            if self.chunked_final {
                return Ok(BodyFraming::Chunked);
            }
            return Err(RequestError::ChunkedNotFinal);
        }
        self.length_framing().map(|f| f.unwrap_or(BodyFraming::Empty))
    }

    fn length_framing(&self) -> Result<Option<BodyFraming>, RequestError> {
        if self.content_length_count > 1 || self.content_length_list {
            return Err(RequestError::MultipleContentLength);
        }
        if self.content_length_invalid {
            return Err(RequestError::InvalidContentLength);
        }
        Ok(self.content_length.map(|n| if n == 0 { BodyFraming::Empty } else { BodyFraming::Length(n) }))
    }

    fn keep_alive(&self, minor_version: u8) -> bool {
        if minor_version == 0 {
            self.connection_keep_alive && !self.connection_close
        } else {
            !self.connection_close
        }
    }
}

/// A parsed client request head. Every view borrows from `buf`.
#[derive(Clone)]
pub struct RequestHead {
    buf: Bytes,
    pub method: Method,
    target: Span,
    pub minor_version: u8,
    headers: HeaderTable,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl RequestHead {
    /// Parses a complete head (as delimited by [`HeadScan`]) and judges its
    /// framing. `head` must hold exactly the head, blank line included.
    pub fn parse(head: Bytes, limits: &HeadLimits) -> Result<RequestHead, RequestError> {
        if head.len() > limits.head_bytes_max {
            return Err(Self::too_large(&head, limits));
        }
        // Not initialised first: httparse writes the fields it parses
        // (64 empty ones are 2 KB to fill per request).
        let mut raw = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_MAX];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&head, &mut raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(RequestError::Syntax("incomplete request head")),
            // httparse refuses every byte `check_head_bytes` looks for, so
            // that pass runs only here, to name the refusal precisely.
            Err(httparse::Error::TooManyHeaders) => return Err(RequestError::TooManyHeaders),
            Err(httparse::Error::Version) => return Err(RequestError::UnsupportedVersion),
            Err(e) => {
                check_head_bytes(&head)?;
                return Err(RequestError::Syntax(httparse_reason(e)));
            }
        }
        // httparse takes a lone LF as a line's end (RFC 9112 2.2 allows
        // it); a proxy in front that does not, or that folds the line into
        // the one before, frames the connection otherwise: a head
        // `X-A: a\nContent-Length: 5` is one header to it and two here
        // (found by a review). Refused: a line's end is CRLF.
        if memchr::memchr_iter(b'\n', &head).any(|i| i == 0 || head[i - 1] != b'\r') {
            return Err(RequestError::BareLf);
        }
        let (Some(method), Some(path), Some(minor_version)) = (req.method, req.path, req.version) else {
            return Err(RequestError::Syntax("incomplete request line"));
        };
        if path.len() > limits.uri_bytes_max {
            return Err(RequestError::UriTooLong);
        }
        let headers = HeaderTable::from_httparse(&head, req.headers);
        let fields = FramingFields::read(&headers, &head);
        if (minor_version == 1 && fields.host_count != 1) || fields.host_invalid {
            return Err(RequestError::BadHost);
        }
        // RFC 9112 3.2: origin-form (`/path?query`) for every method, the
        // asterisk-form for OPTIONS only, absolute-form accepted as a
        // server must; authority-form is CONNECT's, which is not served;
        // and no target carries a fragment.
        // Compared as bytes: a target may hold UTF-8 whose characters
        // straddle the scheme's length (slicing the str there panics).
        let origin = path.starts_with('/');
        let scheme = |s: &[u8]| path.len() > s.len() && path.as_bytes()[..s.len()].eq_ignore_ascii_case(s);
        let absolute = scheme(b"http://") || scheme(b"https://");
        let asterisk = path == "*" && method == "OPTIONS";
        if !(origin || absolute || asterisk) || path.contains('#') {
            return Err(RequestError::BadTarget);
        }
        let framing = fields.request_framing(minor_version)?;
        Ok(RequestHead {
            method: Method::from_token(method),
            target: Span::of(&head, path.as_bytes()),
            minor_version,
            framing,
            keep_alive: fields.keep_alive(minor_version),
            expect_continue: fields.expect_continue && minor_version == 1,
            headers,
            buf: head,
        })
    }

    /// The error for a head that has not ended within the limit: 414 when
    /// even the request line has not ended, else 431.
    pub fn too_large(partial: &[u8], limits: &HeadLimits) -> RequestError {
        let window = &partial[..partial.len().min(limits.head_bytes_max)];
        match memchr::memchr(b'\n', window) {
            None => RequestError::UriTooLong,
            Some(_) => RequestError::HeadTooLarge,
        }
    }

    pub fn target(&self) -> &[u8] {
        self.target.get(&self.buf)
    }

    /// The request target without its query string.
    pub fn path(&self) -> &[u8] {
        let t = self.target();
        match memchr::memchr(b'?', t) {
            Some(i) => &t[..i],
            None => t,
        }
    }

    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers.get(&self.buf, name)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers.iter(&self.buf)
    }

    /// The whole head as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }
}

/// A parsed upstream response head. Every view borrows from `buf`.
#[derive(Clone)]
pub struct ResponseHead {
    buf: Bytes,
    pub status: u16,
    reason: Span,
    pub minor_version: u8,
    headers: HeaderTable,
    pub framing: BodyFraming,
    pub keep_alive: bool,
}

impl ResponseHead {
    /// Parses a complete response head. `request_was_head` matters because a
    /// response to HEAD has no body whatever its headers say.
    pub fn parse(head: Bytes, request_was_head: bool) -> Result<ResponseHead, ResponseError> {
        // Uninitialised, as for a request (httparse's default parser
        // configuration, as `Response::parse` uses).
        let mut raw = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADERS_MAX];
        let mut res = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, &head, &mut raw) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ResponseError::Syntax("incomplete head")),
            Err(e) => return Err(ResponseError::Syntax(httparse_reason(e))),
        }
        let (Some(status), Some(minor_version)) = (res.code, res.version) else {
            return Err(ResponseError::Syntax("incomplete status line"));
        };
        let reason = Span::of(&head, res.reason.unwrap_or("").as_bytes());
        let headers = HeaderTable::from_httparse(&head, res.headers);
        let fields = FramingFields::read(&headers, &head);
        let no_body = request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
        let framing = if no_body {
            BodyFraming::Empty
        } else if fields.transfer_encoding {
            if fields.content_length_count > 0 {
                return Err(ResponseError::Framing(RequestError::LengthAndTransferEncoding));
            }
            if fields.other_coding || fields.chunked_not_final {
                // A coding the gateway does not decode (`gzip, chunked`:
                // chunked framing of gzip bytes), or chunked twice, which
                // the client never asked for and would get raw: refused,
                // where it was read until close, chunk lines and all (found
                // by a review).
                return Err(ResponseError::Framing(RequestError::UnsupportedTransferCoding));
            }
            if fields.chunked_final {
                BodyFraming::Chunked
            } else {
                // RFC 9112 6.3 rule 4: read until close.
                BodyFraming::CloseDelimited
            }
        } else {
            match fields.length_framing().map_err(ResponseError::Framing)? {
                Some(f) => f,
                None => BodyFraming::CloseDelimited,
            }
        };
        // A 204 or 304 that declares a body's framing (`Content-Length: 5`
        // or `Transfer-Encoding`) has none to read, yet a server that wrote
        // the header may send the bytes: left on a pooled connection, they
        // would begin the next request's answer, another tenant's (found
        // by a review). Such a connection is not reused.
        let declared_body = (status == 204 || status == 304)
            && !request_was_head
            && (fields.transfer_encoding || fields.content_length_count > 0);
        // An HTTP/1.0 answer with `Transfer-Encoding` has faulty framing: it
        // is read as framed, and its connection closed after (RFC 9112
        // 6.1), never pooled for the next tenant's request.
        let faulty = minor_version == 0 && fields.transfer_encoding;
        let keep_alive =
            fields.keep_alive(minor_version) && framing != BodyFraming::CloseDelimited && !declared_body && !faulty;
        Ok(ResponseHead { status, reason, minor_version, headers, framing, keep_alive, buf: head })
    }

    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.buf)
    }

    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers.get(&self.buf, name)
    }

    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers.iter(&self.buf)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.buf
    }
}

/// Bytes `httparse` would also refuse, checked first so that each gets its
/// own error: control bytes, a CR without LF, and obs-fold continuation lines.
pub(crate) fn check_head_bytes(head: &[u8]) -> Result<(), RequestError> {
    let mut prev = 0u8;
    for (i, &b) in head.iter().enumerate() {
        if prev == b'\n' && (b == b' ' || b == b'\t') {
            return Err(RequestError::ObsFold);
        }
        match b {
            b'\r' if head.get(i + 1) != Some(&b'\n') => return Err(RequestError::BareCr),
            b'\r' | b'\n' | b'\t' => {}
            0..=0x1f | 0x7f => return Err(RequestError::ControlByte),
            _ => {}
        }
        prev = b;
    }
    Ok(())
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Optional white space (SP / HTAB) trimmed from both ends.
pub(crate) fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &v[start..end]
}

/// A non-empty run of ASCII digits that fits in `u64`; anything else (sign,
/// space inside, hex) is `None`.
pub(crate) fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            None
        } else {
            acc.checked_mul(10)?.checked_add(d as u64)
        }
    })
}
