//! Token counting: `bpe-openai` against `tiktoken-rs` on the same texts (a
//! 2 KB prompt, and the few-character deltas a stream carries), and the
//! gateway's whole prompt count of a 2 KB chat request.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate_protocol::tokens::{prompt_tokens, Encoding};

const PROSE: &str = "The quarterly review went well overall. Our team shipped the new onboarding flow, \
    and customers told us the setup now takes about half the time it used to. Support tickets about \
    passwords dropped after we added the reset link to the login page. Next quarter we want to improve \
    search, reduce the time it takes to load large reports, and write better documentation. ";

fn compare(c: &mut Criterion) {
    let text: String = PROSE.repeat(8)[..2048].to_string();
    let bpe = bpe_openai::o200k_base();
    let tik = tiktoken_rs::o200k_base().expect("o200k");
    assert_eq!(bpe.count(text.as_str()), tik.encode_ordinary(&text).len());
    let mut g = c.benchmark_group("count_2KB_o200k");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("bpe-openai", |b| b.iter(|| black_box(bpe.count(black_box(text.as_str())))));
    g.bench_function("tiktoken-rs", |b| b.iter(|| black_box(tik.encode_ordinary(black_box(&text)).len())));
    g.finish();
    let deltas: Vec<&str> = PROSE.split_inclusive(' ').collect();
    let mut g = c.benchmark_group("count_stream_deltas_o200k");
    g.throughput(Throughput::Elements(deltas.len() as u64));
    g.bench_function("bpe-openai", |b| b.iter(|| deltas.iter().map(|d| bpe.count(black_box(*d))).sum::<usize>()));
    g.bench_function("tiktoken-rs", |b| {
        b.iter(|| deltas.iter().map(|d| tik.encode_ordinary(black_box(d)).len()).sum::<usize>())
    });
    g.finish();
}

fn prompt(c: &mut Criterion) {
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a helpful assistant."}},{{"role":"user","content":"{}"}}]}}"#,
        &PROSE.repeat(8)[..1900]
    );
    c.bench_function("prompt_tokens_2KB_request", |b| {
        b.iter(|| black_box(prompt_tokens(Encoding::O200kBase, black_box(body.as_bytes()))))
    });
}

criterion_group!(benches, compare, prompt);
criterion_main!(benches);
