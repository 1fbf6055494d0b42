//! Member ids given out before a first join (Kafka's KIP-394 join in two
//! steps: MEMBER_ID_REQUIRED, then a join with the id). Each is good for
//! one session timeout and one join; the set is bounded.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::error::BrokerError;

/// Most member ids given out before a first join and not yet used; each
/// lasts one session timeout.
pub const PENDING_MEMBERS_MAX: usize = 100_000;

/// The ids given out and not yet used: id to `(group, expiry)`.
#[derive(Debug, Default)]
pub(super) struct PendingMembers {
    ids: Mutex<HashMap<String, (String, Instant)>>,
}

impl PendingMembers {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `id`, given out for `group`, good until `expiry`; refused
    /// once the set is full of ids not yet expired.
    pub(super) fn insert(
        &self,
        id: String,
        group: &str,
        expiry: Instant,
    ) -> Result<(), BrokerError> {
        let now = Instant::now();
        let mut ids = self.ids();
        if ids.len() >= PENDING_MEMBERS_MAX {
            ids.retain(|_, (_, until)| *until > now);
        }
        if ids.len() >= PENDING_MEMBERS_MAX {
            return Err(BrokerError::ResourceExhausted {
                what: "member ids given out and not yet used",
                limit: PENDING_MEMBERS_MAX as u64,
            });
        }
        ids.insert(id, (group.to_string(), expiry));
        Ok(())
    }

    /// True, once, if `id` was given out for `group` and has not expired.
    pub(super) fn take(&self, group: &str, id: &str) -> bool {
        let mut ids = self.ids();
        match ids.get(id) {
            Some((g, expiry)) if g == group && *expiry > Instant::now() => {
                ids.remove(id);
                true
            }
            _ => false,
        }
    }

    /// Forgets the ids that expired by `now`.
    pub(super) fn expire(&self, now: Instant) {
        self.ids().retain(|_, (_, expiry)| *expiry > now);
    }
}
