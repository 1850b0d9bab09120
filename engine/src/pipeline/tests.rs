//! The phases with a constructed exchange and core: no socket, no runtime.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tollgate_policy::config::ProcessEnv;
use tollgate_policy::keys::{hash_key, hex};
use tollgate_policy::Config;
use tollgate_protocol::http1::{HeadLimits, RequestHead};
use tollgate_protocol::tokens::Encoding;

use super::*;
use crate::accounts::Owner;
use crate::proxy::Front;
use crate::record::RequestId;
use crate::upstream::Resolved;

/// A core under `teams` (TOML for `[[teams]]` named `t`, with its own
/// keys `tg-key` of team `t` and `tg-other` of team `u`).
struct World {
    state: CoreState,
    accounts: Rc<Accounts>,
    stats: CoreStats,
    recorder: Recorder,
    cut: crate::cut::Cut,
    cache: std::cell::RefCell<crate::cache::Store>,
    runs: std::sync::Arc<crate::runs::Runs>,
    turns: std::sync::Arc<crate::turns::Turns>,
}

impl World {
    fn new(team: &str) -> World {
        let config = World::config(team, false);
        let resolved = vec![Resolved { addr: "127.0.0.1:9".parse().expect("address"), roots: None, role: None }; 2];
        World {
            state: CoreState::build(Arc::new(config), &resolved, None, None),
            accounts: Rc::new(Accounts::new(0, None)),
            stats: CoreStats::default(),
            recorder: Recorder::new(0, None),
            cut: crate::cut::Cut::default(),
            cache: std::cell::RefCell::new(crate::cache::Store::new(1 << 20)),
            runs: std::sync::Arc::new(crate::runs::Runs::with_capacity(1024)),
            turns: std::sync::Arc::new(crate::turns::Turns::new(1 << 20, std::time::Duration::from_secs(60))),
        }
    }

    /// The configuration of [`World::new`]; `swapped` lists team `u`
    /// before team `t`, as a reload may.
    fn config(team: &str, swapped: bool) -> Config {
        let (t, u) = (
            format!("[[teams]]\nname = \"t\"\nmodels = [\"gpt-4*\"]\n{team}\n"),
            "[[teams]]\nname = \"u\"\nmodels = [\"*\"]\n".to_string(),
        );
        let teams = if swapped { u + &t } else { t + &u };
        let text = format!(
            "[[providers]]\nname = \"m\"\nkind = \"mock\"\n\
             [[providers]]\nname = \"c\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             [[models]]\nname = \"gpt-4o\"\ntargets = [{{ provider = \"m\" }}]\n\
             [[models]]\nname = \"gpt-4\"\ntargets = [{{ provider = \"m\" }}]\n\
             [[models]]\nname = \"secret-model\"\ntargets = [{{ provider = \"m\" }}]\n\
             [[models]]\nname = \"gpt-4-as-claude\"\ntargets = [{{ provider = \"c\", model = \"claude-sonnet-4-5\" }}]\n\
             [[models]]\nname = \"gpt-4-chain\"\ntargets = [{{ provider = \"m\", model = \"local-llama\" }}, {{ provider = \"c\", model = \"claude-opus-4\" }}]\n\
             [[models]]\nname = \"gpt-4-web\"\ntargets = [{{ provider = \"m\" }}, {{ provider = \"c\", model = \"gpt-4o-search-preview\" }}]\n\
             [[guardrail_profiles]]\nname = \"g\"\npii = \"redact\"\nsecrets = \"block\"\n\
             {teams}\
             [[keys]]\nname = \"k\"\nteam = \"t\"\nsha256 = \"{}\"\n\
             [[keys]]\nname = \"o\"\nteam = \"u\"\nsha256 = \"{}\"\n",
            hex(&hash_key(b"tg-key")),
            hex(&hash_key(b"tg-other")),
        );
        Config::parse("pipeline.toml", &text, &ProcessEnv).expect("config")
    }

    fn core(&self) -> Core<'_> {
        Core {
            state: &self.state,
            accounts: &self.accounts,
            stats: &self.stats,
            recorder: &self.recorder,
            strict: None,
            draining: false,
            cut: &self.cut,
            cache: &self.cache,
            cache_share: 1,
            runs: &self.runs,
            turns: &self.turns,
        }
    }
}

fn exchange<'s>(key: &str, body: &str) -> Exchange<'s> {
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let limits = HeadLimits { head_bytes_max: 16 * 1024, uri_bytes_max: 8 * 1024 };
    let head = RequestHead::parse(Bytes::from(head), &limits).expect("head");
    let id = RequestId { epoch: 1, worker: 0, seq: 1 };
    let mut ex = Exchange::new(head, Front::OpenAi, id, true, Duration::from_secs(60));
    ex.body = Bytes::from(body.to_string());
    ex.body_state = BodyState::Read;
    ex
}

fn admit<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    before_body(ex, core)?;
    after_body(ex, core)
}

const PROSE: &str = r#"{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":"Summarise the quarterly report for the finance team."}]}"#;

#[test]
fn an_unknown_or_missing_key_is_refused_before_anything_else() {
    let w = World::new("");
    let core = w.core();
    let mut ex = exchange("tg-nobody", PROSE);
    assert!(matches!(before_body(&mut ex, &core), Err(GatewayError::Auth(_))));
    assert!(ex.trace.key.is_none());
    let mut ex = exchange("tg-key", PROSE);
    before_body(&mut ex, &core).expect("admitted");
    assert_eq!(ex.trace.key.map(|k| k.name.as_str()), Some("k"));
}

