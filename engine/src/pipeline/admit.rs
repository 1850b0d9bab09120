//! The admission phases: budgets and rate limits, before the body is read
//! and again once the request is priced, and a strict budget's
//! reservation in Redis.
//!
//! Every figure comes from the core's [`crate::accounts::Accounts`]: the
//! merger's last totals plus this core's own counts they do not include
//! yet, plus what requests in flight hold. The rules themselves are
//! `tollgate_policy`'s (`budget::check`, `ratelimit::check`); these phases
//! gather the figures, apply the rules to the key and its team, and leave
//! what the request holds in the exchange.

use tollgate_policy::team::{Budget, MicroUsd};
use tollgate_policy::VirtualKey;

use super::{Core, Exchange};
use crate::accounts::{Owner, OwnerName};
use crate::error::GatewayError;

/// The budget phase: the key's team and the key itself must be under their
/// hard limits, counting every core's spend as of the last merge plus this
/// core's since.
pub fn within_budget<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    use tollgate_policy::budget::check;
    let key = ex.key()?;
    let a = core.accounts;
    if a.cluster_refusing() && limited(core, key) {
        return Err(GatewayError::ClusterUnavailable);
    }
    let now = ex.unix_s();
    let [team_owner, key_owner] = owners_of(core, key);
    let soft = |owner: Owner, name: &dyn Fn() -> String, passed: bool, budget: &Budget, spend| {
        // Once per owner per day per core: the warning is for people (the
        // log, a counter, and the webhook when one is configured).
        if passed && a.soft_warning_due(owner, now) {
            let name = name();
            tracing::warn!("{name} has passed the soft threshold of its budget");
            core.stats.soft_threshold(owner);
            a.alert(soft_alert(&name, budget, spend, now));
        }
    };
    // Hard limits are judged with what requests in flight hold; the soft
    // threshold, a warning that spend has come this far, without it.
    let judge = |owner: Owner, name: &dyn Fn() -> String, budget: &Budget| {
        if budget.daily.is_none() && budget.monthly.is_none() {
            return Ok(());
        }
        let spend = a.spend(owner, now);
        check(name, budget, spend, 0, now).map_err(over_budget(a, owner))?;
        let billed = billed(spend, a.held(owner));
        soft(owner, name, tollgate_policy::budget::soft_passed(budget, billed), budget, billed);
        Ok(())
    };
    if let Some(team) = core.state.config.teams.get(key.team) {
        judge(team_owner, &|| format!("team \"{}\"", team.name), &team.budget)?;
    }
    judge(key_owner, &|| format!("key \"{}\"", key.name), &key.budget)
}

/// A budget's refusal for `owner`, saying how much of the spend it names
/// requests in flight hold (it comes back when they end).
fn over_budget(
    a: &crate::accounts::Accounts,
    owner: Owner,
) -> impl FnOnce(tollgate_policy::budget::OverBudget) -> GatewayError + '_ {
    move |mut e| {
        e.held = a.held(owner);
        GatewayError::OverBudget(e)
    }
}

/// `spend` (as [`crate::accounts::Accounts::spend`] gives it) less what
/// requests in flight hold of it: what is billed.
fn billed(spend: tollgate_policy::budget::Spend, held: u64) -> tollgate_policy::budget::Spend {
    tollgate_policy::budget::Spend { day: spend.day.saturating_sub(held), month: spend.month.saturating_sub(held) }
}

/// Whether the key or its team is under a budget or a rate limit, which a
/// fail-closed cluster tier cannot enforce while degraded.
fn limited(core: &Core<'_>, key: &VirtualKey) -> bool {
    use tollgate_policy::team::is_limited;
    is_limited(&key.budget, &key.rate_limit)
        || core.state.config.teams.get(key.team).is_some_and(|t| is_limited(&t.budget, &t.rate_limit))
}

/// The key's team and the key as the core's accounts index them now
/// ([`crate::accounts::Accounts::owners_now`]). Every phase here may run
/// after an await (the head's, the body's, a classifier's), and a reload
/// in between re-indexes the accounts: the request's own configuration's
/// indexes may then name other teams and keys, whose spend and use it would
/// be judged by: a team at its budget's end, moved down the list by a
/// reload, was judged by the spend of the team moved into its place. An
/// owner the reload removed reads as nothing spent.
fn owners_of(core: &Core<'_>, key: &VirtualKey) -> [Owner; 2] {
    core.accounts.owners_now(&core.state.config, [Owner::Team(key.team), Owner::Key(key.index)])
}

