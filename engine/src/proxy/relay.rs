//! Relaying an upstream answer to the client as it arrives.
//!
//! Every upstream read is written to the client before the next read, so a
//! stream's events leave the gateway as soon as they arrive and a slow
//! client slows its upstream read instead of growing a buffer. When both
//! sides frame the body the same way (Content-Length to Content-Length,
//! chunked to chunked) the upstream's bytes go out untouched, as slices of
//! the buffer they were read into; the decoder only watches for the end.
//! Re-framing (an HTTP/1.0 client, a close-delimited upstream) decodes and
//! re-encodes.
//!
//! Stages that read the answer (token counting, response guardrails) attach
//! where the decoded data ranges are reported.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tollgate_protocol::http1::{
    chunk_header, BodyFraming, ChunkedDecoder, LengthDecoder, RequestHead, ResponseHead, CHUNK_END, LAST_CHUNK,
};
use tollgate_protocol::openai::TopMembers;

use crate::iov;
use crate::record::{End, TokenUsage};
use crate::respond::{reason, Client};
use crate::upstream::{UpConn, UPSTREAM_READ_BYTES};

/// Which target served the answer, for the `x-tollgate-route` header.
#[derive(Clone, Copy, Debug)]
pub struct RouteLabel<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    /// The header the provider's key goes in when its configuration names
    /// one (`api_key_header`): never relayed back, as the usual ones are
    /// not ([`relayed`]).
    pub key_header: Option<&'a str>,
}

/// What a relay needs to know about the request it answers.
#[derive(Clone, Copy)]
pub struct Answer<'a> {
    pub request: &'a RequestHead,
    /// The API the client speaks: a failing stream ends in its format.
    pub front: super::Front,
    /// The client connection may stay open after this answer.
    pub keep_alive: bool,
    pub deadline: Instant,
    pub route: RouteLabel<'a>,
    /// The headers every answer to the request carries.
    pub reply: &'a crate::respond::Reply,
    /// Ends the relay when the drain's time is up.
    pub cut: &'a crate::cut::Cut,
    /// When the request began.
    pub started: Instant,
    /// The request's body as the client sent it (redacted, a kept turn's
    /// items put before its input), before any translation.
    pub body: &'a [u8],
    /// The provider reads input the body does not hold (a stored
    /// response, conversation or prompt: `ChatRequestFields::stored_input`).
    pub stored_input: bool,
    /// The target's model may bill reasoning it does not stream
    /// (`Target::reasons`).
    pub reasons: bool,
}

/// A request answered sooner than this is not checked for a client that
/// hung up: the check is a syscall, 14% of a 100-byte request's cost at
/// 23,000 requests/s on one core, and a client that leaves within two
/// milliseconds of asking is rare where answers take a model's time.
const HANG_UP_CHECK_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// How long a stream whose client has left is read on for its end, where
/// it is not read to its end ([`Answer::read_to_end`]): a client that
/// hangs up on the answer's last text, before the usage the provider sends
/// after it (OpenAI's last chunk, Bedrock's `metadata`, a proxy's final
/// count), is billed that usage, not the gateway's count (another model's
/// tokenizer can count a quarter more). An answer that goes on past it (a
/// client that stopped it half-way) ends there, its provider stopping as
/// before, a quarter of a second's tokens later.
pub const USAGE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