#[test]
fn a_model_the_key_may_not_use_is_refused_before_its_prompt_is_counted() {
    let w = World::new("rate_limit = { tokens_per_minute = 100 }");
    let core = w.core();
    // 60 KB of prompt under a 100-token limit: counting it would refuse it
    // 429; routing refuses it first, without counting.
    let big =
        format!(r#"{{"model":"secret-model","messages":[{{"role":"user","content":"{}"}}]}}"#, "word ".repeat(12_000));
    let mut ex = exchange("tg-key", &big);
    assert!(matches!(admit(&mut ex, &core), Err(GatewayError::ModelNotAllowed { .. })));
    assert!(!ex.prompt.counted());
    let mut ex = exchange("tg-key", &big.replace("secret-model", "no-such-model"));
    assert!(matches!(admit(&mut ex, &core), Err(GatewayError::UnknownModel(_))));
    assert!(!ex.prompt.counted());
}

/// A token count is free: a prompt far over the tokens-per-minute limit
/// that a chat request would be refused for is admitted, and nothing is
/// reserved for it.
#[test]
fn a_token_count_reserves_nothing() {
    let w = World::new("rate_limit = { tokens_per_minute = 100 }");
    let core = w.core();
    let big = format!(r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#, "word ".repeat(2_000));
    let mut chat = exchange("tg-key", &big);
    assert!(matches!(admit(&mut chat, &core), Err(GatewayError::RateLimited { .. })));
    let mut count = exchange("tg-key", &big);
    count.front = Front::CountTokens;
    admit(&mut count, &core).expect("admitted");
    assert!(count.holds.tokens.is_none() && count.holds.spend.is_none());
}

#[test]
fn the_prompt_is_counted_once_with_the_model_encoding_and_reserved_with_top_level_max_tokens() {
    // Near the limit (the body's bound would take more than a quarter of
    // it), the prompt is counted exactly.
    let w = World::new("rate_limit = { tokens_per_minute = 1000 }");
    let core = w.core();
    // gpt-4 counts in cl100k; a tool's `max_tokens` property is not the
    // request's limit.
    let body = r#"{"model":"gpt-4","max_tokens":77,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"max_tokens":{"type":"integer","default":5}}}}}],"messages":[{"role":"user","content":"日本語のテキストと English prose."}]}"#;
    let mut ex = exchange("tg-key", body);
    admit(&mut ex, &core).expect("admitted");
    assert!(ex.prompt.counted());
    assert_eq!(ex.prompt.encoding, Encoding::for_model(b"gpt-4"));
    let prompt = tollgate_protocol::tokens::prompt_tokens(Encoding::for_model(b"gpt-4"), body.as_bytes());
    assert_eq!(ex.prompt.tokens(b"ignored: counted already"), prompt);
    assert_eq!(w.accounts.reserved(Owner::Team(0)), prompt + 77);
    // The reservation is the exchange's: it goes when the request ends.
    drop(ex);
    assert_eq!(w.accounts.reserved(Owner::Team(0)), 0);
}

#[test]
fn requests_per_minute_refuse_the_request_past_the_limit_with_its_headroom() {
    let w = World::new("rate_limit = { requests_per_minute = 2 }");
    let core = w.core();
    for left in [1, 0] {
        let mut ex = exchange("tg-key", PROSE);
        admit(&mut ex, &core).expect("within the limit");
        let rate = ex.reply.rate.expect("x-ratelimit headers");
        assert_eq!(rate.requests, Some((2, left)));
    }
    let mut ex = exchange("tg-key", PROSE);
    assert!(matches!(before_body(&mut ex, &core), Err(GatewayError::RateLimited(_))));
    // Another team's key is not limited by this one's.
    let mut ex = exchange("tg-other", &PROSE.replace("gpt-4o", "secret-model"));
    admit(&mut ex, &core).expect("another team");
}

#[test]
fn a_spent_budget_refuses_and_a_nearly_spent_one_holds_the_estimate() {
    // gpt-4o at $2.50 in, $10.00 out: 50 output tokens cost 500 µ$.
    let w = World::new("budget = { daily_usd = 0.001 }");
    let core = w.core();
    let key = &w.state.config.keys.all()[0];
    let now_minute = crate::unix_now().as_secs() / 60;
    w.accounts.settle(key, &w.state.config, now_minute, 0, 950);
    let mut ex = exchange("tg-key", PROSE);
    assert!(
        matches!(admit(&mut ex, &core), Err(GatewayError::OverBudget(_))),
        "950 of 1,000 µ$ spent: a request estimated at 500+ does not fit"
    );
    let w = World::new("budget = { daily_usd = 1.0 }");
    let core = w.core();
    w.accounts.settle(&w.state.config.keys.all()[0], &w.state.config, now_minute, 0, 950_000);
    let mut ex = exchange("tg-key", PROSE);
    admit(&mut ex, &core).expect("fits");
    let estimate = admit::estimate(&ex, &core).expect("priced");
    assert!(estimate >= 500, "{estimate}");
    let held = w.accounts.spend(Owner::Team(0), crate::unix_now().as_secs()).day;
    assert_eq!(held, 950_000 + estimate, "held as spend while the request runs");
}

/// Near a budget's end by what is billed, a request goes with its output
/// reserve as its limit; brought near it by what requests in flight hold
/// alone, it is priced and checked but its answer is not capped (holds end
/// with their requests; found by a review).
#[test]
fn only_billed_spend_near_the_end_caps_a_requests_answer() {
    let now_minute = crate::unix_now().as_secs() / 60;
    for billed in [true, false] {
        let w = World::new("budget = { daily_usd = 1.0 }");
        let core = w.core();
        let owners = [Owner::Team(0), Owner::Key(0)];
        let _held = if billed {
            w.accounts.settle(&w.state.config.keys.all()[0], &w.state.config, now_minute, 0, 950_000);
            None
        } else {
            Some(w.accounts.hold_spend(owners, 950_000))
        };
        let mut ex = exchange("tg-key", PROSE);
        admit(&mut ex, &core).expect("fits");
        assert!(ex.holds.spend.is_some(), "its estimate held");
        assert_eq!(ex.holds.reserve_is_limit, billed, "billed: {billed}");
    }
}

/// A request that started before a reload is judged by its own team's
/// spend and use after it, though the reload moved that team to another
/// index: the phases after the body's await read the accounts, which the
/// reload re-indexed, through the request's old configuration. Before, team
/// `t`, moved from index 0 to 1, was judged by team `u`'s figures (nothing
/// spent, nothing used) and passed its budget and its requests per minute.
#[test]
fn a_request_that_started_before_a_reload_is_judged_by_its_own_teams_figures() {
    let now_minute = crate::unix_now().as_secs() / 60;
    // A budget nearly spent: 950 of 1,000 µ$, and a request estimated at
    // 500 or more.
    let w = World::new("budget = { daily_usd = 0.001 }");
    let core = w.core();
    w.accounts.use_config(w.state.config.clone());
    w.accounts.settle(&w.state.config.keys.all()[0], &w.state.config, now_minute, 0, 950);
    let mut ex = exchange("tg-key", PROSE);
    before_body(&mut ex, &core).expect("the budget's check before the body: 50 µ$ left");
    w.accounts.reindex(&w.state.config, Arc::new(World::config("budget = { daily_usd = 0.001 }", true)));
    assert!(
        matches!(after_body(&mut ex, &core), Err(GatewayError::OverBudget(_))),
        "team t's own spend, at its new index"
    );
    // One request a minute: the second, admitted under the old indexes
    // after the reload, is the second of team t's minute.
    let w = World::new("rate_limit = { requests_per_minute = 1 }");
    let core = w.core();
    w.accounts.use_config(w.state.config.clone());
    admit(&mut exchange("tg-key", PROSE), &core).expect("the first of the minute");
    w.accounts.reindex(&w.state.config, Arc::new(World::config("rate_limit = { requests_per_minute = 1 }", true)));
    assert!(
        matches!(admit(&mut exchange("tg-key", PROSE), &core), Err(GatewayError::RateLimited(_))),
        "team t's own minute, at its new index"
    );
    // Team u, now at t's old index, is not charged t's request.
    let u = Owner::Team(0);
    assert_eq!(w.accounts.minute_use(u, now_minute).requests, 0);
}

/// A request that ran across a reload is counted under its own team's,
/// key's and model's names: counts are kept by index and named at hand-off
/// with the configuration then, where team `t` is at index 1. Counted at
/// its old indexes, its request and its guardrail hit were team `u`'s in
/// the metrics, the dashboard's series and the guardrail counters.
#[test]
fn a_request_that_ran_across_a_reload_is_counted_under_its_own_names() {
    use crate::stats::CoreFigures;
    let w = World::new("guardrails = \"g\"");
    let core = w.core();
    w.accounts.use_config(w.state.config.clone());
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"mail me at jane.doe@example.com"}]}"#;
    let mut ex = exchange("tg-key", body);
    admit(&mut ex, &core).expect("admitted");
    let new = Arc::new(World::config("guardrails = \"g\"", true));
    w.accounts.reindex(&w.state.config, new.clone());
    assert_eq!(ex.trace.guard_hits.len(), 1, "the address redacted");
    settle(&core, &ex.trace);
    let figures =
        CoreFigures { worker: 0, connections: 0, in_flight: 0, breakers: Vec::new(), cache: Default::default() };
    let delta = w.stats.take(&new, figures, crate::accounts::HandOff::default(), false);
    let teams: Vec<_> = delta.counts.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect();
    assert_eq!(teams, [("t", "gpt-4o")]);
    let series: Vec<_> = delta.series.iter().map(|(l, _)| (l.0.as_str(), l.1.as_str(), l.2.as_str())).collect();
    assert_eq!(series, [("t", "k", "gpt-4o")]);
    let guard: Vec<_> = delta.guard.iter().map(|(l, n)| (l.0.as_str(), *n)).collect();
    assert_eq!(guard, [("t", 1)]);
}

