//! Prices: what a model's tokens cost ([`Price`], integer micro-dollars),
//! and the built-in prices, used for a model whose configuration gives no
//! `price`. The configuration and the routing table both hold prices, so
//! the type lives here, beneath both.
//!
//! Sources of the built-in table, standard (not batch) rates in USD per
//! million tokens:
//! - OpenAI and Anthropic: openai.com/api/pricing, anthropic.com/pricing,
//!   as written in November 2026 from figures published through mid-2025.
//! - Gemini (Google's Gemini API, and Vertex AI's same list prices for
//!   prompts up to 200K tokens): ai.google.dev/gemini-api/docs/pricing as
//!   quoted in summaries dated January to June 2026. Cached input: some
//!   quote a 90% discount, others (June 2026, "verified against Google's
//!   docs") 75% for the 2.5 models ($0.3125 for Pro, $0.075 for Flash): the
//!   dearer is built in, billed high rather than low.
//! - Amazon Bedrock (on-demand, us-east-1): aws.amazon.com/bedrock/pricing,
//!   for Claude (the same as Anthropic's), Amazon Nova and Titan, and
//!   Mistral, as quoted alike by at least two independent summaries of
//!   2025 and 2026 (the official page's tables could not be read from
//!   the machine this was written on). Cached input is billed at the input
//!   price where no discount was confirmed: billed high rather than low.
//!   Llama on Bedrock (Meta's models by their Bedrock ids, `meta.llama...`):
//!   the prices most independent lists agree on, as written in December
//!   2026: Cline's Bedrock model table and three other public model lists
//!   give Llama 3.3 70B, 3.1 70B and 3.2 90B at $0.72 in and out, 3.1 8B at
//!   $0.22, Llama 4 Maverick at $0.24/$0.97 and Scout at $0.17/$0.66; the
//!   outliers quoted elsewhere ($0.35 to $2.65 for 3.3 70B) are other
//!   hosts' prices or older ones. Other Llama sizes have no built-in price
//!   (the gateway names such targets at start).
//!
//! Names are matched after their routing prefixes are taken off
//! ([`base_name`]): Bedrock's cross-region profiles (`us.`, `eu.`,
//! `apac.`, `global.`) and model providers (`anthropic.`, `amazon.`,
//! `mistral.`), Vertex AI's and Gemini's `google/` and `models/`.
//! Providers change prices: a configured `price` always wins, and a model
//! missing here simply has no cost.
//!
//! Anthropic (platform.claude.com/docs/en/about-claude/pricing, as read in
//! December 2026): one-hour cache writes cost twice the input price,
//! five-minute ones 1.25 times it; Claude Sonnet 4 and 4.5 bill a request
//! whose prompt passes 200K tokens (cache reads and writes included) at
//! twice the input and 1.5 times the output price, every token of it
//! (their 1M-token context; Sonnet 4.6 and Opus 4.6 dropped that premium
//! in March 2026); Opus 4.5 and later cost $5/$25, Sonnet 5 and 5.5
//! $2/$10 (the models' pages). Gemini 2.5 Pro doubles input (cached input
//! too) and takes 1.5 times output above 200K prompt tokens, whole, by the
//! same Gemini pricing summaries. A threshold is passed by a prompt of
//! more tokens than it: 200,000 is still the lower tier.
//!
//! OpenAI's GPT-5 family (December 2026, from OpenAI's pricing and launch
//! pages as quoted by independent summaries of 2026): GPT-5 and 5.1 at
//! $1.25/$10, mini $0.25/$2, nano $0.05/$0.40, Pro $15/$120; GPT-5.2
//! $1.75/$14, 5.2 Pro $21/$168; GPT-5.4 $2.50/$15, mini $0.75/$4.50, nano
//! $0.20/$1.25; GPT-5.5 $5/$30; cached input at a tenth (none for Pro).
//!
//! Beside the prices, [`reasons_unseen`]: the models that think before
//! they answer unless told not to, and bill that thinking as output
//! without streaming it (the gateway cannot count it as it passes).

/// The service tier a provider served a request at, as far as it changes
/// the price (the wire's names are read by `tollgate_protocol::openai::Tier`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Flex,
    #[default]
    Standard,
    Priority,
}

/// Prices in micro-dollars per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Price {
    pub input_per_mtok: u64,
    pub output_per_mtok: u64,
    pub cached_input_per_mtok: u64,
    /// Prompt tokens written to the provider's cache (Anthropic's
    /// five-minute writes, and every provider's writes it does not time).
    pub cache_write_per_mtok: u64,
    /// Prompt tokens written to Anthropic's cache for an hour.
    pub cache_write_1h_per_mtok: u64,
    /// Audio in a prompt and in an answer (OpenAI's `audio_tokens`, priced
    /// many times text by the models that hear and speak).
    pub audio_input_per_mtok: u64,
    pub audio_output_per_mtok: u64,
    /// Rates that replace these, for every token of a request, when its
    /// prompt passes a number of tokens (Claude Sonnet 4's and Gemini 2.5
    /// Pro's long-context prices).
    pub long_context: Option<LongContext>,
    /// Every rate's multiple, in thousandths, for a request the provider
    /// says it served at its priority tier, and at its flex tier (OpenAI's
    /// `service_tier`); 0 for none (standard rates).
    pub priority_permille: u64,
    pub flex_permille: u64,
}

