//! Relaying an answer that the gateway reads on its way: in the other API's
//! format (an Anthropic answer to an OpenAI client, or an OpenAI answer to
//! an Anthropic client), or checked by the answer guardrails, or both.
//!
//! A JSON answer (or an error) is read whole, bounded by
//! [`TRANSLATED_BODY_BYTES_MAX`], translated, and sent with its length. An
//! event stream is translated event by event as it arrives: the upstream's
//! chunks are decoded, split into SSE events, each event becomes zero or
//! more OpenAI chunks, and those are written to the client before the next
//! upstream read, so nothing is held back but a partial event.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tollgate_protocol::anthropic::{self, StreamTranslator};
use tollgate_protocol::http1::{
    chunk_header, BodyFraming, ChunkedDecoder, LengthDecoder, ResponseHead, CHUNK_END, LAST_CHUNK,
};
use tollgate_protocol::sse::SseParser;

use super::guard::{Checked, EventGuard, Recorded};
use super::relay::{Answer, RelayEnd, RouteLabel};
use super::upstream_request::Translation;
use super::Front;
use crate::error::GatewayError;
use crate::iov;
use crate::record::{End, TokenUsage};
use crate::respond::Client;
use crate::upstream::{UpConn, UPSTREAM_READ_BYTES};

/// An upstream answer read whole for translation may be at most this big.
pub const TRANSLATED_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One SSE event from the upstream may be at most this big.
const EVENT_BYTES_MAX: usize = 1024 * 1024;

/// Reads a body's decoded data in pieces, whatever its framing.
struct BodyReader {
    framing: Framing,
    done: bool,
}

enum Framing {
    Empty,
    Length(LengthDecoder),
    Chunked(ChunkedDecoder),
    Close,
}

impl BodyReader {
    fn new(framing: BodyFraming) -> BodyReader {
        let framing = match framing {
            BodyFraming::Empty => Framing::Empty,
            BodyFraming::Length(n) => Framing::Length(LengthDecoder::new(n)),
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::new()),
            BodyFraming::CloseDelimited => Framing::Close,
        };
        BodyReader { done: matches!(framing, Framing::Empty), framing }
    }

    /// Appends the next decoded pieces to `data`, reading from the upstream
    /// when nothing is buffered. `Err` on a reset, time-out or bad framing.
    async fn next(&mut self, up: &mut UpConn, deadline: Instant, data: &mut Vec<Bytes>) -> Result<(), ()> {
        if self.done {
            return Ok(());
        }
        if up.buf.is_empty() {
            up.buf.reserve(UPSTREAM_READ_BYTES);
            let wait = deadline.saturating_duration_since(Instant::now());
            let n = monoio::time::timeout(wait, iov::read_more(&mut up.stream, &mut up.buf))
                .await
                .map_err(|_| ())?
                .map_err(|_| ())?;
            if n == 0 {
                return match self.framing {
                    Framing::Close => {
                        self.done = true;
                        Ok(())
                    }
                    _ => Err(()),
                };
            }
        }
        match &mut self.framing {
            Framing::Empty => self.done = true,
            Framing::Length(d) => {
                let p = d.decode(&up.buf);
                data.push(up.buf.split_to(p.consumed).freeze());
                self.done = p.done;
            }
            Framing::Chunked(d) => {
                let mut ranges = Vec::new();
                let p = d.decode(&up.buf, |r| ranges.push(r)).map_err(|_| ())?;
                let raw = up.buf.split_to(p.consumed).freeze();
                data.extend(ranges.into_iter().map(|r| raw.slice(r)));
                self.done = p.done;
            }
            Framing::Close => data.push(up.buf.split().freeze()),
        }
        Ok(())
    }
}

/// What a read answer goes through: a translation, a guard, or both.
pub struct Inspect<'a, 'g> {
    pub translation: Translation,
    pub guard: Option<&'g tollgate_policy::guard::Guard>,
    /// Where the guard's hits go (the request record).
    pub hits: &'a mut Vec<Recorded>,
    /// The usage chunk was asked for by the gateway, not the client: it is
    /// read for billing and not passed on.
    pub strip_usage: bool,
    /// The key's or team's ceilings on one request, for streams.
    pub ceiling: Option<Ceiling>,
    /// Grown as the stream generates past it; a stream that crosses a
    /// tokens-per-minute limit is ended there.
    pub reservation: Option<&'a crate::worker::Reservation>,
    /// With `[logging] capture_bodies`: the guard that redacts, and where
    /// the answer goes.
    pub capture: Option<(&'g tollgate_policy::guard::Guard, &'a mut Vec<u8>)>,
}

