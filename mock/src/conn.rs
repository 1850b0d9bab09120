//! One mock connection: read requests (keep-alive, pipelined), answer each
//! according to the behaviour and the request's `x-mock-*` overrides.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpListener;
use monoio_rustls::TlsAcceptor;
use tollgate_protocol::http1::{
    chunk_header, BodyFraming, ChunkedDecoder, HeadLimits, HeadScan, Method, RequestHead, CHUNK_END, LAST_CHUNK,
};

use super::reply::{self, ChatRequest};
use super::{Behavior, Failure};

const READ_BYTES: usize = 16 * 1024;
const LIMITS: HeadLimits = HeadLimits { head_bytes_max: 64 * 1024, uri_bytes_max: 16 * 1024 };

pub async fn serve(listener: std::net::TcpListener, thread: u64, behavior: Behavior, tls: Option<TlsAcceptor>) {
    let listener = TcpListener::from_std(listener).expect("mock listener");
    let mut accepted = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                accepted += 1;
                let id = (thread << 32) | accepted;
                let fd = stream.as_raw_fd();
                match &tls {
                    None => {
                        monoio::spawn(Conn::new(stream, fd, id, behavior).run());
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        monoio::spawn(async move {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                Conn::new(stream, fd, id, behavior).run().await;
                            }
                        });
                    }
                }
            }
            // Out of descriptors or similar: back off instead of spinning.
            Err(_) => monoio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

struct Conn<S> {
    stream: S,
    /// The socket under `stream` (TLS or not), for resets.
    fd: RawFd,
    id: u64,
    behavior: Behavior,
    rng: u64,
    out: BytesMut,
}

/// The behaviour of one request: the mock's, overridden by its headers.
struct Plan {
    behavior: Behavior,
    failure: Option<Failure>,
    echo: Option<Echo>,
    /// `x-mock-reply`: the reply's text instead of the word list.
    reply: Option<String>,
    /// `x-mock-tool: NAME`: the answer calls this tool instead of
    /// writing text.
    tool: Option<String>,
    /// `x-mock-thinking: 1`: an Anthropic answer starts with a signed
    /// thinking block.
    thinking: bool,
    /// `x-mock-reasoning: N`: a chat answer's model reasons N tokens
    /// first, within the request's output limit (`ChatRequest::reasons`).
    reasoning: Option<usize>,
}

/// The mock classifiers' fixed rule.
mod classify {
    fn has(body: &[u8], needle: &[u8]) -> bool {
        body.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
    }

    pub fn flagged(body: &[u8]) -> bool {
        has(body, b"jailbreak") || has(body, b"ignore previous") || has(body, b"[[unsafe]]")
    }

    pub fn slow(body: &[u8]) -> bool {
        has(body, b"[[slow]]")
    }
}

/// The API a request's path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Chat,
    /// OpenAI's legacy completions: `prompt` in, `choices[].text` out.
    Legacy,
    Responses,
    Embeddings,
    Anthropic,
    /// Anthropic's `POST /v1/messages/count_tokens`.
    CountTokens,
    /// Gemini's `POST .../models/{model}:generateContent` (and
    /// `:streamGenerateContent`).
    Gemini,
    /// Bedrock's `POST /model/{id}/converse` (and `/converse-stream`).
    Bedrock,
    None,
}

