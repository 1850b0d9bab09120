//! The mock upstream: options, start-up and the per-request behaviour.
//!
//! An OpenAI-compatible upstream built to never be the bottleneck of a
//! benchmark: thread per core on io_uring like the gateway, keep-alive, and
//! replies generated from a few integers. It also misbehaves on request
//! (latency, slow streams, failure statuses, resets, hangs, trickles, SSE
//! events and UTF-8 characters split across writes) so that every fault
//! path of the gateway is tested against real sockets.
//!
//! It is its own crate because two programs embed it: the gateway, for its
//! `mock` provider kind (so the bundled defaults answer with no provider
//! account), and the `tollgate-mock` binary in `loadtest`. [`listen`] holds
//! the listener binding that the gateway's workers share with it.
//!
//! It speaks OpenAI's `POST /v1/chat/completions`, `POST /v1/responses`,
//! legacy `POST /v1/completions` and `POST /v1/embeddings` (vectors in
//! which texts that share words are close), and Anthropic's
//! `POST /v1/messages` (JSON and event streams, errors in each one's
//! shape).
//!
//! Behaviour comes from the start-up options and can be overridden per
//! request with `x-mock-*` headers, which the gateway forwards. That lets
//! one running mock serve a test that needs a hang next to one that needs a
//! fast answer:
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-latency-ms: N` | wait N ms before the response head |
//! | `x-mock-reply-words: N` | reply with N words |
//! | `x-mock-chunks: N` | stream the reply in N content events |
//! | `x-mock-chunk-delay-ms: N` | wait N ms between stream events |
//! | `x-mock-fail: 500` (any status) `reset`, `hang`, `trickle`, `reset-mid-stream` | misbehave |
//! | `x-mock-split: 1` | split every event, inside a UTF-8 character, across two writes |
//! | `x-mock-reply: text` | reply with this text (its words are the stream's pieces) |
//! | `x-mock-echo: body` / `head` | answer with the request body / head as received |
//! | `x-mock-tool: NAME` | answer with one call of the tool NAME, arguments `{"city":"Paris"}` (chat `tool_calls`, Anthropic `tool_use`, a Responses `function_call`; streamed, the arguments in two pieces), 8 completion tokens |
//! | `x-mock-thinking: 1` | an Anthropic answer starts with a thinking block and its signature (opaque base64 holding a run shaped like an AWS key), JSON and streamed (`thinking_delta`, `signature_delta`) |
//! | `x-mock-reasoning: N` | a chat answer's model reasons N tokens before its words: billed as output (`completion_tokens_details.reasoning_tokens`), never streamed; the request's `max_tokens` (or `max_completion_tokens`) counts them first, and an answer it stops finishes with `length` |
//! | `x-mock-tier: priority\|flex\|default` | a chat answer and its chunks say they were served at that tier (top-level `service_tier`) |
//! | `x-mock-audio: HEARD,SPOKEN` | a chat answer reports HEARD of its prompt tokens as audio and SPOKEN audio tokens of output besides its text (`prompt_tokens_details.audio_tokens`, `completion_tokens_details.audio_tokens`) |
//! | `x-mock-cache: READ,WRITE[,HOUR]` | report READ prompt tokens read from the provider's cache and WRITE written to it (OpenAI's `cached_tokens`; Anthropic's `cache_read_input_tokens`, `cache_creation_input_tokens`), HOUR of the writes for an hour (Anthropic's `cache_creation`) |

//!
//! It also plays the guardrail classifiers a profile can call, each in its
//! documented shape: text-embeddings-inference `POST /predict` (labels
//! with scores), OpenAI's `POST /v1/moderations` (`flagged`, categories
//! and scores), a guard model (a chat completion for a model whose name
//! contains `guard` answers `safe` or `unsafe S14`, as Llama Guard does),
//! and the webhook `POST /check` (`{"flagged": bool, "score": x, "spans":
//! [...]}`, a span for each `Alice` and `Bob` in the texts sent). Its
//! verdict is a fixed rule, so that tests mean something: a text that
//! contains `jailbreak`, `ignore previous` or `[[unsafe]]` (any case) is
//! flagged; one that contains `[[slow]]` is answered after two seconds.

mod conn;
pub mod listen;
mod reply;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use listen::bind_reuseport;
pub use reply::REPLY_WORDS;

/// A misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this status and an OpenAI-style error body.
    Status(u16),
    /// Reset the connection instead of answering.
    Reset,
    /// Read the request, then never answer.
    Hang,
    /// Answer one byte at a time, 10 ms apart.
    Trickle,
    /// Stream half the events, then reset the connection.
    ResetMidStream,
}