/// The request-rate phase: the request is admitted against its team's and
/// key's requests per minute (and tokens per minute as used so far), and
/// counted at once.
pub fn within_rate_limit<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    let (headroom, admitted) = rate_check(ex, core, 0)?;
    // A refusal carries the headers too: they say when to come back.
    ex.rate(headroom);
    admitted
}

/// Requests and tokens in the current UTC minute, every core's as of the
/// last merge plus this core's since (and its requests in flight's
/// reservations), against the team's and the key's limits, with `reserve`
/// tokens about to be used. With no reservation the request is admitted
/// (counted at once). The headroom (`Some` when a limit applies: the
/// answer's `x-ratelimit-*` headers) comes with the verdict, refused or
/// not.
#[allow(clippy::type_complexity)] // (headers, verdict): named at both call sites
fn rate_check(
    ex: &Exchange<'_>,
    core: &Core<'_>,
    reserve: u64,
) -> Result<(Option<tollgate_policy::ratelimit::Headroom>, Result<(), GatewayError>), GatewayError> {
    use tollgate_policy::ratelimit::{check, minute_reset_secs, Headroom};
    let key = ex.key()?;
    let a = core.accounts;
    let started_ms = ex.trace.started_unix_ms;
    let minute = started_ms / 60_000;
    let admitting = reserve == 0;
    let mut headroom = Headroom { reset_secs: minute_reset_secs(started_ms), ..Headroom::default() };
    let mut any = false;
    let mut limited = |owner: Owner, name: &dyn Fn() -> String, limit: &tollgate_policy::team::RateLimit| {
        if limit.requests_per_minute.is_none() && limit.tokens_per_minute.is_none() {
            return Ok(());
        }
        any = true;
        let used = a.minute_use(owner, minute);
        let tokens = used.tokens.saturating_add(a.reserved(owner));
        // The token check comes after this request was admitted (and
        // counted): its requests limit was judged then, not again here.
        let result = if admitting {
            check(name, limit, used.requests, tokens, reserve, started_ms)
        } else {
            let tokens_only = tollgate_policy::team::RateLimit { requests_per_minute: None, ..limit.clone() };
            check(name, &tokens_only, used.requests, tokens, reserve, started_ms)
        };
        // After this request: one more request, `reserve` more tokens.
        headroom.tighten(limit, used.requests + u64::from(admitting), tokens.saturating_add(reserve));
        result.map_err(GatewayError::RateLimited)
    };
    let team = core.state.config.teams.get(key.team);
    let owners = owners_of(core, key);
    let verdict = team
        .map_or(Ok(()), |t| limited(owners[0], &|| format!("team \"{}\"", t.name), &t.rate_limit))
        .and_then(|()| limited(owners[1], &|| format!("key \"{}\"", key.name), &key.rate_limit));
    if admitting && verdict.is_ok() {
        a.admit(owners, minute);
    }
    Ok((any.then_some(headroom), verdict))
}

/// An answer's output reserve where the request names no limit its API
/// reads: without one, a translation to or from Anthropic's Messages API
/// writes the one that API requires (`anthropic`), the most the request
/// may then generate; else the default reserve.
pub(crate) fn default_output(anthropic: bool) -> u64 {
    if anthropic {
        tollgate_protocol::anthropic::DEFAULT_MAX_TOKENS
    } else {
        tollgate_policy::ratelimit::DEFAULT_OUTPUT_RESERVE
    }
}

/// The most a request may generate, as its reservations and estimates
/// count it: each of its answers (`n`, `best_of`) up to its own output
/// limit (the most of `max_tokens` and the like, else the default
/// reserve), and each no further than the key's or team's output ceiling
/// leaves it, since that limit goes to the provider in the body
/// (`forward::output_cap`). One answer's reserve for a request of 128 let
/// a tenant near a hard budget or a tokens-per-minute limit pass it by
/// 127 answers in one request; a ceiling of 300 tokens reserved 1,024,
/// and a request translated for Anthropic 1,024 of the 4,096 written.
/// (A cost ceiling's limit depends on the target's price and is left out:
/// without it the reserve only overstates.)
fn output_reserve(ex: &Exchange<'_>, core: &Core<'_>) -> u64 {
    use tollgate_policy::ratelimit::DEFAULT_OUTPUT_RESERVE;
    let Some(routed) = ex.routed.as_ref() else { return DEFAULT_OUTPUT_RESERVE };
    use tollgate_policy::ProviderKind;
    let kinds =
        || routed.route.targets.iter().filter_map(|t| core.state.config.providers.get(t.provider).map(|p| p.kind));
    // Anthropic and Bedrock answer once, whatever `n` asks (their
    // translations leave it out): it counts where a target honours it.
    let asked_choices = routed.fields.choices.max(1);
    let honours_n = kinds().any(|k| !matches!(k, ProviderKind::Anthropic | ProviderKind::Bedrock));
    let choices = if honours_n { asked_choices } else { 1 };
    let anthropic = || ex.front == crate::proxy::Front::Anthropic || kinds().any(|k| k == ProviderKind::Anthropic);
    // Only a limit the client's API reads limits the answer.
    let asked = crate::proxy::upstream_request::limit_read(&ex.body, &routed.fields, ex.front)
        .unwrap_or_else(|| default_output(anthropic()));
    let ceiling = ex.key().ok().and_then(|key| core.state.config.request_ceilings(key).0);
    // As `forward::output_cap` divides it between the answers asked.
    let each = ceiling.map_or(asked, |c| asked.min((c / asked_choices).max(1)));
    each.saturating_mul(choices)
}