impl Answer<'_> {
    /// Whether the answer is read to its end, dropped, once its client has
    /// left (within the request's deadline and the drain), so that the
    /// request is billed from the provider's usage: where the gateway's
    /// count of the prompt can fall short of the provider's, because the
    /// provider reads stored input, or the body holds what
    /// `media::counted_in_part` names (an image, audio, a file, a tool the
    /// provider runs, reasoning asked for), or the model reasons by
    /// default (whatever the body asks: a switch that turns the reasoning
    /// off may be dropped by a translation or ignored by the provider's
    /// API). Otherwise the relay ends there,
    /// the provider stops generating, and the request is billed its
    /// prompt counted and the answer's tokens that passed. (A tenant could
    /// otherwise continue a 100,000-token conversation, or send a PDF,
    /// hang up at the first event, and be billed for the dozen tokens of
    /// text it sent.) Asked once, when the client leaves.
    pub fn read_to_end(&self) -> bool {
        self.stored_input || self.reasons || tollgate_protocol::media::counted_in_part(self.body)
    }

    /// Whether the client closed or reset its connection while it waited
    /// (`ClientStream::hung_up`), for a request that has waited
    /// [`HANG_UP_CHECK_AFTER`].
    pub fn client_hung_up(&self, client: &Client) -> bool {
        self.started.elapsed() >= HANG_UP_CHECK_AFTER && client.stream.hung_up()
    }
}

/// How a relay ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayEnd {
    pub status: u16,
    /// The upstream connection ended cleanly and may serve another request.
    pub upstream_reusable: bool,
    /// The client connection is in a clean state for its next request.
    pub client_reusable: bool,
    /// Body bytes written to the client.
    pub body_bytes: u64,
    /// The answer was JSON (`application/json`): a JSON answer is not
    /// counted as it passes, as a stream's deltas are
    /// (`forward::estimate_usage` bills its bytes when its usage cannot
    /// be believed).
    pub json_answer: bool,
    /// How the answer ended.
    pub end: End,
    /// Tokens, when the answer carried a `usage` object.
    pub usage: Option<TokenUsage>,
    /// Why its generations ended, as the client was told.
    pub finish: super::answer::Finish,
    /// The answer's usage was there but set aside
    /// ([`super::answer::Rejected`]).
    pub usage_rejected: bool,
    /// Completion tokens counted by the gateway: a stream's deltas as they
    /// passed, or a whole JSON answer's texts where its usage may be far
    /// under them (`stream::json_answer_text_tokens`; else 0).
    pub completion_counted: u64,
    /// When the first bytes of the answer (head and first data) reached the
    /// client's socket: time to first token, for streams.
    pub first_write: Option<Instant>,
    /// The answer was read to its end after the client stopped getting it
    /// (it left, or a guardrail ended its answer there), for the
    /// provider's final count ([`Answer::read_to_end`]).
    pub read_past_client: bool,
    /// A Responses answer passed through: the id of the response (which a
    /// later request may continue with `previous_response_id`).
    pub response_id: Option<Box<str>>,
}

impl RelayEnd {
    pub fn new(status: u16) -> RelayEnd {
        RelayEnd {
            status,
            upstream_reusable: false,
            client_reusable: false,
            body_bytes: 0,
            json_answer: false,
            end: End::UpstreamFailed,
            usage: None,
            finish: Default::default(),
            usage_rejected: false,
            completion_counted: 0,
            first_write: None,
            read_past_client: false,
            response_id: None,
        }
    }

    /// The answer reached its end at the upstream (whether or not the
    /// client stayed for it): what it reports is the provider's final
    /// count.
    pub fn whole(&self) -> bool {
        self.end == End::Completed || self.read_past_client
    }
}

/// How the body travels from upstream framing to client framing.
enum Mode {
    /// No body.
    Empty,
    /// Content-Length both ways: raw bytes.
    Length(LengthDecoder),
    /// Chunked both ways: raw bytes, decoded only to find the end.
    Chunked(ChunkedDecoder),
    /// Chunked upstream, HTTP/1.0 client: data only, then close.
    Dechunk(ChunkedDecoder),
    /// Close-delimited upstream, HTTP/1.1 client: encode chunks.
    Encode,
    /// Close-delimited both ways.
    UntilClose,
}