/// A price's second tier: a request whose prompt has more than
/// `above_tokens` tokens (cached and cache-written ones included) is
/// billed at these rates, whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LongContext {
    pub above_tokens: u64,
    pub input_per_mtok: u64,
    pub output_per_mtok: u64,
    pub cached_input_per_mtok: u64,
    pub cache_write_per_mtok: u64,
    pub cache_write_1h_per_mtok: u64,
}

impl Price {
    /// The rates a request with `prompt` tokens is billed at: the long
    /// context's once the prompt passes its threshold, else these.
    pub fn for_prompt(self, prompt: u64) -> Price {
        match self.long_context {
            Some(l) if prompt > l.above_tokens => Price {
                input_per_mtok: l.input_per_mtok,
                output_per_mtok: l.output_per_mtok,
                cached_input_per_mtok: l.cached_input_per_mtok,
                cache_write_per_mtok: l.cache_write_per_mtok,
                cache_write_1h_per_mtok: l.cache_write_1h_per_mtok,
                // No model with a long-context price hears or speaks:
                // audio keeps its rates.
                audio_input_per_mtok: self.audio_input_per_mtok,
                audio_output_per_mtok: self.audio_output_per_mtok,
                long_context: None,
                ..self
            },
            _ => self,
        }
    }

    /// The rates to price a request at before its answer reports what it
    /// was billed, where the estimate must not fall short of the bill
    /// (request cost ceilings, budget estimates and reservations): every
    /// prompt token at the dearest rate one may be billed at (audio, and
    /// cache writes when the request `may_write_cache`, asked only where
    /// writes cost more than input), every output token at the dearer of
    /// text and audio, in both tiers. A prompt priced so is then given its
    /// tier by [`Price::for_counted_prompt`].
    pub fn before_answer(self, may_write_cache: impl FnOnce() -> bool) -> Price {
        let writes = self.cache_write_per_mtok.max(self.cache_write_1h_per_mtok);
        let long_writes = self.long_context.map_or(0, |l| l.cache_write_per_mtok.max(l.cache_write_1h_per_mtok));
        let premium = writes > self.input_per_mtok || self.long_context.is_some_and(|l| long_writes > l.input_per_mtok);
        let (writes, long_writes) = if premium && may_write_cache() { (writes, long_writes) } else { (0, 0) };
        let (audio_in, audio_out) = (self.audio_input_per_mtok, self.audio_output_per_mtok);
        Price {
            input_per_mtok: self.input_per_mtok.max(audio_in).max(writes),
            output_per_mtok: self.output_per_mtok.max(audio_out),
            long_context: self.long_context.map(|l| LongContext {
                input_per_mtok: l.input_per_mtok.max(audio_in).max(long_writes),
                output_per_mtok: l.output_per_mtok.max(audio_out),
                ..l
            }),
            ..self
        }
    }

    /// The tier for a prompt of `counted` tokens by the gateway's count,
    /// which another provider's tokenizer can exceed: the long context's
    /// once the count is past four fifths of its threshold (a margin of a
    /// quarter over the count), flat. Only to price a request before its
    /// answer; a bill uses the provider's count ([`Price::for_prompt`]).
    pub fn for_counted_prompt(self, counted: u64) -> Price {
        match self.long_context {
            Some(l) if counted.saturating_add(counted / 4) > l.above_tokens => self.for_prompt(u64::MAX),
            _ => Price { long_context: None, ..self },
        }
    }

    /// The rates at a service tier ([`Tier`]): every rate times the tier's
    /// multiple (rounded up to a micro-dollar a million tokens), long
    /// context's included; standard rates where the price gives none.
    pub fn at_tier(self, tier: Tier) -> Price {
        let permille = match tier {
            Tier::Priority => self.priority_permille,
            Tier::Flex => self.flex_permille,
            Tier::Standard => 0,
        };
        if permille == 0 || permille == 1000 {
            return self;
        }
        let x = |rate: u64| u64::try_from((rate as u128 * permille as u128).div_ceil(1000)).unwrap_or(u64::MAX);
        Price {
            input_per_mtok: x(self.input_per_mtok),
            output_per_mtok: x(self.output_per_mtok),
            cached_input_per_mtok: x(self.cached_input_per_mtok),
            cache_write_per_mtok: x(self.cache_write_per_mtok),
            cache_write_1h_per_mtok: x(self.cache_write_1h_per_mtok),
            audio_input_per_mtok: x(self.audio_input_per_mtok),
            audio_output_per_mtok: x(self.audio_output_per_mtok),
            long_context: self.long_context.map(|l| LongContext {
                above_tokens: l.above_tokens,
                input_per_mtok: x(l.input_per_mtok),
                output_per_mtok: x(l.output_per_mtok),
                cached_input_per_mtok: x(l.cached_input_per_mtok),
                cache_write_per_mtok: x(l.cache_write_per_mtok),
                cache_write_1h_per_mtok: x(l.cache_write_1h_per_mtok),
            }),
            ..self
        }
    }

