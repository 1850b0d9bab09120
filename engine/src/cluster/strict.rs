//! Strict budgets: exactness across nodes, paid for with one Redis round
//! trip before sending.
//!
//! A request under a budget marked `strict` reserves its estimated cost in
//! Redis, atomically with the check: the cluster's spend, plus every
//! outstanding reservation, plus this estimate, must fit the limit.
//! Reservations are fields of one hash per owner (id → amount, day, month,
//! expiry). A reservation is released by the node's ordinary push, in the
//! same script run that adds the request's actual spend, so that no moment
//! counts neither; `HDEL` is idempotent, so a release may be sent for a
//! reservation whose answer was lost (it may or may not exist). A
//! reservation whose node died is dropped once past its expiry (the
//! request time-out and a minute), by the next reservation that reads it.
//!
//! The same per-worker client is the answer cache's shared tier
//! ([`crate::cache`]: `GET` after a local miss, `SET ... PX` after a new
//! answer), through [`Strict::call`].
//!
//! Each worker keeps its own small pool of connections and talks to Redis
//! on its own runtime: no thread hop, nothing shared between cores. A
//! reservation that gets no answer within `timeout_ms` follows `on_stale`:
//! open admits the request on the node's own view, closed refuses it.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio_rustls::TlsConnector;
use rustls_pki_types::ServerName;
use tollgate_policy::budget::{day_number, year_month};
use tollgate_policy::config::cluster::{Cluster, RedisServer};
use tollgate_protocol::resp::{self, Reply, ReplyReader};

use super::redis::{expect_ok, setup, RedisError};
use super::{redis_key, reservations_key, Window};
use crate::accounts::Accounts;
use crate::accounts::{Owner, OwnerName};
use crate::upstream::UpStream;

/// KEYS per owner: spend today, spend this month, the reservations hash.
/// ARGV: the estimate, the reservation's id, day, month and expiry, the
/// time now, then each owner's day and month limits (-1: none). Drops
/// expired reservations as it reads them. Every outstanding reservation
/// counts against this day and this month, whenever it was made: its
/// request's spend lands in the window it settles in, this one or a later
/// one (a stream reserved at 23:55 and settled after midnight is the new
/// day's spend; counted only in its own day, the old day's unused budget
/// was the new day's too). Returns `{1}` once reserved for
/// every owner, or `{0, owner, day figure, month figure}` (spend plus
/// outstanding reservations) for the first owner that cannot afford it.
const RESERVE: &str = r#"
local est = tonumber(ARGV[1])
local id, day, month, expiry = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = tonumber(ARGV[6])
local n = #KEYS / 3
for i = 0, n - 1 do
  local k = 3 * i
  local d = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
  local m = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
  local held = redis.call('HGETALL', KEYS[k + 3])
  for j = 1, #held, 2 do
    local amount, rday, rmonth, rexp = string.match(held[j + 1], '^(%d+) (%d+) (%S+) (%d+)$')
    if amount == nil or tonumber(rexp) <= now then
      redis.call('HDEL', KEYS[k + 3], held[j])
    elseif held[j] ~= id then
      m = m + tonumber(amount)
      d = d + tonumber(amount)
    end
  end
  local ld, lm = tonumber(ARGV[7 + 2 * i]), tonumber(ARGV[8 + 2 * i])
  if (ld >= 0 and (d >= ld or d + est > ld)) or (lm >= 0 and (m >= lm or m + est > lm)) then
    return {0, i, d, m}
  end
end
local value = ARGV[1] .. ' ' .. day .. ' ' .. month .. ' ' .. expiry
for i = 0, n - 1 do
  redis.call('HSET', KEYS[3 * i + 3], id, value)
  redis.call('EXPIREAT', KEYS[3 * i + 3], expiry)
end
return {1}
"#;

/// One owner under a strict budget.
pub struct StrictOwner {
    pub owner: Owner,
    pub name: OwnerName,
    /// Limits in micro-dollars.
    pub daily: Option<u64>,
    pub monthly: Option<u64>,
}

impl StrictOwner {
    pub fn new(owner: Owner, name: OwnerName, budget: &tollgate_policy::team::Budget) -> StrictOwner {
        StrictOwner { owner, name, daily: budget.daily, monthly: budget.monthly }
    }
}

