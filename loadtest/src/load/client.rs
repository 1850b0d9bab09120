//! One load-generator connection: send a request, read the whole answer
//! (Content-Length, chunked or close-delimited), and time its SSE events.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use tollgate_protocol::http1::{BodyFraming, ChunkedDecoder, HeadScan, LengthDecoder, ResponseHead};
use tollgate_protocol::sse::SseParser;

const READ_BYTES: usize = 16 * 1024;
const HEAD_BYTES_MAX: usize = 64 * 1024;

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

/// One request and its answer.
pub struct Exchange {
    pub status: u16,
    /// When the first SSE event arrived, for event streams.
    pub first_event: Option<Instant>,
    /// Gaps between consecutive SSE events.
    pub gaps: Vec<std::time::Duration>,
    /// The connection can carry the next request.
    pub reusable: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_addr(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, buf: BytesMut::with_capacity(READ_BYTES) })
    }

    /// Reads after the buffered bytes (monoio reads into a `BytesMut` from
    /// its start, hence `slice_mut`); false on EOF or error.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(READ_BYTES);
        let len = self.buf.len();
        let (res, slice) = self.stream.read(std::mem::take(&mut self.buf).slice_mut(len..)).await;
        self.buf = slice.into_inner();
        matches!(res, Ok(n) if n > 0)
    }

    pub async fn exchange(&mut self, request: &Bytes) -> Result<Exchange, ()> {
        let (res, _) = self.stream.write_all(request.clone()).await;
        res.map_err(|_| ())?;
        let mut scan = HeadScan::default();
        let head_len = loop {
            if let Some(n) = scan.find_end(&self.buf) {
                break n;
            }
            if self.buf.len() > HEAD_BYTES_MAX || !self.fill().await {
                return Err(());
            }
        };
        let head = ResponseHead::parse(self.buf.split_to(head_len).freeze(), false).map_err(|_| ())?;
        let sse = head.header(b"content-type").is_some_and(|v| v.starts_with(b"text/event-stream"));
        let mut ex = Exchange { status: head.status, first_event: None, gaps: Vec::new(), reusable: head.keep_alive };
        let mut events = sse.then(|| SseParser::new(1 << 20));
        let mut last_event: Option<Instant> = None;
        let mut on_data = |data: Bytes, ex: &mut Exchange| {
            let Some(parser) = events.as_mut() else { return };
            parser.push(data);
            while let Ok(Some(_)) = parser.next_event() {
                let now = Instant::now();
                match last_event {
                    None => ex.first_event = Some(now),
                    Some(prev) => ex.gaps.push(now - prev),
                }
                last_event = Some(now);
            }
        };
        match head.framing {
            BodyFraming::Empty => {}
            BodyFraming::Length(n) => {
                let mut d = LengthDecoder::new(n);
                loop {
                    let p = d.decode(&self.buf);
                    on_data(self.buf.split_to(p.consumed).freeze(), &mut ex);
                    if p.done {
                        break;
                    }
                    if !self.fill().await {
                        return Err(());
                    }
                }
            }
            BodyFraming::Chunked => {
                let mut d = ChunkedDecoder::new();
                loop {
                    let mut ranges = Vec::new();
                    let p = d.decode(&self.buf, |r| ranges.push(r)).map_err(|_| ())?;
                    let raw = self.buf.split_to(p.consumed).freeze();
                    for r in ranges {
                        on_data(raw.slice(r), &mut ex);
                    }
                    if p.done {
                        break;
                    }
                    if !self.fill().await {
                        return Err(());
                    }
                }
            }
            BodyFraming::CloseDelimited => {
                ex.reusable = false;
                loop {
                    let data = self.buf.split().freeze();
                    on_data(data, &mut ex);
                    if !self.fill().await {
                        break;
                    }
                }
            }
        }
        ex.reusable &= self.buf.is_empty();
        Ok(ex)
    }
}