    /// Every number of the price, both tiers: for keys that must change
    /// when the price does.
    pub fn numbers(&self) -> [u64; 15] {
        let l = self.long_context.unwrap_or_default();
        [
            self.input_per_mtok,
            self.output_per_mtok,
            self.cached_input_per_mtok,
            self.cache_write_per_mtok,
            self.cache_write_1h_per_mtok,
            self.audio_input_per_mtok,
            self.audio_output_per_mtok,
            self.priority_permille,
            self.flex_permille,
            l.above_tokens,
            l.input_per_mtok,
            l.output_per_mtok,
            l.cached_input_per_mtok,
            l.cache_write_per_mtok,
            l.cache_write_1h_per_mtok,
        ]
    }
}

/// (upstream model name prefix, input, output, cached input), USD per 1M
/// tokens. The longest matching prefix wins. Variants dearer than their
/// family have rows of their own (openai.com/api/pricing and
/// ai.google.dev's pricing as quoted in 2025): the first `gpt-4o` snapshot
/// (2024-05-13, $5/$15), the deep-research models, `gpt-3.5-turbo-instruct`,
/// and Gemini 2.5 Flash Image, whose output is images at $30 per 1M tokens.
/// A variant the table does not name is not priced as its family
/// ([`DEARER_VARIANTS`]).
const TABLE: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60, 0.075),
    ("gpt-4o-mini-search-preview", 0.15, 0.60, 0.15),
    ("gpt-4o", 2.50, 10.00, 1.25),
    ("gpt-4o-2024-05-13", 5.00, 15.00, 5.00),
    ("gpt-4o-search-preview", 2.50, 10.00, 2.50),
    ("o3-deep-research", 10.00, 40.00, 2.50),
    ("o4-mini-deep-research", 2.00, 8.00, 0.50),
    ("gpt-3.5-turbo-instruct", 1.50, 2.00, 1.50),
    ("gemini-2.5-flash-image", 0.30, 30.00, 0.30),
    ("gpt-audio-mini", 0.60, 2.40, 0.60),
    ("gpt-audio", 2.50, 10.00, 2.50),
    ("gpt-5", 1.25, 10.00, 0.125),
    ("gpt-5-search-api", 1.25, 10.00, 0.125),
    ("gpt-5-mini", 0.25, 2.00, 0.025),
    ("gpt-5-nano", 0.05, 0.40, 0.005),
    ("gpt-5-pro", 15.00, 120.00, 15.00),
    ("gpt-5.1", 1.25, 10.00, 0.125),
    ("gpt-5.2", 1.75, 14.00, 0.175),
    ("gpt-5.2-pro", 21.00, 168.00, 21.00),
    ("gpt-5.4", 2.50, 15.00, 0.25),
    ("gpt-5.4-mini", 0.75, 4.50, 0.075),
    ("gpt-5.4-nano", 0.20, 1.25, 0.02),
    ("gpt-5.5", 5.00, 30.00, 0.50),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10),
    ("gpt-4.1", 2.00, 8.00, 0.50),
    ("gpt-4-turbo", 10.00, 30.00, 10.00),
    ("gpt-3.5-turbo", 0.50, 1.50, 0.50),
    ("o4-mini", 1.10, 4.40, 0.275),
    ("o3-mini", 1.10, 4.40, 0.55),
    ("o3", 2.00, 8.00, 0.50),
    ("o1-mini", 1.10, 4.40, 0.55),
    ("o1", 15.00, 60.00, 7.50),
    ("claude-3-5-haiku", 0.80, 4.00, 0.08),
    ("claude-3-haiku", 0.25, 1.25, 0.03),
    ("claude-haiku-4", 1.00, 5.00, 0.10),
    ("claude-3-5-sonnet", 3.00, 15.00, 0.30),
    ("claude-3-7-sonnet", 3.00, 15.00, 0.30),
    ("claude-sonnet-4", 3.00, 15.00, 0.30),
    ("claude-sonnet-4-6", 3.00, 15.00, 0.30),
    ("claude-sonnet-5", 2.00, 10.00, 0.20),
    ("claude-opus-4", 15.00, 75.00, 1.50),
    ("claude-opus-4-5", 5.00, 25.00, 0.50),
    ("claude-opus-4-6", 5.00, 25.00, 0.50),
    ("claude-opus-4-7", 5.00, 25.00, 0.50),
    ("claude-opus-5", 5.00, 25.00, 0.50),
    ("claude-3-opus", 15.00, 75.00, 1.50),
    ("text-embedding-3-small", 0.02, 0.0, 0.02),
    ("text-embedding-3-large", 0.13, 0.0, 0.13),
    ("text-embedding-ada-002", 0.10, 0.0, 0.10),
    ("gemini-2.5-pro", 1.25, 10.00, 0.3125),
    ("gemini-2.5-flash-lite", 0.10, 0.40, 0.025),
    ("gemini-2.5-flash", 0.30, 2.50, 0.075),
    ("gemini-2.0-flash-lite", 0.075, 0.30, 0.075),
    ("gemini-2.0-flash", 0.10, 0.40, 0.025),
    ("nova-micro", 0.035, 0.14, 0.035),
    ("nova-lite", 0.06, 0.24, 0.06),
    ("nova-pro", 0.80, 3.20, 0.80),
    ("titan-text-express", 0.20, 0.60, 0.20),
    ("titan-text-lite", 0.15, 0.20, 0.15),
    ("mistral-7b-instruct", 0.15, 0.20, 0.15),
    ("mixtral-8x7b-instruct", 0.45, 0.70, 0.45),
    ("mistral-large-2402", 4.00, 12.00, 4.00),
    ("llama3-3-70b", 0.72, 0.72, 0.72),
    ("llama3-1-70b", 0.72, 0.72, 0.72),
    ("llama3-2-90b", 0.72, 0.72, 0.72),
    ("llama3-1-8b", 0.22, 0.22, 0.22),
    ("llama4-maverick-17b", 0.24, 0.97, 0.24),
    ("llama4-scout-17b", 0.17, 0.66, 0.17),
];