/// A request for `n` answers may generate `n` times its `max_tokens`:
/// its reservation and its estimate count every answer. One answer's worth
/// let a tenant near a hard budget or a tokens-per-minute limit pass it by
/// 127 answers in one request.
#[test]
fn a_request_for_many_answers_reserves_and_is_estimated_for_each() {
    let many = |n: u32| PROSE.replace(r#""max_tokens":50,"#, &format!(r#""max_tokens":50,"n":{n},"#));
    let w = World::new("rate_limit = { tokens_per_minute = 1000 }");
    let core = w.core();
    let mut ex = exchange("tg-key", &many(8));
    admit(&mut ex, &core).expect("8 answers of 50 fit");
    assert!(ex.prompt.counted(), "near the limit");
    let prompt = ex.prompt.tokens(b"counted already");
    assert_eq!(w.accounts.reserved(Owner::Team(0)), prompt + 8 * 50);
    drop(ex);
    let mut ex = exchange("tg-key", &many(20));
    assert!(
        matches!(admit(&mut ex, &core), Err(GatewayError::RateLimited(_))),
        "20 answers of 50 tokens pass a 1,000-token minute"
    );
    // gpt-4o's output at $10.00 a million: 50 tokens cost 500 µ$, 128
    // answers of 50 cost 64,000 µ$, more than the 50,000 left.
    let now_minute = crate::unix_now().as_secs() / 60;
    let w = World::new("budget = { daily_usd = 1.0 }");
    let core = w.core();
    w.accounts.settle(&w.state.config.keys.all()[0], &w.state.config, now_minute, 0, 950_000);
    let mut ex = exchange("tg-key", &many(128));
    assert!(matches!(admit(&mut ex, &core), Err(GatewayError::OverBudget(_))), "128 answers pass the budget");
    let mut ex = exchange("tg-key", &many(64));
    admit(&mut ex, &core).expect("64 answers fit");
    let estimate = admit::estimate(&ex, &core).expect("priced");
    assert!((32_000..33_000).contains(&estimate), "64 answers of 50 tokens and the prompt: {estimate}");
}

/// Under an output ceiling the provider is sent the ceiling as the limit
/// (`forward::output_cap`): the request reserves that, not the default
/// 1,024 tokens a request without `max_tokens` otherwise reserves (which
/// refused, under a 1,000-token minute, a request that could never
/// generate more than 300), and its answers share it.
#[test]
fn a_request_under_an_output_ceiling_reserves_the_ceiling() {
    let w = World::new("rate_limit = { tokens_per_minute = 1000 }\nbudget = { request_output_tokens = 300 }");
    let core = w.core();
    let unlimited = PROSE.replace(r#""max_tokens":50,"#, "");
    for (body, output) in [
        (unlimited.clone(), 300),
        (PROSE.to_string(), 50),
        (unlimited.replace(r#""model""#, r#""n":2,"model""#), 300),
        (PROSE.replace(r#""max_tokens":50,"#, r#""max_tokens":50,"n":3,"#), 150),
        (unlimited.replace(r#""model""#, r#""n":7,"model""#), 294),
    ] {
        let mut ex = exchange("tg-key", &body);
        admit(&mut ex, &core).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        assert_eq!(w.accounts.reserved(Owner::Team(0)), prompt_reserved(&ex) + output, "{body}");
    }
}

/// The prompt's share of an admitted exchange's reservation: its count
/// near the limit, its bound far from it.
fn prompt_reserved(ex: &Exchange<'_>) -> u64 {
    let text_only = ex.routed().expect("routed").fields.text_only;
    ex.prompt.get().unwrap_or_else(|| ex.prompt.bound(&ex.body, text_only))
}

/// A request without an output limit, translated to or from Anthropic's
/// Messages API, is sent the limit that API requires (4,096): it reserves
/// that, not the default 1,024.
#[test]
fn a_request_translated_for_anthropic_reserves_the_limit_the_translation_writes() {
    let w = World::new("rate_limit = { tokens_per_minute = 1000000 }");
    let core = w.core();
    let unlimited = PROSE.replace(r#""max_tokens":50,"#, "");
    for (front, output) in [(Front::OpenAi, 1024), (Front::Anthropic, 4096)] {
        let mut ex = exchange("tg-key", &unlimited);
        ex.front = front;
        admit(&mut ex, &core).expect("admitted");
        assert_eq!(w.accounts.reserved(Owner::Team(0)), prompt_reserved(&ex) + output, "{front:?}");
    }
}

/// A request is priced before its answer at the dearest rate each token
/// may be billed: one that marks its prompt for Anthropic's cache
/// (`cache_control`, or a key in escapes that may be it) at the hour-long
/// write price, twice the input; one that marks nothing at the input
/// price. Claude Sonnet 4.5 behind an OpenAI-compatible provider: $3 in,
/// $6 written for an hour, $15 out.
#[test]
fn a_request_that_may_write_the_cache_is_estimated_at_the_write_price() {
    let w = World::new("budget = { daily_usd = 1.0 }");
    let core = w.core();
    let claude = PROSE.replace(r#""model":"gpt-4o""#, r#""model":"gpt-4-as-claude""#);
    assert_ne!(claude, PROSE);
    let marked = claude.replace(
        r#""messages""#,
        r#""system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages""#,
    );
    let escaped = marked.replace("cache_control", "cache\\u005fcontrol");
    let mut estimates = vec![];
    for body in [&claude, &marked, &escaped] {
        let mut ex = exchange("tg-key", body);
        admit(&mut ex, &core).unwrap_or_else(|e| panic!("{body}: {e:?}"));
        let prompt = ex.prompt.tokens(body.as_bytes());
        let estimate = admit::estimate(&ex, &core).expect("priced");
        estimates.push((prompt, estimate));
    }
    let (plain, marked, escaped) = (estimates[0], estimates[1], estimates[2]);
    assert_eq!(plain.1, (plain.0 * 3_000_000 + 50 * 15_000_000).div_ceil(1_000_000), "{plain:?}");
    assert_eq!(marked.1, (marked.0 * 6_000_000 + 50 * 15_000_000).div_ceil(1_000_000), "{marked:?}");
    assert_eq!(escaped.1, (escaped.0 * 6_000_000 + 50 * 15_000_000).div_ceil(1_000_000), "{escaped:?}");
}

/// A model whose first target has no price (a model served in-house)
/// and whose fallback is dear is estimated, reserved and held at the dear
/// one's price: a fallback serves it there, and the record bills that
/// (found by a review: the estimate was the first target's, none here,
/// so a nearly spent or strict budget held nothing).
#[test]
fn a_request_is_estimated_at_its_dearest_targets_price() {
    let w = World::new("budget = { daily_usd = 1.0 }");
    let core = w.core();
    let body = PROSE.replace(r#""model":"gpt-4o""#, r#""model":"gpt-4-chain""#);
    assert_ne!(body, PROSE);
    let mut ex = exchange("tg-key", &body);
    admit(&mut ex, &core).expect("admitted");
    let prompt = ex.prompt.tokens(body.as_bytes());
    // claude-opus-4: $15 in, $75 out; 50 output tokens.
    let at_opus = |prompt: u64| (prompt * 15_000_000 + 50 * 75_000_000).div_ceil(1_000_000);
    assert_eq!(admit::estimate(&ex, &core), Some(at_opus(prompt)));
    let bound = admit::estimate_bound(&ex, &core).expect("priced");
    assert!(bound >= at_opus(prompt), "{bound} < {}", at_opus(prompt));
}

/// A tool the provider runs and bills per call is offered only by a team
/// that allows it; a token count runs none and passes.
#[test]
fn a_tool_the_provider_bills_per_call_needs_the_teams_leave() {
    let w = World::new("hosted_tools = [\"web_search\"]");
    let core = w.core();
    let with = |tools: &str| PROSE.replace(r#""messages""#, &format!(r#""tools":{tools},"messages""#));
    let search = with(r#"[{"type":"function","function":{"name":"f"}},{"type":"web_search_preview"}]"#);
    admit(&mut exchange("tg-key", &search), &core).expect("allowed by prefix");
    let code = with(r#"[{"type":"web_search"},{"type":"code_interpreter","container":{"type":"auto"}}]"#);
    let refused = admit(&mut exchange("tg-key", &code), &core);
    assert!(
        matches!(&refused, Err(GatewayError::ToolNotAllowed { tool }) if tool == "code_interpreter"),
        "{refused:?}"
    );
    // Team `u` allows none; its functions pass.
    let other = |body: &str| body.replace("gpt-4o", "secret-model");
    let refused = admit(&mut exchange("tg-other", &other(&search)), &core);
    assert!(
        matches!(&refused, Err(GatewayError::ToolNotAllowed { tool }) if tool == "web_search_preview"),
        "{refused:?}"
    );
    admit(&mut exchange("tg-other", &other(&with(r#"[{"type":"function","function":{"name":"f"}}]"#))), &core)
        .expect("a function is the client's");
    let mut count = exchange("tg-other", &other(&search));
    count.front = Front::CountTokens;
    admit(&mut count, &core).expect("a token count runs no tool");
    // A message nested past the naming walk's depth before the tools: the
    // scan sees the tool, the walk cannot name it, and it is refused all
    // the same (found by a review).
    let deep = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"f","input":{}{{}}{}}}]}}],"tools":[{{"type":"web_search"}}]}}"#,
        r#"{"a":"#.repeat(125),
        "}".repeat(125)
    );
    let refused = admit(&mut exchange("tg-key", &deep), &core);
    assert!(matches!(&refused, Err(GatewayError::ToolNotAllowed { .. })), "{refused:?}");
}

/// A model that searches on every request (OpenAI's chat search models,
/// billed per search) is reached only by a team that may use web search,
/// whether or not the body offers the tool, and even as a fallback target
/// (found by a review: `gpt-4o-search-preview` passed for any team).
#[test]
fn a_model_that_always_searches_needs_the_teams_leave() {
    let w = World::new("hosted_tools = [\"web_search\"]");
    let core = w.core();
    let body = PROSE.replace(r#""model":"gpt-4o""#, r#""model":"gpt-4-web""#);
    admit(&mut exchange("tg-key", &body), &core).expect("team t may search");
    let refused = admit(&mut exchange("tg-other", &body), &core);
    assert!(
        matches!(&refused, Err(GatewayError::ToolNotAllowed { tool }) if tool.contains("gpt-4o-search-preview")),
        "{refused:?}"
    );
    let w = World::new("");
    let refused = admit(&mut exchange("tg-key", &body), &w.core());
    assert!(matches!(&refused, Err(GatewayError::ToolNotAllowed { .. })), "{refused:?}");
}

/// A service tier priced above standard is asked for only by a team that
/// allows it; the standard ones and flex pass for any.
#[test]
fn a_service_tier_above_standard_needs_the_teams_leave() {
    let w = World::new("service_tiers = [\"priority\"]");
    let core = w.core();
    let tier = |key: &str, tier: &str| {
        let body = PROSE.replace(r#""messages""#, &format!(r#""service_tier":"{tier}","messages""#));
        let body = if key == "tg-other" { body.replace("gpt-4o", "secret-model") } else { body };
        admit(&mut exchange(key, &body), &core)
    };
    for t in ["auto", "default", "flex"] {
        tier("tg-other", t).unwrap_or_else(|e| panic!("{t}: {e:?}"));
    }
    tier("tg-key", "priority").expect("allowed");
    let refused = tier("tg-other", "priority");
    assert!(matches!(&refused, Err(GatewayError::ServiceTierNotAllowed { tier }) if tier == "priority"), "{refused:?}");
    assert!(matches!(tier("tg-key", "scale"), Err(GatewayError::ServiceTierNotAllowed { .. })));
}

#[test]
fn the_request_guard_blocks_secrets_and_redacts_personal_data_then_routes_the_new_body() {
    let w = World::new("guardrails = \"g\"");
    let core = w.core();
    let secret = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"my key is sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh"}]}"#;
    let mut ex = exchange("tg-key", secret);
    assert!(matches!(admit(&mut ex, &core), Err(GatewayError::Guardrail { .. })));
    let pii = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"write to bob@example.com"}],"stream":true}"#;
    let mut ex = exchange("tg-key", pii);
    admit(&mut ex, &core).expect("redacted, not blocked");
    assert!(!ex.body.windows(15).any(|w| w == b"bob@example.com"), "{:?}", ex.body);
    let routed = ex.routed().expect("routed");
    assert_eq!(routed.fields.model.get(&ex.body), b"gpt-4o", "spans of the new body");
    assert!(routed.fields.stream);
    assert_eq!(ex.trace.guard_hits.len(), 1);
}

/// A redaction before the output limits moves their spans with the
/// rest: a ceiling lowers them in place (`upstream_request::cap_edits`),
/// and spans left at the old body's offsets cut the new body where they
/// no longer are (a panic that ended the worker, with every connection
/// on its core) or wrote the ceiling into the prose while the real limit
/// went upstream unchanged. A redaction that shrinks the body (a long
/// address for `[EMAIL]`) and one that grows it (short ones), with every
/// limit given.
#[test]
fn a_redaction_moves_the_output_limits_with_the_body() {
    let w = World::new("guardrails = \"g\"\nbudget = { request_output_tokens = 300 }");
    let core = w.core();
    let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(80));
    let short = "a@b.co ".repeat(40);
    for text in [long.as_str(), short.as_str()] {
        let body = format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"x {text} {}"}}],"max_tokens":4000,"max_completion_tokens":4001,"max_output_tokens":4002,"thinking":{{"type":"enabled","budget_tokens":2000}}}}"#,
            "PAD".repeat(30)
        );
        let mut ex = exchange("tg-key", &body);
        admit(&mut ex, &core).expect("redacted, not blocked");
        assert!(!ex.body.contains(&b'@') && ex.body.len() != body.len(), "redacted: {:?}", ex.body);
        let fields = ex.routed().expect("routed").fields;
        assert_eq!(Ok(fields), tollgate_protocol::openai::scan_request(&ex.body));
        let at =
            |s: Option<tollgate_protocol::span::Span>| s.map(|s| String::from_utf8_lossy(s.get(&ex.body)).into_owned());
        let limits = fields.max_tokens_at.map(at);
        assert_eq!(limits, [Some("4000".into()), Some("4001".into()), Some("4002".into())]);
        assert_eq!(at(fields.thinking_budget).as_deref(), Some("2000"));
    }
}

