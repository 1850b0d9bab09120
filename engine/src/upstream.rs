//! Upstream connections: this core's keep-alive pool for each provider.
//!
//! A pool is a plain `Vec` behind a `RefCell`: it belongs to one worker
//! thread, so it needs no lock. Idle connections are reused newest first,
//! which keeps the warmest ones busy and lets the rest time out at the
//! upstream.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::RootCertStore;
use rustls_pki_types::ServerName;
use tollgate_policy::{AwsCredentials, Provider, ProviderKind};
use tollgate_protocol::http1::HeadScan;

use crate::error::GatewayError;
use crate::iov::IoSlices;

/// Idle connections kept per provider per core. Enough for the concurrency
/// one core drives; beyond it, connections close instead of piling up.
const IDLE_PER_PROVIDER_MAX: usize = 256;

/// Read buffer size for upstream answers: one SSE event or a typical JSON
/// completion fits in one read.
pub const UPSTREAM_READ_BYTES: usize = 16 * 1024;

/// A provider's address and trust store, resolved when a configuration is
/// loaded (DNS and file reads stay off the request path).
#[derive(Clone)]
pub struct Resolved {
    pub addr: SocketAddr,
    /// For `https://` providers.
    pub roots: Option<Arc<RootCertStore>>,
    /// For Bedrock providers with `aws_credentials = "instance"`: the
    /// role's credentials, fetched when the configuration was loaded.
    pub role: Option<crate::imds::RoleCredentials>,
}

enum TlsMode {
    Plain,
    Tls(Tls),
    /// `https://` but no usable TLS set-up: connecting fails.
    Broken,
}

/// What a provider needs for TLS on this core.
struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    roots: Arc<RootCertStore>,
}

/// One provider as this core sees it: resolved address, pre-rendered head
/// lines, TLS set-up, and the pool.
pub struct Upstream {
    pub name: String,
    /// A provider-specific header holding the credential (Azure's
    /// `api-key`), which client headers must not fill.
    pub key_header: Option<String>,
    /// Anthropic and Gemini upstreams get translated requests and answers.
    pub kind: ProviderKind,
    /// Streams ask for the usage chunk (see `Provider::stream_usage`).
    pub stream_usage: bool,
    /// Translated requests mark long system prompts and tool lists with
    /// `cache_control` (see `Provider::prompt_cache_marks`).
    pub prompt_cache_marks: bool,
    /// `/v1/responses` goes to it as it came (see
    /// `Provider::responses_api`).
    pub responses_api: bool,
    /// Which client headers go to this provider.
    pub forward: tollgate_policy::forward::ForwardHeaders,
    pub addr: SocketAddr,
    tls: TlsMode,
    /// `POST /v1/chat/completions HTTP/1.1\r\n` (or `/v1/messages` for
    /// Anthropic) under this provider's base path.
    pub chat_request_line: Bytes,
    /// The request line of a legacy completion (`{base}/completions`).
    pub completions_request_line: Bytes,
    /// The request line of the Responses API (`{base}/responses`).
    pub responses_request_line: Bytes,
    /// The request line of embeddings (`{base}/embeddings`).
    pub embeddings_request_line: Bytes,
    /// The request line of Anthropic's token count
    /// (`{base}/messages/count_tokens`).
    pub count_tokens_request_line: Bytes,
    /// `host: ...\r\n` and, when configured, `authorization: ...\r\n`.
    pub fixed_headers: Bytes,
    /// The base URL's path and query (`?...` or empty): a Gemini or
    /// Bedrock request's line names its model, so it is written per
    /// request.
    pub base_path: String,
    pub query: String,
    /// Bedrock: the `host` signed, the region and the credentials.
    pub aws: Option<AwsSigner>,
    idle: RefCell<Vec<UpConn>>,
}

/// What a Bedrock provider signs its requests with.
pub struct AwsSigner {
    pub host: String,
    pub region: String,
    pub credentials: tollgate_protocol::sigv4::Credentials,
    /// The day's signing key and its UTC date (`YYYYMMDD`): made again only
    /// when the date changes (this core's own: no lock).
    pub day_key: RefCell<Option<(String, tollgate_protocol::sigv4::SigningKey)>>,
}