/// (upstream model name prefix, prompt tokens a request must pass for its
/// long-context price): that price is twice the input (cached input and
/// cache writes too) and 1.5 times the output. The longest matching
/// prefix of [`TABLE`] must be the one named here: `claude-sonnet-4-6`
/// has its own row, without the premium. GPT-5.4 and 5.5 are priced so
/// past 270K (OpenAI's pages say "under 270K" for the standard rates;
/// summaries say 272K: the lower bills high rather than low).
const LONG_CONTEXT: &[(&str, u64)] = &[
    ("claude-sonnet-4", 200_000),
    ("gemini-2.5-pro", 200_000),
    ("gpt-5.4", 270_000),
    ("gpt-5.4-mini", 270_000),
    ("gpt-5.4-nano", 270_000),
    ("gpt-5.5", 270_000),
];

/// Families whose versions are priced apart: a version [`TABLE`] does not
/// name has no built-in price (the gateway names such a target at start),
/// rather than the price of the family's first (`gpt-5.3` is not
/// `gpt-5`).
const VERSIONED: &[&str] = &["gpt-5."];

/// Words that, past a row's prefix, name a variant billed more than its
/// family (other rates, per-call fees, images or audio out): such a name
/// has no built-in price unless a row names it, rather than its family's
/// (`o3-deep-research` was billed as `o3`, a fifth of its price;
/// `gpt-5-search-api` as `gpt-5`).
const DEARER_VARIANTS: &[&str] = &["-search", "-research", "-image", "-realtime", "-tts", "-transcribe", "-computer"];

/// (upstream model name prefix, audio input, audio output), USD per 1M
/// tokens, the longest matching prefix winning; text in these models is
/// priced by [`TABLE`], audio elsewhere as text. From openai.com/api/pricing
/// as quoted in 2025: the first `gpt-4o-audio-preview` (2024-10-01) at
/// $100/$200, its later snapshots at $40/$80, `gpt-4o-mini-audio-preview`
/// and `gpt-audio-mini` at $10/$20, `gpt-audio` at $32/$64. Gemini's audio
/// input (ai.google.dev's pricing as quoted in 2026): 2.5 Flash $1.00,
/// 2.5 Flash-Lite $0.30, 2.0 Flash $0.70, 2.0 Flash-Lite $0.075; 2.5 Pro
/// bills audio as text.
const AUDIO: &[(&str, f64, f64)] = &[
    ("gpt-4o-audio-preview", 40.00, 80.00),
    ("gpt-4o-audio-preview-2024-10-01", 100.00, 200.00),
    ("gpt-4o-mini-audio-preview", 10.00, 20.00),
    ("gpt-audio", 32.00, 64.00),
    ("gpt-audio-mini", 10.00, 20.00),
    // Gemini's audio input (its output is text, at the text price).
    ("gemini-2.5-flash", 1.00, 2.50),
    ("gemini-2.5-flash-lite", 0.30, 0.40),
    ("gemini-2.0-flash", 0.70, 0.40),
    ("gemini-2.0-flash-lite", 0.075, 0.30),
];

/// Routing prefixes taken off a name before it is priced.
const REGIONS: &[&str] = &["us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca."];
const VENDORS: &[&str] = &["anthropic.", "amazon.", "mistral.", "meta.", "google/", "models/"];

/// The model's own name inside a provider's routing name:
/// `us.anthropic.claude-sonnet-4-20250514-v1:0` is `claude-sonnet-4-...`,
/// `google/gemini-2.0-flash-001` is `gemini-2.0-flash-001`.
pub fn base_name(upstream_model: &str) -> &str {
    let strip = |name: &'static [&str], s: &mut &str| {
        if let Some(rest) = name.iter().find_map(|p| s.strip_prefix(p)) {
            *s = rest;
        }
    };
    let mut s = upstream_model;
    strip(REGIONS, &mut s);
    strip(VENDORS, &mut s);
    s
}

