//! What every relay path reads from an answer and writes into one: the
//! provider's usage as the record's [`TokenUsage`] (from a whole JSON
//! answer, a stream's usage chunk, or Anthropic's translated counts), a
//! Responses answer's id ([`response_id`]), the
//! bound on an answer kept whole, and the error event that ends a stream
//! the gateway cannot finish. A leaf of `proxy`, so that [`super::relay`],
//! [`super::stream`] and [`super::translate`] share it without importing
//! one another in a circle.

use bytes::BytesMut;
use tollgate_protocol::anthropic;

pub use tollgate_protocol::openai::Finish;

use crate::record::TokenUsage;

/// An upstream answer read whole for translation may be at most this big.
pub const TRANSLATED_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// An answer reported usage that cannot be believed (a count that is not
/// a whole number, or past [`tollgate_protocol::openai::USAGE_TOKENS_MAX`],
/// or far below what the gateway counted passing): it is set aside, the
/// request is billed from the gateway's own counts, and the record says
/// so (`"rejected": true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected;

/// What an answer says of its usage: none, believed, or [`Rejected`].
pub type Usage = Result<Option<TokenUsage>, Rejected>;

/// The id of the response a Responses answer (a JSON body, or a stream
/// event) carries, as the gateway keeps it
/// ([`tollgate_protocol::responses::response_id`]).
pub fn response_id(doc: &[u8]) -> Option<Box<str>> {
    tollgate_protocol::responses::response_id(doc).and_then(|raw| std::str::from_utf8(raw).ok()).map(Box::from)
}

/// The usage and finish reasons of a whole JSON answer (OpenAI's or
/// Anthropic's), read by structure in one pass.
pub fn answer_usage(body: &[u8]) -> (Usage, Finish) {
    let Some(facts) = tollgate_protocol::openai::read_answer(body) else { return (Ok(None), Finish::default()) };
    if facts.reported.unreadable {
        return (Err(Rejected), facts.finish);
    }
    (Ok(facts.usage().map(token_usage)), facts.finish)
}

/// The record's usage from an Anthropic answer's, read by the translator;
/// [`Rejected`] for a count past
/// [`tollgate_protocol::openai::USAGE_TOKENS_MAX`], as for answers read
/// directly.
pub fn anthropic_usage(u: anthropic::Usage) -> Usage {
    let max = tollgate_protocol::openai::USAGE_TOKENS_MAX;
    if u.unreadable || [u.input, u.output, u.cache_read, u.cache_write].iter().any(|&n| n > max) {
        return Err(Rejected);
    }
    // No input count, no prompt to bill: the gateway counts it
    // (`forward::estimate_usage`), not a prompt of 0 (found by a review,
    // through the translation: `message_start` with `"usage": null`, or
    // an answer with no usage at all, which read as 0 and 0). The output
    // reported is kept, as `openai::Reported::usage` keeps it; with
    // neither there is no report.
    if !u.input_reported && u.output == 0 {
        return Ok(None);
    }
    Ok(Some(TokenUsage {
        prompt_unreported: !u.input_reported,
        prompt: u.input.saturating_add(u.cache_read).saturating_add(u.cache_write),
        completion: u.output,
        cached: u.cache_read,
        cache_write: u.cache_write,
        cache_write_1h: u.cache_write_1h.min(u.cache_write),
        tier: tier(u.tier),
        ..TokenUsage::default()
    }))
}

/// Counts a translator of another API read (Gemini's, Bedrock's, made
/// chat's terms), bounded as every provider's are: one past
/// [`tollgate_protocol::openai::USAGE_TOKENS_MAX`] sets the report aside.
pub fn checked_usage(u: Option<tollgate_protocol::openai::Usage>) -> Usage {
    let max = tollgate_protocol::openai::USAGE_TOKENS_MAX;
    match u {
        Some(u) if [u.prompt, u.completion, u.cached, u.cache_write].iter().any(|&n| n > max) => Err(Rejected),
        u => Ok(u.map(token_usage)),
    }
}

