//! The Responses turn phases: a request continuing a turn the gateway
//! keeps gets the turn's items before its own input
//! ([`continue_response`]); an answer from a provider that keeps no
//! responses is kept as a turn ([`keep_turn`]), on the node
//! ([`crate::turns`]) and, with `[cluster]`, in Redis ([`share`]), so that
//! a conversation continues on any node. A Redis failure is a miss, never
//! an error.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Core, Exchange, Prompt};
use crate::error::GatewayError;
use crate::proxy::relay::RelayEnd;
use crate::record::End;

/// Answers of a Responses turn are kept this long at most to be stored.
const TURN_ANSWER_BYTES_MAX: usize = 4 << 20;

/// A turn for the cluster's Redis: its name there, its items, its TTL.
pub struct SharedTurn {
    name: String,
    items: Bytes,
    ttl: Duration,
}

/// A turn's name in Redis: `prefix:t:<key's length>:<key>:<response id>`,
/// outside the budgets' hash slot, so that turns spread over a Redis
/// Cluster's nodes. The key's name goes with its length: names may hold
/// `:`, and so may a response id, so without it key `a` asking for
/// `b:resp_1` read key `a:b`'s turn `resp_1` (found by a review).
fn shared_name(prefix: &str, key: &str, id: &str) -> String {
    format!("{prefix}:t:{}:{key}:{id}", key.len())
}

/// A conversation's size in Redis: `prefix:c:<key's length>:<key>:<response
/// id>`, its tokens in decimal.
fn shared_context_name(prefix: &str, key: &str, id: &str) -> String {
    format!("{prefix}:c:{}:{key}:{id}", key.len())
}

/// The team that made a response passed through, in Redis:
/// `prefix:o:<response id>`, the team's name.
fn shared_owner_name(prefix: &str, id: &str) -> String {
    format!("{prefix}:o:{id}")
}

/// A Responses request that continues a turn the gateway keeps
/// (`previous_response_id`, made with this key, not expired; on this node,
/// or with `[cluster]` in Redis) has the turn's items put before its own
/// `input` (and the id set to `null`), as OpenAI does for the responses it
/// stores: the guardrails have seen the new input; the stored items passed
/// them when they were sent. An id the gateway does not hold is left for
/// the provider (OpenAI's own), or refused by the translation for the
/// others. A request that may be kept as a turn (`store` not `false`, a
/// route with a provider that keeps none) keeps its answer as it is
/// written.
pub async fn continue_response<'s>(ex: &mut Exchange<'s>, core: &Core<'s>) -> Result<(), GatewayError> {
    if ex.front != crate::proxy::Front::Responses {
        return Ok(());
    }
    let key = ex.key()?;
    let Some(routed) = ex.routed.as_ref() else { return Ok(()) };
    if let (Some(previous), Some(input)) = (routed.fields.previous_response_id, routed.fields.input) {
        let id = std::str::from_utf8(previous.get(&ex.body)).unwrap_or_default().to_string();
        let mut items = core.turns.get(&key.name, &id, Instant::now());
        if items.is_none() {
            if let Some(redis) = core.strict {
                items = Box::pin(shared_get(redis, &shared_name(redis.key_prefix(), &key.name, &id))).await;
                // Kept here too: the conversation's next turn finds it.
                if let Some(found) = &items {
                    let _ = core.turns.put(&key.name, &id, found.clone(), Instant::now());
                }
            }
        }
        if let Some(body) = items.and_then(|items| crate::turns::continued(&ex.body, input, previous, &items)) {
            let fields = tollgate_protocol::openai::scan_request(&body).map_err(GatewayError::Body)?;
            if let Some(routed) = ex.routed.as_mut() {
                routed.fields = fields;
            }
            ex.prompt = Prompt::new(ex.prompt.encoding);
            ex.body = body;
        }
    }
    let Some(routed) = ex.routed.as_ref() else { return Ok(()) };
    if let Some(previous) = routed.fields.previous_response_id {
        // Left for the provider, which keeps every team's responses for the
        // gateway's one account: one another team made, as far as this
        // node or the cluster's Redis saw it pass, is refused as an id that
        // does not exist (found by a review: a member who moved teams, or
        // learned an id, read another team's conversation). An id the
        // gateway never relayed goes on to the provider.
        let id = std::str::from_utf8(previous.get(&ex.body)).unwrap_or_default();
        // Only ids as long as the relay reads (`answer::response_id`: up
        // to 128 bytes) were noted: a longer one is looked up nowhere.
        let noted = id.len() <= 128;
        let mut owner = core.turns.owner(id, Instant::now()).filter(|_| noted);
        if let (None, Some(redis), true) = (&owner, core.strict, noted) {
            owner = Box::pin(shared_value(redis, &shared_owner_name(redis.key_prefix(), id))).await.map(Bytes::from);
        }
        let team = core.state.config.teams.get(key.team).map_or("", |t| t.name.as_str());
        if owner.is_some_and(|o| o != team.as_bytes()) {
            return Err(GatewayError::ResponseNotFound { id: id.to_string() });
        }
        // Left for the provider: what the conversation it stores comes to,
        // if it ended here (or, with `[cluster]`, on another node), is part
        // of this request's prompt.
        let id = std::str::from_utf8(previous.get(&ex.body)).unwrap_or_default();
        let mut size = core.turns.context(&key.name, id, Instant::now());
        if let (None, Some(redis)) = (size, core.strict) {
            size = Box::pin(shared_context_get(redis, &shared_context_name(redis.key_prefix(), &key.name, id))).await;
            if let Some(n) = size {
                core.turns.put_context(&key.name, id, n, Instant::now());
            }
        }
        ex.prompt.stored = ex.prompt.stored.saturating_add(size.unwrap_or(0));
    }
    let keeps_none = routed.route.targets.iter().any(|t| !core.state.upstreams[t.provider].responses_api);
    if keeps_none && routed.fields.store != Some(false) && routed.fields.input.is_some() {
        ex.turn = Some(Box::new(crate::cache::Kept::new(TURN_ANSWER_BYTES_MAX)));
    }
    Ok(())
}