/// Whether a model name names a Pro variant: `-pro` ending it or followed
/// by `-`, `@`, `:` or `.` (not `-prod`, `-proxy`: a deployment's own
/// name).
fn is_pro(name: &str) -> bool {
    name.match_indices("-pro")
        .any(|(at, _)| matches!(name.as_bytes().get(at + 4), None | Some(b'-' | b'@' | b':' | b'.')))
}

/// The built-in price of an upstream model, by longest matching prefix.
/// Cache writes: Anthropic's five-minute cache writes cost 1.25 times the
/// input price and one-hour ones twice it; OpenAI's caching writes at the
/// input price.
pub fn builtin(upstream_model: &str) -> Option<Price> {
    let upstream_model = base_name(upstream_model);
    let micro = |usd: f64| (usd * 1e6).round() as u64;
    let claude = upstream_model.starts_with("claude");
    let (write, write_1h) = if claude { (1.25, 2.0) } else { (1.0, 1.0) };
    let (prefix, i, o, c) = *TABLE
        .iter()
        .filter(|(prefix, ..)| upstream_model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())?;
    // A version the table does not name is not priced as another: not
    // `gpt-5.3` as `gpt-5`, `gpt-5.10` as `gpt-5.1`, nor a Pro model
    // (ten times dearer) as its family's.
    let next = upstream_model.as_bytes().get(prefix.len());
    let rest = &upstream_model[prefix.len()..];
    if VERSIONED.iter().any(|v| upstream_model.starts_with(v) && v.len() > prefix.len())
        || next.is_some_and(u8::is_ascii_digit)
        || (is_pro(upstream_model) && !is_pro(prefix))
        || DEARER_VARIANTS.iter().any(|w| rest.contains(w))
    {
        return None;
    }
    let long_context = LONG_CONTEXT.iter().find(|(p, _)| *p == prefix).map(|&(_, above_tokens)| LongContext {
        above_tokens,
        input_per_mtok: micro(i * 2.0),
        output_per_mtok: micro(o * 1.5),
        cached_input_per_mtok: micro(c * 2.0),
        cache_write_per_mtok: micro(i * write * 2.0),
        cache_write_1h_per_mtok: micro(i * write_1h * 2.0),
    });
    let (audio_in, audio_out) = AUDIO
        .iter()
        .filter(|(prefix, ..)| upstream_model.starts_with(prefix))
        .max_by_key(|(prefix, ..)| prefix.len())
        .map_or((i, o), |&(_, ai, ao)| (ai, ao));
    Some(Price {
        input_per_mtok: micro(i),
        output_per_mtok: micro(o),
        cached_input_per_mtok: micro(c),
        cache_write_per_mtok: micro(i * write),
        cache_write_1h_per_mtok: micro(i * write_1h),
        audio_input_per_mtok: micro(audio_in),
        audio_output_per_mtok: micro(audio_out),
        long_context,
        // OpenAI's priority processing costs 1.7 to 2 times the standard
        // rates by model (gpt-4o 1.7, gpt-4.1 and o3 1.75, gpt-5 2), flex
        // half: the dearest multiple, billed high rather than low.
        // Anthropic's priority capacity is bought as a commitment: its
        // tokens at the list prices.
        // Anthropic has no flex tier: a proxy that echoes a request's
        // `flex` does not halve Claude's bill.
        priority_permille: if claude { 0 } else { 2000 },
        flex_permille: if claude { 0 } else { 500 },
    })
}

/// (upstream model name prefix, whether the model reasons by default
/// without streaming its reasoning), longest prefix first where two
/// match. From the providers' model pages as written in December 2026:
/// OpenAI's o-series and GPT-5 family reason by default (GPT-5.1 and
/// later default to an effort of `none`, but are marked too: a mark
/// wrongly set only makes a cancelled answer read on to its end, one
/// wrongly missing lets it go unbilled); `gpt-5-chat` does not reason.
/// Gemini 2.5 Pro and Flash think by default (Flash-Lite does not),
/// Gemini 3 too; xAI's Grok 4 and Grok 3 Mini reason and stream none of
/// it. Anthropic's models think only when a request asks (`thinking`,
/// read from the body) and DeepSeek's reasoner streams its reasoning.
const REASONS: &[(&str, bool)] = &[
    ("o1", true),
    ("o3", true),
    ("o4-mini", true),
    ("codex-mini", true),
    ("gpt-5", true),
    ("gpt-5-chat", false),
    ("gemini-2.5-pro", true),
    ("gemini-2.5-flash", true),
    ("gemini-2.5-flash-lite", false),
    ("gemini-2.5-flash-image", false),
    ("gemini-3", true),
    ("grok-4", true),
    ("grok-3-mini", true),
];