/// A prompt given as token IDs: a guarded team's is refused (the guard
/// cannot read it; it passed every rule), and its IDs are the prompt's
/// tokens for the count that limits and a stream cut short bill (it was
/// 3 tokens, whatever its length).
#[test]
fn a_prompt_of_token_ids_is_refused_by_guardrails_and_counted() {
    let w = World::new("guardrails = \"g\"");
    let core = w.core();
    let ids = (0..5000).map(|i| (1000 + i % 90000).to_string()).collect::<Vec<_>>().join(",");
    let body = format!(r#"{{"model":"gpt-4o","prompt":[{ids}],"max_tokens":5}}"#);
    let refused = admit(&mut exchange("tg-key", &body), &core);
    assert!(
        matches!(&refused, Err(GatewayError::GuardrailUnavailable { why, .. }) if why.contains("token IDs")),
        "{refused:?}"
    );
    let mut ex = exchange("tg-other", &body);
    admit(&mut ex, &core).expect("no guardrails on this team");
    let counted = ex.prompt.tokens(&ex.body);
    assert!((5000..5010).contains(&counted), "{counted}");
}

/// A request of key `tg-key` admitted and answered: 1,000 tokens of
/// prompt and 100 of completion, ready to settle.
fn answered<'s>(core: &Core<'s>) -> Exchange<'s> {
    let mut ex = exchange("tg-key", PROSE);
    admit(&mut ex, core).expect("admitted");
    ex.trace.served_by = Some(0);
    ex.trace.status = 200;
    ex.trace.usage = Some(crate::record::TokenUsage { prompt: 1_000, completion: 100, ..Default::default() });
    ex
}