/// A Responses answer a provider that keeps no turns completed is kept as
/// a turn: the request's items and the response's, under the response's
/// id and the request's key. With `[cluster]`, the turn to write to Redis
/// once the request is recorded.
pub fn keep_turn(ex: &mut Exchange<'_>, core: &Core<'_>, end: &RelayEnd) -> Option<SharedTurn> {
    let mut kept = ex.turn.take()?;
    if end.status != 200 || end.end != End::Completed {
        return None;
    }
    let (key, routed) = (ex.key().ok()?, ex.routed.as_ref()?);
    let served = ex.trace.served_by.and_then(|t| routed.route.targets.get(t as usize));
    if served.is_none_or(|t| core.state.upstreams[t.provider].responses_api) {
        return None;
    }
    let answer = kept.take()?;
    let (id, items) = crate::turns::conversation(&ex.body, routed.fields.input?, &answer, routed.fields.stream)?;
    // Redis holds what a node would: a turn too large for the node's store
    // is not shared either.
    let kept = core.turns.put(&key.name, &id, items.clone(), Instant::now());
    let redis = core.strict.filter(|_| kept)?;
    Some(SharedTurn {
        name: shared_name(redis.key_prefix(), &key.name, &id),
        items,
        ttl: core.state.config.server.responses_turns_ttl,
    })
}

