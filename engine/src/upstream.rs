//! Upstream connections: this core's keep-alive pool for each provider.
//!
//! A pool is a plain `Vec` behind a `RefCell`: it belongs to one worker
//! thread, so it needs no lock. Idle connections are reused newest first,
//! which keeps the warmest ones busy and lets the rest time out at the
//! upstream.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use tollgate_policy::Provider;
use tollgate_protocol::http1::HeadScan;

use crate::error::GatewayError;
use crate::iov::IoSlices;

/// Idle connections kept per provider per core. Enough for the concurrency
/// one core drives; beyond it, connections close instead of piling up.
const IDLE_PER_PROVIDER_MAX: usize = 256;

/// Read buffer size for upstream answers: one SSE event or a typical JSON
/// completion fits in one read.
pub const UPSTREAM_READ_BYTES: usize = 16 * 1024;

/// One provider as this core sees it: resolved address, pre-rendered head
/// lines, and the pool.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    /// `POST /v1/chat/completions HTTP/1.1\r\n` for this provider's base path.
    pub chat_request_line: Bytes,
    /// `host: ...\r\n` and, when configured, `authorization: ...\r\n`.
    pub fixed_headers: Bytes,
    idle: RefCell<Vec<UpConn>>,
}

/// A connection to an upstream and its read buffer.
pub struct UpConn {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub scan: HeadScan,
    /// Came from the pool: it may have been closed by the upstream since.
    pub reused: bool,
    pub out: IoSlices,
}

impl Upstream {
    pub fn new(provider: &Provider, addr: SocketAddr) -> Upstream {
        let mut fixed = BytesMut::new();
        fixed.extend_from_slice(b"host: ");
        fixed.extend_from_slice(provider.host_header.as_bytes());
        fixed.extend_from_slice(b"\r\n");
        if let Some(cred) = &provider.credential {
            fixed.extend_from_slice(b"authorization: ");
            fixed.extend_from_slice(cred.0.as_bytes());
            fixed.extend_from_slice(b"\r\n");
        }
        let line = format!("POST {}/chat/completions HTTP/1.1\r\n", provider.base_path);
        Upstream {
            name: provider.name.clone(),
            addr,
            chat_request_line: Bytes::from(line),
            fixed_headers: fixed.freeze(),
            idle: RefCell::new(Vec::new()),
        }
    }

    /// Whether `other` talks to the same place in the same way, so that
    /// this one's pooled connections can serve it (reload keeps pools).
    pub fn same_as(&self, other: &Upstream) -> bool {
        self.name == other.name
            && self.addr == other.addr
            && self.chat_request_line == other.chat_request_line
            && self.fixed_headers == other.fixed_headers
    }

    pub fn take_idle(&self) -> Option<UpConn> {
        self.idle.borrow_mut().pop()
    }

    pub fn give_back(&self, mut conn: UpConn) {
        let mut idle = self.idle.borrow_mut();
        if idle.len() < IDLE_PER_PROVIDER_MAX && conn.buf.is_empty() {
            conn.reused = true;
            conn.scan.reset();
            idle.push(conn);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    pub async fn connect(&self, timeout: Duration) -> Result<UpConn, GatewayError> {
        match monoio::time::timeout(timeout, TcpStream::connect_addr(self.addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(UpConn {
                    stream,
                    buf: BytesMut::with_capacity(UPSTREAM_READ_BYTES),
                    scan: HeadScan::default(),
                    reused: false,
                    out: IoSlices::default(),
                })
            }
            Ok(Err(cause)) => Err(GatewayError::UpstreamConnect { provider: self.name.clone(), cause }),
            Err(_) => Err(GatewayError::UpstreamConnectTimeout { provider: self.name.clone() }),
        }
    }
}