#[test]
fn settling_counts_the_spend_on_the_core_before_the_holds_go() {
    let w = World::new("rate_limit = { tokens_per_minute = 1000000 }");
    let core = w.core();
    let ex = answered(&core);
    settle(&core, &ex.trace);
    let now = crate::unix_now().as_secs();
    // gpt-4o: 1,000 x 2.5 + 100 x 10 micro-dollars.
    assert_eq!(w.accounts.spend(Owner::Key(0), now).day, 3_500);
    let minute = ex.trace.started_unix_ms / 60_000;
    assert_eq!(w.accounts.minute_use(Owner::Team(0), minute).tokens, 1_100);
    assert!(w.accounts.reserved(Owner::Team(0)) > 0, "still held until the exchange ends");
    drop(ex);
    assert_eq!(w.accounts.reserved(Owner::Team(0)), 0);
}

/// `settle` counts a request that began minutes ago (a long answer) in
/// the minute it ends, through the real path: counted in the minute it
/// began, its tokens went to a window already closed and the tokens per
/// minute could be passed again and again (found by a review; the test of
/// `settle_minute` alone did not fail with the wiring undone).
#[test]
fn settling_a_long_request_counts_its_tokens_in_the_minute_it_ends() {
    let w = World::new("rate_limit = { tokens_per_minute = 1000000 }");
    let core = w.core();
    let mut ex = answered(&core);
    // Began three minutes ago.
    ex.trace.started_unix_ms -= 3 * 60_000;
    let minute = || crate::unix_now().as_millis() as u64 / 60_000;
    let before = minute();
    settle(&core, &ex.trace);
    let after = minute();
    // Counted in the minute it ended: the one before settling or, where
    // the clock passed into the next meanwhile, that one. (A core keeps
    // its newest minute only: counted three minutes back, neither has it.)
    for owner in [Owner::Team(0), Owner::Key(0)] {
        let counted = [before, after].map(|m| w.accounts.minute_use(owner, m).tokens);
        assert!(counted.contains(&1_100), "{owner:?}: {counted:?}");
    }
}