/// Ceilings on one request's output tokens and cost: a stream that crosses
/// one is ended as if the model had reached `max_tokens`.
#[derive(Clone, Copy, Debug)]
pub struct Ceiling {
    pub output_tokens: u64,
    /// (limit in micro-dollars, prompt tokens, the model's price)
    pub cost: Option<(u64, u64, tollgate_policy::config::Price)>,
}

impl Ceiling {
    pub fn crossed(&self, completion: u64) -> bool {
        completion > self.output_tokens
            || self.cost.is_some_and(|(limit, prompt, price)| {
                TokenUsage { prompt, completion, cached: 0 }.cost_at(price) > limit
            })
    }
}

/// Relays an answer that is translated, guarded, or both. `Err` only when
/// nothing has been sent yet (the answer could not be read or translated),
/// so the caller can still answer with an error status.
pub async fn relay_translated(
    client: &mut Client,
    up: &mut UpConn,
    response: ResponseHead,
    answer: &Answer<'_>,
    inspect: Inspect<'_, '_>,
) -> Result<RelayEnd, GatewayError> {
    let Inspect { translation, guard, hits, strip_usage, ceiling, reservation, mut capture } = inspect;
    let Answer { keep_alive, deadline, route, front, .. } = *answer;
    let event_stream = response.status == 200
        && response
            .header(b"content-type")
            .is_some_and(|v| v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream"));
    if event_stream {
        let stream = match translation {
            Translation::ToAnthropic(_) => Stream::ToAnthropic(anthropic::front::FrontStream::new()),
            Translation::ToOpenAi(info) => {
                Stream::ToOpenAi(StreamTranslator::new(crate::unix_now().as_secs(), info.include_usage))
            }
            Translation::None => Stream::Identity { front, done: false, usage: None, strip_usage },
        };
        let stages = StreamStages { guard: guard.map(|g| (EventGuard::new(g), hits)), ceiling, reservation, capture };
        return Ok(relay_stream(client, up, response, answer, stream, stages).await);
    }
    // Only JSON is translated; anything else (an HTML error page from a
    // proxy in front of the provider, say) goes through as it came.
    let json = response
        .header(b"content-type")
        .is_some_and(|v| v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/json"));
    if !json {
        // A guarded answer that is neither JSON nor a stream cannot be
        // checked: failing closed, it is refused before any byte goes out.
        if guard.is_some_and(|g| !g.fail_open) && response.status < 300 {
            return Err(GatewayError::UpstreamProtocol {
                provider: route.provider.to_string(),
                cause: tollgate_protocol::http1::ResponseError::Syntax(
                    "the answer is neither JSON nor an event stream, so guardrails cannot check it",
                ),
            });
        }
        return Ok(super::relay::relay(client, up, response, answer).await);
    }
    let broken = || GatewayError::UpstreamClosed { provider: route.provider.to_string(), cause: None };
    // The gateway asks for identity; a provider that compresses anyway
    // cannot be translated.
    if response.header(b"content-encoding").is_some_and(|v| !v.eq_ignore_ascii_case(b"identity")) {
        return Err(GatewayError::UpstreamProtocol {
            provider: route.provider.to_string(),
            cause: tollgate_protocol::http1::ResponseError::Syntax(
                "compressed answer despite accept-encoding: identity",
            ),
        });
    }
    let retry_after = response.header(b"retry-after").map(Bytes::copy_from_slice);
    let mut reader = BodyReader::new(response.framing);
    let mut body = BytesMut::new();
    let mut pieces = Vec::new();
    while !reader.done {
        reader.next(up, deadline, &mut pieces).await.map_err(|_| broken())?;
        for p in pieces.drain(..) {
            body.extend_from_slice(&p);
        }
        if body.len() > TRANSLATED_BODY_BYTES_MAX {
            return Err(broken());
        }
    }
    let mut out = BytesMut::with_capacity(body.len() + 256);
    let to_anthropic = matches!(translation, Translation::ToAnthropic(_));
    let mut usage = None;
    let mut status = response.status;
    if matches!(translation, Translation::None) {
        usage = tollgate_protocol::openai::find_usage(&body).map(|(prompt, completion, cached)| TokenUsage {
            prompt,
            completion,
            cached,
        });
        out = body;
    } else if response.status < 300 {
        let translated = if to_anthropic {
            usage = tollgate_protocol::openai::find_usage(&body).map(|(prompt, completion, cached)| TokenUsage {
                prompt,
                completion,
                cached,
            });
            anthropic::front::response_from_openai(&mut body, &mut out)
        } else {
            anthropic::response_to_openai(&mut body, crate::unix_now().as_secs(), &mut out)
                .map(|u| usage = Some(anthropic_usage(u)))
        };
        translated.map_err(|e| GatewayError::UpstreamProtocol {
            provider: route.provider.to_string(),
            cause: tollgate_protocol::http1::ResponseError::Syntax(e.message()),
        })?;
    } else if to_anthropic {
        anthropic::front::error_from_openai(&mut body, response.status, &mut out);
    } else {
        anthropic::error_to_openai(&mut body, response.status, &mut out);
    }
    let mut blocked = false;
    if let Some(g) = guard.filter(|_| response.status < 300) {
        if let Checked::Blocked(rule) = super::guard::check_answer(g, &mut out, hits) {
            // The answer is withheld, in the shape the client's SDK knows
            // for a filtered answer; the tokens were still spent.
            let refusal = format!("the answer was withheld by guardrail rule `{rule}`");
            let billed = usage.map(|u| (u.prompt, u.completion));
            out.clear();
            match front {
                Front::OpenAi => tollgate_protocol::openai::write_filtered_completion(
                    &mut out,
                    route.model,
                    crate::unix_now().as_secs(),
                    &refusal,
                    billed,
                ),
                Front::Anthropic => anthropic::front::write_refusal_message(&mut out, route.model, billed),
            }
            status = 200;
            blocked = true;
        }
    }
    if let Some((g, answer)) = capture.as_mut() {
        // What the client gets, redacted.
        let mut copy = out.clone();
        if let Checked::Pass = super::guard::check_answer(g, &mut copy, &mut Vec::new()) {
            answer.extend_from_slice(&copy);
        }
    }
    let upstream_reusable = response.keep_alive && up.buf.is_empty();
    let close = !keep_alive;
    // A rate-limited client keeps its back-off hint.
    let extra = retry_after.as_ref().map(|v| (&b"retry-after"[..], &v[..]));
    write_head(client, status, "application/json", Delimit::Length(out.len()), close, route, extra);
    let body_bytes = out.len() as u64;
    client.out.push(out.freeze());
    let sent = iov::write_all_until(&mut client.stream, &mut client.out, deadline).await.is_ok();
    let written = Instant::now();
    let mut end = RelayEnd::new(status);
    end.upstream_reusable = upstream_reusable;
    end.client_reusable = sent && !close;
    end.body_bytes = body_bytes;
    end.usage = usage;
    end.first_write = sent.then_some(written);
    end.end = match (sent, blocked) {
        (false, _) => End::ClientGone,
        (true, true) => End::Blocked,
        (true, false) => End::Completed,
    };
    Ok(end)
}

/// How a translated body is delimited for the client.
enum Delimit {
    Length(usize),
    Chunked,
    /// HTTP/1.0 clients: the body ends when the connection closes.
    Close,
}

fn write_head(
    client: &mut Client,
    status: u16,
    content_type: &str,
    length: Delimit,
    close: bool,
    route: RouteLabel<'_>,
    extra: Option<(&[u8], &[u8])>,
) {
    let s = &mut client.scratch;
    crate::respond::write_status_and_type(s, status, content_type);
    match length {
        Delimit::Length(n) => {
            s.extend_from_slice(b"\r\ncontent-length: ");
            s.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
        Delimit::Chunked => s.extend_from_slice(b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked"),
        Delimit::Close => s.extend_from_slice(b"\r\ncache-control: no-cache"),
    }
    s.extend_from_slice(b"\r\n");
    crate::respond::write_request_id(client.request_id, s);
    crate::respond::write_rate(client.rate, s);
    s.extend_from_slice(b"x-tollgate-route: ");
    s.extend_from_slice(route.provider.as_bytes());
    s.extend_from_slice(b"/");
    s.extend_from_slice(route.model.as_bytes());
    if let Some((name, value)) = extra {
        s.extend_from_slice(b"\r\n");
        s.extend_from_slice(name);
        s.extend_from_slice(b": ");
        s.extend_from_slice(value);
    }
    if close {
        s.extend_from_slice(b"\r\nconnection: close");
    }
    s.extend_from_slice(b"\r\n\r\n");
    let head = s.split().freeze();
    client.out.push(head);
}

fn push_chunk(client: &mut Client, data: Bytes) {
    if data.is_empty() {
        return;
    }
    let mut hdr = [0u8; 18];
    let n = chunk_header(data.len(), &mut hdr);
    client.out.push(Bytes::copy_from_slice(&hdr[..n]));
    client.out.push(data);
    client.out.push(Bytes::from_static(CHUNK_END));
}

/// What a stream goes through besides translation.
struct StreamStages<'a, 'g> {
    guard: Option<(EventGuard<'g>, &'a mut Vec<Recorded>)>,
    ceiling: Option<Ceiling>,
    reservation: Option<&'a crate::worker::Reservation>,
    capture: Option<(&'g tollgate_policy::guard::Guard, &'a mut Vec<u8>)>,
}

/// A stream translator for either direction, or none (the events of a
/// guarded stream in the client's own format).
enum Stream {
    ToOpenAi(StreamTranslator),
    ToAnthropic(anthropic::front::FrontStream),
    Identity { front: Front, done: bool, usage: Option<TokenUsage>, strip_usage: bool },
}

impl Stream {
    fn event(&mut self, ev: &tollgate_protocol::sse::SseEvent, out: &mut BytesMut) -> Result<(), ()> {
        match self {
            Stream::ToOpenAi(t) => t.event(ev, out).map_err(|_| ()),
            Stream::ToAnthropic(t) => t.event(ev, out).map_err(|_| ()),
            Stream::Identity { done, usage, strip_usage, .. } => {
                let found = tollgate_protocol::openai::find_usage(&ev.data);
                if let Some((prompt, completion, cached)) = found {
                    *usage = Some(TokenUsage { prompt, completion, cached });
                }
                // The usage chunk the gateway asked for carries no choice.
                let asked_for =
                    *strip_usage && found.is_some() && memchr::memmem::find(&ev.data, b"\"choices\":[]").is_some();
                if !asked_for {
                    tollgate_protocol::sse::write_event(out, ev.event.as_deref(), &ev.data);
                }
                *done |= &ev.data[..] == b"[DONE]" || ev.event.as_deref() == Some(b"message_stop");
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        match self {
            Stream::ToOpenAi(t) => t.finish(out),
            Stream::ToAnthropic(t) => t.finish(out),
            Stream::Identity { done, .. } => *done = true,
        }
    }

    fn finished(&self) -> bool {
        match self {
            Stream::ToOpenAi(t) => t.finished(),
            Stream::ToAnthropic(t) => t.finished(),
            Stream::Identity { done, .. } => *done,
        }
    }

    /// Ends the stream the gateway stops: a guardrail withheld the rest
    /// (`capped` false), or a request ceiling was reached.
    fn stop(&mut self, model: &str, capped: bool, out: &mut BytesMut) {
        let front = match self {
            Stream::ToOpenAi(_) => Front::OpenAi,
            Stream::ToAnthropic(_) => Front::Anthropic,
            Stream::Identity { front, .. } => *front,
        };
        match (front, capped) {
            (Front::OpenAi, false) => {
                tollgate_protocol::openai::write_stream_end(out, model, crate::unix_now().as_secs(), "content_filter")
            }
            (Front::OpenAi, true) => {
                tollgate_protocol::openai::write_stream_end(out, model, crate::unix_now().as_secs(), "length")
            }
            (Front::Anthropic, false) => anthropic::front::write_stream_end(out, "refusal"),
            (Front::Anthropic, true) => anthropic::front::write_stream_end(out, "max_tokens"),
        }
        self.finish(&mut BytesMut::new());
    }

    fn usage(&self) -> Option<TokenUsage> {
        match self {
            Stream::Identity { usage, .. } => *usage,
            Stream::ToOpenAi(t) => Some(anthropic_usage(t.usage())).filter(|u| u.prompt + u.completion > 0),
            Stream::ToAnthropic(t) => {
                let (prompt, completion, cached) = t.usage();
                Some(TokenUsage { prompt, completion, cached }).filter(|u| u.prompt + u.completion > 0)
            }
        }
    }

    /// An error event in the client's format, ending the stream.
    fn fail(&mut self, provider: &str, out: &mut BytesMut) {
        let message = format!("upstream `{provider}` failed in the middle of the stream");
        let mut json = BytesMut::new();
        let openai = match self {
            Stream::ToOpenAi(_) => true,
            Stream::ToAnthropic(_) => false,
            Stream::Identity { front, .. } => *front == Front::OpenAi,
        };
        match openai {
            true => {
                // An OpenAI-style error event, then [DONE]: SDKs see an
                // error instead of a stream that simply stops.
                tollgate_protocol::openai::write_error_body(
                    &mut json,
                    &message,
                    "server_error",
                    "upstream_stream_error",
                );
                tollgate_protocol::sse::write_event(out, None, &json);
                out.extend_from_slice(tollgate_protocol::sse::DONE_EVENT);
            }
            false => {
                json.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
                tollgate_protocol::openai::write_json_string(&mut json, &message);
                json.extend_from_slice(b"}}");
                tollgate_protocol::sse::write_event(out, Some(b"error"), &json);
            }
        }
    }
}

async fn relay_stream(
    client: &mut Client,
    up: &mut UpConn,
    response: ResponseHead,
    answer: &Answer<'_>,
    mut translator: Stream,
    stages: StreamStages<'_, '_>,
) -> RelayEnd {
    let StreamStages { mut guard, ceiling, reservation, mut capture } = stages;
    let Answer { deadline, route, .. } = *answer;
    // HTTP/1.0 has no chunked encoding: the stream ends with the connection.
    let http10 = answer.request.minor_version == 0;
    let keep_alive = answer.keep_alive && !http10;
    let delimit = if http10 { Delimit::Close } else { Delimit::Chunked };
    write_head(client, 200, "text/event-stream", delimit, !keep_alive, route, None);
    let mut reader = BodyReader::new(response.framing);
    let mut parser = SseParser::new(EVENT_BYTES_MAX);
    let mut pieces = Vec::new();
    let mut out = BytesMut::new();
    let mut end = RelayEnd::new(200);
    let mut failed = false;
    let mut blocked = false;
    let mut capped = false;
    let mut passed = Vec::new();
    let encoding = tollgate_protocol::tokens::Encoding::for_model(route.model.as_bytes());
    loop {
        // Head first, then each batch of translated events as it arrives.
        if reader.next(up, deadline, &mut pieces).await.is_err() {
            failed = true;
        }
        for p in pieces.drain(..) {
            parser.push(p);
            loop {
                match parser.next_event() {
                    Ok(Some(ev)) if blocked || capped => drop(ev),
                    Ok(Some(ev)) => {
                        // Counted as generated, whatever reaches the client.
                        end.completion_counted += delta_tokens(encoding, &ev.data);
                        // The event that crosses a request ceiling is the
                        // first one not passed on.
                        let within_limits = reservation.is_none_or(|r| r.stream_used(end.completion_counted));
                        if !within_limits || ceiling.is_some_and(|c| c.crossed(end.completion_counted)) {
                            capped = true;
                            continue;
                        }
                        // Guarded text is held back and released in events
                        // of the same shape before translation.
                        match guard.as_mut() {
                            None => passed.push(ev),
                            Some((g, _)) => blocked = g.event(ev, &mut passed).is_err(),
                        }
                        for ev in passed.drain(..) {
                            if let Some((_, answer)) = capture.as_mut() {
                                delta_text(&ev.data, answer);
                            }
                            if translator.event(&ev, &mut out).is_err() {
                                failed = true;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if reader.done && !failed && !blocked && !translator.finished() {
            if let Some((g, _)) = guard.as_mut() {
                blocked = g.finish(&mut passed).is_err();
                for ev in passed.drain(..) {
                    let _ = translator.event(&ev, &mut out);
                }
            }
        }
        let finished = reader.done || failed || blocked || capped || translator.finished();
        if (blocked || capped) && !translator.finished() {
            translator.stop(route.model, capped && !blocked, &mut out);
        }
        if finished && !translator.finished() {
            if failed {
                translator.fail(route.provider, &mut out);
            } else {
                translator.finish(&mut out);
            }
        }
        end.body_bytes += out.len() as u64;
        if http10 {
            client.out.push(out.split().freeze());
        } else {
            push_chunk(client, out.split().freeze());
            if finished {
                client.out.push(Bytes::from_static(LAST_CHUNK));
            }
        }
        end.usage = translator.usage();
        if !client.out.is_empty() {
            if iov::write_all_until(&mut client.stream, &mut client.out, deadline).await.is_err() {
                if let Some((g, hits)) = guard.as_mut() {
                    g.record(hits);
                }
                end.end = End::ClientGone;
                return end;
            }
            end.first_write.get_or_insert_with(Instant::now);
        }
        if finished {
            break;
        }
    }
    if let Some((g, hits)) = guard.as_mut() {
        g.record(hits);
    }
    if let Some((g, answer)) = capture {
        redact_text(g, answer);
    }
    end.upstream_reusable = !failed && !blocked && !capped && reader.done && response.keep_alive && up.buf.is_empty();
    end.client_reusable = keep_alive && !failed;
    end.end = if failed {
        End::UpstreamFailed
    } else if blocked {
        End::Blocked
    } else if capped {
        End::Capped
    } else {
        End::Completed
    };
    end
}

/// The keys of the text a stream event carries (OpenAI `content` and
/// tool-call `arguments`, Anthropic `text` and `partial_json`, reasoning).
const DELTA_TEXT: &[&[u8]] = &[b"content", b"text", b"arguments", b"partial_json", b"thinking", b"reasoning_content"];

/// Appends the texts of one stream event to a capture, up to its bound.
fn delta_text(data: &[u8], answer: &mut Vec<u8>) {
    let _ = tollgate_protocol::json::string_values(data, |key, v| {
        if DELTA_TEXT.contains(&key) && answer.len() < crate::record::CAPTURE_BYTES_MAX {
            let _ = tollgate_protocol::json::unescape(&data[v.raw.clone()], answer);
        }
    });
    answer.truncate(crate::record::CAPTURE_BYTES_MAX);
}

/// Redacts a captured stream's text in place.
fn redact_text(g: &tollgate_policy::guard::Guard, text: &mut Vec<u8>) {
    let mut findings = tollgate_policy::guard::Findings::default();
    g.scan(text, tollgate_policy::guard::Direction::Response, true, &mut findings);
    findings.file(0);
    if findings.redacts() {
        let mut out = Vec::with_capacity(text.len());
        tollgate_policy::guard::redact(text, 0, findings.all.iter().map(|(_, h)| h), &mut out);
        *text = out;
    }
}

/// Tokens in the texts one stream event carries (OpenAI `content` and
/// tool-call `arguments`, Anthropic `text` and `partial_json`, reasoning),
/// counted delta by delta: an estimate, as BPE across piece boundaries is.
fn delta_tokens(encoding: tollgate_protocol::tokens::Encoding, data: &[u8]) -> u64 {
    let mut n = 0;
    let mut scratch = Vec::new();
    let _ = tollgate_protocol::json::string_values(data, |key, v| {
        if !DELTA_TEXT.contains(&key) || v.raw.is_empty() {
            return;
        }
        let raw = &data[v.raw.clone()];
        let text = if v.escaped {
            scratch.clear();
            let _ = tollgate_protocol::json::unescape(raw, &mut scratch);
            &scratch[..]
        } else {
            raw
        };
        n += encoding.count_bytes(text);
    });
    n
}

fn anthropic_usage(u: anthropic::Usage) -> TokenUsage {
    TokenUsage { prompt: u.input + u.cache_read + u.cache_write, completion: u.output, cached: u.cache_read }
}
