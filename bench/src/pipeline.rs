//! The governed pipeline in memory: every stage a request and its answer
//! go through, without sockets, for the criterion bench (`pipeline`) and
//! for instruction counts (`tollgate-pipeline` under callgrind).

use crate::{chat_body, sse_stream, CHAT_HEAD};
use bytes::{Bytes, BytesMut};
use tollgate_engine::proxy::guard::{check_request, EventGuard};
use tollgate_policy::budget::{check as budget_check, Spend};
use tollgate_policy::config::{Env, ProcessEnv};
use tollgate_policy::guard::{Action, Category, Detector, Guard, ProfileSpec};
use tollgate_policy::keys::{hash_key, hex, presented_key};
use tollgate_policy::ratelimit::{check as rate_check, Headroom};
use tollgate_policy::Config;
use tollgate_protocol::http1::{HeadLimits, RequestHead};
use tollgate_protocol::json::string_values;
use tollgate_protocol::openai::scan_request;
use tollgate_protocol::sse::{write_event, SseParser};
use tollgate_protocol::tokens::{prompt_tokens, Encoding};

/// Builds what the pipeline reads: a configuration with 1,000 keys, a
/// profile with every detector on, a 2 KB request and a 20-event stream.
pub fn world() -> World {
    let mut text = String::from(
        "[[providers]]\nname = \"m\"\nkind = \"mock\"\n[[models]]\nname = \"gpt-4o-mini\"\ntargets = [{ provider = \"m\" }]\n\
         [[teams]]\nname = \"t\"\nmodels = [\"*\"]\nbudget = { daily_usd = 100.0 }\nrate_limit = { tokens_per_minute = 1000000 }\n",
    );
    for i in 0..1000 {
        let key = if i == 500 { "tg-3f8a9c2e1b7d4f6a8c0e2b4d6f8a0c2e".to_string() } else { format!("tg-{i:040}") };
        text.push_str(&format!(
            "[[keys]]\nname = \"k{i}\"\nteam = \"t\"\nsha256 = \"{}\"\n",
            hex(&hash_key(key.as_bytes()))
        ));
    }
    let config = Config::parse("pipeline.toml", &text, &ProcessEnv as &dyn Env).expect("config");
    let mut spec = ProfileSpec { name: "all".into(), injection_threshold: 10, responses: true, ..Default::default() };
    for d in Detector::ALL {
        spec.actions[d as usize] = Some(if d.category() == Category::Pii { Action::Redact } else { Action::Block });
    }
    let guard = Guard::compile(&spec).expect("profile");
    let head = Bytes::from_static(CHAT_HEAD);
    let body = Bytes::from(chat_body(2048));
    let stream = Bytes::from(sse_stream(20));
    let limits = HeadLimits { head_bytes_max: 16 * 1024, uri_bytes_max: 8 * 1024 };
    Encoding::warm_up();
    World { config, guard, head, body, stream, limits }
}

/// What every iteration reads.
pub struct World {
    config: Config,
    guard: Guard,
    head: Bytes,
    body: Bytes,
    stream: Bytes,
    limits: HeadLimits,
}

/// One request and its answer through every stage. Not inlined: the
/// callgrind script counts the instructions of this function alone, not
/// the set-up (configuration, automata, tokenizer tables).
#[inline(never)]
pub fn iterate(w: &World, out: &mut BytesMut) -> u64 {
    let mut checksum = 0;
    // Request side.
    let h = RequestHead::parse(w.head.clone(), &w.limits).expect("head");
    let key = presented_key(h.header(b"authorization"), h.header(b"x-api-key"))
        .and_then(|p| w.config.keys.authenticate(p, 1_800_000_000).ok())
        .expect("key");
    let team = &w.config.teams[key.team];
    budget_check(|| "t".into(), &team.budget, Spend { day: 1_000, month: 5_000 }, 0, 1_800_000_000).expect("budget");
    let fields = scan_request(&w.body).expect("body");
    checksum += fields.model.len() as u64;
    let mut hits = Vec::new();
    let redacted = check_request("all", &w.guard, &w.body, &mut hits).expect("clean body");
    checksum += u64::from(redacted.is_none());
    let reserve = prompt_tokens(Encoding::O200kBase, &w.body) + 1024;
    rate_check(|| "t".into(), &team.rate_limit, 10, 5_000, reserve, 1_800_000_000_000).expect("rate");
    let mut headroom = Headroom::default();
    headroom.tighten(&team.rate_limit, 11, 5_000 + reserve);
    // Answer side: parsed, deltas counted, guarded, written.
    let mut parser = SseParser::new(1 << 20);
    parser.push(w.stream.clone());
    let mut events = EventGuard::new(&w.guard);
    let mut passed = Vec::new();
    while let Ok(Some(ev)) = parser.next_event() {
        let _ = string_values(&ev.data, |key, v| {
            if key == b"content" {
                checksum += Encoding::O200kBase.count_bytes(&ev.data[v.raw.clone()]);
            }
        });
        events.event(ev, &mut passed).expect("clean stream");
        for ev in passed.drain(..) {
            write_event(out, ev.event.as_deref(), &ev.data);
        }
    }
    checksum += out.len() as u64;
    out.clear();
    checksum
}