/// Whether an upstream answer header reaches the client: not a hop-by-hop
/// one, not one the gateway writes itself (its own value must be the only
/// one), and not one that speaks for the provider account every tenant
/// shares: its rate-limit headers would show each tenant the others'
/// aggregate use, its organisation and project headers who pays.
///
/// Nor one that speaks for the gateway's origin, which is not the
/// provider's: a cookie (an auth proxy's session before a self-hosted
/// upstream is a credential to it), an authentication challenge, HSTS or
/// an alternative service the tenant's client would pin to the gateway's
/// name (found by a review).
///
/// Nor a credential by any of the names the gateway sends its own under
/// (or an auth proxy's): an upstream or a sidecar that echoes a request's
/// headers would hand the tenant the gateway's provider key (found by a
/// review). Headers the answer's `Connection` names are hop-by-hop too
/// (`http1::named_by_connection`, as for a request's).
fn relayed(name: &[u8]) -> bool {
    const OWN_OR_SHARED: &[&[u8]] = &[
        b"x-request-id",
        b"openai-organization",
        b"openai-project",
        b"anthropic-organization-id",
        b"set-cookie",
        b"set-cookie2",
        b"www-authenticate",
        b"proxy-authenticate",
        b"strict-transport-security",
        b"alt-svc",
        b"authorization",
        b"proxy-authorization",
        b"authentication-info",
        b"proxy-authentication-info",
        b"cookie",
        b"x-api-key",
        b"api-key",
        b"x-goog-api-key",
        b"x-amz-security-token",
    ];
    const PREFIXES: &[&[u8]] = &[b"x-tollgate-", b"x-ratelimit-", b"anthropic-ratelimit-", b"x-amzn-bedrock-"];
    let starts = |p: &[u8]| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p);
    !hop_by_hop(name)
        && !OWN_OR_SHARED.iter().any(|h| h.eq_ignore_ascii_case(name))
        && !PREFIXES.iter().any(|p| starts(p))
}

fn hop_by_hop(name: &[u8]) -> bool {
    const DROP: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"content-length",
        b"te",
        b"trailer",
        b"upgrade",
    ];
    DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
}

/// Streams `response` (whose head has been read from `up`) to the client.
/// Failures after the head has gone out cannot become an error status: an
/// event stream gets an SSE error event and `[DONE]`, anything else is cut
/// short, and the client connection closes.
/// `keep`: the answer cache keeps the body (a JSON answer only) once it is
/// whole.
///
/// An answer to an HTTP/1.0 client of a body with no length (chunked or
/// close-delimited upstream) ends with the connection: one cut short (the
/// upstream failed, broke its framing or timed out, or the drain ended it)
/// resets it, since an orderly close would read as the answer's end (to
/// nginx in front too, whose `proxy_http_version` is 1.0 by default; found
/// by a review).
pub async fn relay(
    client: &mut Client,
    up: &mut UpConn,
    response: ResponseHead,
    answer: &Answer<'_>,
    keep: Option<&mut crate::cache::Kept>,
) -> RelayEnd {
    let close_delimited = answer.request.minor_version == 0
        && matches!(response.framing, BodyFraming::Chunked | BodyFraming::CloseDelimited);
    let end = relay_body(client, up, response, answer, keep).await;
    if close_delimited && end.end != End::Completed && client.answered {
        client.abort();
    }
    end
}