/// A tenant hides a secret and an address after an object in a tool
/// schema's `enum`, where a walk that lost track of keys took them for the
/// object's `type` (skipped as structural).
#[test]
fn text_after_an_object_in_a_tool_schema_is_guarded() {
    let w = World::new("guardrails = \"g\"");
    let core = w.core();
    let body = r#"{"model":"gpt-4o","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"k":{"enum":[{"type":"x"},"my key sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh"]}}}}}],"messages":[]}"#;
    let mut ex = exchange("tg-key", body);
    assert!(matches!(admit(&mut ex, &core), Err(GatewayError::Guardrail { .. })));
    let body = r#"{"model":"gpt-4o","tools":[{"type":"function","function":{"name":"f","parameters":{"enum":[{"type":"x"},"mail bob@example.com"]}}}],"messages":[]}"#;
    let mut ex = exchange("tg-key", body);
    admit(&mut ex, &core).expect("redacted");
    assert!(!ex.body.windows(15).any(|w| w == b"bob@example.com"), "{:?}", ex.body);
}

/// With both a requests and a tokens limit, the last request the requests
/// limit allows is admitted: the token check does not count it twice.
#[test]
fn requests_and_tokens_limits_together_admit_the_last_allowed_request() {
    let w = World::new("rate_limit = { requests_per_minute = 2, tokens_per_minute = 1000000 }");
    let core = w.core();
    for n in 1..=2 {
        let mut ex = exchange("tg-key", PROSE);
        admit(&mut ex, &core).unwrap_or_else(|e| panic!("request {n} of 2: {e}"));
    }
    let mut ex = exchange("tg-key", PROSE);
    assert!(matches!(admit(&mut ex, &core), Err(GatewayError::RateLimited(r)) if r.what == "requests"));
}