impl AwsSigner {
    /// Signs a Bedrock request at `unix_secs`.
    pub fn sign(
        &self,
        req: &tollgate_protocol::sigv4::Request<'_>,
        unix_secs: u64,
    ) -> tollgate_protocol::sigv4::Signed {
        use tollgate_protocol::sigv4;
        let amz_date = sigv4::amz_date(unix_secs);
        let date = &amz_date[..8];
        let mut day = self.day_key.borrow_mut();
        if day.as_ref().is_some_and(|(d, _)| d != date) {
            *day = None;
        }
        let (_, key) = day.get_or_insert_with(|| {
            (date.to_string(), sigv4::signing_key(&self.credentials.secret_access_key, date, &self.region, "bedrock"))
        });
        sigv4::sign_with(req, &self.credentials, key, &self.region, "bedrock", &amz_date)
    }
}

/// A connection to an upstream, plain or TLS.
pub type UpStream = crate::iov::MaybeTls<ClientTlsStream<TcpStream>>;

/// A connection to an upstream and its read buffer.
pub struct UpConn {
    pub stream: UpStream,
    pub buf: BytesMut,
    pub scan: HeadScan,
    /// Came from the pool: it may have been closed by the upstream since.
    pub reused: bool,
    pub out: IoSlices,
    /// The socket, for [`UpConn::quiet`]'s peek.
    fd: std::os::fd::RawFd,
    /// When it went back to the pool.
    idle_since: Option<std::time::Instant>,
}

/// A pooled connection idle this long is not reused (see
/// [`UpConn::quiet`]).
const IDLE_REUSE_MAX: Duration = Duration::from_secs(4);
/// A pooled connection idle this long is peeked before it is sent on:
/// under load (a connection back in use within milliseconds) no peek is
/// paid; a quieter core pays a microsecond a request.
///
/// Bytes an upstream sends unasked on an idle connection (a broken server
/// writing a second answer, or the answer to a body it read as another
/// request) would otherwise begin the next request's answer, perhaps
/// another tenant's: with a second's grace, a review's upstream that wrote
/// one 50 ms after its answer had it served to the next request. Peeked
/// from 10 ms on, such bytes are found and the connection let go; bytes
/// sent sooner than that still race the next request, as they do through
/// any proxy that keeps connections alive.
const PEEK_AFTER: Duration = Duration::from_millis(10);

