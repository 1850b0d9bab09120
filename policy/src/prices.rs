//! Prices: what a model's tokens cost ([`Price`], integer micro-dollars),
//! and the built-in prices, used for a model whose configuration gives no
//! `price`. The configuration and the routing table both hold prices, so
//! the type lives here, beneath both.
//!
//! Source of the built-in table: the providers' public price lists
//! (openai.com/api/pricing, anthropic.com/pricing) as this table was
//! written, November 2026, from figures published through mid-2025;
//! standard (not batch) rates in USD per million tokens. Providers change
//! prices: a configured `price` always wins, and a model missing here
//! simply has no cost.

/// Prices in micro-dollars per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Price {
    pub input_per_mtok: u64,
    pub output_per_mtok: u64,
    pub cached_input_per_mtok: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_per_mtok: u64,
}

/// (upstream model name prefix, input, output, cached input), USD per 1M
/// tokens. Longer prefixes come first, so the most specific one matches.
const TABLE: &[(&str, f64, f64, f64)] = &[
    ("gpt-4o-mini", 0.15, 0.60, 0.075),
    ("gpt-4o", 2.50, 10.00, 1.25),
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
    ("claude-opus-4", 15.00, 75.00, 1.50),
    ("claude-3-opus", 15.00, 75.00, 1.50),
];

/// The built-in price of an upstream model, by longest matching prefix.
/// Cache writes: Anthropic's five-minute cache writes cost 1.25 times the
/// input price; OpenAI's caching writes at the input price.
pub fn builtin(upstream_model: &str) -> Option<Price> {
    let micro = |usd: f64| (usd * 1e6).round() as u64;
    let write = if upstream_model.starts_with("claude") { 1.25 } else { 1.0 };
    TABLE.iter().filter(|(prefix, ..)| upstream_model.starts_with(prefix)).max_by_key(|(prefix, ..)| prefix.len()).map(
        |&(_, i, o, c)| Price {
            input_per_mtok: micro(i),
            output_per_mtok: micro(o),
            cached_input_per_mtok: micro(c),
            cache_write_per_mtok: micro(i * write),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