/// Far from every tokens-per-minute limit, a request reserves an upper
/// bound of its prompt (its bytes, plus the reply's priming) and nothing
/// counts it; the bound is never below the exact count.
#[test]
fn far_from_the_limit_the_prompt_is_bounded_not_counted() {
    let w = World::new("rate_limit = { tokens_per_minute = 1000000 }");
    let core = w.core();
    let body = r#"{"model":"gpt-4o","max_tokens":77,"messages":[{"role":"user","content":"日本語のテキストと English prose, code: fn main() {}"}]}"#;
    let mut ex = exchange("tg-key", body);
    admit(&mut ex, &core).expect("admitted");
    assert!(!ex.prompt.counted(), "no count far from the limit");
    let bound = body.len() as u64 + tollgate_protocol::tokens::REPLY_PRIMING;
    assert_eq!(w.accounts.reserved(Owner::Team(0)), bound + 77);
    assert!(bound >= tollgate_protocol::tokens::prompt_tokens(Encoding::O200kBase, body.as_bytes()));
    // Images by URL cost far more tokens than their bytes: the bound holds.
    let w = World::new("rate_limit = { tokens_per_minute = 100000000 }");
    let core = w.core();
    let image = r#"{"type":"image_url","image_url":{"url":"https://x/a.png"}}"#;
    let body = format!(
        r#"{{"model":"gpt-4o","max_tokens":1,"messages":[{{"role":"user","content":[{}]}}]}}"#,
        [image; 40].join(",")
    );
    let mut ex = exchange("tg-key", &body);
    admit(&mut ex, &core).expect("admitted");
    let exact = tollgate_protocol::tokens::prompt_tokens(Encoding::O200kBase, body.as_bytes());
    assert!(exact >= 40 * tollgate_protocol::media::IMAGE_UNKNOWN);
    assert!(w.accounts.reserved(Owner::Team(0)) > exact, "{} <= {exact}", w.accounts.reserved(Owner::Team(0)));
}

/// A prompt large by its media, not its bytes (30 images by URL in 2 KB:
/// 48,000 tokens as bound), is priced and held against a budget it could
/// pass ten times over, as a large text is: the rule reads the prompt's
/// bound (bytes, media, stored turns), and with its bytes alone let such a
/// request through unpriced. The same bytes of text are not priced: they
/// hold their rough estimate.
#[test]
fn a_prompt_large_by_its_images_is_priced_against_the_budget() {
    let image = r#"{"type":"image_url","image_url":{"url":"https://x/a.png"}}"#;
    let images = format!(
        r#"{{"model":"gpt-4o","max_tokens":1,"messages":[{{"role":"user","content":[{}]}}]}}"#,
        [image; 30].join(",")
    );
    let text = format!(
        r#"{{"model":"gpt-4o","max_tokens":1,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "word ".repeat(images.len() / 5)
    );
    assert!(30 * tollgate_protocol::media::IMAGE_UNKNOWN > tollgate_protocol::tokens::STEP_BYTES as u64);
    let now = crate::unix_now().as_secs();
    for (body, priced) in [(&images, true), (&text, false)] {
        // $1 a day, nothing spent: 48,000 tokens at gpt-4o's $2.50 are
        // $0.12, ten times which pass what is left.
        let w = World::new("budget = { daily_usd = 1.0 }");
        let core = w.core();
        let mut ex = exchange("tg-key", body);
        admit(&mut ex, &core).expect("fits");
        let held = w.accounts.spend(Owner::Team(0), now).day;
        if priced {
            assert!(held >= 100_000, "the images' estimate held: {held} µ$");
        } else {
            // Its rough estimate only (a quarter of its bytes as tokens,
            // $0.0013), nothing counted.
            assert!((1_000..10_000).contains(&held), "a small text holds its rough estimate: {held} µ$");
            assert!(!ex.prompt.counted(), "nothing counted far from the limit");
        }
    }
}

