//! A blocking Redis connection for the cluster thread: plain TCP or TLS
//! (rustls), `AUTH` and `SELECT` at connect, one command at a time, every
//! step under the configured time-out. The wire format is
//! [`tollgate_protocol::resp`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use tollgate_policy::config::cluster::RedisServer;
use tollgate_protocol::resp::{self, Reply, ReplyReader, RespError};

/// Why an exchange with Redis failed. Every kind is retried at the next
/// interval; `Refused` is also logged as a configuration problem.
#[derive(Debug)]
pub enum RedisError {
    /// No connection (refused, unreachable, DNS, time-out).
    Connect {
        server: String,
        cause: io::Error,
    },
    /// The connection broke or timed out mid-exchange.
    Io(io::Error),
    Tls(String),
    Protocol(RespError),
    /// Redis refused a command (`-ERR`, `-NOAUTH`, `-WRONGPASS`...).
    Refused {
        command: &'static str,
        reply: String,
    },
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Connect { server, cause } => write!(f, "cannot connect to Redis at {server}: {cause}"),
            RedisError::Io(e) => write!(f, "Redis connection failed: {e}"),
            RedisError::Tls(e) => write!(f, "Redis TLS error: {e}"),
            RedisError::Protocol(e) => write!(f, "{e}"),
            RedisError::Refused { command, reply } => write!(f, "Redis refused {command}: {reply}"),
        }
    }
}

impl std::error::Error for RedisError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisError::Connect { cause, .. } | RedisError::Io(cause) => Some(cause),
            RedisError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.as_mut(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

pub struct Redis {
    stream: Stream,
    reader: ReplyReader,
    out: Vec<u8>,
    /// `host:port`, for messages.
    pub name: String,
}

impl Redis {
    /// Connects, authenticates and selects the database.
    pub fn connect(
        server: &RedisServer,
        password: Option<&str>,
        tls: Option<&Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Result<Redis, RedisError> {
        let name = format!("{}:{}", server.host, server.port);
        let connect_err = |cause| RedisError::Connect { server: name.clone(), cause };
        let addrs = (server.host.as_str(), server.port).to_socket_addrs().map_err(connect_err)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address");
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| connect_err(last))?;
        tcp.set_read_timeout(Some(timeout)).map_err(RedisError::Io)?;
        tcp.set_write_timeout(Some(timeout)).map_err(RedisError::Io)?;
        let _ = tcp.set_nodelay(true);
        let stream = match (server.tls, tls) {
            (true, Some(config)) => {
                let host = ServerName::try_from(server.host.clone()).map_err(|e| RedisError::Tls(e.to_string()))?;
                let conn = ClientConnection::new(config.clone(), host).map_err(|e| RedisError::Tls(e.to_string()))?;
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
            _ => Stream::Plain(tcp),
        };
        let mut r = Redis { stream, reader: ReplyReader::default(), out: Vec::with_capacity(4096), name };
        for (command, args) in setup(server, password) {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            expect_ok(command, r.call(&args)?)?;
        }
        Ok(r)
    }

    /// Sends one command and reads its reply. An error reply is a reply
    /// (`Reply::Error`), not an `Err`: the caller knows what it means.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        self.out.clear();
        resp::encode(&mut self.out, args);
        let io_err = |e: io::Error| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => RedisError::Tls(t.to_string()),
            None => RedisError::Io(e),
        };
        let io = self.stream.io();
        io.write_all(&self.out).map_err(io_err)?;
        io.flush().map_err(io_err)?;
        self.reader.clear();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(reply) = self.reader.reply().map_err(RedisError::Protocol)? {
                return Ok(reply);
            }
            let n = io.read(&mut chunk).map_err(io_err)?;
            if n == 0 {
                return Err(RedisError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.reader.extend(&chunk[..n]).map_err(RedisError::Protocol)?;
        }
    }
}

/// The commands a new connection runs before anything else, each
/// expected to answer OK: `AUTH` (as the ACL user, if any) when there is a
/// password, and `SELECT` for a database other than 0.
pub fn setup(server: &RedisServer, password: Option<&str>) -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    if let Some(pw) = password {
        let mut args = vec![b"AUTH".to_vec()];
        args.extend(server.username.as_ref().map(|u| u.as_bytes().to_vec()));
        args.push(pw.as_bytes().to_vec());
        out.push(("AUTH", args));
    }
    if server.db != 0 {
        out.push(("SELECT", vec![b"SELECT".to_vec(), server.db.to_string().into_bytes()]));
    }
    out
}

/// An OK (any status reply) to a set-up command; anything else refuses it.
pub fn expect_ok(command: &'static str, reply: Reply) -> Result<(), RedisError> {
    match reply {
        Reply::Simple(_) => Ok(()),
        Reply::Error(e) => Err(RedisError::Refused { command, reply: e }),
        other => Err(RedisError::Refused { command, reply: format!("unexpected reply {other:?}") }),
    }
}
