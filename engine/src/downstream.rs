//! The client side of a connection: plain TCP, or TLS terminated here with
//! rustls (`[server.tls]`).
//!
//! The server configuration (certificate chain, key, optional client CA
//! for mTLS, TLS 1.2 and 1.3, ALPN `http/1.1`) is built from its files at
//! start and on every reload, off the request path, so that renewed
//! certificates are picked up by SIGHUP; connections already open keep the
//! session they have.
//!
//! An idle keep-alive wait must be cancellable by a drain. Plain streams
//! cancel their read; a TLS stream reads through [`CancelTcp`], whose read
//! takes the cancel handle the connection gives it for the idle wait.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelHandle, CancelableAsyncReadRent};
use monoio::net::TcpStream;
use monoio::BufResult;
use monoio_rustls::{ServerTlsStream, TlsAcceptor};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tollgate_policy::config::ListenerTls;

use crate::iov::MaybeTls;

/// Builds the listener's TLS configuration from its files.
pub fn server_config(tls: &ListenerTls) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|e| format!("[server.tls] cert_file {:?}: {e}", tls.cert_file))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("[server.tls] cert_file {:?}: {e}", tls.cert_file))?;
    if certs.is_empty() {
        return Err(format!("[server.tls] cert_file {:?} holds no PEM certificate", tls.cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("[server.tls] key_file {:?}: {e} (a PEM private key is expected)", tls.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("[server.tls]: {e}"))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("[server.tls] client_ca_file {path:?}: {e}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("[server.tls] client_ca_file {path:?}: {e}"))?;
            for ca in cas {
                roots.add(ca).map_err(|e| format!("[server.tls] client_ca_file {path:?}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("[server.tls] client_ca_file {path:?} holds no PEM certificate"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if tls.client_auth_required { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("[server.tls]: {e}"))?)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("[server.tls] the key does not fit the certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The listener's TLS for a configuration, if it has one.
pub fn listener(config: &tollgate_policy::Config) -> Result<Option<Arc<ServerConfig>>, String> {
    config.server.tls.as_ref().map(server_config).transpose()
}

/// TCP whose reads take a cancel handle when one is set: the handle lives
/// in a cell shared with the [`ClientStream`] that owns the TLS session
/// around it.
pub struct CancelTcp {
    tcp: TcpStream,
    cancel: Rc<RefCell<Option<CancelHandle>>>,
}

impl AsyncReadRent for CancelTcp {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let cancel = self.cancel.borrow().clone();
        match cancel {
            Some(c) => self.tcp.cancelable_read(buf, c).await,
            None => self.tcp.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let cancel = self.cancel.borrow().clone();
        match cancel {
            Some(c) => self.tcp.cancelable_readv(buf, c).await,
            None => self.tcp.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for CancelTcp {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.tcp.write(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.tcp.writev(buf).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush().await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.tcp.shutdown().await
    }
}

/// A client connection's stream. A TLS stream reads through [`CancelTcp`],
/// whose cancel handle lives in `cancel`.
pub struct ClientStream {
    io: MaybeTls<ServerTlsStream<CancelTcp>>,
    cancel: Option<Rc<RefCell<Option<CancelHandle>>>>,
    /// The TCP socket under it, for [`ClientStream::hung_up`].
    fd: std::os::fd::RawFd,
}

impl ClientStream {
    pub fn plain(tcp: TcpStream) -> ClientStream {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        ClientStream { io: MaybeTls::Plain(tcp), cancel: None, fd }
    }

    /// Closes the sending side of the connection (a FIN after the answer
    /// the client has whole): its pool drops the connection instead of
    /// sending its next request where nobody will read it for a while.
    pub fn shut_write(&self) {
        // SAFETY: `fd` is this stream's socket, open while `self` lives;
        // shutdown takes no memory. A failure leaves a socket that closes
        // with the connection anyway.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_WR);
        }
    }

    /// Sets the socket to send a reset when it is closed (`SO_LINGER`
    /// with a zero time) rather than an orderly end.
    pub fn reset_on_close(&self) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: `fd` is this stream's socket, open while `self` lives;
        // the option's value is a valid `linger` for the call's length.
        // A failure leaves the orderly close.
        unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }

    /// Whether the client has closed its side (or reset the connection)
    /// while it waited for its answer: a peek that does not wait and takes
    /// nothing. A client that hangs up before its answer is recorded
    /// `client_gone`, as nginx records 499, rather than completed because
    /// the kernel accepted a write to a socket nobody reads. (Bytes
    /// waiting, such as a pipelined request or a TLS alert, mean open.)
    pub fn hung_up(&self) -> bool {
        let mut one = 0u8;
        // SAFETY: `fd` is this stream's socket, open while `self` lives;
        // the one-byte buffer is valid for the call, and MSG_PEEK leaves
        // the socket's data where it is.
        let n = unsafe { libc::recv(self.fd, (&mut one as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        match n {
            0 => true,
            n if n > 0 => false,
            _ => {
                let e = std::io::Error::last_os_error().raw_os_error();
                matches!(e, Some(libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN))
            }
        }
    }
}

/// Runs the TLS handshake on an accepted connection.
pub async fn accept(acceptor: &TlsAcceptor, tcp: TcpStream) -> Result<ClientStream, String> {
    let cancel = Rc::new(RefCell::new(None));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
    let io = CancelTcp { tcp, cancel: cancel.clone() };
    match acceptor.accept(io).await {
        Ok(s) => Ok(ClientStream { io: MaybeTls::Tls(Box::new(s)), cancel: Some(cancel), fd }),
        Err(e) => Err(crate::tls::describe(&e)),
    }
}

impl crate::iov::Sink for ClientStream {
    fn wants_one_buffer(&self) -> bool {
        self.io.wants_one_buffer()
    }
}

impl AsyncReadRent for ClientStream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.io.read(buf).await
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        self.io.readv(buf).await
    }
}

impl CancelableAsyncReadRent for ClientStream {
    async fn cancelable_read<T: IoBufMut>(&mut self, buf: T, c: CancelHandle) -> BufResult<usize, T> {
        match (&mut self.io, &self.cancel) {
            (MaybeTls::Tls(s), Some(cancel)) => {
                *cancel.borrow_mut() = Some(c);
                let r = s.read(buf).await;
                *cancel.borrow_mut() = None;
                r
            }
            (MaybeTls::Plain(s), _) => s.cancelable_read(buf, c).await,
            (MaybeTls::Tls(s), None) => s.read(buf).await,
        }
    }

    async fn cancelable_readv<T: IoVecBufMut>(&mut self, buf: T, c: CancelHandle) -> BufResult<usize, T> {
        match (&mut self.io, &self.cancel) {
            (MaybeTls::Tls(s), Some(cancel)) => {
                *cancel.borrow_mut() = Some(c);
                let r = s.readv(buf).await;
                *cancel.borrow_mut() = None;
                r
            }
            (MaybeTls::Plain(s), _) => s.cancelable_readv(buf, c).await,
            (MaybeTls::Tls(s), None) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for ClientStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.io.write(buf).await
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.io.writev(buf).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.io.shutdown().await
    }
}
