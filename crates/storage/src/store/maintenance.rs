//! The store's maintenance: a background thread that flushes logs with an
//! interval policy, writes the recovery checkpoints syncs found due, and
//! every so often applies retention and forgets idle producers.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Store;

impl Store {
    /// Syncs every log (what an interval flush would do, now); failures are logged.
    pub fn flush_all(&self) {
        for topic in self.topics() {
            for log in topic.partitions() {
                if let Err(e) = log.flush() {
                    tracing::warn!(dir = %log.dir().display(), error = %e, "flush failed");
                }
            }
        }
    }

    /// One maintenance pass: flushes interval-policy logs that are due,
    /// writes the recovery checkpoints syncs found due and, with
    /// `retention`, applies retention to every log and forgets its idle
    /// producers.
    pub fn run_maintenance(&self, retention: bool) {
        for topic in self.topics() {
            for log in topic.partitions() {
                if let Err(e) = log.flush_if_due() {
                    tracing::warn!(dir = %log.dir().display(), error = %e, "interval flush failed");
                }
                log.write_due_checkpoint();
                if retention {
                    log.apply_retention();
                    log.remove_expired_producers();
                }
            }
        }
    }

    /// Starts the maintenance thread, one pass every `interval`.
    pub(super) fn start_maintenance(self: &Arc<Self>, interval: Duration) {
        let (stop, stopped) = mpsc::channel::<()>();
        let store: Weak<Store> = Arc::downgrade(self);
        let retention_every =
            Duration::from_millis(self.options.retention_check_interval_ms.max(1));
        let spawned = std::thread::Builder::new()
            .name("carteiro-maintenance".into())
            .spawn(move || {
                let mut since_retention = Duration::ZERO;
                loop {
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let Some(store) = store.upgrade() else { return };
                    since_retention += interval;
                    let retention = since_retention >= retention_every;
                    if retention {
                        since_retention = Duration::ZERO;
                    }
                    store.run_maintenance(retention);
                }
            });
        match spawned {
            Ok(handle) => {
                *self.maintenance.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, handle))
            }
            Err(e) => tracing::error!(error = %e, "could not start the maintenance thread"),
        }
    }
}