/// The request's estimated cost: its prompt counted, plus its `max_tokens`
/// or the default reserve, at the price of its model's dearest target.
/// `None` with no price. Made once, by whichever phase needs it first.
pub fn estimate(ex: &Exchange<'_>, core: &Core<'_>) -> Option<MicroUsd> {
    *ex.estimate.get_or_init(|| cost_with(ex, core, prompt_now(ex)))
}

/// The most the request can cost, for strict budgets, whose promise is
/// never to be passed: its prompt's upper bound ([`prompt_bound`]: no
/// provider's token is shorter than a byte of the body) rather than the
/// gateway's own count, which another tokenizer can exceed, plus its
/// `max_tokens` (or the default reserve), at the dearest target's price.
/// Nothing is counted.
pub fn estimate_bound(ex: &Exchange<'_>, core: &Core<'_>) -> Option<MicroUsd> {
    cost_with(ex, core, prompt_bound(ex))
}

/// [`estimate_bound`] with every prompt token priced as written to the
/// provider's cache, whatever the body marks: a request within a limit so
/// is within it at any rate, and its body need not be searched.
fn estimate_bound_dearest(ex: &Exchange<'_>, core: &Core<'_>) -> Option<MicroUsd> {
    cost_at_rates(ex, (prompt_bound(ex), output_reserve(ex, core)), |_| true)
}

/// The most the request's prompt alone can cost ([`prompt_bound`], every
/// token at the dearest rate it may be billed, at the dearest target):
/// what a tenant sends without limit, where the output has its own
/// (`max_tokens`, the ceilings). Nothing is counted.
fn prompt_bound_dearest(ex: &Exchange<'_>) -> Option<MicroUsd> {
    cost_at_rates(ex, (prompt_bound(ex), 0), |_| true)
}

/// `prompt` tokens plus the request's output reserve, at the price of the
/// dearest of its model's targets as it stands before an answer
/// (`Price::before_answer`: every token at the dearest rate it may be
/// billed, the long context's from within a quarter of its threshold);
/// `None` where no target has a price. The dearest, not the first: a
/// fallback (a 5xx, a 429, a session's choice among equal priorities)
/// serves the request at another target's price, and the record bills
/// that one (found by a review: a strict reservation priced at a free
/// first target held nothing for the priced one behind it).
fn cost_with(ex: &Exchange<'_>, core: &Core<'_>, prompt: u64) -> Option<MicroUsd> {
    let providers = &core.state.config.providers;
    let may_write = |t: &tollgate_policy::Target| may_write_cache(providers.get(t.provider), &ex.prompt, &ex.body);
    cost_at_rates(ex, (prompt, output_reserve(ex, core)), may_write)
}

/// [`cost_with`], `may_write_cache` saying whether the request may be
/// billed cache writes at a target (asked only where they cost more than
/// input).
fn cost_at_rates(
    ex: &Exchange<'_>,
    (prompt, completion): (u64, u64),
    may_write_cache: impl Fn(&tollgate_policy::Target) -> bool,
) -> Option<MicroUsd> {
    let routed = ex.routed.as_ref()?;
    let tier = asked_tier(routed, &ex.body);
    let usage = crate::record::TokenUsage { prompt, completion, ..Default::default() };
    routed
        .route
        .targets
        .iter()
        .filter_map(|t| {
            let price = routed.route.price_of(Some(t))?.at_tier(tier).before_answer(|| may_write_cache(t));
            Some(usage.cost_at(price.for_counted_prompt(prompt)))
        })
        .max()
}