impl UpConn {
    /// Whether it may be sent on: not idle past [`IDLE_REUSE_MAX`], and,
    /// once idle [`PEEK_AFTER`], nothing waiting on the socket: no bytes,
    /// no end, no error (a peek that does not wait and takes nothing). A
    /// pooled connection the upstream closed while idle has its end
    /// waiting (a TLS one its `close_notify` first), and an idle
    /// connection is owed nothing. Found before sending, a request is
    /// never sent twice (see `proxy::call`).
    pub fn quiet(&self) -> bool {
        // Idle longer than servers commonly keep a connection alive
        // (uvicorn's and Node's 5 s), it is let go unpeeked: its end may
        // be on the way while the request is written, and a request
        // written whole is not sent again.
        if self.idle_since.is_some_and(|t| t.elapsed() >= IDLE_REUSE_MAX) {
            return false;
        }
        // Peeked once idle a while (one system call that does not wait:
        // a microsecond on a virtual machine, too dear for every request
        // under load, where connections come back within milliseconds); a
        // connection reused sooner that the upstream had closed dies at
        // once after the write and is sent on again (`proxy::call`).
        if self.idle_since.is_none_or(|t| t.elapsed() < PEEK_AFTER) {
            return true;
        }
        let mut one = 0u8;
        // SAFETY: `fd` is this connection's socket, open while `self`
        // lives (the stream owns it); the one-byte buffer is valid for the
        // call, and MSG_PEEK leaves the socket's data where it is.
        let n = unsafe { libc::recv(self.fd, (&mut one as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n < 0 && matches!(std::io::Error::last_os_error().kind(), std::io::ErrorKind::WouldBlock)
    }
}

impl Upstream {
    pub fn new(provider: &Provider, resolved: &Resolved) -> Upstream {
        let mut fixed = BytesMut::new();
        fixed.extend_from_slice(b"host: ");
        fixed.extend_from_slice(provider.host_header.as_bytes());
        fixed.extend_from_slice(b"\r\n");
        let anthropic = provider.kind == ProviderKind::Anthropic;
        if let Some(cred) = &provider.credential {
            match &provider.api_key_header {
                Some(name) => {
                    fixed.extend_from_slice(name.as_bytes());
                    fixed.extend_from_slice(b": ");
                }
                None if anthropic => fixed.extend_from_slice(b"x-api-key: "),
                None => fixed.extend_from_slice(b"authorization: Bearer "),
            }
            fixed.extend_from_slice(cred.0.as_bytes());
            fixed.extend_from_slice(b"\r\n");
        }
        if anthropic {
            fixed.extend_from_slice(b"anthropic-version: ");
            fixed.extend_from_slice(tollgate_protocol::anthropic::ANTHROPIC_VERSION.as_bytes());
            fixed.extend_from_slice(b"\r\n");
        }
        let line_to = |endpoint: &str| {
            Bytes::from(format!("POST {}/{endpoint}{} HTTP/1.1\r\n", provider.base_path, provider.query))
        };
        // An https:// provider never falls back to plain TCP: if its TLS
        // set-up is impossible (resolve_providers refuses that at load),
        // every connect fails instead.
        let tls = match (&provider.tls, &resolved.roots) {
            (None, _) => TlsMode::Plain,
            (Some(settings), Some(roots)) => match ServerName::try_from(settings.server_name.clone()) {
                Ok(server_name) => TlsMode::Tls(Tls {
                    connector: TlsConnector::from(crate::tls::client_config(roots)),
                    server_name,
                    roots: roots.clone(),
                }),
                Err(_) => TlsMode::Broken,
            },
            (Some(_), None) => TlsMode::Broken,
        };
        Upstream {
            name: provider.name.clone(),
            key_header: provider.api_key_header.clone(),
            kind: provider.kind,
            stream_usage: provider.stream_usage,
            prompt_cache_marks: provider.prompt_cache_marks,
            responses_api: provider.responses_api,
            forward: provider.forward_headers.clone(),
            addr: resolved.addr,
            tls,
            chat_request_line: line_to(if anthropic { "messages" } else { "chat/completions" }),
            completions_request_line: line_to("completions"),
            responses_request_line: line_to("responses"),
            embeddings_request_line: line_to("embeddings"),
            count_tokens_request_line: line_to("messages/count_tokens"),
            fixed_headers: fixed.freeze(),
            base_path: provider.base_path.clone(),
            query: provider.query.clone(),
            aws: provider.aws.as_ref().and_then(|a| {
                let credentials = match &a.credentials {
                    AwsCredentials::Static(k) => tollgate_protocol::sigv4::Credentials {
                        access_key_id: k.access_key_id.clone(),
                        secret_access_key: k.secret_access_key.clone(),
                        session_token: k.session_token.clone(),
                    },
                    AwsCredentials::Instance { .. } => resolved.role.as_ref()?.credentials.clone(),
                };
                Some(AwsSigner {
                    host: provider.host_header.clone(),
                    region: a.region.clone(),
                    credentials,
                    day_key: RefCell::new(None),
                })
            }),
            idle: RefCell::new(Vec::new()),
        }
    }

    /// Whether `other` talks to the same place in the same way, so that
    /// this one, pooled connections and all, can serve in its place (a
    /// reload keeps it): every field made from the configuration is equal.
    /// The trust store is compared by its roots: a reload reads it again
    /// into a new one, so by address no TLS provider's pool was ever kept.
    /// And an AWS signer by its credentials: kept whole, a provider whose
    /// keys a reload rotated (or whose instance role it fetched again)
    /// would go on signing with the old ones.
    pub fn same_as(&self, other: &Upstream) -> bool {
        let same_tls = match (&self.tls, &other.tls) {
            (TlsMode::Plain, TlsMode::Plain) => true,
            (TlsMode::Tls(a), TlsMode::Tls(b)) => {
                a.server_name == b.server_name && (Arc::ptr_eq(&a.roots, &b.roots) || a.roots.roots == b.roots.roots)
            }
            _ => false,
        };
        let same_aws = match (&self.aws, &other.aws) {
            (None, None) => true,
            (Some(a), Some(b)) => a.host == b.host && a.region == b.region && a.credentials == b.credentials,
            _ => false,
        };
        self.name == other.name
            && self.key_header == other.key_header
            && self.kind == other.kind
            && self.stream_usage == other.stream_usage
            && self.prompt_cache_marks == other.prompt_cache_marks
            && self.responses_api == other.responses_api
            && self.forward == other.forward
            && self.addr == other.addr
            && same_tls
            && same_aws
            && self.chat_request_line == other.chat_request_line
            && self.completions_request_line == other.completions_request_line
            && self.responses_request_line == other.responses_request_line
            && self.embeddings_request_line == other.embeddings_request_line
            && self.count_tokens_request_line == other.count_tokens_request_line
            && self.fixed_headers == other.fixed_headers
            && self.base_path == other.base_path
            && self.query == other.query
    }

    pub fn take_idle(&self) -> Option<UpConn> {
        self.idle.borrow_mut().pop()
    }

    pub fn give_back(&self, mut conn: UpConn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < IDLE_PER_PROVIDER_MAX && conn.buf.is_empty() {
            conn.reused = true;
            conn.idle_since = Some(std::time::Instant::now());
            conn.scan.reset();
            idle.push(conn);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// A new connection, TLS handshake included, within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<UpConn, GatewayError> {
        match monoio::time::timeout(timeout, self.open()).await {
            Ok(Ok((stream, fd))) => Ok(UpConn {
                stream,
                fd,
                idle_since: None,
                buf: BytesMut::with_capacity(UPSTREAM_READ_BYTES),
                scan: HeadScan::default(),
                reused: false,
                out: IoSlices::default(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(GatewayError::UpstreamConnectTimeout { provider: self.name.clone() }),
        }
    }

    async fn open(&self) -> Result<(UpStream, std::os::fd::RawFd), GatewayError> {
        let tcp = TcpStream::connect_addr(self.addr)
            .await
            .map_err(|cause| GatewayError::UpstreamConnect { provider: self.name.clone(), cause })?;
        let _ = tcp.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        let tls = match &self.tls {
            TlsMode::Plain => return Ok((UpStream::Plain(tcp), fd)),
            TlsMode::Tls(tls) => tls,
            TlsMode::Broken => {
                return Err(GatewayError::UpstreamTls {
                    provider: self.name.clone(),
                    cause: "TLS error: the provider's host is not a valid TLS server name".to_string(),
                })
            }
        };
        match tls.connector.connect(tls.server_name.clone(), tcp).await {
            Ok(stream) => Ok((UpStream::Tls(Box::new(stream)), fd)),
            Err(e) => Err(GatewayError::UpstreamTls { provider: self.name.clone(), cause: crate::tls::describe(&e) }),
        }
    }
}

#[cfg(test)]
mod signer_tests {
    use super::*;
    use tollgate_protocol::sigv4;

    /// The day's key is kept until the UTC date changes, and a signature
    /// made with it is the one made from scratch, on either side of
    /// midnight.
    #[test]
    fn the_days_key_is_made_again_when_the_date_changes() {
        let credentials = sigv4::Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let signer = AwsSigner {
            host: "bedrock-runtime.us-east-1.amazonaws.com".into(),
            region: "us-east-1".into(),
            credentials: credentials.clone(),
            day_key: RefCell::new(None),
        };
        let req = sigv4::Request {
            method: "POST",
            host: "bedrock-runtime.us-east-1.amazonaws.com",
            path: "/model/amazon.nova-pro-v1%3A0/converse",
            query: "",
            headers: &[],
            payload: b"{}",
        };
        let midnight = 1_796_256_000; // 2026-12-03T00:00:00Z
        for at in [midnight - 1, midnight - 1, midnight, midnight + 86_399, midnight + 86_400] {
            let fresh = sigv4::sign(&req, &credentials, "us-east-1", "bedrock", at);
            assert_eq!(signer.sign(&req, at), fresh, "at {at}");
            let kept = signer.day_key.borrow().as_ref().map(|(d, _)| d.clone());
            assert_eq!(kept.as_deref(), Some(&fresh.amz_date[..8]));
        }
    }
}