/// Whether an upstream model searches the web on every request, whatever
/// the request asks: OpenAI's chat search models (`gpt-4o-search-preview`,
/// `gpt-4o-mini-search-preview`, `gpt-5-search-api`), billed a fee per
/// search beyond their tokens. A team reaches them only where it may use
/// the web search tool (`hosted_tools`).
pub fn always_searches(upstream_model: &str) -> bool {
    let name = base_name(upstream_model);
    name.contains("-search-preview") || name.contains("-search-api")
}

/// Whether an upstream model reasons before it answers without streaming
/// that reasoning, by default: then its answer, cut short, bills tokens
/// the gateway never saw (`[[models]] reasoning` overrides it).
pub fn reasons_unseen(upstream_model: &str) -> bool {
    let upstream_model = base_name(upstream_model);
    REASONS
        .iter()
        .filter(|(prefix, _)| upstream_model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .is_some_and(|&(_, reasons)| reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reasoning models by their names and routing names, the longest
    /// prefix deciding: `gpt-5-chat` is not `gpt-5`, nor Flash-Lite Flash.
    #[test]
    fn reasoning_models_are_known_by_name() {
        for m in ["o3", "o3-mini-2025-01-31", "o1", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1", "gpt-5-codex"] {
            assert!(reasons_unseen(m), "{m}");
        }
        for m in ["models/gemini-2.5-pro", "google/gemini-2.5-flash-001", "gemini-3-pro-preview", "grok-4-0709"] {
            assert!(reasons_unseen(m), "{m}");
        }
        let plain = [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-5-chat-latest",
            "gemini-2.5-flash-lite",
            "gemini-2.0-flash",
            "claude-sonnet-4-5",
            "us.anthropic.claude-opus-4-1-20250805-v1:0",
            "deepseek-reasoner",
            "mock-model",
            "",
        ];
        for m in plain {
            assert!(!reasons_unseen(m), "{m}");
        }
    }

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(builtin("gpt-4o-mini-2024-07-18").unwrap().input_per_mtok, 150_000);
        assert_eq!(builtin("gpt-4o-2024-08-06").unwrap().output_per_mtok, 10_000_000);
        assert_eq!(builtin("claude-sonnet-4-5").unwrap().cached_input_per_mtok, 300_000);
        assert_eq!(builtin("o3").unwrap().input_per_mtok, 2_000_000);
        assert!(builtin("llama-3-70b").is_none());
        assert_eq!(builtin("claude-sonnet-4-5").unwrap().cache_write_per_mtok, 3_750_000);
        assert_eq!(builtin("gpt-4o").unwrap().cache_write_per_mtok, 2_500_000);
    }

    /// A variant dearer than its family is priced by its own row, or not at
    /// all: never as its family (found by a review: `gpt-4o-2024-05-13`
    /// billed at half its input price, `o3-deep-research` at a fifth).
    #[test]
    fn dearer_variants_are_not_priced_as_their_family() {
        let rates = |m: &str| builtin(m).map(|p| (p.input_per_mtok, p.output_per_mtok));
        assert_eq!(rates("gpt-4o-2024-05-13"), Some((5_000_000, 15_000_000)));
        assert_eq!(rates("gpt-4o-2024-08-06"), Some((2_500_000, 10_000_000)));
        assert_eq!(rates("o3-deep-research"), Some((10_000_000, 40_000_000)));
        assert_eq!(rates("o3-deep-research-2025-06-26"), Some((10_000_000, 40_000_000)));
        assert_eq!(rates("o4-mini-deep-research"), Some((2_000_000, 8_000_000)));
        assert_eq!(rates("gpt-3.5-turbo-instruct"), Some((1_500_000, 2_000_000)));
        assert_eq!(rates("gemini-2.5-flash-image-preview"), Some((300_000, 30_000_000)));
        assert_eq!(rates("gpt-4o-search-preview"), Some((2_500_000, 10_000_000)));
        for m in [
            "gpt-5-deep-research",
            "gemini-2.0-flash-preview-image-generation",
            "gpt-4o-realtime-preview",
            "gpt-4o-mini-tts",
            "gpt-4o-transcribe",
            "o3-search",
        ] {
            assert_eq!(rates(m), None, "{m}");
        }
        // Names that only look alike keep their family's price.
        assert!(builtin("meta.llama3-1-70b-instruct-v1:0").is_some());
        assert!(builtin("mistral.mistral-7b-instruct-v0:2").is_some());
        assert!(builtin("gpt-4o-audio-preview-2024-12-17").is_some());
        assert!(builtin("gemini-2.5-flash-preview-05-20").is_some());
    }

    /// Bedrock's, Vertex AI's and Gemini's routing names are priced by the
    /// model inside them; Claude's cache writes cost 1.25 times its input
    /// wherever it runs.
    #[test]
    fn routing_names_are_priced_by_the_model_inside() {
        let claude = builtin("us.anthropic.claude-sonnet-4-20250514-v1:0").unwrap();
        assert_eq!(claude, builtin("claude-sonnet-4-20250514").unwrap());
        assert_eq!(claude.cache_write_per_mtok, 3_750_000);
        assert_eq!(builtin("anthropic.claude-3-haiku-20240307-v1:0").unwrap().input_per_mtok, 250_000);
        assert_eq!(builtin("amazon.nova-micro-v1:0").unwrap().output_per_mtok, 140_000);
        assert_eq!(builtin("eu.amazon.nova-pro-v1:0").unwrap().input_per_mtok, 800_000);
        assert_eq!(builtin("mistral.mixtral-8x7b-instruct-v0:1").unwrap().output_per_mtok, 700_000);
        assert_eq!(builtin("models/gemini-2.5-flash").unwrap().input_per_mtok, 300_000);
        assert_eq!(builtin("google/gemini-2.0-flash-001").unwrap().output_per_mtok, 400_000);
        // The longest name wins: Flash-Lite is not priced as Flash.
        assert_eq!(builtin("gemini-2.5-flash-lite").unwrap().input_per_mtok, 100_000);
        assert_eq!(builtin("gemini-2.5-pro").unwrap().cached_input_per_mtok, 312_500);
        // No discount where none was confirmed; no price where sources disagree.
        let nova = builtin("amazon.nova-lite-v1:0").unwrap();
        assert_eq!(nova.cached_input_per_mtok, nova.input_per_mtok);
        assert_eq!(builtin("meta.llama3-3-70b-instruct-v1:0").unwrap().output_per_mtok, 720_000);
        assert_eq!(builtin("us.meta.llama4-maverick-17b-instruct-v1:0").unwrap().output_per_mtok, 970_000);
        assert_eq!(builtin("meta.llama3-1-8b-instruct-v1:0").unwrap().input_per_mtok, 220_000);
        assert!(builtin("meta.llama3-2-1b-instruct-v1:0").is_none(), "no agreed price");
        // Only a leading routing prefix is taken off.
        assert!(builtin("my.anthropic.claude-sonnet-4").is_none());
    }

    /// Anthropic's pricing page: one-hour writes at twice the input, the
    /// newer Opus at a third of the old, Sonnet 4 and 4.5 (not 4.6) and
    /// Gemini 2.5 Pro dearer past 200K prompt tokens, every token of the
    /// request.
    #[test]
    fn long_prompts_hour_long_cache_writes_and_audio_have_their_prices() {
        let sonnet = builtin("claude-sonnet-4-5-20250929").unwrap();
        assert_eq!(sonnet.cache_write_1h_per_mtok, 6_000_000);
        assert_eq!(builtin("claude-3-haiku").unwrap().cache_write_1h_per_mtok, 500_000);
        assert_eq!(builtin("gpt-4o").unwrap().cache_write_1h_per_mtok, 2_500_000);
        assert_eq!(sonnet.for_prompt(200_000), sonnet, "200K is still the lower tier");
        let long = sonnet.for_prompt(200_001);
        assert_eq!((long.input_per_mtok, long.output_per_mtok), (6_000_000, 22_500_000));
        assert_eq!((long.cached_input_per_mtok, long.cache_write_per_mtok), (600_000, 7_500_000));
        assert_eq!(long.cache_write_1h_per_mtok, 12_000_000);
        assert_eq!(builtin("us.anthropic.claude-sonnet-4-20250514-v1:0").unwrap().for_prompt(250_000), long);
        let flat = builtin("claude-sonnet-4-6").unwrap();
        assert_eq!(flat.for_prompt(900_000), flat, "Sonnet 4.6 has no long-context premium");
        let gemini = builtin("models/gemini-2.5-pro").unwrap().for_prompt(300_000);
        assert_eq!((gemini.input_per_mtok, gemini.output_per_mtok), (2_500_000, 15_000_000));
        assert_eq!(gemini.cached_input_per_mtok, 625_000);
        let flash = builtin("gemini-2.5-flash").unwrap();
        assert_eq!(flash.for_prompt(900_000), flash);
        assert_eq!(builtin("claude-opus-4-1-20250805").unwrap().input_per_mtok, 15_000_000);
        let opus = builtin("claude-opus-4-5-20251101").unwrap();
        assert_eq!(
            (opus.input_per_mtok, opus.output_per_mtok, opus.cache_write_1h_per_mtok),
            (5_000_000, 25_000_000, 10_000_000)
        );
        assert_eq!(builtin("claude-sonnet-5-5").unwrap().output_per_mtok, 10_000_000);
        // Audio at its own rates in the models that hear and speak, as text
        // elsewhere.
        let audio = builtin("gpt-4o-audio-preview-2025-06-03").unwrap();
        assert_eq!(
            (audio.input_per_mtok, audio.audio_input_per_mtok, audio.audio_output_per_mtok),
            (2_500_000, 40_000_000, 80_000_000)
        );
        assert_eq!(builtin("gpt-4o-audio-preview-2024-10-01").unwrap().audio_output_per_mtok, 200_000_000);
        let mini = builtin("gpt-4o-mini-audio-preview").unwrap();
        assert_eq!((mini.input_per_mtok, mini.audio_input_per_mtok), (150_000, 10_000_000));
        let speaks = builtin("gpt-audio-2025-08-28").unwrap();
        assert_eq!((speaks.output_per_mtok, speaks.audio_output_per_mtok), (10_000_000, 64_000_000));
        assert_eq!(builtin("gpt-audio-mini").unwrap().audio_input_per_mtok, 10_000_000);
        assert_eq!(builtin("models/gemini-2.5-flash").unwrap().audio_input_per_mtok, 1_000_000);
        assert_eq!(builtin("gemini-2.5-flash-lite").unwrap().audio_input_per_mtok, 300_000);
        assert_eq!(builtin("gemini-2.5-pro").unwrap().audio_input_per_mtok, 1_250_000, "audio as text");
        let text = builtin("gpt-4o").unwrap();
        assert_eq!((text.audio_input_per_mtok, text.audio_output_per_mtok), (2_500_000, 10_000_000));
        // Before an answer: the dearest rate a token may be billed at, and
        // the long tier from four fifths of its threshold on.
        let before = sonnet.before_answer(|| false);
        assert_eq!((before.input_per_mtok, before.output_per_mtok), (3_000_000, 15_000_000));
        assert_eq!(sonnet.before_answer(|| true).input_per_mtok, 6_000_000, "hour-long writes");
        assert_eq!(sonnet.before_answer(|| true).for_counted_prompt(160_001).input_per_mtok, 12_000_000);
        assert_eq!(before.for_counted_prompt(160_000), Price { long_context: None, ..before });
        assert_eq!(before.for_counted_prompt(160_001).output_per_mtok, 22_500_000);
        let spoken = audio.before_answer(|| panic!("OpenAI's writes cost no more than input: not asked"));
        assert_eq!((spoken.input_per_mtok, spoken.output_per_mtok), (40_000_000, 80_000_000));
        // GPT-5's family by version; a version not in the table has none.
        assert_eq!(builtin("gpt-5-2025-08-07").unwrap().input_per_mtok, 1_250_000);
        assert_eq!(builtin("gpt-5-mini-2025-08-07").unwrap().output_per_mtok, 2_000_000);
        assert_eq!(builtin("gpt-5-chat-latest").unwrap().output_per_mtok, 10_000_000);
        assert_eq!(builtin("gpt-5.2-2025-12-11").unwrap().output_per_mtok, 14_000_000);
        assert_eq!(builtin("gpt-5.1-codex").unwrap().input_per_mtok, 1_250_000);
        assert_eq!(builtin("gpt-5.4-mini").unwrap().input_per_mtok, 750_000);
        let five_five = builtin("gpt-5.5").unwrap();
        assert_eq!(five_five.for_prompt(270_001).input_per_mtok, 10_000_000);
        assert_eq!(five_five.for_prompt(270_000).output_per_mtok, 30_000_000);
        assert!(builtin("gpt-5.3-codex").is_none(), "a version the table does not name");
        assert!(builtin("gpt-5.9").is_none());
        assert!(builtin("gpt-5.10").is_none(), "not gpt-5.1");
        assert!(builtin("gpt-5.4-pro").is_none() && builtin("gpt-5.5-pro-2026").is_none(), "Pro is priced apart");
        assert!(builtin("o3-pro").is_none());
        assert_eq!(builtin("gpt-4o-prod").unwrap().input_per_mtok, 2_500_000, "a deployment's name, not Pro");
        assert_eq!(builtin("gpt-4o-proxy-eu").unwrap().input_per_mtok, 2_500_000);
        assert_eq!(builtin("gpt-5.2-pro").unwrap().output_per_mtok, 168_000_000);
        assert_eq!(builtin("gemini-2.5-pro-preview").unwrap().input_per_mtok, 1_250_000);
        assert_eq!(builtin("gpt-4o-2024-08-06").unwrap().input_per_mtok, 2_500_000, "a date is not a version");
        // Priority at twice the rates for OpenAI's models, flex at half;
        // Claude's priority at its list prices.
        let gpt = builtin("gpt-5").unwrap();
        assert_eq!(gpt.at_tier(Tier::Priority).output_per_mtok, 20_000_000);
        assert_eq!(gpt.at_tier(Tier::Flex).input_per_mtok, 625_000);
        assert_eq!(gpt.at_tier(Tier::Standard), gpt);
        assert_eq!(sonnet.at_tier(Tier::Priority), sonnet);
        assert_eq!(sonnet.at_tier(Tier::Flex).input_per_mtok, 3_000_000, "Anthropic has no flex tier");
        let gemini = builtin("gemini-2.5-pro").unwrap();
        assert_eq!(gemini.at_tier(Tier::Flex).for_prompt(300_000).input_per_mtok, 1_250_000, "the long tier halved");
        // Every long tier names a row that exists.
        for (prefix, _) in LONG_CONTEXT {
            assert!(TABLE.iter().any(|(p, ..)| p == prefix), "{prefix}");
        }
    }
}
