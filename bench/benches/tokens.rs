//! Token counting: the gateway's counter (its per-thread piece cache warm,
//! as on a worker, and with every piece merged) against `bpe-openai` (the
//! counter it replaced) and `tiktoken-rs`, on 8 KB of prose, code, CJK and
//! JSON tool schemas, and on the few-character deltas a stream carries;
//! then the gateway's whole prompt count of a 2 KB chat request.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate_protocol::tokens::{prompt_tokens, Encoding};

const PROSE: &str = "The quarterly review went well overall. Our team shipped the new onboarding flow, \
    and customers told us the setup now takes about half the time it used to. Support tickets about \
    passwords dropped after we added the reset link to the login page. Next quarter we want to improve \
    search, reduce the time it takes to load large reports, and write better documentation. ";

/// About `n` bytes of `text`, cut at a character boundary.
fn cut(text: &str, n: usize) -> String {
    let mut end = n.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// 8 KB of each kind, from texts this project did not write where the
/// machine has them (the GPL's text, the memchr crate's sources, the
/// generated CJK of the guardrail corpus, the tool schemas of the
/// prompt-size workload).
fn kinds() -> Vec<(&'static str, String)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let prose = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").unwrap_or_else(|_| PROSE.repeat(40));
    let code = std::fs::read_to_string(format!("{root}/protocol/src/json.rs")).expect("the repository's own code");
    let corpus = std::fs::read_to_string(format!("{root}/tests/guardrails/faker.jsonl")).expect("the faker corpus");
    let cjk: String = corpus
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .filter(|t| t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3040}'..='\u{30ff}').contains(&c)))
        .collect::<Vec<_>>()
        .join("\n");
    let tools = std::fs::read_to_string(format!("{root}/bench/prompts/tools-8192.json")).expect("the tools prompt");
    [("prose", prose), ("code", code), ("cjk", cjk), ("json", tools)]
        .into_iter()
        .map(|(k, t)| (k, cut(&t.repeat(8192 / t.len().max(1) + 1), 8192)))
        .collect()
}

fn compare(c: &mut Criterion) {
    let bpe = bpe_openai::o200k_base();
    let tik = tiktoken_rs::o200k_base().expect("o200k");
    let e = Encoding::O200kBase;
    for (kind, text) in kinds() {
        let want = tik.encode_ordinary(&text).len();
        assert_eq!(e.count(&text) as usize, want, "{kind}");
        assert_eq!(bpe.count(text.as_str()), want, "{kind}");
        let mut g = c.benchmark_group(format!("count_8KB_{kind}_o200k"));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("tollgate", |b| b.iter(|| black_box(e.count(black_box(&text)))));
        g.bench_function("tollgate-uncached", |b| b.iter(|| black_box(e.count_uncached(black_box(&text)))));
        g.bench_function("bpe-openai", |b| b.iter(|| black_box(bpe.count(black_box(text.as_str())))));
        g.bench_function("tiktoken-rs", |b| b.iter(|| black_box(tik.encode_ordinary(black_box(&text)).len())));
        g.finish();
    }
    let deltas: Vec<&str> = PROSE.split_inclusive(' ').collect();
    let mut g = c.benchmark_group("count_stream_deltas_o200k");
    g.throughput(Throughput::Elements(deltas.len() as u64));
    g.bench_function("tollgate", |b| b.iter(|| deltas.iter().map(|d| e.count(black_box(d))).sum::<u64>()));
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
