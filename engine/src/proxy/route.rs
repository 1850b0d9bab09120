//! The route phase's rules ([`crate::pipeline::route`] runs it): the
//! body's top level scanned, the model's route found with one hash probe,
//! and the key's access to it tested with one bit.

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
        let name = String::from_utf8_lossy(model).into_owned();
        trace.model_requested = Some(name.clone().into_boxed_str());
        return Err(GatewayError::UnknownModel(name));
    };
    trace.route = Some(index);
    authorize(state, key, index, &route.name)?;
    Ok(Routed { fields, index, route })
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
