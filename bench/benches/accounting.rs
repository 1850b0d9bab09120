//! The accounting step of one request, without tokenization: the engine's
//! own phases (`pipeline::before_body`: the key, the team's and the key's
//! budgets against their spend, their rate limits against the minute's
//! use, with the answer's `x-ratelimit-*` headroom) and the finished
//! request settled on its core (`pipeline::settle`: cost from the
//! provider's usage at the model's price, spend, the minute's tokens, the
//! counters and the latency histogram).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tollgate_engine::accounts::Accounts;
use tollgate_engine::pipeline::{self, Core, Exchange};
use tollgate_engine::proxy::Front;
use tollgate_engine::record::{Recorder, TokenUsage, Trace};
use tollgate_engine::state::CoreState;
use tollgate_engine::stats::CoreStats;
use tollgate_engine::upstream::Resolved;
use tollgate_policy::config::{Env, ProcessEnv};
use tollgate_policy::keys::{hash_key, hex};
use tollgate_policy::Config;
use tollgate_protocol::http1::{HeadLimits, RequestHead};

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
    let resolved = vec![Resolved { addr: "127.0.0.1:9".parse().unwrap(), roots: None, role: None }];
    let state = CoreState::build(Arc::new(config), &resolved, None, None);
    let stats = CoreStats::default();
    let accounts = Rc::new(Accounts::new(0, None));
    let recorder = Recorder::new(0, None);
    let cut = tollgate_engine::cut::Cut::default();
    let cache = std::cell::RefCell::new(tollgate_engine::cache::Store::new(0));
    let runs = std::sync::Arc::new(tollgate_engine::runs::Runs::with_capacity(1024));
    let turns = std::sync::Arc::new(tollgate_engine::turns::Turns::new(0, Duration::ZERO));
    let core = Core {
        state: &state,
        accounts: &accounts,
        stats: &stats,
        recorder: &recorder,
        strict: None,
        draining: false,
        cut: &cut,
        cache: &cache,
        cache_share: 1,
        runs: &runs,
        turns: &turns,
    };
    let head = Bytes::from_static(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tg-bench-key\r\nContent-Length: 2\r\n\r\n",
    );
    let limits = HeadLimits { head_bytes_max: 16 * 1024, uri_bytes_max: 8 * 1024 };
    c.bench_function("accounting_per_request", |b| {
        b.iter(|| {
            let head = RequestHead::parse(head.clone(), &limits).expect("head");
            let mut ex = Exchange::new(head, Front::OpenAi, recorder.next_id(), true, Duration::from_secs(900));
            let admitted = pipeline::before_body(&mut ex, &core);
            ex.trace.route = Some(0);
            ex.trace.served_by = Some(0);
            ex.trace.status = 200;
            ex.trace.usage = Some(TokenUsage { prompt: 120, completion: 40, ..TokenUsage::default() });
            pipeline::settle(&core, &ex.trace);
            black_box((admitted.is_ok(), ex.reply.rate))
        })
    });
    // Budgets of $100 a day and 1,000 requests a minute: a long run spends
    // them; past them the phases refuse, which costs the same checks.
}

/// A core's state with one priced model and team `search`'s key
/// `search-prod`: what a record and its spans name.
fn one_team_state() -> CoreState {
    let hash = hex(&hash_key(b"tg-bench-key"));
    let text = format!(
        "[[providers]]\nname = \"up\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [[models]]\nname = \"gpt-4o-mini\"\ntargets = [{{ provider = \"up\" }}]\nprice = {{ input_per_mtok = 0.15, output_per_mtok = 0.60 }}\n\
         [[teams]]\nname = \"search\"\nmodels = [\"*\"]\n[[keys]]\nname = \"search-prod\"\nteam = \"search\"\nsha256 = \"{hash}\"\n"
    );
    let config = Config::parse("bench.toml", &text, &ProcessEnv as &dyn Env).expect("bench config");
    let resolved = vec![Resolved { addr: "127.0.0.1:9".parse().unwrap(), roots: None, role: None }];
    CoreState::build(Arc::new(config), &resolved, None, None)
}

/// A streamed chat request served by the first target: the trace both
/// the record and the spans benchmarks write out.
fn served_trace<'s>(recorder: &Recorder, key: &'s tollgate_policy::VirtualKey) -> Trace<'s> {
    let mut trace = Trace::new(recorder.next_id());
    trace.operation = "chat";
    trace.key = Some(key);
    trace.route = Some(0);
    trace.attempt(0, trace.started, Ok(200));
    trace.served_by = Some(0);
    trace.status = 200;
    trace.stream = true;
    trace.usage = Some(TokenUsage { prompt: 120, completion: 40, ..TokenUsage::default() });
    trace.bytes_in = 812;
    trace.bytes_out = 2_304;
    trace
}

/// Producing one request record on the request path: rendering its JSON
/// line into the core's buffer, and the hand-off of full 64 KiB batches to
/// the writer thread (here a thread that drops them).
fn record(c: &mut Criterion) {
    let state = one_team_state();
    let recorder = Recorder::new(0, Some(tollgate_engine::logwriter::dropping_line()));
    let key = &state.config.keys.all()[0];
    c.bench_function("record_per_request", |b| {
        b.iter(|| {
            let trace = served_trace(&recorder, key);
            recorder.record(black_box(&trace), &state.config);
        })
    });
}

