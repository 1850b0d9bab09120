//! Owned-buffer IO helpers. Vectored writes of [`Bytes`] slices: how the
//! engine sends a head and the body slices it borrowed from a read buffer in
//! one `writev`, without copying the body. The only `unsafe` in the engine's
//! IO path lives here. And appending reads, which monoio does not do by
//! itself.

use bytes::{Buf, Bytes, BytesMut};
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelHandle, CancelableAsyncReadRent};
use monoio::BufResult;

/// Reads into the spare capacity of `buf`, after the bytes it holds.
///
/// monoio reads into a `BytesMut` from its *start*: the unread bytes of a
/// head split across reads would be overwritten. Reading into
/// `slice_mut(len..)` appends instead. Call `buf.reserve` first.
pub async fn read_more<S: AsyncReadRent>(stream: &mut S, buf: &mut BytesMut) -> std::io::Result<usize> {
    let len = buf.len();
    let (res, slice) = stream.read(std::mem::take(buf).slice_mut(len..)).await;
    *buf = slice.into_inner();
    res
}

/// [`read_more`] that a drain can cancel.
pub async fn read_more_cancelable<S: CancelableAsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    cancel: CancelHandle,
) -> std::io::Result<usize> {
    let len = buf.len();
    let (res, slice) = stream.cancelable_read(std::mem::take(buf).slice_mut(len..), cancel).await;
    *buf = slice.into_inner();
    res
}

/// Linux's IOV_MAX.
const IOV_MAX: usize = 1024;

/// An ordered list of slices to write, with its iovec table. Owned, so that
/// io_uring can hold it while the kernel reads from it.
#[derive(Default)]
pub struct IoSlices {
    bufs: Vec<Bytes>,
    iov: Vec<libc::iovec>,
}

impl IoSlices {
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.bufs.push(b);
        }
    }

    pub fn len(&self) -> usize {
        self.bufs.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Drops what is waiting to be written (a request stopped mid-answer).
    pub fn clear(&mut self) {
        self.bufs.clear();
        self.iov.clear();
    }

    fn rebuild(&mut self) {
        self.iov.clear();
        // writev refuses more than IOV_MAX entries with EINVAL; the rest go
        // in the next call, as after any partial write.
        self.iov.extend(
            self.bufs.iter().take(IOV_MAX).map(|b| libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }),
        );
    }

    /// Drops the first `n` bytes after a partial write.
    fn consume(&mut self, mut n: usize) {
        let mut done = 0;
        for b in &mut self.bufs {
            if n >= b.len() {
                n -= b.len();
                done += 1;
            } else {
                b.advance(n);
                break;
            }
        }
        self.bufs.drain(..done);
    }
}

// SAFETY: `iov` is rebuilt from `bufs` before every submission and `bufs`
// is not touched while the runtime owns the value; each iovec points into
// the heap (or static) storage of a `Bytes`, which does not move when the
// `IoSlices` value itself is moved.
unsafe impl IoVecBuf for IoSlices {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len()
    }
}

/// A stream that slices are written to. TLS streams want one buffer:
/// monoio-rustls turns each slice of a `writev` into its own record and
/// syscall, and encrypting copies the bytes anyway, so joining the slices
/// first costs one copy and saves a record and a syscall per slice.
pub trait Sink: AsyncWriteRent {
    fn wants_one_buffer(&self) -> bool {
        false
    }
}

impl Sink for monoio::net::TcpStream {}

/// A TCP stream, plain or inside TLS: an upstream connection (`T`, a
/// client session) or a client's (a server session).
pub enum MaybeTls<T> {
    Plain(monoio::net::TcpStream),
    Tls(Box<T>),
}

impl<T: AsyncWriteRent> Sink for MaybeTls<T> {
    fn wants_one_buffer(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl<T: AsyncReadRent> AsyncReadRent for MaybeTls<T> {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            MaybeTls::Plain(s) => s.read(buf).await,
            MaybeTls::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<B: IoVecBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            MaybeTls::Plain(s) => s.readv(buf).await,
            MaybeTls::Tls(s) => s.readv(buf).await,
        }
    }
}

