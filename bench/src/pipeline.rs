//! The governed pipeline in memory: the engine's own phases, run as
//! `tollgate_engine::pipeline::run` runs them, without sockets, for the
//! criterion bench (`pipeline`) and for instruction counts
//! (`tollgate-pipeline` under callgrind).
//!
//! Request side: the head parsed, then `pipeline::before_body`
//! (authenticate among 1,000 keys, budgets, rate limits) and
//! `pipeline::after_body` (the body's top level scanned and routed, every
//! guardrail, the prompt counted once for the tokens-per-minute
//! reservation). Answer side: a 20-event stream through the engine's
//! `StreamRelay` (parsed, counted, guarded, written), then
//! `pipeline::settle` (counters, spend) and the holds released. Records
//! are off (the recorder has no writer), as in the committed baseline;
//! `benches/accounting.rs` measures rendering one.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::{chat_body, sse_stream, CHAT_HEAD};
use bytes::{Bytes, BytesMut};
use tollgate_engine::accounts::Accounts;
use tollgate_engine::cut::Cut;
use tollgate_engine::pipeline::{self, BodyState, Core, Exchange};
use tollgate_engine::proxy::guard::{for_team, EventGuard};
use tollgate_engine::proxy::relay::RouteLabel;
use tollgate_engine::proxy::stream::{Stream, StreamRelay, StreamStages};
use tollgate_engine::proxy::upstream_request::Translation;
use tollgate_engine::proxy::Front;
use tollgate_engine::record::Recorder;
use tollgate_engine::state::CoreState;
use tollgate_engine::stats::CoreStats;
use tollgate_engine::upstream::Resolved;
use tollgate_policy::config::{Env, ProcessEnv};
use tollgate_policy::keys::{hash_key, hex};
use tollgate_policy::Config;
use tollgate_protocol::http1::{HeadLimits, RequestHead};
use tollgate_protocol::tokens::Encoding;

/// Builds what the pipeline reads: a configuration with 1,000 keys, a
/// profile with every detector on (personal data redacted, secrets and
/// injection blocked, answers checked), a 2 KB request and a 20-event
/// stream.
pub fn world() -> World {
    let mut text = String::from(
        "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nname = \"gpt-4o-mini\"\ntargets = [{ provider = \"m\" }]\n\
         [[guardrail_profiles]]\nname = \"all\"\npii = \"redact\"\nsecrets = \"block\"\ninjection = \"block\"\n\
         custom = \"block\"\ninjection_threshold = 10\nresponses = true\n\
         [[teams]]\nname = \"t\"\nmodels = [\"*\"]\nguardrails = \"all\"\nbudget = { daily_usd = 1000000.0 }\n\
         rate_limit = { tokens_per_minute = 1000000000000 }\n",
    );
    for i in 0..1000 {
        let key = if i == 500 { "tg-3f8a9c2e1b7d4f6a8c0e2b4d6f8a0c2e".to_string() } else { format!("tg-{i:040}") };
        text.push_str(&format!(
            "[[keys]]\nname = \"k{i}\"\nteam = \"t\"\nsha256 = \"{}\"\n",
            hex(&hash_key(key.as_bytes()))
        ));
    }
    let config = Config::parse("pipeline.toml", &text, &ProcessEnv as &dyn Env).expect("config");
    let resolved = vec![Resolved { addr: "127.0.0.1:9".parse().expect("address"), roots: None, role: None }];
    let state = CoreState::build(Arc::new(config), &resolved, None, None);
    let head = Bytes::from_static(CHAT_HEAD);
    // TOLLGATE_PIPELINE_BODY=FILE: a body from bench/prompts instead of
    // the built-in 2 KB chat (instruction counts at real prompt sizes).
    let body = match std::env::var_os("TOLLGATE_PIPELINE_BODY") {
        Some(path) => Bytes::from(std::fs::read(path).expect("TOLLGATE_PIPELINE_BODY is readable")),
        None => Bytes::from(chat_body(2048)),
    };
    let stream = Bytes::from(sse_stream(20));
    let limits = HeadLimits { head_bytes_max: 16 * 1024, uri_bytes_max: 8 * 1024 };
    Encoding::warm_up();
    World {
        state,
        accounts: Rc::new(Accounts::new(0, None)),
        stats: CoreStats::default(),
        recorder: Recorder::new(0, None),
        cut: Cut::default(),
        cache: std::cell::RefCell::new(tollgate_engine::cache::Store::new(0)),
        runs: std::sync::Arc::new(tollgate_engine::runs::Runs::with_capacity(1024)),
        turns: std::sync::Arc::new(tollgate_engine::turns::Turns::new(0, Duration::ZERO)),
        head,
        body,
        stream,
        limits,
    }
}

/// What every iteration reads, and the core's state it changes (counts,
/// spend, reservations held and released).
pub struct World {
    state: CoreState,
    accounts: Rc<Accounts>,
    stats: CoreStats,
    recorder: Recorder,
    cut: Cut,
    cache: std::cell::RefCell<tollgate_engine::cache::Store>,
    runs: std::sync::Arc<tollgate_engine::runs::Runs>,
    turns: std::sync::Arc<tollgate_engine::turns::Turns>,
    head: Bytes,
    body: Bytes,
    stream: Bytes,
    limits: HeadLimits,
}

/// One request and its answer through every phase. Not inlined: the
/// callgrind script counts the instructions of this function alone, not
/// the set-up (configuration, automata, tokenizer tables).
#[inline(never)]
pub fn iterate(w: &World, out: &mut BytesMut) -> u64 {
    let core = Core {
        state: &w.state,
        accounts: &w.accounts,
        stats: &w.stats,
        recorder: &w.recorder,
        strict: None,
        draining: false,
        cut: &w.cut,
        cache: &w.cache,
        cache_share: 1,
        runs: &w.runs,
        turns: &w.turns,
    };
    // Request side.
    let head = RequestHead::parse(w.head.clone(), &w.limits).expect("head");
    let mut ex = Exchange::new(head, Front::OpenAi, w.recorder.next_id(), true, Duration::from_secs(900));
    pipeline::before_body(&mut ex, &core).expect("admitted before the body");
    ex.body = w.body.clone();
    ex.body_state = BodyState::Read;
    pipeline::after_body(&mut ex, &core).expect("admitted");
    let mut checksum = ex.body.len() as u64;
    // Answer side: parsed, deltas counted, guarded, written.
    let key = ex.key().expect("key");
    let guard = for_team(&w.state.config, key.team).map(|(_, g)| EventGuard::new(g, false));
    let route = RouteLabel { provider: "m", model: "gpt-4o-mini", key_header: None };
    let stages = StreamStages {
        guard,
        hits: Some(&mut ex.trace.guard_hits),
        ceiling: None,
        reservation: ex.holds.tokens.as_ref(),
        capture: None,
        window: None,
        read_on_capped: None,
    };
    let mut relay = StreamRelay::new(Stream::new(Translation::None, Front::OpenAi, false), stages, route);
    relay.feed(w.stream.clone(), out);
    relay.end_of_read(true, out);
    checksum += relay.completion_counted;
    ex.trace.usage = relay.usage().ok().flatten();
    relay.close();
    ex.trace.status = 200;
    pipeline::settle(&core, &ex.trace);
    checksum += out.len() as u64;
    out.clear();
    checksum
}