/// With `[telemetry]`: one traced request's spans encoded on the request
/// path (the request's and its attempt's, OTLP protobuf with GenAI
/// attributes), and its trace context taken from the client's
/// `traceparent`; the buffer is emptied as a hand-off would.
fn spans(c: &mut Criterion) {
    let state = one_team_state();
    let recorder = Recorder::new(0, None);
    let key = &state.config.keys.all()[0];
    let traceparent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut out = bytes::BytesMut::with_capacity(64 * 1024);
    c.bench_function("spans_per_request", |b| {
        b.iter(|| {
            let trace = served_trace(&recorder, key);
            let ctx =
                tollgate_engine::trace_context::Context::start(Some(black_box(&traceparent[..])), 1.0, &state.rng);
            let n =
                tollgate_engine::otel::spans::write(&trace, &ctx, &state.config, 1_795_400_000_000_000_000, &mut out);
            if out.len() >= 64 * 1024 {
                out.clear();
            }
            black_box(n)
        })
    });
}

/// With `[clickhouse]`: one record line turned into its table row on the
/// ClickHouse thread (off the workers: this bounds the records per second
/// one such thread keeps up with).
fn clickhouse_row(c: &mut Criterion) {
    let line = br#"{"id":"tg-19a3c-0-1234","ts":1795400000123,"team":"search","key":"search-prod","model":"gpt-4o-mini","provider":"up","upstream_model":"gpt-4o-mini","attempts":[{"provider":"up","upstream_model":"gpt-4o-mini","status":200,"ms":0.812}],"status":200,"stream":true,"tokens":{"prompt":120,"completion":40,"cached":0},"cost_micro_usd":42,"latency_ms":{"total":1.204,"upstream":0.801,"ttft":0.903,"gateway":0.102},"bytes_in":812,"bytes_out":2304,"guardrails":{"profile":"all","version":"3","hits":[{"rule":"pii.email","action":"redact","in":"request","text":1,"at":10,"len":17}]},"end":"completed"}"#;
    let mut out = bytes::BytesMut::with_capacity(1 << 20);
    let mut bodies = bytes::BytesMut::new();
    c.bench_function("clickhouse_row_per_record", |b| {
        b.iter(|| {
            if out.len() > 1 << 19 {
                out.clear();
            }
            black_box(tollgate_engine::clickhouse::row(black_box(line), &mut out, Some(&mut bodies)))
        })
    });
}

/// An agent run's admission on the node's shared table: a sub-run's
/// request taken from its run and its parent (one request and an estimate
/// each), charged what it used, and its hold released; and, alone, a run
/// at its limit refused. Single-threaded: the cost of the atomics without
/// contention, which is what a run's own few connections meet.
fn run_admission(c: &mut Criterion) {
    use tollgate_engine::runs::{Estimate, Runs};
    use tollgate_policy::run::RunLimits;
    let runs = Arc::new(Runs::default());
    let limits = RunLimits { cost: Some(u64::MAX / 4), tokens: Some(u64::MAX / 4), requests: None, wall_ms: None };
    let estimate = Estimate { cost: 3_000, tokens: 1_200 };
    c.bench_function("run_admission_with_parent", |b| {
        b.iter(|| {
            let hold = runs.admit("search", black_box("run-7f3a/sub-2"), Some("run-7f3a"), limits, estimate, 1);
            let hold = hold.expect("admitted");
            hold.charge(900, 2_100, 1);
        })
    });
    let full = RunLimits { requests: Some(0), ..RunLimits::default() };
    c.bench_function("run_refused_at_its_limit", |b| {
        b.iter(|| black_box(runs.admit("search", black_box("run-at-limit"), None, full, estimate, 1).is_err()))
    });
}

/// Session affinity's cost: the session of an 87 KB request (its first
/// 4 KiB hashed) and the tier of two equal targets ordered by it.
fn session_affinity(c: &mut Criterion) {
    use tollgate_engine::proxy::fallback::{session_of, Plan};
    let text = "[[providers]]\nname = \"a\"\nkind = \"mock\"\n[[providers]]\nname = \"b\"\nkind = \"mock\"\n\
        [[models]]\nname = \"m\"\ntargets = [{ provider = \"a\", priority = 0 }, { provider = \"b\", priority = 0 }]\n";
    let config = Config::parse("bench.toml", text, &ProcessEnv as &dyn Env).expect("bench config");
    let route = &config.routes.all()[0];
    let head = RequestHead::parse(
        Bytes::from_static(b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n"),
        &HeadLimits { head_bytes_max: 16 * 1024, uri_bytes_max: 8 * 1024 },
    )
    .expect("head");
    let body = "You are Claude Code. ".repeat(87_000 / 21).into_bytes();
    let rng = std::cell::Cell::new(7u64);
    c.bench_function("session_affinity_87kb", |b| {
        b.iter(|| {
            let s = session_of(&head, black_box(&body));
            black_box(Plan::for_session(route, &rng, Some(s)).next(
                &[],
                &config.routing,
                std::time::Instant::now(),
                &rng,
            ))
        })
    });
}

criterion_group!(benches, accounting, record, spans, clickhouse_row, run_admission, session_affinity);
criterion_main!(benches);
