//! The accounting step of one request, without tokenization: the team's
//! and the key's budgets checked against their spend, their rate limits
//! against the minute's use (with the answer's `x-ratelimit-*` headroom),
//! and the finished request counted on its core (cost from the provider's
//! usage at the model's price, spend, the minute's tokens, the counters and
//! the latency histogram), as `engine::conn` and `engine::stats` do it.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tollgate_engine::record::{RequestId, TokenUsage, Trace};
use tollgate_engine::stats::CoreStats;
use tollgate_engine::upstream::Resolved;
use tollgate_engine::worker::CoreState;
use tollgate_policy::budget::{check as budget_check, Spend};
use tollgate_policy::config::{Env, ProcessEnv};
use tollgate_policy::keys::{hash_key, hex};
use tollgate_policy::ratelimit::{check as rate_check, Headroom};
use tollgate_policy::Config;

fn accounting(c: &mut Criterion) {
    let hash = hex(&hash_key(b"tg-bench-key"));
    let text = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[models]]\nname = \"gpt-4o-mini\"\ntargets = [{{ provider = \"up\" }}]\nprice = {{ input_per_mtok = 0.15, output_per_mtok = 0.60 }}\n\
         [[teams]]\nname = \"t\"\nmodels = [\"*\"]\nbudget = {{ daily_usd = 100.0, monthly_usd = 1000.0 }}\n\
         rate_limit = {{ requests_per_minute = 1000, tokens_per_minute = 1000000 }}\n\
         [[keys]]\nname = \"k\"\nteam = \"t\"\nsha256 = \"{hash}\"\nbudget = {{ daily_usd = 10.0 }}\n\
         rate_limit = {{ requests_per_minute = 100 }}\n"
    );
    let config = Config::parse("bench.toml", &text, &ProcessEnv as &dyn Env).expect("bench config");
    let resolved = vec![Resolved { addr: "127.0.0.1:9".parse().unwrap(), roots: None }];
    let state = CoreState::build(Arc::new(config), &resolved, None, None);
    let stats = CoreStats::default();
    let key = &state.config.keys.all()[0];
    let team = &state.config.teams[0];
    let now = 1_800_000_000u64;
    let spend = Spend { day: 1_234_567, month: 45_678_901 };
    c.bench_function("accounting_per_request", |b| {
        b.iter(|| {
            let team_ok = budget_check(|| "team".into(), &team.budget, black_box(spend), 0, now);
            let key_ok = budget_check(|| "key".into(), &key.budget, black_box(spend), 0, now);
            let mut headroom = Headroom::default();
            let r1 = rate_check(|| "team".into(), &team.rate_limit, 10, 5_000, 0, now * 1000);
            headroom.tighten(&team.rate_limit, 11, 5_000);
            let r2 = rate_check(|| "key".into(), &key.rate_limit, 3, 5_000, 0, now * 1000);
            headroom.tighten(&key.rate_limit, 4, 5_000);
            let mut trace = Trace::new(RequestId { epoch: 1, worker: 0, seq: 1 });
            trace.key = Some(key);
            trace.route = Some(0);
            trace.served_by = Some(0);
            trace.status = 200;
            trace.usage = Some(TokenUsage { prompt: 120, completion: 40, cached: 0 });
            stats.count(&trace, &state);
            black_box((team_ok.is_ok(), key_ok.is_ok(), r1.is_ok(), r2.is_ok(), headroom))
        })
    });
}

/// Producing one request record on the request path: rendering its JSON
/// line into the core's buffer, and the hand-off of full 64 KiB batches to
/// the writer thread (here a thread that drops them).
fn record(c: &mut Criterion) {
    let hash = hex(&hash_key(b"tg-bench-key"));
    let text = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[models]]\nname = \"gpt-4o-mini\"\ntargets = [{{ provider = \"up\" }}]\nprice = {{ input_per_mtok = 0.15, output_per_mtok = 0.60 }}\n\
         [[teams]]\nname = \"search\"\nmodels = [\"*\"]\n[[keys]]\nname = \"search-prod\"\nteam = \"search\"\nsha256 = \"{hash}\"\n"
    );
    let config = Config::parse("bench.toml", &text, &ProcessEnv as &dyn Env).expect("bench config");
    let resolved = vec![Resolved { addr: "127.0.0.1:9".parse().unwrap(), roots: None }];
    let state = CoreState::build(Arc::new(config), &resolved, None, None);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || for _ in rx {});
    let recorder = tollgate_engine::record::Recorder::new(0, Some(tx));
    let key = &state.config.keys.all()[0];
    c.bench_function("record_per_request", |b| {
        b.iter(|| {
            let mut trace = Trace::new(recorder.next_id());
            trace.key = Some(key);
            trace.route = Some(0);
            trace.attempt(0, trace.started, Ok(200));
            trace.served_by = Some(0);
            trace.status = 200;
            trace.stream = true;
            trace.usage = Some(TokenUsage { prompt: 120, completion: 40, cached: 0 });
            trace.bytes_in = 812;
            trace.bytes_out = 2_304;
            recorder.record(black_box(&trace), &state);
        })
    });
}

criterion_group!(benches, accounting, record);
criterion_main!(benches);
