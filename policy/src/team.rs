//! Teams: who may use which models, and the limits that apply to them.
//!
//! Budgets and rate limits are parsed and validated here now (amounts in
//! integer micro-dollars and whole tokens); their enforcement is the budgets
//! stage's. Labels are free-form and travel to reports.

use std::collections::BTreeMap;

use crate::access::ModelSet;

/// One millionth of a US dollar: all money is integer micro-dollars.
pub type MicroUsd = u64;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Budget {
    pub daily: Option<MicroUsd>,
    pub monthly: Option<MicroUsd>,
    /// Per mille of a budget at which a soft warning fires (default 800).
    pub soft_threshold_permille: u16,
    /// Ceilings on one request: a stream that crosses one is ended with
    /// `finish_reason: "length"`.
    pub request: Option<MicroUsd>,
    pub request_output_tokens: Option<u64>,
    /// With a cluster tier: each request reserves its estimated cost in
    /// Redis before it is sent, so nodes together never pass the limit by
    /// more than estimates miss (one round trip to Redis per request).
    pub strict: bool,
    /// Limits on each agent run (`x-tollgate-run`) of this owner.
    pub run: crate::run::RunLimits,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RateLimit {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    pub name: String,
    pub models: ModelSet,
    pub budget: Budget,
    pub rate_limit: RateLimit,
    /// Index into [`crate::Config::guardrail_profiles`].
    pub guardrail_profile: Option<usize>,
    pub labels: BTreeMap<String, String>,
    /// This team's answers may be cached (`cache = false` turns it off).
    pub cache: bool,
    /// This team's prompts and answers are captured in its records (its
    /// own `capture_bodies`, or `[logging]`'s).
    pub capture: bool,
    /// Tools the provider runs and may bill per call, beyond tokens, that
    /// this team's requests may offer it: type names or their prefixes
    /// (`web_search` takes `web_search_preview` and Anthropic's
    /// `web_search_20250305` too), `*` for any. Empty (the default): none,
    /// since the gateway prices tokens only and such a fee would go
    /// unbilled.
    pub hosted_tools: Vec<String>,
    /// Service tiers above standard (OpenAI's `priority` and `scale`, or
    /// any other than `auto`, `default`, `flex` and Anthropic's
    /// `standard_only`) that this team's requests may ask for, `*` for
    /// any. Empty (the default): none, since the gateway prices standard
    /// tokens and the difference would go unbilled.
    pub service_tiers: Vec<String>,
}

/// A service tier no dearer than the standard prices the gateway bills:
/// OpenAI's `auto`, `default` and `flex` (half price), Anthropic's `auto`
/// and `standard_only`.
pub fn standard_tier(tier: &[u8]) -> bool {
    matches!(tier, b"auto" | b"default" | b"flex" | b"standard_only")
}

impl Team {
    /// Whether this team may offer the provider the tool `name` (a tool's
    /// `type` as written, or `web_search_options`, `mcp_servers`).
    pub fn allows_tool(&self, name: &[u8]) -> bool {
        self.hosted_tools.iter().any(|t| t == "*" || name.starts_with(t.as_bytes()))
    }

    /// Whether this team may ask for the service tier `tier` (the string's
    /// contents, as written): one no dearer than standard
    /// ([`standard_tier`]), or one it lists.
    pub fn allows_tier(&self, tier: &[u8]) -> bool {
        standard_tier(tier) || self.service_tiers.iter().any(|t| t == "*" || t.as_bytes() == tier)
    }
}

/// Whether a budget or a rate limit applies: an owner with neither is never
/// refused for spend or use, here or across a cluster.
pub fn is_limited(budget: &Budget, rate: &RateLimit) -> bool {
    budget.daily.is_some()
        || budget.monthly.is_some()
        || rate.requests_per_minute.is_some()
        || rate.tokens_per_minute.is_some()
}
