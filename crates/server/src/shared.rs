//! State every service shares: the store, the committed offsets, the limits
//! and the shutdown signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use carteiro_storage::{Clock, Store};
use tokio::sync::watch;

use crate::coordinator::Coordinator;
use crate::error::BrokerError;
use crate::limits::RequestLimits;
use crate::offsets::GroupOffsets;

/// Prefix of internal topics, which clients may not create, delete, produce to or commit.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";

/// The broker's shared state.
pub struct Shared {
    /// Topics and their logs.
    pub store: Arc<Store>,
    /// Committed group offsets.
    pub offsets: Arc<GroupOffsets>,
    /// Group membership.
    pub coordinator: Arc<Coordinator>,
    /// Request limits.
    pub limits: RequestLimits,
    /// True once the broker is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Round-robin position per topic for records without key or partition.
    pub spread: Mutex<HashMap<String, u32>>,
    /// The clock (the store's).
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    /// Refuses new work once shutdown has begun.
    pub fn check_running(&self) -> Result<(), BrokerError> {
        if *self.shutdown.borrow() {
            Err(BrokerError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Refuses internal topics in a client request.
    pub fn check_user_topic(&self, field: &'static str, topic: &str) -> Result<(), BrokerError> {
        if topic.starts_with(INTERNAL_TOPIC_PREFIX) {
            let message = format!(
                "{topic:?}: topic names starting with {INTERNAL_TOPIC_PREFIX:?} are reserved for the broker"
            );
            return Err(BrokerError::invalid(field, message));
        }
        Ok(())
    }

    /// Now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