/// The finish reason the gateway gives an answer it ends itself, in the
/// client's API's names: `capped` by a request ceiling, otherwise withheld
/// by a guardrail.
pub fn gateway_finish(front: super::Front, capped: bool) -> &'static str {
    use super::Front;
    match (front, capped) {
        (Front::OpenAi | Front::Completions | Front::Embeddings | Front::Responses, false) => "content_filter",
        (Front::OpenAi | Front::Completions | Front::Embeddings, true) => "length",
        (Front::Anthropic | Front::CountTokens, false) => "refusal",
        (Front::Anthropic | Front::CountTokens, true) => "max_tokens",
        (Front::Responses, true) => "max_output_tokens",
    }
}

/// The gateway's own reason, alone.
pub fn only(name: &'static str) -> Finish {
    let mut f = Finish::default();
    f.push(name);
    f
}

/// The record's usage from what a provider's answer reported.
pub fn token_usage(u: tollgate_protocol::openai::Usage) -> TokenUsage {
    TokenUsage {
        prompt: u.prompt,
        completion: u.completion,
        cached: u.cached,
        cache_write: u.cache_write,
        cache_write_1h: u.cache_write_1h,
        audio_prompt: u.audio_prompt,
        audio_completion: u.audio_completion,
        tier: tier(u.tier),
        prompt_unreported: u.prompt_unreported,
    }
}

/// The price's tier for the one an answer reported.
fn tier(t: tollgate_protocol::openai::Tier) -> tollgate_policy::prices::Tier {
    use tollgate_policy::prices::Tier;
    match t {
        tollgate_protocol::openai::Tier::Flex => Tier::Flex,
        tollgate_protocol::openai::Tier::Standard => Tier::Standard,
        tollgate_protocol::openai::Tier::Priority => Tier::Priority,
    }
}

/// An error event ending an event stream, in the client's API's format.
/// OpenAI's: an error body, then `[DONE]`, so SDKs see an error instead of
/// a stream that simply stops. Anthropic's: a named `error` event (its
/// SDKs act on named events only). The Responses API's: its `error` event,
/// numbered `sequence`.
pub fn write_error_event(front: super::Front, message: &str, code: &str, sequence: u64, out: &mut BytesMut) {
    let mut json = BytesMut::new();
    match front {
        super::Front::OpenAi | super::Front::Completions | super::Front::Embeddings => {
            tollgate_protocol::openai::write_error_body(&mut json, message, "server_error", code);
            tollgate_protocol::sse::write_event(out, None, &json);
            out.extend_from_slice(tollgate_protocol::sse::DONE_EVENT);
        }
        super::Front::Anthropic | super::Front::CountTokens => {
            json.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
            tollgate_protocol::openai::write_json_string(&mut json, message);
            json.extend_from_slice(b"}}");
            tollgate_protocol::sse::write_event(out, Some(b"error"), &json);
        }
        super::Front::Responses => tollgate_protocol::responses::write_error_event(out, message, code, sequence),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts read by another API's translator are bounded as every
    /// provider's are: one past 2^32 sets the report aside.
    #[test]
    fn another_apis_counts_past_the_bound_are_set_aside() {
        let max = tollgate_protocol::openai::USAGE_TOKENS_MAX;
        let u = |prompt, completion, cached, cache_write| tollgate_protocol::openai::Usage {
            prompt,
            completion,
            cached,
            cache_write,
            ..Default::default()
        };
        assert_eq!(checked_usage(None), Ok(None));
        let fine = checked_usage(Some(u(max, 5, 1, 0))).unwrap().unwrap();
        assert_eq!((fine.prompt, fine.completion, fine.cached), (max, 5, 1));
        for past in [u(max + 1, 0, 0, 0), u(0, 1 << 60, 0, 0), u(0, 0, max + 1, 0), u(0, 0, 0, u64::MAX)] {
            assert_eq!(checked_usage(Some(past)), Err(Rejected), "{past:?}");
        }
    }
}