async fn relay_body(
    client: &mut Client,
    up: &mut UpConn,
    response: ResponseHead,
    answer: &Answer<'_>,
    mut keep: Option<&mut crate::cache::Kept>,
) -> RelayEnd {
    let Answer { request, keep_alive, deadline, route, front, .. } = *answer;
    let provider = route.provider;
    let http10 = request.minor_version == 0;
    let (mut mode, framing_header): (Mode, &[u8]) = match (response.framing, http10) {
        (BodyFraming::Empty, _) if matches!(response.status, 204 | 304) => (Mode::Empty, b""),
        (BodyFraming::Empty, _) => (Mode::Empty, b"content-length: 0\r\n"),
        (BodyFraming::Length(_), _) => (Mode::Length(LengthDecoder::new(0)), b""),
        (BodyFraming::Chunked, false) => (Mode::Chunked(ChunkedDecoder::new()), b"transfer-encoding: chunked\r\n"),
        (BodyFraming::Chunked, true) => (Mode::Dechunk(ChunkedDecoder::new()), b""),
        (BodyFraming::CloseDelimited, false) => (Mode::Encode, b"transfer-encoding: chunked\r\n"),
        (BodyFraming::CloseDelimited, true) => (Mode::UntilClose, b""),
    };
    let closes_client = matches!(mode, Mode::Dechunk(_) | Mode::UntilClose);
    let mut client_keep_alive = keep_alive && !closes_client;
    let event_stream = response
        .header(b"content-type")
        .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
    let json = response
        .header(b"content-type")
        .is_some_and(|v| v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/json"));
    if let Some(k) = keep.as_deref_mut().filter(|_| !json || response.status != 200) {
        // The cache serves JSON answers it read as JSON, nothing else.
        k.spoil();
    }

    // The head: status line, upstream headers minus hop-by-hop, our framing.
    let s = &mut client.scratch;
    s.extend_from_slice(b"HTTP/1.1 ");
    s.extend_from_slice(itoa::Buffer::new().format(response.status).as_bytes());
    s.extend_from_slice(b" ");
    let upstream_reason = response.reason();
    s.extend_from_slice(if upstream_reason.is_empty() { reason(response.status).as_bytes() } else { upstream_reason });
    s.extend_from_slice(b"\r\n");
    // Most answers have no `Connection` header; one that does is read for
    // the names it makes hop-by-hop.
    let named = response.headers().any(|(n, _)| n.eq_ignore_ascii_case(b"connection"));
    let key_header = route.key_header.map(str::as_bytes);
    for (name, value) in response.headers().filter(|(n, _)| {
        relayed(n)
            && !(named && tollgate_protocol::http1::named_by_connection(response.headers(), n))
            && key_header.is_none_or(|k| !k.eq_ignore_ascii_case(n))
    }) {
        s.extend_from_slice(name);
        s.extend_from_slice(b": ");
        s.extend_from_slice(value);
        s.extend_from_slice(b"\r\n");
    }
    if let BodyFraming::Length(n) = response.framing {
        s.extend_from_slice(b"content-length: ");
        s.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        s.extend_from_slice(b"\r\n");
        mode = Mode::Length(LengthDecoder::new(n));
    }
    crate::respond::write_request_id(answer.reply.request_id, s);
    crate::respond::write_rate(answer.reply.rate, s);
    crate::respond::write_cache(answer.reply.cache, s);
    s.extend_from_slice(b"x-tollgate-route: ");
    s.extend_from_slice(route.provider.as_bytes());
    s.extend_from_slice(b"/");
    s.extend_from_slice(route.model.as_bytes());
    s.extend_from_slice(b"\r\n");
    s.extend_from_slice(framing_header);
    if !client_keep_alive {
        s.extend_from_slice(b"connection: close\r\n");
    }
    s.extend_from_slice(b"\r\n");
    client.out.push(s.split().freeze());
    // The head is no body byte (`RelayEnd::body_bytes`; it was counted as
    // one, and billed, a token for every three, in an answer without usage).
    let mut head_left = client.out.len() as u64;

    let mut end = RelayEnd::new(response.status);
    end.json_answer = json;
    // The answer's data is kept as it passes (slices of the buffers it was
    // read into, no copy) and read whole at its end: usage split across
    // reads, or cut by chunk-size lines, is still read.
    let mut tap = (response.status < 300).then(Tap::default);
    let mut upstream_eof = false;
    // A reset is not an end: a close-delimited body cut by one must not be
    // presented as complete.
    let mut upstream_failed = false;
    // The client has gone: what is read is dropped.
    let mut gone = false;
    // Whether to read on once it has ([`Answer::read_to_end`]).
    let mut read_on = None;
    // Where it is not: until when the rest is read for an end on its way
    // ([`USAGE_GRACE`]).
    let mut grace: Option<Instant> = None;
    // What the writes have waited for the client past their grace
    // (`Client::write_relayed`): a client that reads a trickle of a large
    // JSON answer is let go at `write_stall_ms` and the rest read for its
    // usage, rather than held to the request's deadline, where the answer
    // would end unread and the provider's usage with it.
    let mut stalled = std::time::Duration::ZERO;
    loop {
        let done = match take_body(&mut mode, up, upstream_eof && !upstream_failed, client, tap.as_mut()) {
            Ok(done) => done,
            Err(()) => {
                // Malformed framing from the upstream: cut the answer short.
                if gone {
                    end.end = End::ClientGone;
                } else {
                    let _ = client.write(deadline).await;
                }
                return end;
            }
        };
        if done {
            // Read before the client's fate is known: the upstream did the
            // work either way.
            let tapped = tap.take();
            if front == super::Front::Responses {
                end.response_id = tapped.as_ref().and_then(Tap::response_id);
            }
            if let Some(k) = keep.as_deref_mut() {
                match tapped.as_ref() {
                    Some(t) => t.keep_into(k),
                    None => k.spoil(),
                }
            }
            let (usage, finish) = tapped.as_ref().map_or((Ok(None), Default::default()), Tap::usage);
            // A JSON answer's output, counted where its usage may be far
            // under it.
            if json {
                end.completion_counted = tapped
                    .as_ref()
                    .and_then(|t| t.read(|doc| super::stream::json_answer_text_tokens(doc, &usage, route.model, front)))
                    .unwrap_or(0);
            }
            end.finish = finish;
            match usage {
                Ok(u) => end.usage = u,
                Err(_) => end.usage_rejected = true,
            }
        }
        // A client that hung up while it waited, or before the last of a
        // short answer, did not get it, whatever the kernel would accept.
        if gone || ((end.first_write.is_none() || done) && answer.client_hung_up(client)) {
            gone = true;
            client.out.clear();
        } else {
            let n = client.out.len() as u64;
            let head = head_left.min(n);
            head_left -= head;
            end.body_bytes += n - head;
        }
        if !client.out.is_empty() {
            if client.write_relayed(deadline, &mut stalled).await.is_err() {
                // The client went away; the upstream connection is mid-answer.
                gone = true;
                client.out.clear();
            } else {
                end.first_write.get_or_insert_with(Instant::now);
                #[cfg(debug_assertions)]
                crate::fault::inject("mid-stream", answer.body);
            }
        }
        // A JSON answer was generated whole before its head came: reading
        // the rest costs bandwidth only, and its usage is exact. A stream
        // is read on only where the gateway cannot count the prompt.
        if gone && !done && grace.is_none() && !*read_on.get_or_insert_with(|| !event_stream || answer.read_to_end()) {
            grace = Some(Instant::now() + USAGE_GRACE);
        }
        if gone && (done || grace.is_some_and(|g| Instant::now() >= g)) {
            // Complete, the upstream connection is clean.
            end.upstream_reusable = done && response.keep_alive && up.buf.is_empty() && !upstream_eof;
            end.read_past_client = done;
            end.end = End::ClientGone;
            return end;
        }
        if done {
            break;
        }
        if upstream_eof {
            // The upstream closed before the end of a framed body.
            if gone {
                end.end = End::ClientGone;
            } else if event_stream && matches!(&mode, Mode::Chunked(d) if d.at_chunk_boundary()) {
                end_stream_with_error(client, provider, front, false, answer.deadline).await;
            }
            return end;
        }
        up.buf.reserve(UPSTREAM_READ_BYTES);
        let wait = grace.map_or(deadline, |g| g.min(deadline)).saturating_duration_since(Instant::now());
        let read = answer.cut.or(monoio::time::timeout(wait, iov::read_more(&mut up.stream, &mut up.buf))).await;
        let Some(Ok(res)) = read else {
            if read.is_none() {
                // The drain's time is up: the answer is cut here.
                end.end = End::Cut;
            } else if gone {
                end.end = End::ClientGone;
            }
            if !gone && event_stream && matches!(&mode, Mode::Chunked(d) if d.at_chunk_boundary()) {
                end_stream_with_error(client, provider, front, read.is_none(), answer.deadline).await;
            }
            return end;
        };
        match res {
            Ok(0) => upstream_eof = true,
            Err(_) => {
                upstream_eof = true;
                upstream_failed = true;
            }
            Ok(_) => {}
        }
    }
    if up.buf.is_empty() && !upstream_eof {
        end.upstream_reusable = response.keep_alive;
    }
    client_keep_alive &= !matches!(mode, Mode::UntilClose | Mode::Dechunk(_));
    end.client_reusable = client_keep_alive;
    end.end = End::Completed;
    end
}

/// Moves what the upstream buffer holds of the body into the client's
/// output; true once the body is complete.
/// `tap`, when given, keeps the body's data (without chunk framing).
fn take_body(
    mode: &mut Mode,
    up: &mut UpConn,
    upstream_eof: bool,
    client: &mut Client,
    mut tap: Option<&mut Tap>,
) -> Result<bool, ()> {
    let mut keep = |data: &Bytes| {
        if let Some(t) = tap.as_deref_mut() {
            t.keep(data);
        }
    };
    match mode {
        Mode::Empty => Ok(true),
        Mode::Length(d) => {
            let p = d.decode(&up.buf);
            let data = up.buf.split_to(p.consumed).freeze();
            keep(&data);
            client.out.push(data);
            Ok(p.done)
        }
        Mode::Chunked(d) => {
            let mut ranges = Vec::new();
            // The trailer section is not passed through: its fields would
            // reach the client past the header filter (`relayed`; found
            // by a review). The body ends with an empty one instead.
            let trailer_before = d.in_trailer();
            let p = d.decode(&up.buf, |r| ranges.push(r)).map_err(|_| ())?;
            let raw = up.buf.split_to(p.consumed).freeze();
            for r in ranges {
                keep(&raw.slice(r));
            }
            let chunks = if trailer_before { 0 } else { d.trailer_at().unwrap_or(raw.len()) };
            client.out.push(raw.slice(..chunks));
            if p.done {
                client.out.push(Bytes::from_static(b"\r\n"));
            }
            Ok(p.done)
        }
        Mode::Dechunk(d) => {
            let mut ranges = Vec::new();
            let p = d.decode(&up.buf, |r| ranges.push(r)).map_err(|_| ())?;
            let raw = up.buf.split_to(p.consumed).freeze();
            for r in ranges {
                let data = raw.slice(r);
                keep(&data);
                client.out.push(data);
            }
            Ok(p.done)
        }
        Mode::Encode => {
            if !up.buf.is_empty() {
                let data = up.buf.split().freeze();
                keep(&data);
                let mut hdr = [0u8; 18];
                let n = chunk_header(data.len(), &mut hdr);
                client.out.push(Bytes::copy_from_slice(&hdr[..n]));
                client.out.push(data);
                client.out.push(Bytes::from_static(CHUNK_END));
            }
            if upstream_eof {
                client.out.push(Bytes::from_static(LAST_CHUNK));
            }
            Ok(upstream_eof)
        }
        Mode::UntilClose => {
            let data = up.buf.split().freeze();
            keep(&data);
            client.out.push(data);
            Ok(upstream_eof)
        }
    }
}

/// The data of an answer relayed raw, kept to read its usage once whole.
/// An answer that comes in one piece is kept as a refcounted slice of the
/// buffer it was read into (no copy); from a second piece on, the data is
/// copied into one buffer, so that what is kept is the data itself and not
/// the read buffers it pins (a trickling upstream would pin one per read).
/// Past [`super::answer::TRANSLATED_BODY_BYTES_MAX`] the body is let go
/// and the top-level members that hold its usage and id are picked out as
/// it passes ([`TopMembers`], [`TOP_MEMBERS`]): a tenant that asks for an
/// answer of tens of megabytes
/// (`n`, `top_logprobs`) is billed its provider's usage, not its prompt
/// alone.
#[derive(Default)]
struct Tap {
    first: Option<Bytes>,
    joined: BytesMut,
    /// Past the bound, the body is no longer kept: its top-level members
    /// that hold the usage and the id are picked out as it passes instead.
    overflowed: Option<Box<TopMembers>>,
}

/// What [`Tap`] picks out of an answer too large to keep: what
/// `read_answer` and `response_id` read at the top level (a `message` or
/// `response` too large to take gives nothing, as before).
pub(super) const TOP_MEMBERS: &[&[u8]] = &[b"usage", b"id", b"message", b"response", b"service_tier"];

impl Tap {
    fn keep(&mut self, data: &Bytes) {
        if let Some(top) = self.overflowed.as_mut() {
            top.feed(data);
            return;
        }
        if data.is_empty() {
            return;
        }
        let held = self.first.as_ref().map_or(0, Bytes::len) + self.joined.len();
        if held + data.len() > super::answer::TRANSLATED_BODY_BYTES_MAX {
            let mut top = Box::new(TopMembers::new(TOP_MEMBERS));
            if let Some(f) = self.first.take() {
                top.feed(&f);
            }
            top.feed(&self.joined);
            top.feed(data);
            self.joined = BytesMut::new();
            self.overflowed = Some(top);
            return;
        }
        match self.first.take() {
            None if self.joined.is_empty() => self.first = Some(data.clone()),
            first => {
                if let Some(f) = first {
                    self.joined.extend_from_slice(&f);
                }
                self.joined.extend_from_slice(data);
            }
        }
    }

    /// Hands the whole body to the answer cache (spoiled when it was too
    /// large to keep here).
    fn keep_into(&self, kept: &mut crate::cache::Kept) {
        match &self.first {
            _ if self.overflowed.is_some() => kept.spoil(),
            Some(one) => kept.push(one),
            None => kept.push(&Bytes::copy_from_slice(&self.joined)),
        }
    }

    /// What is read of the answer: the body whole, or the members picked
    /// out of one too large to keep (`None` when they could not be).
    fn read<T>(&self, read: impl FnOnce(&[u8]) -> T) -> Option<T> {
        match (&self.overflowed, &self.first) {
            (Some(top), _) => top.document().map(|doc| read(&doc)),
            (None, Some(one)) => Some(read(one)),
            (None, None) => Some(read(&self.joined)),
        }
    }

    /// A Responses answer's id.
    fn response_id(&self) -> Option<Box<str>> {
        self.read(super::answer::response_id).flatten()
    }

    /// The answer's usage and finish reasons (none for an answer too large
    /// to keep: they are its choices').
    fn usage(&self) -> (super::answer::Usage, super::answer::Finish) {
        self.read(super::answer::answer_usage).unwrap_or((Ok(None), Default::default()))
    }
}

/// Ends a chunked event stream whose upstream failed, or that the drain
/// cut (`cut`): an error event in the client's format
/// ([`super::answer::write_error_event`]) and the last chunk, so SDKs see a
/// clean error rather than a hung or truncated stream.
async fn end_stream_with_error(client: &mut Client, provider: &str, front: super::Front, cut: bool, deadline: Instant) {
    let mut event = BytesMut::new();
    if cut {
        let message = "the gateway is shutting down and ended the stream before it was complete";
        super::answer::write_error_event(front, message, "shutting_down", 0, &mut event);
    } else {
        let message = format!("upstream `{provider}` failed in the middle of the stream");
        super::answer::write_error_event(front, &message, "upstream_stream_error", 0, &mut event);
    }
    let mut hdr = [0u8; 18];
    let n = chunk_header(event.len(), &mut hdr);
    client.out.push(Bytes::copy_from_slice(&hdr[..n]));
    client.out.push(event.freeze());
    client.out.push(Bytes::from_static(CHUNK_END));
    client.out.push(Bytes::from_static(LAST_CHUNK));
    let _ = client.write(deadline).await;
}