impl Plan {
    /// The words the reply cycles through, and how many it has.
    fn words(&self) -> (Vec<&str>, usize) {
        match &self.reply {
            Some(text) => {
                let list: Vec<&str> = text.split(' ').collect();
                let n = list.len();
                (list, n)
            }
            None => (super::reply::REPLY_WORDS.to_vec(), self.behavior.reply_words),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Echo {
    Body,
    Head,
}

impl<S: AsyncReadRent + AsyncWriteRent> Conn<S> {
    fn new(stream: S, fd: RawFd, id: u64, behavior: Behavior) -> Self {
        Conn {
            stream,
            fd,
            id,
            behavior,
            rng: id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            out: BytesMut::with_capacity(4096),
        }
    }

    async fn run(mut self) {
        let mut buf = BytesMut::with_capacity(READ_BYTES);
        let mut scan = HeadScan::default();
        loop {
            let head_len = loop {
                if let Some(n) = scan.find_end(&buf) {
                    break n;
                }
                if buf.len() > LIMITS.head_bytes_max || !self.fill(&mut buf).await {
                    return;
                }
            };
            let head = match RequestHead::parse(buf.split_to(head_len).freeze(), &LIMITS) {
                Ok(h) => h,
                Err(e) => {
                    let _ = self.simple(e.status(), e.message(), false).await;
                    return;
                }
            };
            let body = match head.framing {
                BodyFraming::Length(n) => {
                    while (buf.len() as u64) < n {
                        if !self.fill(&mut buf).await {
                            return;
                        }
                    }
                    buf.split_to(n as usize).freeze()
                }
                BodyFraming::Chunked => match self.read_chunked(&mut buf).await {
                    Some(b) => b,
                    None => return,
                },
                _ => Bytes::new(),
            };
            if self.answer(&head, &body).await.is_err() || !head.keep_alive {
                return;
            }
        }
    }

    /// Reads more bytes after those in `buf`; false on EOF or error.
    /// (monoio reads into a `BytesMut` from its start, hence `slice_mut`.)
    async fn fill(&mut self, buf: &mut BytesMut) -> bool {
        buf.reserve(READ_BYTES);
        let len = buf.len();
        let (res, slice) = self.stream.read(std::mem::take(buf).slice_mut(len..)).await;
        *buf = slice.into_inner();
        matches!(res, Ok(n) if n > 0)
    }

    async fn read_chunked(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        let mut decoder = ChunkedDecoder::new();
        let mut body = BytesMut::new();
        loop {
            let input = &buf[..];
            let p = decoder.decode(input, |r| body.extend_from_slice(&input[r])).ok()?;
            let _ = buf.split_to(p.consumed);
            if p.done {
                return Some(body.freeze());
            }
            if !self.fill(buf).await {
                return None;
            }
        }
    }

    fn plan(&mut self, head: &RequestHead) -> Plan {
        let mut b = self.behavior;
        let num = |name: &[u8]| head.header(name).and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        if let Some(v) = num(b"x-mock-latency-ms") {
            b.latency = Duration::from_millis(v);
        }
        if let Some(v) = num(b"x-mock-reply-words") {
            b.reply_words = v as usize;
        }
        if let Some(v) = num(b"x-mock-chunks") {
            b.stream_chunks = v as usize;
        }
        if let Some(v) = num(b"x-mock-chunk-delay-ms") {
            b.chunk_delay = Duration::from_millis(v);
        }
        if num(b"x-mock-split") == Some(1) {
            b.split_writes = true;
        }
        let failure = match head.header(b"x-mock-fail").and_then(|v| std::str::from_utf8(v).ok()) {
            Some(v) => Failure::parse(v.trim()),
            None => b.failure.filter(|_| self.chance(b.failure_rate)),
        };
        let echo = match head.header(b"x-mock-echo") {
            Some(b"body") => Some(Echo::Body),
            Some(b"head") => Some(Echo::Head),
            _ => None,
        };
        let reply = head.header(b"x-mock-reply").map(|v| String::from_utf8_lossy(v).into_owned());
        let tool = head.header(b"x-mock-tool").map(|v| String::from_utf8_lossy(v).into_owned());
        let thinking = num(b"x-mock-thinking") == Some(1);
        let reasoning = num(b"x-mock-reasoning").map(|n| n as usize);
        Plan { behavior: b, failure, echo, reply, tool, thinking, reasoning }
    }

    /// xorshift64: per-connection, no shared state between threads.
    fn chance(&mut self, rate: f64) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64 <= rate
    }

    async fn answer(&mut self, head: &RequestHead, body: &Bytes) -> io::Result<()> {
        let mut plan = self.plan(head);
        // `x-mock-echo: reply`: an ordinary answer in the API's own shape
        // whose text is the request body as received, so that a test can
        // read what reached the provider through any translation.
        if head.header(b"x-mock-echo") == Some(&b"reply"[..]) {
            plan.reply = Some(String::from_utf8_lossy(body).into_owned());
        }
        if !plan.behavior.latency.is_zero() {
            monoio::time::sleep(plan.behavior.latency).await;
        }
        if let Some(echo) = plan.echo {
            let payload = if echo == Echo::Body { body.clone() } else { head.as_bytes().clone() };
            return self.send_whole(200, "application/octet-stream", &payload, head.keep_alive, None).await;
        }
        let path = head.path();
        if head.method == Method::Get && path.ends_with(b"/models") {
            let list = br#"{"object":"list","data":[{"id":"mock","object":"model","created":1700000000,"owned_by":"tollgate-mock"}]}"#;
            return self.send_whole(200, "application/json", list, head.keep_alive, None).await;
        }
        if head.method == Method::Post
            && (path.ends_with(b"/predict")
                || path.ends_with(b"/moderations")
                || path.ends_with(b"/check")
                || path.ends_with(b"/analyze"))
        {
            return self.classify(head, body, path).await;
        }
        if path.starts_with(b"/latest/") {
            return self.imds(head).await;
        }
        let api = if path.ends_with(b"/messages/count_tokens") {
            Api::CountTokens
        } else if path.ends_with(b"/messages") {
            Api::Anthropic
        } else if path.ends_with(b"/chat/completions") {
            Api::Chat
        } else if path.ends_with(b"/completions") {
            Api::Legacy
        } else if path.ends_with(b"/responses") {
            Api::Responses
        } else if path.ends_with(b"/embeddings") {
            Api::Embeddings
        } else if path.ends_with(b":generateContent") || path.ends_with(b":streamGenerateContent") {
            Api::Gemini
        } else if path.starts_with(b"/model/") && (path.ends_with(b"/converse") || path.ends_with(b"/converse-stream"))
        {
            Api::Bedrock
        } else {
            Api::None
        };
        if api == Api::Gemini {
            return self.gemini(head, body, plan).await;
        }
        if api == Api::Bedrock {
            return self.bedrock(head, body, plan).await;
        }
        if head.method != Method::Post || api == Api::None {
            return self
                .simple(
                    404,
                    "the mock serves POST /v1/chat/completions, POST /v1/responses, POST /v1/messages, POST /v1/messages/count_tokens, POST /v1/completions, POST /v1/embeddings, POST /v1beta/models/{model}:generateContent (and :streamGenerateContent) and GET /v1/models",
                    head.keep_alive,
                )
                .await;
        }
        let Some(mut req) = ChatRequest::read(body) else {
            return self.simple(400, "request body must be a chat completion request", head.keep_alive).await;
        };
        if memchr::memmem::find(req.model, b"guard").is_some() {
            // A guard model's verdict on the conversation.
            if classify::slow(body) {
                monoio::time::sleep(Duration::from_secs(2)).await;
            }
            plan.reply = Some(if classify::flagged(body) { "unsafe S14" } else { "safe" }.to_string());
        }
        if let Some((read, write, hour)) = cache_header(head) {
            req.cached(read, write, hour);
        }
        if let Some((heard, spoken)) = audio_header(head).filter(|_| api == Api::Chat) {
            req.audio(heard, spoken);
        }
        req.tier = match head.header(b"x-mock-tier") {
            Some(b"priority") => Some("priority"),
            Some(b"flex") => Some("flex"),
            Some(b"default") => Some("default"),
            _ => None,
        };
        if let Some(n) = plan.reasoning.filter(|_| api == Api::Chat && plan.reply.is_none()) {
            plan.behavior.reply_words = req.reasons(n, plan.behavior.reply_words);
        }
        match plan.failure {
            Some(Failure::Status(status)) => {
                let mut payload = BytesMut::new();
                if api == Api::Anthropic {
                    reply::anthropic_error(status, &mut payload);
                } else {
                    reply::error(status, &mut payload);
                }
                // Providers say when to come back on 429 and 503:
                // `x-mock-retry-after: <seconds>` makes this one say it.
                let retry_after = head.header(b"x-mock-retry-after").filter(|_| matches!(status, 429 | 503));
                let extra = retry_after.map_or_else(Vec::new, |v| [&b"\r\nretry-after: "[..], v].concat());
                return self.send_whole_with(status, "application/json", &payload, head.keep_alive, None, &extra).await;
            }
            Some(Failure::Reset) => return self.reset(),
            Some(Failure::Hang) => {
                monoio::time::sleep(Duration::from_secs(3600)).await;
                return Err(io::ErrorKind::TimedOut.into());
            }
            _ => {}
        }
        // A model answers a tool's result with words: `x-mock-tool` calls
        // the tool once per round trip, so that an agent's loop ends.
        if plan.tool.is_some() && ends_with_tool_result(body, api) {
            plan.tool = None;
        }
        if api == Api::CountTokens {
            let answer = format!("{{\"input_tokens\":{}}}", req.prompt_tokens);
            return self.send_whole(200, "application/json", answer.as_bytes(), head.keep_alive, None).await;
        }
        if api == Api::Embeddings {
            let mut payload = BytesMut::with_capacity(1024);
            reply::embeddings(body, req.model, &mut payload);
            return self.send_whole(200, "application/json", &payload, head.keep_alive, None).await;
        }
        if req.stream {
            return self.stream(&req, &plan, api).await;
        }
        let (list, n) = plan.words();
        let mut payload = BytesMut::with_capacity(512);
        match (api, plan.tool.as_deref()) {
            (Api::Anthropic, Some(tool)) => reply::anthropic_tool_message(&req, tool, &mut payload),
            (Api::Responses, Some(tool)) => reply::tool_response(&req, tool, &mut payload),
            (Api::Chat, Some(tool)) => reply::tool_completion(&req, tool, &mut payload),
            _ => {}
        }
        match api {
            _ if !payload.is_empty() => {}
            Api::Anthropic => reply::anthropic_message(&req, &list, n, &mut payload),
            Api::Legacy => reply::text_completion(&req, &list, n, &mut payload),
            Api::Responses => reply::response(&req, &list, n, &mut payload),
            Api::Chat | Api::Embeddings | Api::CountTokens | Api::Gemini | Api::Bedrock | Api::None => {
                reply::completion(&req, &list, n, &mut payload)
            }
        }
        if plan.thinking && api == Api::Anthropic {
            reply::with_thinking(&mut payload);
        }
        let trickle = (plan.failure == Some(Failure::Trickle)).then_some(Duration::from_millis(10));
        self.send_whole(200, "application/json", &payload, head.keep_alive, trickle).await
    }

    /// A Gemini answer: the model from the path, a stream for
    /// `:streamGenerateContent` (as SSE, which the gateway asks for with
    /// `alt=sse`), the same failure and reply controls as the other APIs.
    async fn gemini(&mut self, head: &RequestHead, body: &Bytes, plan: Plan) -> io::Result<()> {
        let path = head.path();
        let Some(model) = memchr::memmem::rfind(path, b"/models/")
            .map(|at| &path[at + 8..])
            .and_then(|rest| rest.iter().rposition(|&b| b == b':').map(|colon| &rest[..colon]))
        else {
            return self.simple(404, "a Gemini path names models/{model}:generateContent", head.keep_alive).await;
        };
        if serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("contents").cloned()).is_none() {
            return self.gemini_error(400, head).await;
        }
        let stream = path.ends_with(b":streamGenerateContent");
        let mut req = ChatRequest::for_body(model, stream, body);
        // Gemini reports cache reads only.
        if let Some((read, ..)) = cache_header(head) {
            req.cached(read, 0, 0);
        }
        match plan.failure {
            Some(Failure::Status(status)) => return self.gemini_error(status, head).await,
            Some(Failure::Reset) => return self.reset(),
            Some(Failure::Hang) => {
                monoio::time::sleep(Duration::from_secs(3600)).await;
                return Err(io::ErrorKind::TimedOut.into());
            }
            _ => {}
        }
        let tool = plan.tool.as_deref().filter(|_| !gemini_ends_with_result(body));
        let (list, n) = plan.words();
        if stream {
            let mut events = Vec::new();
            reply::gemini::stream_events(&req, &list, n, plan.behavior.stream_chunks, tool, plan.thinking, &mut events);
            return self.send_events(&events, &plan, "text/event-stream").await;
        }
        let mut payload = BytesMut::with_capacity(512);
        reply::gemini::answer(&req, &list, n, tool, plan.thinking, &mut payload);
        self.send_whole(200, "application/json", &payload, head.keep_alive, None).await
    }

    /// A Bedrock answer: the model from the path, a stream for
    /// `/converse-stream` (AWS's event stream framing), the signature
    /// checked when the mock has a secret.
    async fn bedrock(&mut self, head: &RequestHead, body: &Bytes, plan: Plan) -> io::Result<()> {
        let path = head.path();
        let stream = path.ends_with(b"/converse-stream");
        let rest = &path[b"/model/".len()..];
        let model = &rest[..rest.iter().rposition(|&b| b == b'/').unwrap_or(rest.len())];
        if let Some(secret) = plan.behavior.aws_secret {
            if let Err(why) = check_signature(head, body, secret) {
                let answer = format!(r#"{{"message":{}}}"#, serde_json::to_string(&why).unwrap_or_default());
                let kind = if why.starts_with("Missing") {
                    "MissingAuthenticationTokenException"
                } else {
                    "InvalidSignatureException"
                };
                let extra = format!("\r\nx-amzn-errortype: {kind}");
                return self
                    .send_whole_with(
                        403,
                        "application/json",
                        answer.as_bytes(),
                        head.keep_alive,
                        None,
                        extra.as_bytes(),
                    )
                    .await;
            }
        }
        if serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v.get("messages").cloned()).is_none() {
            return self.bedrock_error(400, head).await;
        }
        let decoded = tollgate_protocol::sigv4::percent_decode(&String::from_utf8_lossy(model));
        let mut req = ChatRequest::for_body(&decoded, stream, body);
        if let Some((read, write, hour)) = cache_header(head) {
            req.cached(read, write, hour);
        }
        match plan.failure {
            Some(Failure::Status(status)) => return self.bedrock_error(status, head).await,
            Some(Failure::Reset) => return self.reset(),
            Some(Failure::Hang) => {
                monoio::time::sleep(Duration::from_secs(3600)).await;
                return Err(io::ErrorKind::TimedOut.into());
            }
            _ => {}
        }
        let tool = plan.tool.as_deref().filter(|_| !bedrock_ends_with_result(body));
        let (list, n) = plan.words();
        if stream {
            let mut events = Vec::new();
            reply::bedrock::stream_events(&req, &list, n, plan.behavior.stream_chunks, tool, &mut events);
            return self.send_events(&events, &plan, "application/vnd.amazon.eventstream").await;
        }
        let mut payload = BytesMut::with_capacity(512);
        reply::bedrock::answer(&req, &list, n, tool, &mut payload);
        self.send_whole(200, "application/json", &payload, head.keep_alive, None).await
    }

    async fn bedrock_error(&mut self, status: u16, head: &RequestHead) -> io::Result<()> {
        let (payload, kind) = reply::bedrock::error(status);
        let mut extra = format!("\r\nx-amzn-errortype: {kind}").into_bytes();
        if let Some(v) = head.header(b"x-mock-retry-after").filter(|_| matches!(status, 429 | 503)) {
            extra.extend_from_slice(b"\r\nretry-after: ");
            extra.extend_from_slice(v);
        }
        self.send_whole_with(status, "application/json", payload.as_bytes(), head.keep_alive, None, &extra).await
    }

    /// The instance metadata service (IMDSv2) of an instance whose role's
    /// secret is the mock's `aws_secret`: a token first, then the role,
    /// then its credentials, valid for an hour.
    async fn imds(&mut self, head: &RequestHead) -> io::Result<()> {
        let path = head.path();
        let token_ok = head.header(b"x-aws-ec2-metadata-token") == Some(&b"mock-imds-token"[..]);
        let (status, body) = match (head.method, path) {
            (Method::Put, b"/latest/api/token") => (200, "mock-imds-token".to_string()),
            (_, _) if !token_ok => (401, String::new()),
            (Method::Get, b"/latest/meta-data/iam/security-credentials/") => (200, "tollgate-role\n".to_string()),
            (Method::Get, b"/latest/meta-data/iam/security-credentials/tollgate-role") => {
                let expires =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
                        + 3600;
                let at = tollgate_protocol::sigv4::amz_date(expires);
                let iso = format!(
                    "{}-{}-{}T{}:{}:{}Z",
                    &at[0..4],
                    &at[4..6],
                    &at[6..8],
                    &at[9..11],
                    &at[11..13],
                    &at[13..15]
                );
                (
                    200,
                    format!(
                        r#"{{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAMOCKROLE{}","SecretAccessKey":"{}","Token":"mock-role-session-token","Expiration":"{iso}"}}"#,
                        self.id,
                        self.behavior.aws_secret.unwrap_or("mock-role-secret")
                    ),
                )
            }
            _ => (404, String::new()),
        };
        self.send_whole(status, "text/plain", body.as_bytes(), head.keep_alive, None).await
    }

    async fn gemini_error(&mut self, status: u16, head: &RequestHead) -> io::Result<()> {
        let mut payload = BytesMut::new();
        reply::gemini::error(status, &mut payload);
        let retry_after = head.header(b"x-mock-retry-after").filter(|_| matches!(status, 429 | 503));
        let extra = retry_after.map_or_else(Vec::new, |v| [&b"\r\nretry-after: "[..], v].concat());
        self.send_whole_with(status, "application/json", &payload, head.keep_alive, None, &extra).await
    }

    /// A guardrail classifier's answer, in the shape its path's API has.
    async fn classify(&mut self, head: &RequestHead, body: &Bytes, path: &[u8]) -> io::Result<()> {
        if classify::slow(body) {
            monoio::time::sleep(Duration::from_secs(2)).await;
        }
        let flagged = classify::flagged(body);
        let (hit, miss) = if flagged { (0.981, 0.019) } else { (0.012, 0.988) };
        let answer = if path.ends_with(b"/predict") {
            format!(r#"[{{"score":{hit},"label":"INJECTION"}},{{"score":{miss},"label":"SAFE"}}]"#)
        } else if path.ends_with(b"/moderations") {
            format!(
                r#"{{"id":"modr-mock-{}","model":"omni-moderation-latest","results":[{{"flagged":{flagged},"categories":{{"harassment":false,"illicit":{flagged},"violence":false}},"category_scores":{{"harassment":0.001,"illicit":{hit},"violence":0.002}},"category_applied_input_types":{{"illicit":["text"]}}}}]}}"#,
                self.id
            )
        } else if path.ends_with(b"/analyze") {
            // A Presidio analyzer: the names `Alice` and `Bob` in the one
            // text sent, as PERSON entities with offsets in characters
            // (Python's), as Presidio counts them.
            let mut text = Vec::new();
            let _ = tollgate_protocol::json::string_values(body, |key, v| {
                if key == b"text" && text.is_empty() {
                    let _ = tollgate_protocol::json::unescape(&body[v.raw.clone()], &mut text);
                }
            });
            let chars: Vec<char> = String::from_utf8_lossy(&text).chars().collect();
            let mut found = Vec::new();
            for name in ["Alice", "Bob"] {
                let name: Vec<char> = name.chars().collect();
                for at in 0..chars.len().saturating_sub(name.len() - 1) {
                    if chars[at..at + name.len()] == name[..] {
                        found.push(format!(
                            r#"{{"entity_type":"PERSON","start":{at},"end":{},"score":0.85,"analysis_explanation":null,"recognition_metadata":{{"recognizer_name":"SpacyRecognizer"}}}}"#,
                            at + name.len()
                        ));
                    }
                }
            }
            format!("[{}]", found.join(", "))
        } else {
            // The webhook: the names `Alice` and `Bob` in each text sent,
            // as spans (text index, byte offsets), as a PII engine would
            // find persons.
            let mut spans = String::new();
            let mut index = 0;
            let _ = tollgate_protocol::json::string_values(body, |key, v| {
                if key != b"texts" {
                    return;
                }
                let mut text = Vec::new();
                if tollgate_protocol::json::unescape(&body[v.raw.clone()], &mut text).is_ok() {
                    for name in [&b"Alice"[..], b"Bob"] {
                        for at in memchr::memmem::find_iter(&text, name) {
                            if !spans.is_empty() {
                                spans.push(',');
                            }
                            spans.push_str(&format!(
                                r#"{{"text":{index},"start":{at},"end":{},"label":"PERSON"}}"#,
                                at + name.len()
                            ));
                        }
                    }
                }
                index += 1;
            });
            let flagged = flagged || !spans.is_empty();
            format!(r#"{{"flagged":{flagged},"score":{hit},"spans":[{spans}]}}"#)
        };
        self.send_whole(200, "application/json", answer.as_bytes(), head.keep_alive, None).await
    }

    async fn stream(&mut self, req: &ChatRequest<'_>, plan: &Plan, api: Api) -> io::Result<()> {
        let b = &plan.behavior;
        let mut events = Vec::new();
        let (list, n) = plan.words();
        match (api, plan.tool.as_deref()) {
            (Api::Anthropic, Some(tool)) => reply::anthropic_tool_stream_events(req, tool, &mut events),
            (Api::Responses, Some(tool)) => reply::tool_responses_stream_events(req, tool, &mut events),
            (Api::Chat, Some(tool)) => reply::tool_stream_events(req, tool, &mut events),
            _ => {}
        }
        match api {
            _ if !events.is_empty() => {}
            Api::Anthropic => reply::anthropic_stream_events(req, &list, n, b.stream_chunks, &mut events),
            Api::Legacy => reply::text_stream_events(req, &list, n, b.stream_chunks, &mut events),
            Api::Responses => reply::responses_stream_events(req, &list, n, b.stream_chunks, &mut events),
            Api::Chat | Api::Embeddings | Api::CountTokens | Api::Gemini | Api::Bedrock | Api::None => {
                reply::stream_events(req, &list, n, b.stream_chunks, &mut events)
            }
        }
        if plan.thinking && api == Api::Anthropic {
            reply::with_thinking_events(&mut events);
        }
        self.send_events(&events, plan, "text/event-stream").await
    }

    /// An event stream's head, then its events as the plan says (delays,
    /// split writes, a reset half-way).
    async fn send_events(&mut self, events: &[BytesMut], plan: &Plan, content_type: &str) -> io::Result<()> {
        let b = &plan.behavior;
        self.out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: ");
        self.out.extend_from_slice(content_type.as_bytes());
        self.out.extend_from_slice(b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nx-mock-connection: ");
        self.out.extend_from_slice(itoa::Buffer::new().format(self.id).as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.flush().await?;
        let reset_at = (plan.failure == Some(Failure::ResetMidStream)).then_some(events.len() / 2);
        for (i, event) in events.iter().enumerate() {
            if Some(i) == reset_at {
                return self.reset();
            }
            if i > 0 && !b.chunk_delay.is_zero() {
                monoio::time::sleep(b.chunk_delay).await;
            }
            if b.split_writes {
                let cut = split_point(event);
                self.chunk(&event[..cut]);
                self.flush().await?;
                monoio::time::sleep(Duration::from_millis(2)).await;
                self.chunk(&event[cut..]);
            } else {
                self.chunk(event);
            }
            self.flush().await?;
        }
        self.out.extend_from_slice(LAST_CHUNK);
        self.flush().await
    }

    fn chunk(&mut self, data: &[u8]) {
        let mut hdr = [0u8; 18];
        let n = chunk_header(data.len(), &mut hdr);
        self.out.extend_from_slice(&hdr[..n]);
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(CHUNK_END);
    }

    async fn send_whole(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
        keep_alive: bool,
        trickle: Option<Duration>,
    ) -> io::Result<()> {
        self.send_whole_with(status, content_type, body, keep_alive, trickle, b"").await
    }

    /// [`Self::send_whole`] with extra header lines (each starting with
    /// CRLF), such as a `retry-after`.
    async fn send_whole_with(
        &mut self,
        status: u16,
        content_type: &str,
        body: &[u8],
        keep_alive: bool,
        trickle: Option<Duration>,
        extra: &[u8],
    ) -> io::Result<()> {
        let mut n = itoa::Buffer::new();
        self.out.extend_from_slice(b"HTTP/1.1 ");
        self.out.extend_from_slice(n.format(status).as_bytes());
        self.out.extend_from_slice(b" ");
        self.out.extend_from_slice(reason(status).as_bytes());
        self.out.extend_from_slice(b"\r\ncontent-type: ");
        self.out.extend_from_slice(content_type.as_bytes());
        self.out.extend_from_slice(b"\r\ncontent-length: ");
        self.out.extend_from_slice(n.format(body.len()).as_bytes());
        self.out.extend_from_slice(b"\r\nx-mock-connection: ");
        self.out.extend_from_slice(n.format(self.id).as_bytes());
        self.out.extend_from_slice(extra);
        if !keep_alive {
            self.out.extend_from_slice(b"\r\nconnection: close");
        }
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        match trickle {
            None => self.flush().await,
            Some(gap) => {
                let all = self.out.split().freeze();
                for i in 0..all.len() {
                    let (res, _) = self.stream.write_all(all.slice(i..i + 1)).await;
                    res?;
                    monoio::time::sleep(gap).await;
                }
                Ok(())
            }
        }
    }

    async fn simple(&mut self, status: u16, message: &str, keep_alive: bool) -> io::Result<()> {
        let mut payload = BytesMut::new();
        tollgate_protocol::openai::write_error_body(&mut payload, message, "invalid_request_error", "mock");
        self.send_whole(status, "application/json", &payload, keep_alive, None).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        let (res, _) = self.stream.write_all(self.out.split().freeze()).await;
        res.map(|_| ())
    }

    /// Closes with RST instead of FIN: SO_LINGER with a zero timeout.
    fn reset(&mut self) -> io::Result<()> {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: the descriptor is open (we own the stream) and `linger`
        // is a valid `struct linger` whose size we pass.
        let rc = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Err(io::ErrorKind::ConnectionReset.into())
    }
}

/// A cut inside the first multi-byte UTF-8 character, else in the middle.
fn split_point(event: &[u8]) -> usize {
    event.iter().position(|&b| (0x80..0xC0).contains(&b)).unwrap_or(event.len() / 2).max(1)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Whether the conversation's last turn is a tool's result: a `tool`
/// message (chat), a `tool_result` block in the last user message
/// (Anthropic), a `function_call_output` item (Responses). Read by
/// structure.
/// Checks a request's SigV4 signature as AWS does: the signed headers it
/// names, its own date, the body's hash, `secret` for every key id.
fn check_signature(head: &RequestHead, body: &[u8], secret: &str) -> Result<(), String> {
    let auth = head.header(b"authorization").ok_or("Missing Authentication Token")?;
    let auth = std::str::from_utf8(auth).map_err(|_| "unreadable authorization")?;
    let field = |name: &str| auth.split([' ', ',']).find_map(|p| p.strip_prefix(name)).unwrap_or_default();
    let credential = field("Credential=");
    let mut scope = credential.split('/');
    let (id, _date, region, service) = (scope.next(), scope.next(), scope.next(), scope.next());
    let (Some(id), Some(region), Some(service)) = (id, region, service) else {
        return Err("the Credential scope is malformed".into());
    };
    let date = head.header(b"x-amz-date").and_then(|d| std::str::from_utf8(d).ok()).ok_or("no x-amz-date")?;
    let token = head.header(b"x-amz-security-token").and_then(|t| std::str::from_utf8(t).ok()).map(str::to_string);
    let host = head.header(b"host").and_then(|h| std::str::from_utf8(h).ok()).unwrap_or_default();
    let mut others = Vec::new();
    for name in field("SignedHeaders=").split(';') {
        if !matches!(name, "host" | "x-amz-date" | "x-amz-security-token") {
            let value = head.header(name.as_bytes()).and_then(|v| std::str::from_utf8(v).ok()).unwrap_or_default();
            others.push((name, value));
        }
    }
    let target = std::str::from_utf8(head.target()).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let req = tollgate_protocol::sigv4::Request { method: "POST", host, path, query, headers: &others, payload: body };
    let creds = tollgate_protocol::sigv4::Credentials {
        access_key_id: id.to_string(),
        secret_access_key: secret.to_string(),
        session_token: token,
    };
    let expected = tollgate_protocol::sigv4::sign_at(&req, &creds, region, service, date);
    if expected.authorization == auth {
        Ok(())
    } else {
        Err("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into())
    }
}

/// `x-mock-cache: READ,WRITE[,HOUR]`: prompt tokens the answer reports as
/// read from and written to the provider's cache, and of the writes, those
/// written for an hour.
fn cache_header(head: &RequestHead) -> Option<(usize, usize, usize)> {
    let mut n = std::str::from_utf8(head.header(b"x-mock-cache")?).ok()?.split(',').map(|n| n.trim().parse().ok());
    let (read, write) = (n.next()??, n.next()??);
    let hour = n.next().unwrap_or(Some(0))?;
    Some((read, write, hour.min(write)))
}

/// `x-mock-audio: HEARD,SPOKEN`: a chat answer reports HEARD of its prompt
/// tokens as audio, and SPOKEN audio tokens of output besides its text.
fn audio_header(head: &RequestHead) -> Option<(usize, usize)> {
    let (h, s) = std::str::from_utf8(head.header(b"x-mock-audio")?).ok()?.split_once(',')?;
    Some((h.trim().parse().ok()?, s.trim().parse().ok()?))
}

/// Whether a Converse request's last message carries a tool's result.
fn bedrock_ends_with_result(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    let last = v.get("messages").and_then(|c| c.as_array()).and_then(|c| c.last());
    last.and_then(|c| c.get("content"))
        .and_then(|p| p.as_array())
        .is_some_and(|p| p.iter().any(|p| p.get("toolResult").is_some()))
}

/// Whether a Gemini request's last content answers a function call.
fn gemini_ends_with_result(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    let last = v.get("contents").and_then(|c| c.as_array()).and_then(|c| c.last());
    last.and_then(|c| c.get("parts"))
        .and_then(|p| p.as_array())
        .is_some_and(|p| p.iter().any(|p| p.get("functionResponse").is_some()))
}

fn ends_with_tool_result(body: &[u8], api: Api) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    let last = |key: &str| v.get(key).and_then(|m| m.as_array()).and_then(|m| m.last());
    match api {
        Api::Chat => last("messages").is_some_and(|m| m.get("role").and_then(|r| r.as_str()) == Some("tool")),
        Api::Anthropic => last("messages")
            .and_then(|m| m.get("content"))
            .and_then(|c| c.as_array())
            .is_some_and(|c| c.iter().any(|b| b.get("type").and_then(|t| t.as_str()) == Some("tool_result"))),
        Api::Responses => {
            last("input").is_some_and(|i| i.get("type").and_then(|t| t.as_str()) == Some("function_call_output"))
        }
        _ => false,
    }
}