/// A Responses answer a provider that keeps responses gave (passed
/// through, with its id) leaves a conversation at the provider: its
/// tokens, input and output as billed (the provider's, or the gateway's
/// estimate of an answer cut short), are noted under its id, so that a
/// request continuing it counts them (`Prompt::stored`) in its estimates,
/// its ceiling and the bill of an answer cut short. (A reasoning model's
/// earlier reasoning, which a provider may drop from the conversation, is
/// counted: the estimate errs high.) Not noted with `store: false`: the
/// provider keeps nothing then.
///
/// With `[cluster]`, the size to write to Redis as well, once the request
/// is recorded (as a turn is: [`share`]).
pub fn note_context(ex: &Exchange<'_>, core: &Core<'_>, end: &RelayEnd) -> Option<SharedTurn> {
    let (Some(id), Some(usage)) = (end.response_id.as_deref(), end.usage) else { return None };
    let (Ok(key), Some(routed)) = (ex.key(), ex.routed.as_ref()) else { return None };
    if ex.front != crate::proxy::Front::Responses || routed.fields.store == Some(false) {
        return None;
    }
    let tokens = usage.prompt.saturating_add(usage.completion);
    core.turns.put_context(&key.name, id, tokens, Instant::now());
    let redis = core.strict?;
    Some(SharedTurn {
        name: shared_context_name(redis.key_prefix(), &key.name, id),
        items: Bytes::from(tokens.to_string()),
        ttl: core.state.config.server.responses_turns_ttl,
    })
}

/// The team that made a response passed through from a provider that
/// keeps responses, noted on the node ([`crate::turns::Turns::put_owner`])
/// and, with `[cluster]`, for Redis: so that [`continue_response`]
/// refuses it to other teams on any node.
pub fn note_owner(ex: &Exchange<'_>, core: &Core<'_>, end: &RelayEnd) -> Option<SharedTurn> {
    let id = end.response_id.as_deref()?;
    let (Ok(key), Some(routed)) = (ex.key(), ex.routed.as_ref()) else { return None };
    if ex.front != crate::proxy::Front::Responses || routed.fields.store == Some(false) {
        return None;
    }
    let team = core.state.config.teams.get(key.team).map_or("", |t| t.name.as_str());
    core.turns.put_owner(id, team, Instant::now());
    let redis = core.strict?;
    Some(SharedTurn {
        name: shared_owner_name(redis.key_prefix(), id),
        items: Bytes::copy_from_slice(team.as_bytes()),
        ttl: crate::turns::OWNER_TTL,
    })
}

/// Writes a turn (or a conversation's size) to the cluster's Redis with
/// its TTL; a failure is only logged (the conversation then continues on
/// this node only).
pub async fn share(core: &Core<'_>, turn: SharedTurn) {
    let Some(redis) = core.strict else { return };
    let ms = turn.ttl.as_millis().max(1).to_string();
    let args: [&[u8]; 5] = [b"SET", turn.name.as_bytes(), &turn.items, b"PX", ms.as_bytes()];
    if let Err(e) = redis.call(&args).await {
        tracing::debug!(error = %e, "the cluster's Redis did not take a Responses turn");
    }
}

/// A conversation's size from the cluster's Redis; `None` when absent,
/// unreadable or unreachable.
async fn shared_context_get(redis: &crate::cluster::strict::Strict, name: &str) -> Option<u64> {
    std::str::from_utf8(&shared_value(redis, name).await?).ok()?.parse().ok()
}

/// A turn from the cluster's Redis; `None` when absent or unreachable.
async fn shared_get(redis: &crate::cluster::strict::Strict, name: &str) -> Option<Bytes> {
    // Only a JSON array is a turn.
    shared_value(redis, name).await.filter(|value| value.first() == Some(&b'[')).map(Bytes::from)
}

/// A value from the cluster's Redis; `None` when absent or unreachable
/// (then what it holds is looked for on this node only).
async fn shared_value(redis: &crate::cluster::strict::Strict, name: &str) -> Option<Vec<u8>> {
    match redis.call(&[b"GET", name.as_bytes()]).await {
        Ok(tollgate_protocol::resp::Reply::Bulk(Some(value))) => Some(value),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, name, "the cluster's Redis is unavailable; looked for on this node only");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys' names never meet, whatever `:` their names and the ids
    /// asked for hold.
    #[test]
    fn shared_names_keep_keys_apart() {
        for name in [shared_name, shared_context_name] {
            assert_ne!(name("p", "a", "b:resp_1"), name("p", "a:b", "resp_1"));
            assert_ne!(name("p", "a:", "1:x"), name("p", "a", ":1:x"));
            assert_eq!(name("p", "k", "resp_1"), name("p", "k", "resp_1"));
        }
    }
}