/// A large prompt that no step counted (here the sans-IO phases run
/// without `count_large_prompt`) is never counted at once by a later
/// phase: near a tokens-per-minute limit its upper bound is reserved.
#[test]
fn a_large_prompt_is_never_counted_at_once() {
    let w = World::new("rate_limit = { tokens_per_minute = 200000 }");
    let core = w.core();
    let text = "word ".repeat(10_000);
    let body = format!(r#"{{"model":"gpt-4o","max_tokens":1,"messages":[{{"role":"user","content":"{text}"}}]}}"#);
    let mut ex = exchange("tg-key", &body);
    admit(&mut ex, &core).expect("admitted: the bound fits");
    assert!(!ex.prompt.counted(), "counted at once");
    let bound = body.len() as u64 + tollgate_protocol::tokens::REPLY_PRIMING;
    assert_eq!(w.accounts.reserved(Owner::Team(0)), bound + 1);
}

/// The cache's phases are futures the request's own future holds (or
/// boxes): kept small, since each is moved whole when made and awaited
/// (the shared tier's Redis call and the embedding call are boxed inside
/// the lookup, which runs on every cacheable request).
#[test]
fn the_cache_phases_stay_small_futures() {
    let w = World::new("");
    let core = w.core();
    let mut ex = exchange("tg-key", PROSE);
    let lookup = cache::lookup(&mut ex, &core);
    let size = std::mem::size_of_val(&lookup);
    eprintln!("cache::lookup future: {size} bytes");
    // 3,712 bytes with the Redis call inline.
    assert!(size <= 1024, "{size}");
}

/// Each model's target keeps its own breaker across a reload, also where
/// two models route to one deployment: keyed by provider and upstream
/// model alone, both got the last model's after a reload, and an open
/// breaker of the first was dropped.
#[test]
fn each_models_target_keeps_its_own_breaker_across_a_reload() {
    let text = "[[providers]]\nname = \"m\"\nkind = \"mock\"\n\
                [[models]]\nname = \"a\"\ntargets = [{ provider = \"m\", model = \"x\" }]\n\
                [[models]]\nname = \"b\"\ntargets = [{ provider = \"m\", model = \"x\" }]\n\
                [[models]]\nname = \"twice\"\ntargets = [{ provider = \"m\", model = \"x\", priority = 0 }, { provider = \"m\", model = \"x\", priority = 0 }]\n";
    let config = || Arc::new(Config::parse("breakers.toml", text, &ProcessEnv).expect("config"));
    let resolved = vec![Resolved { addr: "127.0.0.1:9".parse().expect("address"), roots: None, role: None }];
    let old = CoreState::build(config(), &resolved, None, None);
    assert!(!Rc::ptr_eq(&old.breakers[0][0], &old.breakers[1][0]), "one breaker each to begin with");
    let new = CoreState::build(config(), &resolved, None, Some(&old));
    for (model, target) in [(0, 0), (1, 0), (2, 0), (2, 1)] {
        assert!(
            Rc::ptr_eq(&new.breakers[model][target], &old.breakers[model][target]),
            "model {model}'s target {target}: its own breaker"
        );
    }
    // A deployment listed twice: two targets, drawn apart for sessions.
    let twice = &new.config.routes.all()[2].targets;
    assert_ne!(twice[0].identity, twice[1].identity);
    // The first listing is drawn as a deployment listed once: listing it
    // again leaves its sessions where they were.
    assert_eq!(twice[0].identity, new.config.routes.all()[0].targets[0].identity);
}

/// The process environment with AWS keys of our own.
struct AwsKeys(&'static str);

impl tollgate_policy::config::Env for AwsKeys {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".into()),
            "AWS_SECRET_ACCESS_KEY" => Some(self.0.into()),
            _ => None,
        }
    }

    fn read_file(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn hostname(&self) -> Option<String> {
        None
    }
}

/// A reload keeps a provider (its pooled connections) where nothing about
/// it changed, TLS providers too, whose trust store each reload reads
/// again (compared by address, none was ever kept); and replaces one whose
/// AWS keys it rotated (kept, it signed with the old keys).
#[test]
fn a_reload_keeps_an_unchanged_provider_and_replaces_one_with_new_keys() {
    let text = "[[providers]]\nname = \"secure\"\nkind = \"openai-compatible\"\nbase_url = \"https://api.example.com/v1\"\n\
                [[providers]]\nname = \"aws\"\nkind = \"bedrock\"\nregion = \"us-east-1\"\nbase_url = \"https://bedrock.example.com\"\n\
                [[models]]\nname = \"a\"\ntargets = [{ provider = \"secure\" }]\n\
                [[models]]\nname = \"b\"\ntargets = [{ provider = \"aws\", model = \"anthropic.claude-sonnet-4\" }]\n";
    let config = |secret| Arc::new(Config::parse("providers.toml", text, &AwsKeys(secret)).expect("config"));
    // Each resolution reads the trust store again: equal roots, another `Arc`.
    let resolved = || {
        let roots = Some(Arc::new(rustls::RootCertStore::empty()));
        vec![Resolved { addr: "127.0.0.1:9".parse().expect("address"), roots, role: None }; 2]
    };
    let old = CoreState::build(config("first-secret"), &resolved(), None, None);
    let same = CoreState::build(config("first-secret"), &resolved(), None, Some(&old));
    assert!(Rc::ptr_eq(&same.upstreams[0], &old.upstreams[0]), "the TLS provider, unchanged, is kept");
    assert!(Rc::ptr_eq(&same.upstreams[1], &old.upstreams[1]), "the AWS provider, unchanged, is kept");
    let rotated = CoreState::build(config("second-secret"), &resolved(), None, Some(&same));
    assert!(Rc::ptr_eq(&rotated.upstreams[0], &same.upstreams[0]));
    assert!(!Rc::ptr_eq(&rotated.upstreams[1], &same.upstreams[1]), "new keys, a new signer");
    let secret = |s: &CoreState| s.upstreams[1].aws.as_ref().map(|a| a.credentials.secret_access_key.clone());
    assert_eq!(secret(&rotated).as_deref(), Some("second-secret"));
}

/// A request's tokens count in the minute it ends: one that ran past the
/// minute it began in (its reservation's) counted in a window already
/// closed, and passed the tokens per minute unseen.
#[test]
fn tokens_count_in_the_minute_a_request_ends() {
    // (began, ended) in ms since 1970 -> the minute counted
    for (began, ended, minute) in [
        (60_000 * 10 + 5_000, 60_000 * 10 + 59_999, 10),
        (60_000 * 10 + 59_000, 60_000 * 11 + 30_000, 11),
        (60_000 * 10 + 1_000, 60_000 * 14, 14),
        // A clock stepped back meanwhile: never a minute before the start.
        (60_000 * 10 + 1_000, 60_000 * 9, 10),
    ] {
        assert_eq!(super::settle_minute(began, ended), minute, "{began} {ended}");
    }
}
