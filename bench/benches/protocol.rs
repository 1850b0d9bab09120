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

fn translate(c: &mut Criterion) {
    use tollgate_protocol::anthropic::{request_from_openai, StreamTranslator};
    let mut g = c.benchmark_group("translate");
    let body = chat_body(2048);
    g.throughput(Throughput::Bytes(body.len() as u64));
    let mut out = bytes::BytesMut::with_capacity(4096);
    g.bench_function("openai_to_anthropic_request_2KB", |b| {
        b.iter(|| {
            out.clear();
            let mut scratch = body.clone();
            black_box(request_from_openai(&mut scratch, "claude-sonnet-4-5", &mut out).unwrap())
        })
    });
    // One Anthropic text delta event into one OpenAI chunk.
    let event = tollgate_protocol::sse::SseEvent {
        event: None,
        data: Bytes::from_static(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" token café"}}"#.as_bytes(),
        ),
        id: None,
        retry: None,
    };
    let mut t = StreamTranslator::new(1, false);
    g.throughput(Throughput::Elements(1));
    g.bench_function("anthropic_to_openai_stream_event", |b| {
        b.iter(|| {
            out.clear();
            t.event(black_box(&event), &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, head, chunked_decode, sse_parse, chat_scan, translate);
criterion_main!(benches);
