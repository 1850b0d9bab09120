//! Guardrail scanning: throughput on clean English and on text dense with
//! personal data, and the whole request step (walk the JSON, scan every
//! text, decide) on a typical 2 KB chat request, clean and with
//! redactions; and the built-in injection model's score.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate_engine::proxy::guard::check_request;
use tollgate_policy::guard::{injection, Action, Detector, Direction, Findings, Guard, ProfileSpec};

/// Every detector on, as the bundled default profile has them.
fn guard() -> Guard {
    let mut spec =
        ProfileSpec { name: "bench".into(), injection_threshold: injection::THRESHOLD, ..Default::default() };
    for d in Detector::ALL {
        spec.actions[d as usize] = Some(match d.category() {
            tollgate_policy::guard::Category::Pii => Action::Redact,
            _ => Action::Block,
        });
    }
    Guard::compile(&spec).expect("profile")
}

/// Ordinary English prose, with the odd number, as prompts carry it.
/// Japanese and Chinese prose with its own punctuation.
const CJK: &str = "四半期のレビューは全体的に順調でした。新しいオンボーディングの流れを出荷し、設定にかかる時間が半分になったと顧客から聞きました。\
    我们的团队发布了新的入门流程，客户告诉我们设置时间缩短了一半。下个季度我们希望改进搜索功能，并编写更好的文档。";

/// Russian prose, with “quotes” and a dash — characters the injection
/// scan's look-alike pass has to walk past.
const RUSSIAN: &str = "Квартальный обзор прошёл хорошо — команда выпустила новый процесс «регистрации», \
    и клиенты говорят, что настройка теперь занимает вдвое меньше времени. ";

use tollgate_bench::GUARD_PROSE as PROSE;

/// A sentence with an e-mail, a phone number, a card and an IP address.
const DENSE: &str = "Reach jane.doe@example.com or +1 415 555 2671; card 4111 1111 1111 1111 from 203.0.113.42. ";

fn text(unit: &str, bytes: usize) -> Vec<u8> {
    unit.repeat(bytes / unit.len() + 1).into_bytes()[..bytes].to_vec()
}

fn scan(c: &mut Criterion) {
    let g = guard();
    let mut group = c.benchmark_group("guard_scan");
    for (name, unit) in [("clean_english", PROSE), ("pii_dense", DENSE), ("clean_cjk", CJK), ("clean_russian", RUSSIAN)]
    {
        let t = text(unit, 64 * 1024);
        group.throughput(Throughput::Bytes(t.len() as u64));
        group.bench_function(name, |b| {
            let mut f = Findings::default();
            b.iter(|| {
                f.clear();
                g.scan(black_box(&t), Direction::Request, true, &mut f);
                f.file(0);
                black_box(f.all.len())
            })
        });
    }
    group.finish();
}

/// Clean English through one family of detectors at a time: where the
/// scan's time goes.
fn by_family(c: &mut Criterion) {
    let t = text(PROSE, 64 * 1024);
    let mut group = c.benchmark_group("guard_scan_family");
    group.throughput(Throughput::Bytes(t.len() as u64));
    for family in [
        tollgate_policy::guard::Category::Pii,
        tollgate_policy::guard::Category::Secrets,
        tollgate_policy::guard::Category::Injection,
    ] {
        let mut spec =
            ProfileSpec { name: "f".into(), injection_threshold: injection::THRESHOLD, ..Default::default() };
        for d in Detector::ALL.into_iter().filter(|d| d.category() == family) {
            spec.actions[d as usize] = Some(Action::Flag);
        }
        let g = Guard::compile(&spec).expect("profile");
        group.bench_function(format!("{family:?}"), |b| {
            let mut f = Findings::default();
            b.iter(|| {
                f.clear();
                g.scan(black_box(&t), Direction::Request, true, &mut f);
                black_box(f.hits.len())
            })
        });
    }
    group.finish();
}

fn request(c: &mut Criterion) {
    let g = guard();
    let body = |user: &str| {
        let v = format!(
            r#"{{"model":"gpt-4o-mini","messages":[{{"role":"system","content":"You are a helpful assistant for the product team."}},{{"role":"user","content":"{user}"}}]}}"#
        );
        Bytes::from(v)
    };
    let clean = body(&PROSE.repeat(4)[..1900]);
    let dirty = body(&format!("{}{}", &PROSE.repeat(4)[..1800], DENSE));
    assert!(clean.len() > 1900 && clean.len() < 2200);
    // The prompt-size workload's bodies, as the gateway's benchmarks send
    // them (mixed prose, code, CJK and personal data).
    let prompt = |file: &str| {
        Bytes::from(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/").to_owned() + file).expect(file))
    };
    let (mixed8, mixed100) = (prompt("mixed-8192.json"), prompt("mixed-102400.json"));
    let mut group = c.benchmark_group("guard_request");
    for (name, b) in
        [("2KB_clean", &clean), ("2KB_with_pii", &dirty), ("mixed_8KB", &mixed8), ("mixed_100KB", &mixed100)]
    {
        group.throughput(Throughput::Bytes(b.len() as u64));
        group.bench_function(name, |bench| {
            let (mut hits, mut features) = (Vec::new(), Vec::new());
            // The core's room, lent to every request as the gateway does.
            let mut room = tollgate_engine::proxy::guard::ScanRoom::default();
            bench.iter(|| {
                hits.clear();
                features.clear();
                let checked =
                    check_request("bench", &g, black_box(b), (&mut hits, &mut features), (&mut room, None), None);
                black_box(checked.map(|r| r.is_some()).unwrap_or(false))
            })
        });
    }
    group.finish();
}

/// The built-in injection model (`kind = "builtin"` classifiers) on the
/// 8 KiB a classifier is given by default: a pass over the words, their
/// buckets marked in a per-thread bitset, a sum.
fn model(c: &mut Criterion) {
    let m = tollgate_policy::guard::model::Model::injection();
    let mut group = c.benchmark_group("injection_model");
    for (name, unit) in [("english", PROSE), ("cjk", CJK), ("russian", RUSSIAN)] {
        let t = text(unit, 8 * 1024);
        group.throughput(Throughput::Bytes(t.len() as u64));
        group.bench_function(name, |b| b.iter(|| black_box(m.score(black_box(&t)))));
    }
    group.finish();
}

criterion_group!(benches, scan, by_family, request, model);
criterion_main!(benches);
