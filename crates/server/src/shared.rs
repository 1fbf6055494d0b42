//! What every gRPC service shares: the broker core and the request limits.

use std::sync::Arc;

use carteiro_core::Broker;

use crate::limits::RequestLimits;

/// The gRPC edge's shared state.
pub struct Shared {
    /// The broker core.
    pub broker: Arc<Broker>,
    /// Request limits.
    pub limits: RequestLimits,
}
