//! The route phase's rules ([`crate::pipeline::route`] runs it): the
//! body's top level scanned, the model's route found with one hash probe,
//! the key's access to it tested with one bit, and the tools the body
//! offers the provider to run and the service tier it asks for held to
//! what the key's team allows.

use tollgate_policy::{Route, VirtualKey};
use tollgate_protocol::openai::{scan_request, ChatRequestFields};

use crate::error::GatewayError;
use crate::state::CoreState;

/// A request resolved to its route; [`super::fallback`] picks the target
/// of each attempt.
pub struct Routed<'s> {
    pub fields: ChatRequestFields,
    /// The route's index (for its breakers) and the route.
    pub index: usize,
    pub route: &'s Route,
}

/// Routes a request and notes its model in `trace` (its route, or the
/// name asked for when no route has it), refused or not: a refusal's
/// record says which model was asked for.
pub fn route<'s>(
    state: &'s CoreState,
    key: &VirtualKey,
    body: &[u8],
    trace: &mut crate::record::Trace<'_>,
) -> Result<Routed<'s>, GatewayError> {
    let fields = scan_request(body).map_err(GatewayError::Body)?;
    let model = fields.model.get(body);
    let Some((index, route)) = state.config.routes.find(model) else {
        let name = shown_name(model);
        trace.model_requested = Some(name.clone().into_boxed_str());
        return Err(GatewayError::UnknownModel(name));
    };
    trace.route = Some(index);
    authorize(state, key, index, &route.name)?;
    Ok(Routed { fields, index, route })
}

/// Bytes of a refused model name kept at most: no configured name is
/// longer, and the record, its span and its table row hold it.
const SHOWN_NAME_MAX: usize = 256;