impl<T: AsyncWriteRent> AsyncWriteRent for MaybeTls<T> {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            MaybeTls::Plain(s) => s.write(buf).await,
            MaybeTls::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<B: IoVecBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            MaybeTls::Plain(s) => s.writev(buf).await,
            MaybeTls::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.flush().await,
            MaybeTls::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            MaybeTls::Plain(s) => s.shutdown().await,
            MaybeTls::Tls(s) => s.shutdown().await,
        }
    }
}

/// Writes every slice, resuming after partial writes, and gives up at
/// `deadline`, or when one write takes no byte for `idle` (a peer that
/// stops reading must not hold a connection, its worker's slot and the
/// answer's buffers, until the request's own time runs out). The list
/// comes back empty, for reuse (or, after a time-out, new).
pub async fn write_all_until<S: Sink>(
    stream: &mut S,
    slices: &mut IoSlices,
    deadline: std::time::Instant,
    idle: std::time::Duration,
) -> std::io::Result<()> {
    let mut own = std::mem::take(slices);
    if own.bufs.len() > 1 && stream.wants_one_buffer() {
        let mut flat = BytesMut::with_capacity(own.len());
        for b in own.bufs.drain(..) {
            flat.extend_from_slice(&b);
        }
        own.bufs.push(flat.freeze());
    }
    let result = loop {
        if own.bufs.is_empty() {
            break Ok(());
        }
        own.rebuild();
        // One clock read for both limits (`timeout` would read it again).
        // (`idle` may be "never": `Duration::MAX`.)
        let until = std::time::Instant::now().checked_add(idle).map_or(deadline, |t| t.min(deadline));
        // On a time-out the write's future, and the list it owns, are
        // dropped (io_uring keeps the buffers until the kernel is done).
        // Awaited through a pin: `.await` on the value copies it (1.5 KB).
        let Ok((res, back)) = std::pin::pin!(monoio::time::timeout_at(until.into(), stream.writev(own))).await else {
            return Err(std::io::ErrorKind::TimedOut.into());
        };
        own = back;
        match res {
            Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => own.consume(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    own.bufs.clear();
    own.iov.clear();
    *slices = own;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the helper exists for: a second read lands after the first.
    #[test]
    fn reads_append() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
        rt.block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let client = monoio::spawn(async move {
                let mut s = monoio::net::TcpStream::connect(addr).await.unwrap();
                for piece in [&b"GET / HT"[..], b"TP/1.1\r\n"] {
                    let (r, _) = monoio::io::AsyncWriteRentExt::write_all(&mut s, piece).await;
                    r.unwrap();
                    monoio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            });
            let (mut server, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::with_capacity(64);
            while buf.len() < 16 {
                buf.reserve(64);
                assert!(read_more(&mut server, &mut buf).await.unwrap() > 0);
            }
            assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
            client.await;
        });
    }

    #[test]
    fn at_most_iov_max_entries_per_writev() {
        let mut s = IoSlices::default();
        for _ in 0..IOV_MAX + 10 {
            s.push(Bytes::from_static(b"x"));
        }
        s.rebuild();
        assert_eq!(s.iov.len(), IOV_MAX);
        s.consume(IOV_MAX);
        s.rebuild();
        assert_eq!(s.iov.len(), 10);
    }

    #[test]
    fn consume_advances_across_slices() {
        let mut s = IoSlices::default();
        s.push(Bytes::from_static(b"abc"));
        s.push(Bytes::new());
        s.push(Bytes::from_static(b"defg"));
        assert_eq!(s.len(), 7);
        s.consume(4);
        assert_eq!(s.bufs, vec![Bytes::from_static(b"efg")]);
        s.consume(3);
        assert!(s.is_empty());
    }
}