/// The answer to a reservation.
pub enum Reserved {
    /// Reserved for every owner: keep the hold until the request ends.
    Held(StrictHold),
    /// `owners[index]` cannot afford it: its day and month figures
    /// (spend and outstanding reservations) in Redis.
    Refused { index: usize, day: u64, month: u64 },
    /// No answer in time: Redis may or may not have reserved. The hold
    /// releases it either way.
    Unknown(StrictHold, RedisError),
}

/// An estimate reserved in Redis; released (through the node's push) when
/// dropped, however the request ended.
pub struct StrictHold {
    accounts: Rc<Accounts>,
    /// By name: a reload meanwhile may renumber owners.
    owners: Vec<OwnerName>,
    id: String,
    expires: u64,
}

impl Drop for StrictHold {
    fn drop(&mut self) {
        for owner in self.owners.drain(..) {
            let released = crate::accounts::Released { owner, id: self.id.clone(), expires: self.expires };
            self.accounts.release(released);
        }
    }
}

/// One connection: plain or TLS, authenticated, on the right database.
struct Conn {
    stream: UpStream,
    reader: ReplyReader,
    open: Rc<Cell<usize>>,
    waiters: Rc<Waiters>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open.set(self.open.get().saturating_sub(1));
        self.waiters.wake_one();
    }
}

/// Commands waiting for a connection ([`Strict::take`]), woken one at a
/// time as a connection goes back to the pool or a slot comes free.
#[derive(Default)]
struct Waiters {
    queue: RefCell<std::collections::VecDeque<(u64, std::task::Waker)>>,
    next: Cell<u64>,
}

impl Waiters {
    fn wake_one(&self) {
        let first = self.queue.borrow_mut().pop_front();
        if let Some((_, w)) = first {
            w.wake();
        }
    }
}

/// Until [`Waiters::wake_one`] wakes this one (a wake that finds the
/// waiter gone is made up by its [`WAIT_SLICE`]).
struct Woken<'a> {
    waiters: &'a Waiters,
    id: Option<u64>,
}

impl std::future::Future for Woken<'_> {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self.id {
            // Queued: woken once it is no longer in the queue.
            Some(id) => {
                if self.waiters.queue.borrow().iter().any(|(i, _)| *i == id) {
                    std::task::Poll::Pending
                } else {
                    self.id = None;
                    std::task::Poll::Ready(())
                }
            }
            None => {
                let id = self.waiters.next.get();
                self.waiters.next.set(id + 1);
                self.waiters.queue.borrow_mut().push_back((id, cx.waker().clone()));
                self.id = Some(id);
                std::task::Poll::Pending
            }
        }
    }
}

impl Drop for Woken<'_> {
    fn drop(&mut self) {
        // Gone without being woken (its slice ran out): out of the queue.
        if let Some(id) = self.id {
            self.waiters.queue.borrow_mut().retain(|(i, _)| *i != id);
        }
    }
}

/// A worker's way to Redis for strict reservations.
pub struct Strict {
    cluster: Arc<Cluster>,
    /// Addresses resolved when the worker starts (no DNS on the request
    /// path), in the order of `cluster.servers`.
    addrs: Vec<Vec<SocketAddr>>,
    tls: Option<TlsConnector>,
    idle: RefCell<Vec<Conn>>,
    /// Connections open now, idle or in use.
    open: Rc<Cell<usize>>,
    /// Connections being opened now: counted against [`OPEN_MAX`] with
    /// the open ones, so that a burst cannot pass it by connecting at once.
    connecting: Rc<Cell<usize>>,
    /// Commands waiting for one of them.
    waiters: Rc<Waiters>,
    /// Which server to try first.
    preferred: Cell<usize>,
    /// Reservation ids: `node:start:worker:n`, unique across nodes,
    /// restarts and cores.
    id_prefix: String,
    next_id: Cell<u64>,
}

/// Connections kept per worker: a reservation takes one for one round trip.
const IDLE_MAX: usize = 8;
/// Connections a worker may hold open at once.
const OPEN_MAX: usize = 32;
/// How long a command waiting for a connection (all [`OPEN_MAX`] busy)
/// waits to be woken before it looks again: it is woken as one comes free;
/// this makes up for a wake that went to a waiter that had left. (A look
/// every millisecond, the first way, was a thousand wake-ups a second for
/// each waiter.)
const WAIT_SLICE: Duration = Duration::from_millis(10);