/// The service tier a request is priced at before its answer: priority
/// where its `service_tier` names any tier above standard (a team must
/// allow it), or is written in escapes, else standard (flex may be served
/// at standard; a tier the provider applies by itself, an OpenAI
/// project's default, cannot be known before).
pub fn asked_tier(routed: &super::Routed, body: &[u8]) -> tollgate_policy::prices::Tier {
    match routed.fields.service_tier.map(|t| t.get(body)) {
        Some(t) if t.contains(&b'\\') || !tollgate_policy::team::standard_tier(t) => {
            tollgate_policy::prices::Tier::Priority
        }
        _ => tollgate_policy::prices::Tier::Standard,
    }
}

/// The usage of a request's prompt alone, `tokens` of it, at the tier it
/// asks for: what an attempt that failed after its request was written is
/// billed (`forward`, `finish`).
pub fn prompt_only(routed: &super::Routed, tokens: u64, body: &[u8]) -> crate::record::TokenUsage {
    crate::record::TokenUsage { prompt: tokens, tier: asked_tier(routed, body), ..Default::default() }
}

/// Whether a request to `provider` may be billed cache writes
/// (`proxy::stream::CacheWrites`), the body searched once for the
/// exchange ([`super::Prompt::marks_cache`]). Asked only where a price's
/// writes cost more than its input and it can change a decision.
pub fn may_write_cache(
    provider: Option<&tollgate_policy::config::Provider>,
    prompt: &super::Prompt,
    body: &[u8],
) -> bool {
    crate::proxy::stream::CacheWrites::of(provider).may(|| prompt.marks_cache(body))
}

/// The budget phase again, once the request is routed, for a key or team
/// with a day's or a month's limit. Where a budget is nearly spent for it
/// ([`nearly_spent`]), or its rough estimate ([`rough_estimate`]) would
/// cross a limit, the request's estimated cost (its prompt counted) must
/// fit, so that a request that would cross a hard limit is refused before
/// it is sent rather than billed past it. Either estimate is then held as
/// spend on this core until the request ends, so that requests in flight
/// together cannot cross it either: far from the end too (found by a
/// review: 200 streams of `max_tokens: 32000` sent together to a $10
/// budget were each far from its end, none held anything, and all were
/// admitted, to spend 48 times the budget).
pub fn affordable<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    use tollgate_policy::budget::check;
    // A token count costs nothing: there is nothing to afford.
    if ex.front == crate::proxy::Front::CountTokens {
        return Ok(());
    }
    let key = ex.key()?;
    let team = core.state.config.teams.get(key.team);
    let a = core.accounts;
    let now = ex.unix_s();
    let owners = owners_of(core, key);
    let (near_end, [team_spend, key_spend]) = match pricing(ex, core, key, now) {
        Pricing::Free => return Ok(()),
        Pricing::Hold(rough) => {
            ex.holds.spend = Some(a.hold_spend(owners, rough));
            return Ok(());
        }
        Pricing::Count { near_end, spends } => (near_end, spends),
    };
    let Some(estimate) = estimate(ex, core) else { return Ok(()) };
    if let Some(t) = team {
        check(|| format!("team \"{}\"", t.name), &t.budget, team_spend, estimate, now)
            .map_err(over_budget(a, owners[0]))?;
    }
    check(|| format!("key \"{}\"", key.name), &key.budget, key_spend, estimate, now)
        .map_err(over_budget(a, owners[1]))?;
    ex.holds.spend = Some(a.hold_spend(owners, estimate));
    ex.holds.reserve_is_limit |= near_end;
    Ok(())
}

/// Bytes of a prompt a token stands for in a rough estimate: about four
/// in English prose, fewer in code, CJK text and JSON (three or less),
/// which such an estimate then understates.
const ROUGH_BYTES_PER_TOKEN: u64 = 4;

/// What a request far from its budgets' ends holds while in flight, with
/// nothing counted: its prompt's bytes over [`ROUGH_BYTES_PER_TOKEN`],
/// plus its media and the stored turns it continues at their estimates
/// ([`prompt_bound`]'s; its count instead, where a phase made one),
/// plus its output reserve (`max_tokens` or the default, each answer), at
/// the dearest target's price, cache writes left out. A hold, not a
/// limit: it lets the requests in flight together see one another's
/// cost, and the one that would cross is priced with its prompt counted
/// ([`affordable`]). Its output share is exact where the client names a
/// limit; its prompt share may be as low as a quarter of the prompt's
/// cost for a text of one byte a token, which requests in flight can
/// then pass by together. `None` with no price.
fn rough_estimate(ex: &Exchange<'_>, core: &Core<'_>) -> Option<MicroUsd> {
    let prompt = ex.prompt.get().unwrap_or_else(|| {
        let text_only = ex.routed.as_ref().is_some_and(|r| r.fields.text_only);
        let (text, media) = ex.prompt.bound_parts(&ex.body, text_only);
        (text / ROUGH_BYTES_PER_TOKEN).saturating_add(media).saturating_add(ex.prompt.stored)
    });
    cost_at_rates(ex, (prompt, output_reserve(ex, core)), |_| false)
}

