//! The whole governed pipeline in memory, every policy on: a request's
//! bytes to what goes upstream, and an answer stream's bytes to what the
//! client gets (`tollgate_bench::pipeline`).

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tollgate_bench::pipeline::{iterate, world};

fn pipeline(c: &mut Criterion) {
    let w = world();
    let mut out = BytesMut::new();
    c.bench_function("governed_pipeline_2KB_request_20_event_stream", |b| b.iter(|| black_box(iterate(&w, &mut out))));
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