impl Strict {
    pub fn new(cluster: Arc<Cluster>, tls: Option<Arc<rustls::ClientConfig>>, worker: usize) -> Strict {
        let addrs = cluster
            .servers
            .iter()
            .map(|s| (s.host.as_str(), s.port).to_socket_addrs().map(Iterator::collect).unwrap_or_default())
            .collect();
        let start = crate::unix_now().as_micros();
        let id_prefix = format!("{}:{start}:{worker}:", cluster.node_id);
        let tls = tls.map(TlsConnector::from);
        Strict {
            cluster,
            addrs,
            tls,
            idle: RefCell::new(Vec::new()),
            open: Rc::new(Cell::new(0)),
            connecting: Rc::new(Cell::new(0)),
            waiters: Rc::default(),
            preferred: Cell::new(0),
            id_prefix,
            next_id: Cell::new(0),
        }
    }

    /// What every key of this deployment starts with (`{prefix}:`).
    pub fn key_prefix(&self) -> &str {
        &self.cluster.key_prefix
    }

    pub fn fails_closed(&self) -> bool {
        self.cluster.fail_closed
    }

    /// Reserves `estimate` for every owner for at most `hold` (the
    /// request's time-out), or refuses.
    pub async fn reserve(
        &self,
        accounts: &Rc<Accounts>,
        owners: &[StrictOwner],
        estimate: u64,
        hold: Duration,
        now: u64,
    ) -> Reserved {
        let day = day_number(now);
        let (y, m) = year_month(day);
        let prefix = &self.cluster.key_prefix;
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        let id = format!("{}{n}", self.id_prefix);
        let mut keys = Vec::with_capacity(owners.len() * 3);
        for o in owners {
            keys.push(redis_key(prefix, &(o.name.clone(), Window::Day(day))));
            keys.push(redis_key(prefix, &(o.name.clone(), Window::Month(y, m))));
            keys.push(reservations_key(prefix, &o.name));
        }
        let expiry = now + hold.as_secs() + 60;
        let mut numbers =
            vec![estimate.to_string(), day.to_string(), format!("{y:04}-{m:02}"), expiry.to_string(), now.to_string()];
        let limit = |l: Option<u64>| l.map_or_else(|| "-1".to_string(), |l| l.to_string());
        for o in owners {
            numbers.push(limit(o.daily));
            numbers.push(limit(o.monthly));
        }
        let numkeys = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", RESERVE.as_bytes(), numkeys.as_bytes()];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        args.push(numbers[0].as_bytes());
        args.push(id.as_bytes());
        args.extend(numbers[1..].iter().map(|n| n.as_bytes()));
        let reply = self.call(&args).await;
        let names = owners.iter().map(|o| o.name.clone()).collect();
        let mut hold = StrictHold { accounts: accounts.clone(), owners: names, id, expires: expiry };
        let items = match reply {
            Ok(Reply::Array(Some(items))) => items,
            Ok(Reply::Error(e)) => return Reserved::Unknown(hold, RedisError::Refused { command: "EVAL", reply: e }),
            Ok(other) => {
                let e = RedisError::Refused { command: "EVAL", reply: format!("unexpected reply {other:?}") };
                return Reserved::Unknown(hold, e);
            }
            Err(e) => {
                // Nothing reached Redis: nothing to release.
                if matches!(e, RedisError::Connect { .. } | RedisError::Tls(_)) {
                    hold.owners.clear();
                }
                return Reserved::Unknown(hold, e);
            }
        };
        let int = |i: usize| items.get(i).and_then(Reply::as_int).unwrap_or(0).max(0) as u64;
        if int(0) == 1 {
            return Reserved::Held(hold);
        }
        // Nothing was reserved: nothing to release.
        hold.owners.clear();
        Reserved::Refused { index: int(1) as usize, day: int(2), month: int(3) }
    }