/// A model name no route has, as records, reports and the error show it:
/// at most [`SHOWN_NAME_MAX`] bytes (then `…`), with control characters
/// and bidirectional formatting escaped (`\u{202e}`). Any key holder
/// chooses it (found by a review: a name of megabytes was copied into the
/// record, and C1 controls reached the operator's terminal through
/// `tollgate report`).
fn shown_name(model: &[u8]) -> String {
    // No more is read than can be shown (each byte shows as one at least).
    let lossy = String::from_utf8_lossy(&model[..model.len().min(SHOWN_NAME_MAX + 4)]);
    let mut out = String::new();
    for c in lossy.chars() {
        let before = out.len();
        if crate::record::hidden_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
        if out.len() > SHOWN_NAME_MAX {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// Whether some target of `route` gets the body in the client's own API,
/// untranslated: only there can a tool the provider runs, or a service
/// tier, reach the provider as asked (a translation writes function tools
/// only, and no tier). Chat completions to an OpenAI-style provider, the
/// Responses API to one that serves it (`responses_api`), Messages to
/// Anthropic.
pub fn passes_through(state: &CoreState, front: super::Front, route: &tollgate_policy::Route) -> bool {
    use tollgate_policy::ProviderKind::*;
    route.targets.iter().any(|t| {
        let Some(up) = state.upstreams.get(t.provider) else { return false };
        match front {
            super::Front::OpenAi => matches!(up.kind, Mock | OpenAi | OpenAiCompatible),
            super::Front::Responses => matches!(up.kind, Mock | OpenAi | OpenAiCompatible) && up.responses_api,
            super::Front::Anthropic => up.kind == Anthropic,
            // The legacy completions body goes to an OpenAI-style provider
            // as it came (OpenRouter reads `plugins` there too).
            super::Front::Completions => matches!(up.kind, Mock | OpenAi | OpenAiCompatible),
            super::Front::Embeddings | super::Front::CountTokens => false,
        }
    })
}

/// A service tier priced above standard (OpenAI's `priority`, `scale`)
/// costs more than the gateway's prices say: asked for only by a team that
/// allows it (`service_tiers`).
pub fn allow_tier(state: &CoreState, key: &VirtualKey, tier: &[u8]) -> Result<(), GatewayError> {
    if tollgate_policy::team::standard_tier(tier)
        || state.config.teams.get(key.team).is_some_and(|t| t.allows_tier(tier))
    {
        return Ok(());
    }
    Err(GatewayError::ServiceTierNotAllowed { tier: String::from_utf8_lossy(tier).into_owned() })
}

/// A tool the provider runs and may bill per call (web search, a code
/// interpreter, image generation...) costs more than the tokens the
/// gateway prices: offered only by a team that allows it (`hosted_tools`),
/// when the body may reach a provider that runs it ([`passes_through`]: a
/// translation drops it). Asked only of a body the route's scan found such
/// a tool in (`ChatRequestFields::hosted_tools`); one the walk cannot name
/// is refused all the same.
pub fn allow_tools(state: &CoreState, key: &VirtualKey, body: &[u8]) -> Result<(), GatewayError> {
    let team = state.config.teams.get(key.team);
    let mut refused = None;
    let mut named = false;
    tollgate_protocol::openai::hosted_tools(body, |tool| {
        named = true;
        if refused.is_none() && !team.is_some_and(|t| t.allows_tool(tool)) {
            refused = Some(String::from_utf8_lossy(tool).into_owned());
        }
    });
    match refused {
        Some(tool) => Err(GatewayError::ToolNotAllowed { tool }),
        // The scan saw one the walk could not name (a body nested past the
        // walk's depth before its tools): refused unless any is allowed.
        None if !named && !team.is_some_and(|t| t.hosted_tools.iter().any(|t| t == "*")) => {
            Err(GatewayError::ToolNotAllowed { tool: "tools".to_string() })
        }
        None => Ok(()),
    }
}

/// A model one of whose targets searches the web on every request
/// ([`tollgate_policy::prices::always_searches`]): its per-search fee is
/// not in the gateway's prices, as a hosted tool's is not, so only a team
/// that may offer the web search tool reaches it.
pub fn allow_search_model(state: &CoreState, key: &VirtualKey, route: &Route) -> Result<(), GatewayError> {
    if state.config.teams.get(key.team).is_some_and(|t| t.allows_tool(b"web_search")) {
        return Ok(());
    }
    let model = route.targets.iter().find(|t| t.searches).map_or(route.name.as_str(), |t| t.upstream_model.as_str());
    Err(GatewayError::ToolNotAllowed { tool: format!("web_search (model {model} searches on every request)") })
}

/// Access control: one bit test against the key's resolved model set.
pub fn authorize(state: &CoreState, key: &VirtualKey, model_index: usize, model: &str) -> Result<(), GatewayError> {
    if key.models.contains(model_index) {
        return Ok(());
    }
    // Who was refused goes to the log (and the record, by key); the answer
    // names only the model, as for one that does not exist.
    let team = state.config.teams.get(key.team).map_or("", |t| t.name.as_str());
    tracing::debug!(model, team, key = %key.name, "model not allowed for this key");
    Err(GatewayError::ModelNotAllowed { model: model.to_string() })
}

#[cfg(test)]
mod shown_name_tests {
    #[test]
    fn refused_names_are_shown_short_and_without_controls() {
        assert_eq!(super::shown_name(b"gpt-5-nano"), "gpt-5-nano");
        assert_eq!(super::shown_name("x\u{9d}52;c\u{9c}y\u{202e}".as_bytes()), "x\\u{9d}52;c\\u{9c}y\\u{202e}");
        let long = super::shown_name("é".repeat(100_000).as_bytes());
        assert!(long.len() <= super::SHOWN_NAME_MAX + '…'.len_utf8() && long.ends_with('…'), "{}", long.len());
        assert_eq!(super::shown_name(b"\xff"), "\u{fffd}");
        assert_eq!(super::shown_name("a\u{2028}b\u{feff}".as_bytes()), "a\\u{2028}b\\u{feff}");
    }
}
