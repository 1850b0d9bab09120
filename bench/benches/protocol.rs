//! The protocol stages on the request path: finding and parsing a head,
//! decoding a chunked body, parsing SSE, and scanning a chat body.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate_bench::{chat_body, chunked, sse_stream, CHAT_HEAD};
use tollgate_protocol::http1::{find_head_end, ChunkedDecoder, HeadLimits, RequestHead};
use tollgate_protocol::openai::scan_request;
use tollgate_protocol::sse::SseParser;

fn head(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_head");
    g.throughput(Throughput::Bytes(CHAT_HEAD.len() as u64));
    let head = Bytes::from_static(CHAT_HEAD);
    let limits = HeadLimits::default();
    g.bench_function("find_end+parse", |b| {
        b.iter(|| {
            let n = find_head_end(black_box(&head)).unwrap();
            let h = RequestHead::parse(head.slice(..n), &limits).unwrap();
            black_box(h.framing)
        })
    });
    g.finish();
}

fn chunked_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunked_decode");
    let payload = sse_stream(64);
    for chunk in [64usize, 1024, 16384] {
        let wire = chunked(&payload, chunk);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("{chunk}B_chunks"), |b| {
            b.iter(|| {
                let mut d = ChunkedDecoder::new();
                let mut data = 0usize;
                let p = d.decode(black_box(&wire), |r| data += r.len()).unwrap();
                assert!(p.done);
                black_box(data)
            })
        });
    }
    g.finish();
}

fn sse_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse_parse");
    let stream = Bytes::from(sse_stream(64));
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("whole", |b| {
        b.iter(|| {
            let mut p = SseParser::new(1 << 20);
            p.push(stream.clone());
            let mut n = 0;
            while let Some(ev) = p.next_event().unwrap() {
                n += ev.data.len();
            }
            black_box(n)
        })
    });
    g.bench_function("split_every_100B", |b| {
        b.iter(|| {
            let mut p = SseParser::new(1 << 20);
            let mut n = 0;
            let mut at = 0;
            while at < stream.len() {
                let end = (at + 100).min(stream.len());
                p.push(stream.slice(at..end));
                while let Some(ev) = p.next_event().unwrap() {
                    n += ev.data.len();
                }
                at = end;
            }
            black_box(n)
        })
    });
    g.finish();
}

fn chat_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat_scan");
    for size in [256usize, 2048, 32768] {
        let body = chat_body(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{size}B"), |b| b.iter(|| black_box(scan_request(black_box(&body)).unwrap())));
    }
    g.finish();
}

criterion_group!(benches, head, chunked_decode, sse_parse, chat_scan);
criterion_main!(benches);