/// How [`affordable`] prices a request.
enum Pricing {
    /// No day's or month's limit, or no price: nothing is held.
    Free,
    /// Far from every end: its rough estimate is held.
    Hold(MicroUsd),
    /// Its prompt counted ([`estimate`]), checked against every limit and
    /// held; `near_end`: under a tenth left ([`nearly_spent`]), so that it
    /// also goes with its output reserve as its limit. `spends`: the
    /// team's and the key's, held included, as they were judged.
    Count { near_end: bool, spends: [tollgate_policy::budget::Spend; 2] },
}

/// How the request is priced before it is sent: counted where a budget
/// is nearly spent for it ([`nearly_spent`]) or where its rough estimate
/// would cross a limit; else held at its rough estimate.
fn pricing(ex: &Exchange<'_>, core: &Core<'_>, key: &tollgate_policy::VirtualKey, now: u64) -> Pricing {
    let team = core.state.config.teams.get(key.team);
    let limited = |b: &Budget| b.daily.is_some() || b.monthly.is_some();
    if !limited(&key.budget) && !team.is_some_and(|t| limited(&t.budget)) {
        return Pricing::Free;
    }
    // Each owner's spend looked up once, for both judgements: with what
    // requests in flight hold, and without.
    let a = core.accounts;
    let [team_owner, key_owner] = owners_of(core, key);
    let spends = [team.map(|_| a.spend(team_owner, now)).unwrap_or_default(), a.spend(key_owner, now)];
    if nearly_spent(ex, core, key, spends).is_some() {
        // Near the end by what is billed, the request also goes with its
        // output reserve as its limit; holds alone (they end with their
        // requests) only have it priced and checked (found by a review:
        // holds alone capped answers and kept them from the cache).
        let billed = [billed(spends[0], a.held(team_owner)), billed(spends[1], a.held(key_owner))];
        let near_end = nearly_spent(ex, core, key, billed) == Some(true);
        return Pricing::Count { near_end, spends };
    }
    let Some(rough) = rough_estimate(ex, core) else { return Pricing::Free };
    let fits = |b: &Budget, spend: tollgate_policy::budget::Spend| {
        [(b.daily, spend.day), (b.monthly, spend.month)]
            .iter()
            .all(|&(limit, spent)| limit.is_none_or(|l| spent.saturating_add(rough) <= l))
    };
    if team.is_none_or(|t| fits(&t.budget, spends[0])) && fits(&key.budget, spends[1]) {
        Pricing::Hold(rough)
    } else {
        // What it may cost would cross a limit: its output limit is left
        // as the client asked (it is not near the end).
        Pricing::Count { near_end: false, spends }
    }
}

/// Whether the request is to be priced before it is sent: `Some(true)`
/// where the key's or its team's budget is nearly spent (under a tenth
/// left of a day's or a month's limit), `Some(false)` where only its prompt
/// is large beside what is left (a prompt that may pass one counting step
/// of tokens, [`prompt_bound`], with less left than ten times what it can
/// cost, [`prompt_bound_dearest`]; nothing counted). [`affordable`] then
/// checks the request's estimate and holds it; near the end, the request
/// also goes with its output reserve as its limit (`forward::output_cap`),
/// which a large prompt far from it does not. Before, only the first, and
/// a prompt of 4 MB (a million tokens, $2) passed a $1 budget untouched by
/// twice, and twenty such in flight on a core by forty times (found by a
/// review). A smaller prompt is held at its rough estimate
/// ([`rough_estimate`]: its bytes as tokens are a bound far over its count,
/// which would price every small request of a small budget), and priced
/// with its prompt counted where that estimate would cross ([`pricing`]).
/// (`spends`: the team's and the key's, as [`crate::accounts::Accounts::spend`]
/// gives them.)
fn nearly_spent(
    ex: &Exchange<'_>,
    core: &Core<'_>,
    key: &tollgate_policy::VirtualKey,
    spends: [tollgate_policy::budget::Spend; 2],
) -> Option<bool> {
    // Asked for only where a budget has a limit: the bound prices the
    // request, which the unlimited skip.
    let bound = std::cell::OnceCell::new();
    let bound = || {
        *bound.get_or_init(|| {
            (prompt_bound(ex) > tollgate_protocol::tokens::STEP_BYTES as u64)
                .then(|| prompt_bound_dearest(ex))
                .flatten()
        })
    };
    let (mut near, mut large) = (false, false);
    let mut judge = |budget: &Budget, spend: tollgate_policy::budget::Spend| {
        for (limit, spent) in [(budget.daily, spend.day), (budget.monthly, spend.month)] {
            let Some(l) = limit else { continue };
            let left = l.saturating_sub(spent);
            near |= left.saturating_mul(10) < l;
            large |= !near && bound().is_some_and(|b| b.saturating_mul(10) > left);
        }
    };
    if let Some(t) = core.state.config.teams.get(key.team) {
        judge(&t.budget, spends[0]);
    }
    judge(&key.budget, spends[1]);
    (near || large).then_some(near)
}

