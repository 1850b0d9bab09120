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
use tollgate_protocol::anthropic;
use tollgate_protocol::http1::{
    chunk_header, BodyFraming, ChunkedDecoder, LengthDecoder, ResponseHead, CHUNK_END, LAST_CHUNK,
};

use super::answer::{answer_usage, anthropic_usage, TRANSLATED_BODY_BYTES_MAX};
use super::guard::{Checked, EventGuard, Recorded};
use super::relay::{Answer, RelayEnd};
use super::stream::{Ceiling, Flow, Stream, StreamRelay, StreamStages};
use super::upstream_request::{ChatFrom, ResponsesFrom, Translation};
use super::Front;
use crate::error::GatewayError;
use crate::iov;
use crate::record::End;
use crate::respond::{Client, Delimit};
use crate::upstream::{UpConn, UPSTREAM_READ_BYTES};

/// Why a body's read ended before the body did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadEnd {
    /// A reset, a time-out or bad framing: the upstream's doing.
    Failed,
    /// The drain's time is up ([`crate::cut`]).
    Cut,
}

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
    /// when nothing is buffered. `Err` on a reset, time-out or bad framing,
    /// or when the drain's time is up.
    async fn next(
        &mut self,
        up: &mut UpConn,
        deadline: Instant,
        cut: &crate::cut::Cut,
        data: &mut Vec<Bytes>,
    ) -> Result<(), ReadEnd> {
        if self.done {
            return Ok(());
        }
        if up.buf.is_empty() {
            up.buf.reserve(UPSTREAM_READ_BYTES);
            let wait = deadline.saturating_duration_since(Instant::now());
            let n = cut
                .or(monoio::time::timeout(wait, iov::read_more(&mut up.stream, &mut up.buf)))
                .await
                .ok_or(ReadEnd::Cut)?
                .map_err(|_| ReadEnd::Failed)?
                .map_err(|_| ReadEnd::Failed)?;
            if n == 0 {
                return match self.framing {
                    Framing::Close => {
                        self.done = true;
                        Ok(())
                    }
                    _ => Err(ReadEnd::Failed),
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
                let p = d.decode(&up.buf, |r| ranges.push(r)).map_err(|_| ReadEnd::Failed)?;
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
    /// The upstream speaks Gemini or Bedrock: its answer is made chat
    /// completions first, and `translation` goes on from there.
    pub through: Option<ChatFrom>,
    pub guard: Option<&'g tollgate_policy::guard::Guard>,
    /// The core's room for a whole answer's scan (borrowed only while it
    /// runs, never across an await).
    pub scan_room: &'g std::cell::RefCell<super::guard::ScanRoom>,
    /// Where the guard's hits go (the request record).
    pub hits: &'a mut Vec<Recorded>,
    /// The usage chunk was asked for by the gateway, not the client: it is
    /// read for billing and not passed on.
    pub strip_usage: bool,
    /// The key's or team's ceilings on one request, for streams.
    pub ceiling: Option<Ceiling>,
    /// The request went with the ceilings as its output limit
    /// (`forward::output_cap`): the provider stops there.
    pub capped_upstream: bool,
    /// Grown as the stream generates past it; a stream that crosses a
    /// tokens-per-minute limit is ended there.
    pub reservation: Option<&'a crate::accounts::Reservation>,
    /// Where a stream's completion counted so far is kept as it passes
    /// (`record::Trace::completion_passed`).
    pub passed: &'a std::cell::Cell<u64>,
    /// With `[logging] capture_bodies`: the guard that redacts, and where
    /// the answer goes.
    pub capture: Option<(&'g tollgate_policy::guard::Guard, &'a mut Vec<u8>)>,
    /// The profile's classifiers that check answers (JSON whole, streams
    /// in windows).
    pub classifiers: Option<super::classify::AnswerClassifiers<'a>>,
    /// The answer cache keeps what the client receives.
    pub keep: Option<&'a mut crate::cache::Kept>,
}

/// A JSON answer larger than the gateway translates or guards (16 MiB):
/// refused with a 502, but read to its end first, its top-level usage
/// picked out as it passes (`TopMembers`: an OpenAI-style or Anthropic
/// upstream's `usage`, Gemini's `usageMetadata`, Bedrock's `usage`, read
/// in each one's terms), and billed. A tenant could otherwise have the
/// provider write tens of megabytes (`n`, `top_logprobs`) and be billed
/// nothing.
async fn too_large(
    client: &mut Client,
    up: &mut UpConn,
    reader: &mut BodyReader,
    body: BytesMut,
    answer: &Answer<'_>,
    through: Option<ChatFrom>,
) -> RelayEnd {
    let members: &[&[u8]] = match through {
        None => super::relay::TOP_MEMBERS,
        Some(ChatFrom::Gemini) => &[b"usageMetadata"],
        Some(ChatFrom::Bedrock) => &[b"usage"],
    };
    let mut top = tollgate_protocol::openai::TopMembers::new(members);
    top.feed(&body);
    drop(body);
    let mut pieces = Vec::new();
    while !reader.done {
        if reader.next(up, answer.deadline, answer.cut, &mut pieces).await.is_err() {
            break;
        }
        for p in pieces.drain(..) {
            top.feed(&p);
        }
    }
    let e = GatewayError::UpstreamProtocol {
        provider: answer.route.provider.to_string(),
        cause: tollgate_protocol::http1::ResponseError::Syntax(
            "the answer is larger than the 16 MiB the gateway translates or guards",
        ),
    };
    let mut end = RelayEnd::new(e.status());
    let usage = |doc: &[u8]| match through {
        None => answer_usage(doc).0,
        Some(ChatFrom::Gemini) => super::answer::checked_usage(tollgate_protocol::gemini::answer_usage(doc)),
        Some(ChatFrom::Bedrock) => super::answer::checked_usage(tollgate_protocol::bedrock::answer_usage(doc)),
    };
    match top.document().filter(|_| reader.done).map(|doc| usage(&doc)) {
        Some(Ok(u)) => end.usage = u,
        Some(Err(_)) => end.usage_rejected = true,
        None => {}
    }
    // The upstream connection is not reused (`RelayEnd::new`): it was
    // read to its end, but the answer was not the client's.
    end.read_past_client = reader.done;
    let sent = client.send_error(answer.reply, &e, true).await;
    end.end = if sent { End::UpstreamFailed } else { End::ClientGone };
    end
}

/// A 2xx JSON answer, read whole (at most 16 MiB, its `bytes`), that the
/// gateway cannot translate (a number or an escape its parser does not
/// take, a shape it does not know): its error. The provider wrote the
/// answer and bills its output, so the failure's bill, which adds what
/// `passed` holds to the prompt's, bills it too, at a token for every
/// three of its bytes: its keys and punctuation count as well, so English
/// prose is billed about a third over, text of three bytes a character
/// (CJK) about as it is. The usage it may report is not read: the parser
/// that failed has changed the buffer. Before, such a failure billed the
/// prompt alone: a tenant could have the provider write a long answer the
/// translation refuses (a tool argument of 2^64 or more, which simd-json
/// does not read), again and again, for the price of its prompts (found
/// by a review). An answer that is not JSON is not billed so: a proxy's
/// page of HTML is no output, and its length is the upstream's word,
/// unread.
fn untranslatable(
    passed: &std::cell::Cell<u64>,
    bytes: usize,
    provider: &str,
    e: anthropic::TranslateError,
) -> GatewayError {
    passed.set(passed.get().max(bytes as u64 / 3));
    GatewayError::UpstreamProtocol {
        provider: provider.to_string(),
        cause: tollgate_protocol::http1::ResponseError::Syntax(e.message()),
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
    let Inspect {
        translation,
        through,
        guard,
        scan_room,
        hits,
        strip_usage,
        ceiling,
        capped_upstream,
        reservation,
        passed,
        mut capture,
        mut classifiers,
        mut keep,
    } = inspect;
    let Answer { keep_alive, deadline, route, front, .. } = *answer;
    let content_type = response.header(b"content-type").unwrap_or_default();
    let event_stream = response.status == 200
        && match through {
            // AWS's binary framing.
            Some(ChatFrom::Bedrock) => content_type.starts_with(b"application/vnd.amazon.eventstream"),
            _ => content_type.len() >= 17 && content_type[..17].eq_ignore_ascii_case(b"text/event-stream"),
        };
    if event_stream {
        let stream = Stream::new(translation, front, strip_usage);
        let window = classifiers.as_ref().map(|c| c.window());
        // The guard reads the upstream's events: Responses events only
        // when nothing is translated.
        let responses_events = front == Front::Responses && matches!(translation, Translation::None);
        let guard = guard.map(|g| EventGuard::new(g, responses_events));
        let read_to_end = || answer.read_to_end();
        let read_on_capped = capped_upstream.then_some(&read_to_end as &dyn Fn() -> bool);
        let stages = StreamStages { guard, hits: Some(hits), ceiling, reservation, capture, window, read_on_capped };
        let mut relay = StreamRelay::new(stream, stages, route);
        match through {
            Some(ChatFrom::Gemini) => relay.read_gemini(),
            Some(ChatFrom::Bedrock) => relay.read_bedrock(),
            None => {}
        }
        // Boxed: the stream relay's future is 12 KB, and inline it made
        // this one 16 KB, copied whole into its box for every JSON answer
        // too (15,000 of a 100 B governed miss's 90,000 instructions).
        return Ok(crate::boxed::boxed(|| {
            relay_stream(client, up, response, answer, relay, classifiers, (keep, passed))
        })
        .await);
    }
    // Only JSON is translated; anything else (an HTML error page from a
    // proxy in front of the provider, say) goes through as it came.
    let json = response
        .header(b"content-type")
        .is_some_and(|v| v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/json"));
    if !json {
        // A guarded answer that is neither JSON nor a stream cannot be
        // checked: failing closed, it is refused before any byte goes out;
        // an error answer so (a proxy's HTML page, a text body) becomes
        // the gateway's own error, in its words (found by a review: a
        // hostile upstream's 400 carried a secret past the guard).
        if guard.is_some_and(|g| !g.fail_open) {
            if response.status >= 300 {
                return Err(GatewayError::UpstreamStatus {
                    provider: route.provider.to_string(),
                    status: response.status,
                });
            }
            return Err(GatewayError::UpstreamProtocol {
                provider: route.provider.to_string(),
                cause: tollgate_protocol::http1::ResponseError::Syntax(
                    "the answer is neither JSON nor an event stream, so guardrails cannot check it",
                ),
            });
        }
        if let Some(k) = keep {
            k.spoil();
        }
        // Boxed too: rare, and 6 KB.
        return Ok(crate::boxed::boxed(|| super::relay::relay(client, up, response, answer, None)).await);
    }
    let broken = || GatewayError::UpstreamClosed { provider: route.provider.to_string(), cause: None, sent: true };
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
        match reader.next(up, deadline, answer.cut, &mut pieces).await {
            Ok(()) => {}
            Err(ReadEnd::Cut) => return Err(GatewayError::Draining),
            Err(ReadEnd::Failed) => return Err(broken()),
        }
        for p in pieces.drain(..) {
            body.extend_from_slice(&p);
        }
        if body.len() > TRANSLATED_BODY_BYTES_MAX {
            return Ok(too_large(client, up, &mut reader, body, answer, through).await);
        }
    }
    if let Some(from) = through {
        // Chat completions from here on, as an OpenAI-style upstream's.
        let mut chat = BytesMut::with_capacity(body.len() + 256);
        let (model, now) = (route.model, crate::unix_now().as_secs());
        let translated = match (from, response.status < 300) {
            (ChatFrom::Gemini, true) => {
                tollgate_protocol::gemini::response_to_openai(&mut body, model, now, &mut chat).map(|_| ())
            }
            (ChatFrom::Bedrock, true) => {
                tollgate_protocol::bedrock::response_to_openai(&mut body, model, now, &mut chat).map(|_| ())
            }
            (ChatFrom::Gemini, false) => {
                if tollgate_protocol::gemini::error_to_openai(&mut body, response.status, &mut chat) {
                    // Google refused the gateway's own key (a 400 there, not
                    // a 401): as for any provider's refusal of it, the
                    // tenant gets the gateway's 502, never the provider's
                    // message about "your" key (`pipeline::forward`).
                    tracing::warn!(provider = %route.provider, status = response.status, "the provider refused the gateway's credentials");
                    return Err(GatewayError::UpstreamStatus {
                        provider: route.provider.to_string(),
                        status: response.status,
                    });
                }
                Ok(())
            }
            (ChatFrom::Bedrock, false) => {
                tollgate_protocol::bedrock::error_to_openai(&mut body, response.status, &mut chat);
                Ok(())
            }
        };
        let bytes = body.len();
        translated.map_err(|e| untranslatable(passed, bytes, route.provider, e))?;
        body = chat;
    }
    let mut out = BytesMut::with_capacity(body.len() + 256);
    let to_anthropic = matches!(translation, Translation::ToAnthropic(_));
    let mut usage = Ok(None);
    let mut finish = super::answer::Finish::default();
    let mut status = response.status;
    let mut response_id = None;
    if matches!(translation, Translation::None) {
        (usage, finish) = answer_usage(&body);
        if front == Front::Responses && response.status < 300 {
            response_id = super::answer::response_id(&body);
        }
        out = body;
    } else if response.status < 300 {
        let answer_bytes = body.len();
        let translated = if let Translation::ToResponses(from) = translation {
            let mut chat = body;
            if from == ResponsesFrom::Anthropic {
                let mut c = BytesMut::with_capacity(chat.len() + 256);
                anthropic::response_to_openai(&mut chat, crate::unix_now().as_secs(), &mut c)
                    .map(|(u, f)| {
                        usage = anthropic_usage(u);
                        finish.push(f);
                    })
                    .map_err(|e| untranslatable(passed, answer_bytes, route.provider, e))?;
                chat = c;
            } else {
                (usage, finish) = answer_usage(&chat);
            }
            let id = crate::turns::new_response_id();
            tollgate_protocol::responses::chat::response_from_chat_as(&mut chat, Some(&id), &mut out)
        } else if to_anthropic {
            (usage, finish) = answer_usage(&body);
            // The client reads Anthropic's names for them.
            finish = finish.map(anthropic::front::stop_reason);
            anthropic::front::response_from_openai(&mut body, &mut out)
        } else {
            anthropic::response_to_openai(&mut body, crate::unix_now().as_secs(), &mut out).map(|(u, f)| {
                usage = anthropic_usage(u);
                finish.push(f);
            })
        };
        translated.map_err(|e| untranslatable(passed, answer_bytes, route.provider, e))?;
    } else if matches!(translation, Translation::ToResponses(ResponsesFrom::Chat)) {
        // A chat error is already in the shape Responses clients read.
        out = body;
    } else if to_anthropic {
        anthropic::front::error_from_openai(&mut body, response.status, &mut out);
    } else {
        anthropic::error_to_openai(&mut body, response.status, &mut out);
    }
    // The answer's output, counted where its usage may be far under it, in
    // the client's form (chat's or Anthropic's), before a guard changes it.
    let text_counted = if response.status < 300 {
        super::stream::json_answer_text_tokens(&out, &usage, route.model, front)
    } else {
        0
    };
    let mut blocked = false;
    let mut withheld = None;
    // Error answers too: their messages reach the tenant's code (found by
    // a review: a hostile upstream's 400 carried a secret past the guard).
    // One that a rule blocks becomes the gateway's own error.
    if let Some(g) = guard {
        if let Checked::Blocked(rule) = super::guard::check_answer(g, &mut out, hits, &mut scan_room.borrow_mut()) {
            if response.status >= 300 {
                return Err(GatewayError::UpstreamStatus {
                    provider: route.provider.to_string(),
                    status: response.status,
                });
            }
            withheld = Some(rule);
        }
    }
    // The classifiers see the answer as the client would (redacted).
    if let Some(c) = classifiers.as_mut().filter(|_| withheld.is_none() && response.status < 300) {
        // Boxed: only teams with answer classifiers wait on it.
        if let Err(rule) =
            crate::boxed::boxed(|| super::classify::check_answer(c, hits, &out, deadline, answer.cut)).await
        {
            withheld = Some(rule);
        }
    }
    if let Some(rule) = withheld {
        // The answer is withheld, in the shape the client's SDK knows
        // for a filtered answer; the tokens were still spent.
        let refusal = format!("the answer was withheld by guardrail rule `{rule}`");
        let billed = usage.ok().flatten().map(|u| (u.prompt, u.completion));
        out.clear();
        match front {
            Front::OpenAi => tollgate_protocol::openai::write_filtered_completion(
                &mut out,
                route.model,
                crate::unix_now().as_secs(),
                &refusal,
                billed,
            ),
            Front::Anthropic | Front::CountTokens => {
                anthropic::front::write_refusal_message(&mut out, route.model, billed)
            }
            Front::Completions | Front::Embeddings => tollgate_protocol::openai::write_filtered_text_completion(
                &mut out,
                route.model,
                crate::unix_now().as_secs(),
                &refusal,
                billed,
            ),
            Front::Responses => tollgate_protocol::responses::write_withheld(
                &mut out,
                (&format!("resp_{}", crate::turns::new_response_id()), route.model, crate::unix_now().as_secs()),
                &refusal,
                billed,
            ),
        }
        status = 200;
        blocked = true;
        finish = super::answer::only(super::answer::gateway_finish(front, false));
    }
    if let Some((g, answer)) = capture.as_mut() {
        super::guard::capture_json(g, &out, answer, &mut scan_room.borrow_mut());
    }
    let upstream_reusable = response.keep_alive && up.buf.is_empty();
    let close = !keep_alive;
    // A rate-limited client keeps its back-off hint.
    let extra = retry_after.as_ref().map(|v| (&b"retry-after"[..], &v[..]));
    write_head(client, status, "application/json", Delimit::Length(out.len()), close, answer, extra);
    let body_bytes = out.len() as u64;
    let out = out.freeze();
    if let Some(k) = keep.as_mut() {
        k.push(&out);
    }
    client.out.push(out);
    // A client that hung up while it waited does not get the answer,
    // whatever the kernel would accept.
    let sent = !answer.client_hung_up(client) && client.write(deadline).await.is_ok();
    let written = Instant::now();
    let mut end = RelayEnd::new(status);
    end.upstream_reusable = upstream_reusable;
    end.client_reusable = sent && !close;
    end.body_bytes = body_bytes;
    end.json_answer = true;
    end.completion_counted = text_counted;
    match usage {
        Ok(u) => end.usage = u,
        Err(_) => end.usage_rejected = true,
    }
    end.finish = finish;
    end.response_id = response_id;
    end.first_write = sent.then_some(written);
    end.end = match (sent, blocked) {
        (false, _) => End::ClientGone,
        (true, true) => End::Blocked,
        (true, false) => End::Completed,
    };
    Ok(end)
}

fn write_head(
    client: &mut Client,
    status: u16,
    content_type: &str,
    length: Delimit,
    close: bool,
    answer: &Answer<'_>,
    extra: Option<(&[u8], &[u8])>,
) {
    let route = [answer.route.provider.as_bytes(), b"/", answer.route.model.as_bytes()];
    crate::respond::write_answer_head(client, status, content_type, length, close, answer.reply, &route, extra);
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

/// The most of a stream held back for answer classifiers before what it
/// holds is asked about (or, with no text in it, let go) whatever the
/// window: far above a window's text and its events' framing.
const HELD_BYTES_MAX: usize = 1 << 20;

/// Relays an event stream through a [`StreamRelay`]: each upstream read is
/// fed to it and what it releases is written to the client before the
/// next read. With classifiers that check answers, what it releases is
/// held back until they have passed its text, a window at a time.
async fn relay_stream(
    client: &mut Client,
    up: &mut UpConn,
    response: ResponseHead,
    answer: &Answer<'_>,
    mut relay: StreamRelay<'_, '_>,
    mut classifiers: Option<super::classify::AnswerClassifiers<'_>>,
    // What the answer cache keeps, and where the completion counted so
    // far is kept as it passes.
    (mut keep, passed): (Option<&mut crate::cache::Kept>, &std::cell::Cell<u64>),
) -> RelayEnd {
    let from = classifiers.as_ref().map_or(0, |c| c.classified.len());
    let mut held = BytesMut::new();
    let deadline = answer.deadline;
    // HTTP/1.0 has no chunked encoding: the stream ends with the connection.
    let http10 = answer.request.minor_version == 0;
    let keep_alive = answer.keep_alive && !http10;
    let delimit = if http10 { Delimit::Close } else { Delimit::Chunked };
    write_head(client, 200, "text/event-stream", delimit, !keep_alive, answer, None);
    let mut reader = BodyReader::new(response.framing);
    let mut pieces = Vec::new();
    let mut out = BytesMut::new();
    let mut end = RelayEnd::new(200);
    // The client has gone and the answer is read on for its usage only
    // ([`Answer::read_to_end`], else for [`super::relay::USAGE_GRACE`]:
    // until `grace`).
    let mut gone = false;
    let mut grace: Option<Instant> = None;
    // What the writes have waited for the client, in all.
    let mut stalled = std::time::Duration::ZERO;
    loop {
        // Head first, then each batch of translated events as it arrives.
        let until = grace.map_or(deadline, |g| g.min(deadline));
        let read = reader.next(up, until, answer.cut, &mut pieces).await;
        if read.is_err() && grace.is_some_and(|g| Instant::now() >= g) {
            // The grace is over before the answer's end: ended here, as
            // a client that leaves ends it.
            end.response_id = relay.take_response_id();
            relay.close();
            end.end = End::ClientGone;
            return end;
        }
        for p in pieces.drain(..) {
            relay.feed(p, &mut out);
        }
        passed.set(relay.completion_counted);
        match read {
            Ok(()) => {}
            Err(ReadEnd::Failed) => relay.upstream_failed(),
            Err(ReadEnd::Cut) => relay.shutting_down(),
        }
        let mut finished = relay.end_of_read(reader.done, &mut out);
        if let Some(c) = classifiers.as_mut() {
            held.extend_from_slice(&out.split());
            // Held past its bound, what text it holds is asked about now,
            // and with none it goes: an upstream that sent events with no
            // text (a megabyte of spaces each) grew it without end, nothing
            // written to the client meanwhile (found by a review).
            let full = held.len() >= HELD_BYTES_MAX;
            if let Some((said, hits)) = relay.window_due(finished || full) {
                // Boxed: only answer classifiers wait here, and inline
                // their 6 KB made every stream's relay 9.8 KB.
                match crate::boxed::boxed(|| super::classify::check_window(c, hits, said, from, deadline, answer.cut))
                    .await
                {
                    Ok(()) => {
                        relay.asked();
                        out = held.split();
                    }
                    Err(rule) => {
                        tracing::debug!(rule, "a classifier withheld the rest of a stream");
                        held.clear();
                        relay.withhold(&mut out);
                        finished = true;
                    }
                }
            } else if finished || full {
                // Nothing unasked: what is held (the stream's ending, or
                // events without text) goes.
                out = held.split();
            }
        }
        if !gone {
            end.body_bytes += out.len() as u64;
        }
        let piece = out.split().freeze();
        if let Some(k) = keep.as_mut() {
            k.push(&piece);
        }
        if http10 {
            client.out.push(piece);
        } else {
            push_chunk(client, piece);
            if finished {
                client.out.push(Bytes::from_static(LAST_CHUNK));
            }
        }
        match relay.usage() {
            Ok(u) => end.usage = u,
            Err(_) => end.usage_rejected = true,
        }
        end.finish = relay.finish_reasons();
        end.completion_counted = relay.completion_counted;
        if gone {
            client.out.clear();
        } else if !client.out.is_empty() {
            let hung_up = (end.first_write.is_none() || finished) && answer.client_hung_up(client);
            if hung_up || client.write_relayed(deadline, &mut stalled).await.is_err() {
                if !answer.read_to_end() {
                    grace = Some(Instant::now() + super::relay::USAGE_GRACE);
                }
                // Read on for the provider's usage, dropping what is read;
                // nobody is left to ask classifiers for.
                gone = true;
                client.out.clear();
                classifiers = None;
                held.clear();
                if let Some(k) = keep.take() {
                    k.spoil();
                }
            } else {
                end.first_write.get_or_insert_with(Instant::now);
                #[cfg(debug_assertions)]
                if passed.get() > 0 {
                    crate::fault::inject("mid-stream", answer.body);
                }
            }
        }
        if finished {
            break;
        }
        if grace.is_some_and(|g| Instant::now() >= g) {
            // Data kept coming past the grace: ended here all the same.
            end.response_id = relay.take_response_id();
            relay.close();
            end.end = End::ClientGone;
            return end;
        }
    }
    // A guardrail (or a classifier) ended the answer for the client, or
    // the client left and then one did: where the gateway cannot count
    // the prompt, the rest is read for the provider's final count, as a
    // client that leaves has it read (a tenant must not make its answer
    // cheap by asking for something the guard blocks). A ceiling's end
    // is read on only where the provider bills what the gateway cannot
    // count (`StreamStages::read_on_capped`; the output limit the request
    // was sent with bounds the rest); elsewhere it is there to stop the
    // spend.
    let mut read_past = gone && relay.ended_by_upstream();
    let read_on_after_block = match relay.flow() {
        // (A client gone within its grace is not read on for a block.)
        Flow::Blocked => {
            !relay.rate_cut() && relay.reads_usage_after_stop() && ((gone && grace.is_none()) || answer.read_to_end())
        }
        Flow::Capped => relay.read_on_after_ceiling(),
        _ => false,
    };
    if read_on_after_block {
        // (Events that came with the one that blocked were read for their
        // usage already.) A client still there has its answer whole: its
        // connection is closed now, so that its next request goes on
        // another rather than wait for the rest of this one.
        if !gone {
            client.stream.shut_write();
        }
        let mut dropped = BytesMut::new();
        while !reader.done {
            let read = reader.next(up, deadline, answer.cut, &mut pieces).await;
            for p in pieces.drain(..) {
                relay.feed(p, &mut dropped);
            }
            dropped.clear();
            if read.is_err() {
                break;
            }
        }
        read_past = reader.done;
        match relay.usage_read_on() {
            Ok(u) => end.usage = u,
            Err(_) => end.usage_rejected = true,
        }
    }
    let flow = relay.flow();
    end.read_past_client = read_past;
    end.response_id = relay.take_response_id();
    end.end = if gone { End::ClientGone } else { relay.end() };
    if let Some(k) = keep.as_mut().filter(|_| !relay.ended_by_upstream()) {
        // Closed by the gateway, not the provider: not an answer to keep.
        k.spoil();
    }
    relay.close();
    end.upstream_reusable = flow == Flow::Done && reader.done && response.keep_alive && up.buf.is_empty();
    end.client_reusable = !gone && !read_on_after_block && keep_alive && !matches!(flow, Flow::Failed | Flow::Cut);
    end
}