    /// One command on a pooled connection, within the time-out. A pooled
    /// connection Redis closed meanwhile (a restart, its idle time-out) is
    /// replaced once; a connection that got an error reply is not pooled
    /// again (a replica after a failover answers READONLY to everything).
    pub async fn call(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let timeout = self.cluster.timeout;
        let work = async {
            let pooled = self.take().await;
            let from_pool = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => self.connect().await?,
            };
            let reply = match command(&mut conn, args).await {
                Err(RedisError::Io(_)) if from_pool => {
                    // Its slot is the new one's.
                    drop(conn);
                    conn = self.connect().await?;
                    command(&mut conn, args).await?
                }
                r => r?,
            };
            if matches!(reply, Reply::Error(_)) {
                self.preferred.set(self.preferred.get().wrapping_add(1));
            } else {
                let mut idle = self.idle.borrow_mut();
                if idle.len() < IDLE_MAX {
                    idle.push(conn);
                    drop(idle);
                    self.waiters.wake_one();
                }
            }
            Ok(reply)
        };
        match monoio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Io(std::io::ErrorKind::TimedOut.into())),
        }
    }

    /// An idle connection; else `None` once there is room to open one. With
    /// [`OPEN_MAX`] open or opening (a slow Redis, a burst), it waits for
    /// either, within the caller's time-out: a burst of reservations is
    /// served in turn. (Refusing at once made a reservation past the 32nd
    /// in flight an unknown one, which `on_stale = "open"` admits
    /// unreserved while Redis answers well.)
    async fn take(&self) -> Option<Conn> {
        loop {
            if let Some(c) = self.idle.borrow_mut().pop() {
                return Some(c);
            }
            if self.open.get() + self.connecting.get() < OPEN_MAX {
                return None;
            }
            let woken = Woken { waiters: &self.waiters, id: None };
            let _ = monoio::time::timeout(WAIT_SLICE, woken).await;
        }
    }

    /// A new connection: the servers in order from the last that answered
    /// well, every address of each; refused when this worker already holds
    /// [`OPEN_MAX`] (a slow Redis must not be met with a connection per
    /// waiting request: [`Strict::take`] waits for room first).
    async fn connect(&self) -> Result<Conn, RedisError> {
        if self.open.get() + self.connecting.get() >= OPEN_MAX {
            let cause = std::io::Error::other("this worker holds its most connections to Redis");
            return Err(RedisError::Connect { server: "redis".into(), cause });
        }
        // Counted until this ends, however it ends (a time-out drops it
        // mid-connect).
        struct Opening(Rc<Cell<usize>>, Rc<Waiters>);
        impl Drop for Opening {
            fn drop(&mut self) {
                self.0.set(self.0.get().saturating_sub(1));
                self.1.wake_one();
            }
        }
        self.connecting.set(self.connecting.get() + 1);
        let _opening = Opening(self.connecting.clone(), self.waiters.clone());
        let n = self.cluster.servers.len();
        let mut last = None;
        for i in 0..n {
            let at = (self.preferred.get() + i) % n;
            for &addr in &self.addrs[at] {
                match self.open(&self.cluster.servers[at], addr).await {
                    Ok(c) => {
                        self.preferred.set(at);
                        return Ok(c);
                    }
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(last.unwrap_or_else(|| RedisError::Connect {
            server: "redis".into(),
            cause: std::io::Error::other("no server address resolved when the worker started"),
        }))
    }

    async fn open(&self, server: &RedisServer, addr: SocketAddr) -> Result<Conn, RedisError> {
        let name = format!("{}:{}", server.host, server.port);
        let tcp = TcpStream::connect_addr(addr).await.map_err(|cause| RedisError::Connect { server: name, cause })?;
        let _ = tcp.set_nodelay(true);
        let stream = match (&self.tls, server.tls) {
            (Some(connector), true) => {
                let host = ServerName::try_from(server.host.clone()).map_err(|e| RedisError::Tls(e.to_string()))?;
                let s = connector.connect(host, tcp).await.map_err(|e| RedisError::Tls(crate::tls::describe(&e)))?;
                UpStream::Tls(Box::new(s))
            }
            _ => UpStream::Plain(tcp),
        };
        self.open.set(self.open.get() + 1);
        let mut conn =
            Conn { stream, reader: ReplyReader::default(), open: self.open.clone(), waiters: self.waiters.clone() };
        for (command_name, args) in setup(server, self.cluster.password.as_ref().map(|c| c.0.as_str())) {
            let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            expect_ok(command_name, command(&mut conn, &args).await?)?;
        }
        Ok(conn)
    }
}

async fn command(conn: &mut Conn, args: &[&[u8]]) -> Result<Reply, RedisError> {
    let mut out = Vec::with_capacity(256);
    resp::encode(&mut out, args);
    let (r, _) = conn.stream.write_all(out).await;
    r.map_err(RedisError::Io)?;
    conn.stream.flush().await.map_err(RedisError::Io)?;
    conn.reader.clear();
    loop {
        if let Some(reply) = conn.reader.reply().map_err(RedisError::Protocol)? {
            return Ok(reply);
        }
        let chunk = Vec::with_capacity(4096);
        let (r, chunk) = conn.stream.read(chunk).await;
        match r.map_err(RedisError::Io)? {
            0 => return Err(RedisError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            _ => conn.reader.extend(&chunk).map_err(RedisError::Protocol)?,
        }
    }
}