/// Counts a large prompt in steps (the worker serves its other requests
/// between them) when a phase before the answer will need the count: the
/// estimate near a budget's end (or of a prompt large beside what it has
/// left: [`nearly_spent`], or whose rough estimate would cross a limit:
/// [`pricing`]), or a tokens-per-minute reservation near a
/// limit, or a cost ceiling that its prompt's bound and its reserve could
/// cross (the output limit sent, and `stream::PromptTokens`, which counts
/// only then, use this count). Far from every limit nothing is counted, as in those
/// phases. A small
/// prompt is left to them: counting it takes less than one step.
pub async fn count_large_prompt<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    if ex.body.len() <= tollgate_protocol::tokens::STEP_BYTES {
        return Ok(());
    }
    let key = ex.key()?;
    let team = core.state.config.teams.get(key.team);
    let priced =
        ex.routed.as_ref().is_some_and(|r| r.route.targets.iter().any(|t| r.route.price_of(Some(t)).is_some()));
    let for_budget = priced && matches!(pricing(ex, core, key, crate::unix_now().as_secs()), Pricing::Count { .. });
    let tpm = team.and_then(|t| t.rate_limit.tokens_per_minute).is_some() || key.rate_limit.tokens_per_minute.is_some();
    let for_tokens = tpm && !far_from_limits(ex, core, key, prompt_bound(ex).saturating_add(output_reserve(ex, core)));
    // A request whose cost ceiling its prompt's bound and its reserve could
    // cross needs the count for the output limit it is sent with
    // (`forward::output_cap`), and a stream may need it mid-stream: made
    // here, in steps, instead.
    let (_, limit) = core.state.config.request_ceilings(key);
    let past = |most: Option<MicroUsd>| limit.zip(most).is_some_and(|(limit, most)| most > limit);
    let for_ceiling = past(estimate_bound_dearest(ex, core)) && past(estimate_bound(ex, core));
    if for_budget || for_tokens || for_ceiling {
        ex.prompt.tokens_in_steps(&ex.body).await;
    }
    Ok(())
}

/// The prompt's tokens for a phase that cannot wait: the count, unless the
/// prompt is large and was not counted in steps (a limit came near while
/// `count_large_prompt` was deciding, or after), in which case its upper
/// bound, which only ever overstates a reservation or an estimate: no
/// large prompt is counted at once on the worker.
fn prompt_now(ex: &Exchange<'_>) -> u64 {
    match ex.prompt.get() {
        Some(n) => n,
        None if ex.body.len() > tollgate_protocol::tokens::STEP_BYTES => prompt_bound(ex),
        None => ex.prompt.tokens(&ex.body),
    }
}

/// The exchange's prompt bound ([`crate::pipeline::Prompt::bound`]).
fn prompt_bound(ex: &Exchange<'_>) -> u64 {
    ex.prompt.bound(&ex.body, ex.routed.as_ref().is_some_and(|r| r.fields.text_only))
}

