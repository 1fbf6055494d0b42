//! Appends queued to the log's own appending thread, for a sender that
//! pipelines (a produce stream): it queues each append and goes on
//! reading, and the thread that drains the queue appends everything queued
//! in order, syncs once for all of it if any asked, and answers each. A
//! queue that has a drainer takes more appends with no thread to wake, so
//! under load a record crosses one hand-off on its way to the disk (into
//! the queue) and one back (its answer), not one per step.
//!
//! The queue is bounded by its senders: each edge admits a bounded number
//! of requests in flight per connection, and connections are bounded.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Log, lock};
use crate::error::AppendError;

/// An append waiting in a log's queue: run on the draining thread, in
/// queue order, it appends (or refuses) and returns what to run once the
/// log is synced past what it appended (`None`: it needs no sync).
pub type QueuedAppend = Box<dyn FnOnce(&Log) -> Option<AfterSync> + Send>;

/// Run once the sync after a round of queued appends has returned: `Ok`
/// if everything appended before it is durable, else the log's failure.
pub type AfterSync = Box<dyn FnOnce(Result<(), AppendError>) + Send>;

/// See the module documentation.
#[derive(Default)]
pub(super) struct AppendQueue {
    /// Each append with when it was queued.
    appends: VecDeque<(Instant, QueuedAppend)>,
    /// A thread is draining the queue and will look at it again before it
    /// stops.
    draining: bool,
}

impl Log {
    /// Queues an append for this log's draining thread. Returns true if no
    /// thread drains the queue: the caller must then call
    /// [`drain_appends`](Self::drain_appends) on a thread that may block.
    pub fn queue_append(&self, append: QueuedAppend) -> bool {
        let mut queue = lock(&self.queue);
        queue.appends.push_back((Instant::now(), append));
        !std::mem::replace(&mut queue.draining, true)
    }

    /// Runs queued appends, in order, until the queue is empty: each round
    /// takes everything queued, appends it, and syncs once if any append of
    /// the round asked. Blocking (it writes and syncs).
    pub fn drain_appends(&self) {
        loop {
            let round = {
                let mut queue = lock(&self.queue);
                if queue.appends.is_empty() {
                    queue.draining = false;
                    return;
                }
                std::mem::take(&mut queue.appends)
            };
            let after: Vec<(Instant, AfterSync)> = round
                .into_iter()
                .filter_map(|(queued, append)| append(self).map(|then| (queued, then)))
                .collect();
            if after.is_empty() {
                continue;
            }
            let synced = self.sync_to(self.end_offset());
            for (queued, then) in after {
                if synced.is_ok() {
                    // The durable write path as the append saw it: queued
                    // to synced, including any sync it waited behind.
                    self.timings.durable_wait.observe_since(queued);
                }
                // After a failed sync the log has stopped: each gets its failure.
                then(match &synced {
                    Ok(()) => Ok(()),
                    Err(_) => Err(self.stopped()),
                });
            }
        }
    }

    /// The error for a log whose sync failed.
    fn stopped(&self) -> AppendError {
        match self.check_failed() {
            Err(e) => e,
            Ok(()) => AppendError::Failed {
                dir: self.dir.clone(),
                reason: "a sync failed".into(),
            },
        }
    }
}