impl Failure {
    pub fn parse(s: &str) -> Option<Failure> {
        match s {
            "reset" => Some(Failure::Reset),
            "hang" => Some(Failure::Hang),
            "trickle" => Some(Failure::Trickle),
            "reset-mid-stream" => Some(Failure::ResetMidStream),
            code => code.parse::<u16>().ok().filter(|c| (100..600).contains(c)).map(Failure::Status),
        }
    }
}

/// How the mock answers, before per-request overrides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Behavior {
    pub reply_words: usize,
    pub latency: Duration,
    pub stream_chunks: usize,
    pub chunk_delay: Duration,
    pub failure: Option<Failure>,
    /// Fraction of requests that get `failure`, from 0.0 to 1.0.
    pub failure_rate: f64,
    pub split_writes: bool,
    /// Bedrock: the secret every AWS key id signs with; with it, requests
    /// to `/model/...` are checked (SigV4) and refused 403 as AWS refuses
    /// them, and the instance metadata endpoints hand it out as a role's.
    pub aws_secret: Option<&'static str>,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            reply_words: 16,
            latency: Duration::ZERO,
            stream_chunks: 8,
            chunk_delay: Duration::ZERO,
            failure: None,
            failure_rate: 1.0,
            split_writes: false,
            aws_secret: None,
        }
    }
}

/// Where and how to run the mock.
#[derive(Clone, Debug)]
pub struct MockOptions {
    pub listen: SocketAddr,
    pub threads: usize,
    pub behavior: Behavior,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A rustls server configuration from PEM files.
fn server_config(files: &TlsFiles) -> io::Result<std::sync::Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| invalid(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| invalid(&e))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = std::sync::Arc::new(AnnouncedResumption(config.session_storage.clone()));
    Ok(std::sync::Arc::new(config))
}

/// The server's session cache, saying on stdout when a client comes back
/// with a session it holds: the only outside view of whether the gateway's
/// TLS session resumption works.
#[derive(Debug)]
struct AnnouncedResumption(std::sync::Arc<dyn rustls::server::StoresServerSessions>);

impl AnnouncedResumption {
    fn announce(found: Option<Vec<u8>>) -> Option<Vec<u8>> {
        if found.is_some() {
            println!("tollgate-mock: TLS session resumed");
        }
        found
    }
}

impl rustls::server::StoresServerSessions for AnnouncedResumption {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        Self::announce(self.0.get(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        Self::announce(self.0.take(key))
    }

    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

/// A running mock; its threads live as long as the process.
#[derive(Debug)]
pub struct MockHandle {
    pub addr: SocketAddr,
}

/// Binds the listeners (one per thread, SO_REUSEPORT) and starts serving.
/// Returns once every listener is bound, so the address is usable at once.
pub fn start(opts: &MockOptions) -> io::Result<MockHandle> {
    let threads = opts.threads.max(1);
    let tls = opts.tls.as_ref().map(server_config).transpose()?;
    // SO_REUSEPORT would otherwise let a second mock share the port of one
    // already running, each taking a share of the connections.
    listen::ensure_free(opts.listen)?;
    let first = bind_reuseport(opts.listen)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(bind_reuseport(addr)?);
    }
    for (index, listener) in listeners.into_iter().enumerate() {
        let behavior = opts.behavior;
        let acceptor = tls.clone().map(monoio_rustls::TlsAcceptor::from);
        std::thread::Builder::new().name(format!("mock-{index}")).spawn(move || {
            let mut rt =
                monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().expect("mock runtime");
            rt.block_on(conn::serve(listener, index as u64, behavior, acceptor));
        })?;
    }
    Ok(MockHandle { addr })
}