/// The token phase: when the key or its team has a tokens-per-minute
/// limit, the request reserves its prompt (counted) plus the most it may
/// generate, so that the request that would cross the limit is the one
/// refused.
pub fn reserve_tokens<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    // A token count generates nothing and is not a model's work.
    if ex.front == crate::proxy::Front::CountTokens {
        return Ok(());
    }
    let key = ex.key()?;
    let team_tpm = core.state.config.teams.get(key.team).and_then(|t| t.rate_limit.tokens_per_minute);
    if team_tpm.is_none() && key.rate_limit.tokens_per_minute.is_none() {
        return Ok(());
    }
    let output = output_reserve(ex, core);
    // Far from every limit, the request reserves an upper bound of its
    // prompt (no token is shorter than a byte: the body's bytes, plus the
    // reply's priming) instead of counting it; near one, the exact count.
    // The bound only ever overstates a reservation, which the provider's
    // counts replace when the request ends.
    let bound = prompt_bound(ex);
    let prompt = if far_from_limits(ex, core, key, bound.saturating_add(output)) { bound } else { prompt_now(ex) };
    let (headroom, admitted) = rate_check(ex, core, prompt.saturating_add(output))?;
    ex.rate(headroom);
    admitted?;
    let minute = ex.trace.started_unix_ms / 60_000;
    ex.holds.tokens = Some(core.accounts.reserve(
        owners_of(core, key),
        [team_tpm, key.rate_limit.tokens_per_minute],
        minute,
        prompt,
        output,
    ));
    Ok(())
}

/// Whether `tokens` more would leave the key and its team under a quarter
/// of every tokens-per-minute limit they have, counting this minute's use
/// and what requests in flight have reserved.
fn far_from_limits(ex: &Exchange<'_>, core: &Core<'_>, key: &tollgate_policy::VirtualKey, tokens: u64) -> bool {
    let minute = ex.trace.started_unix_ms / 60_000;
    let a = core.accounts;
    let far = |owner: Owner, limit: Option<u64>| {
        limit.is_none_or(|l| {
            let used = a.minute_use(owner, minute).tokens.saturating_add(a.reserved(owner));
            used.saturating_add(tokens).saturating_mul(4) <= l
        })
    };
    let team = core.state.config.teams.get(key.team).and_then(|t| t.rate_limit.tokens_per_minute);
    let [team_owner, key_owner] = owners_of(core, key);
    far(team_owner, team) && far(key_owner, key.rate_limit.tokens_per_minute)
}

/// The run phase: a request that names an agent run (`x-tollgate-run`),
/// of a key or team with run limits (the tighter of the two, each limit
/// apart), holds its estimate against the run and every run above it
/// until it ends: one more request, its estimated cost and tokens. The
/// request that would pass a limit is refused with 429, naming the run
/// and what it spent. The estimate is the prompt's upper bound (nothing
/// counted) and the output reserve; only when that does not fit is the
/// prompt counted, so that a run near its end is not refused for an
/// overstated estimate. A token count is free and passes.
pub fn within_run<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    run_admitted(ex, core, false)
}

/// [`within_run`] for a request the answer cache serves: it costs and
/// generates nothing, but it is one more request of its run, and a run past
/// its requests or its wall time is refused as for any other (found by a
/// review: an agent looping on one `temperature: 0` request, what run
/// limits are for, was answered from the cache for ever).
pub fn within_run_for_hit<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    run_admitted(ex, core, true)
}

fn run_admitted<'s>(ex: &mut Exchange<'s>, core: &Core<'s>, free: bool) -> Result<(), GatewayError> {
    use crate::runs::{Estimate, Refusal};
    use tollgate_policy::run::{RunLimit, RunRefused};
    let Some(run) = ex.trace.run.as_deref() else { return Ok(()) };
    if ex.front == crate::proxy::Front::CountTokens {
        return Ok(());
    }
    let key = ex.key()?;
    let team = core.state.config.teams.get(key.team);
    let limits = team.map_or(key.budget.run, |t| t.budget.run.tighter(key.budget.run));
    if !limits.is_set() {
        return Ok(());
    }
    let team_name = team.map_or("-", |t| t.name.as_str());
    let now_ms = crate::unix_now().as_millis() as u64;
    let output = output_reserve(ex, core);
    let estimate = |prompt: u64| {
        if free {
            return Estimate::default();
        }
        Estimate { cost: cost_with(ex, core, prompt).unwrap_or(0), tokens: prompt.saturating_add(output) }
    };
    let (id, parent) = (&*run.id, run.parent.as_deref());
    let mut admitted = core.runs.admit(team_name, id, parent, limits, estimate(prompt_bound(ex)), now_ms);
    if let Err(Refusal::Limit { limit: RunLimit::Cost | RunLimit::Tokens, estimate: e, .. }) = admitted {
        if e > 0 {
            admitted = core.runs.admit(team_name, id, parent, limits, estimate(prompt_now(ex)), now_ms);
        }
    }
    if let Err(r) = &admitted {
        core.runs.count_refusal(r);
    }
    match admitted {
        Ok(hold) => {
            // Near by the estimate held (its prompt's bound, where that
            // fitted): judged again with the prompt counted.
            ex.holds.reserve_is_limit |=
                hold.near_end(limits, None) && hold.near_end(limits, Some(estimate(prompt_now(ex))));
            ex.holds.run = Some(hold);
            Ok(())
        }
        Err(Refusal::Limit { level, limit, cap, used, estimate, via_named_parent }) => {
            // Above the request's own run, counted from the parent it named
            // when that is the run above it; otherwise (it named none, or
            // another was learned first) from its own.
            let unnamed_above = level > 0 && !via_named_parent;
            let named = if level == 0 || unnamed_above { id } else { parent.unwrap_or(id) };
            Err(GatewayError::RunLimit(Box::new(RunRefused {
                unnamed_above,
                run: named.to_string(),
                team: team_name.to_string(),
                limit,
                cap,
                used,
                estimate,
                level: level.min(u8::MAX as usize) as u8,
            })))
        }
        Err(Refusal::Full) => Err(GatewayError::RunTableFull { team: team_name.to_string() }),
    }
}

