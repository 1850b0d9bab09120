//! Phase 2: the model decides the route and the target, and the key's team
//! must be allowed that model.

use tollgate_policy::{Route, VirtualKey};
use tollgate_protocol::openai::{scan_request, ChatRequestFields};

use crate::error::GatewayError;
use crate::worker::CoreState;

/// A request resolved to its route; [`super::fallback`] picks the target
/// of each attempt.
pub struct Routed<'s> {
    pub fields: ChatRequestFields,
    /// The route's index (for its breakers) and the route.
    pub index: usize,
    pub route: &'s Route,
}

pub fn route<'s>(state: &'s CoreState, key: &VirtualKey, body: &[u8]) -> Result<Routed<'s>, GatewayError> {
    let fields = scan_request(body).map_err(GatewayError::Body)?;
    let model = fields.model.get(body);
    let (index, route) = state
        .config
        .routes
        .find(model)
        .ok_or_else(|| GatewayError::UnknownModel(String::from_utf8_lossy(model).into_owned()))?;
    authorize(state, key, index, &route.name)?;
    Ok(Routed { fields, index, route })
}

/// Access control: one bit test against the key's resolved model set.
pub fn authorize(state: &CoreState, key: &VirtualKey, model_index: usize, model: &str) -> Result<(), GatewayError> {
    if key.models.contains(model_index) {
        return Ok(());
    }
    let team = state.config.teams.get(key.team).map_or_else(String::new, |t| t.name.clone());
    Err(GatewayError::ModelNotAllowed { model: model.to_string(), team, key: key.name.clone() })
}
