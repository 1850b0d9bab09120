//! Which of a client's request headers reach a provider: an allow-list,
//! never a deny-list, so that a header nobody here has heard of (a new
//! beta flag, an organisation selector, a provider's billing switch) stays
//! at the gateway until an operator names it.
//!
//! Every kind gets [`ALWAYS`]; the bundled mock also gets its `x-mock-*`
//! test controls; a provider's `forward_headers` adds names or `prefix*`
//! patterns. Credentials and hop-by-hop headers can never be added: the
//! gateway writes those itself.

use crate::ProviderKind;

/// What every provider receives: the body's type, what the client
/// accepts, who it is, and trace context.
pub const ALWAYS: &[&str] = &["content-type", "accept", "user-agent", "traceparent", "tracestate"];

/// Names an operator cannot add: the gateway's credential slots, the
/// hop-by-hop headers (RFC 9110 7.6.1) and the ones the gateway sets.
const NEVER: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "accept-encoding",
    "anthropic-version",
];

/// One configured addition.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `x-mock-*`: every name that starts with the text before the star.
    Prefix(String),
}

impl Pattern {
    fn matches(&self, name: &[u8]) -> bool {
        match self {
            Pattern::Exact(n) => n.as_bytes().eq_ignore_ascii_case(name),
            Pattern::Prefix(p) => name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p.as_bytes()),
        }
    }
}

/// The allow-list of one provider.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ForwardHeaders {
    extra: Vec<Pattern>,
}

impl ForwardHeaders {
    /// The list for `kind` with the operator's `additions`, each already
    /// checked by [`ForwardHeaders::check`].
    pub fn new(kind: ProviderKind, additions: &[String]) -> ForwardHeaders {
        let mut extra: Vec<Pattern> = additions.iter().filter_map(|a| Self::check(a).ok()).collect();
        if kind == ProviderKind::Mock {
            extra.push(Pattern::Prefix("x-mock-".into()));
        }
        ForwardHeaders { extra }
    }

    /// Whether a client header named `name` goes upstream.
    /// (The short lists first: most names are in neither, and are
    /// refused without reading the long one.)
    pub fn allows(&self, name: &[u8]) -> bool {
        let listed = ALWAYS.iter().any(|a| a.as_bytes().eq_ignore_ascii_case(name))
            || self.extra.iter().any(|p| p.matches(name));
        listed && !NEVER.iter().any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }

    /// A configured addition, or why it cannot be one.
    fn check(addition: &str) -> Result<Pattern, String> {
        let lower = addition.to_ascii_lowercase();
        let (name, prefix) = match lower.strip_suffix('*') {
            Some(p) => (p, true),
            None => (lower.as_str(), false),
        };
        let token = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !token {
            return Err(format!(
                "forward_headers entry {addition:?} is not a header name; write it like \"anthropic-beta\" or \"x-mock-*\""
            ));
        }
        let blocked = NEVER.iter().find(|n| if prefix { n.starts_with(name) } else { **n == name });
        if let Some(n) = blocked {
            return Err(format!(
                "forward_headers entry {addition:?} would let clients set {n:?}, which the gateway writes itself; remove it"
            ));
        }
        Ok(if prefix { Pattern::Prefix(name.to_string()) } else { Pattern::Exact(name.to_string()) })
    }

    /// Checks an addition for the configuration's validator.
    pub fn problem(addition: &str) -> Option<String> {
        Self::check(addition).err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_headers_pass() {
        let openai = ForwardHeaders::new(ProviderKind::OpenAi, &[]);
        for ok in ["Content-Type", "accept", "user-agent", "traceparent"] {
            assert!(openai.allows(ok.as_bytes()), "{ok}");
        }
        // What a hostile tenant would try: who pays, unpriced features,
        // credentials, hop-by-hop, the mock's controls on a real provider.
        for no in [
            "OpenAI-Organization",
            "openai-project",
            "anthropic-beta",
            "openai-beta",
            "authorization",
            "x-api-key",
            "api-key",
            "connection",
            "transfer-encoding",
            "content-length",
            "x-mock-latency-ms",
            "x-unknown",
        ] {
            assert!(!openai.allows(no.as_bytes()), "{no}");
        }
        let mock = ForwardHeaders::new(ProviderKind::Mock, &[]);
        assert!(mock.allows(b"X-Mock-Latency-Ms"));
        assert!(!mock.allows(b"x-mockery"));
        let beta = ForwardHeaders::new(ProviderKind::Anthropic, &["anthropic-beta".into(), "x-team-*".into()]);
        assert!(beta.allows(b"Anthropic-Beta") && beta.allows(b"x-team-cost-centre"));
        assert!(!beta.allows(b"x-api-key") && !beta.allows(b"anthropic-version"));
    }

    #[test]
    fn credentials_and_hop_by_hop_cannot_be_added() {
        for bad in ["authorization", "X-Api-Key", "a*", "x-api-*", "transfer-encoding", "*", "bad header", ""] {
            assert!(ForwardHeaders::problem(bad).is_some(), "{bad}");
        }
        for good in ["anthropic-beta", "x-mock-*", "OpenAI-Organization"] {
            assert!(ForwardHeaders::problem(good).is_none(), "{good}");
        }
    }
}