/// Strict budgets (with a cluster tier): the request's estimated cost is
/// reserved in Redis against the cluster's spend and every outstanding
/// reservation before it is sent. The hold releases the estimate when the
/// request ends. Without an answer from Redis, `on_stale` decides.
pub async fn reserve_strict<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    use crate::cluster::strict::{Reserved, StrictOwner};
    let Some(strict) = core.strict.filter(|_| ex.front != crate::proxy::Front::CountTokens) else { return Ok(()) };
    let key = ex.key()?;
    let team = core.state.config.teams.get(key.team).filter(|t| t.budget.strict);
    if team.is_none() && !key.budget.strict {
        return Ok(());
    }
    let mut owners = Vec::with_capacity(2);
    if let Some(t) = team {
        owners.push(StrictOwner::new(Owner::Team(key.team), OwnerName::Team(t.name.clone()), &t.budget));
    }
    if key.budget.strict {
        owners.push(StrictOwner::new(Owner::Key(key.index), OwnerName::Key(key.name.clone()), &key.budget));
    }
    let now = crate::unix_now().as_secs();
    let estimate = estimate_bound(ex, core).unwrap_or(0);
    let hold_for = core.state.config.server.timeouts.request;
    match strict.reserve(core.accounts, &owners, estimate, hold_for, now).await {
        Reserved::Held(hold) => {
            ex.holds.strict = Some(hold);
            Ok(())
        }
        Reserved::Refused { index, day, month } => {
            let spend = tollgate_policy::budget::Spend { day, month };
            let check =
                |name: &dyn Fn() -> String, budget| tollgate_policy::budget::check(name, budget, spend, estimate, now);
            let refused = match (owners.get(index).map(|o| o.owner), team) {
                (Some(Owner::Team(_)), Some(t)) => check(&|| format!("team \"{}\"", t.name), &t.budget),
                _ => check(&|| format!("key \"{}\"", key.name), &key.budget),
            };
            // Redis and this check apply the same rule to the same figures.
            Err(refused.err().map_or(GatewayError::ClusterUnavailable, GatewayError::OverBudget))
        }
        // The hold releases whatever Redis may have reserved: at once when
        // refusing, at the request's end when admitting.
        Reserved::Unknown(hold, e) => {
            tracing::debug!(error = %e, "strict budget: no answer from Redis");
            if strict.fails_closed() {
                drop(hold);
                Err(GatewayError::ClusterUnavailable)
            } else {
                ex.holds.strict = Some(hold);
                Ok(())
            }
        }
    }
}

/// The webhook's JSON for a soft threshold passed.
fn soft_alert(owner: &str, budget: &Budget, spend: tollgate_policy::budget::Spend, now: u64) -> String {
    let mut out = bytes::BytesMut::new();
    out.extend_from_slice(b"{\"event\":\"budget.soft_threshold\",\"owner\":");
    tollgate_protocol::openai::write_json_string(&mut out, owner);
    let opt = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
    out.extend_from_slice(
        format!(
            ",\"threshold\":{},\"spent_today_micro_usd\":{},\"spent_this_month_micro_usd\":{},\"daily_limit_micro_usd\":{},\"monthly_limit_micro_usd\":{},\"ts\":{now}}}",
            f64::from(budget.soft_threshold_permille) / 1000.0,
            spend.day,
            spend.month,
            opt(budget.daily),
            opt(budget.monthly)
        )
        .as_bytes(),
    );
    String::from_utf8_lossy(&out).into_owned()
}
