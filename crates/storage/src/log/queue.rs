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
use std::sync::Arc;
use std::time::Instant;

use super::{Log, lock};
use crate::error::AppendError;

/// A round of queued appends of at least this many bytes is synced on
/// another thread while the next round is appended (256 KiB): for large
/// batches the next write then overlaps the sync; below it, waking a
/// thread would cost more than the overlap gives.
pub const SYNC_HAND_OFF_BYTES_MIN: usize = 256 * 1024;

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
    /// the round asked. A round of at least [`SYNC_HAND_OFF_BYTES_MIN`] has
    /// its sync and answers run by `hand_off` (on another thread that may
    /// block) while this thread appends the next round: writing large
    /// batches then overlaps their syncs. Smaller rounds sync here, with no
    /// thread to wake. Blocking (it writes and syncs).
    pub fn drain_appends(self: &Arc<Self>, hand_off: &dyn Fn(Box<dyn FnOnce() + Send>)) {
        loop {
            let round = {
                let mut queue = lock(&self.queue);
                if queue.appends.is_empty() {
                    queue.draining = false;
                    return;
                }
                std::mem::take(&mut queue.appends)
            };
            let bytes_before = self.traffic.snapshot().produced_bytes;
            let after: Vec<(Instant, AfterSync)> = round
                .into_iter()
                .filter_map(|(queued, append)| append(self).map(|then| (queued, then)))
                .collect();
            if after.is_empty() {
                continue;
            }
            let end = self.end_offset();
            let bytes = self.traffic.snapshot().produced_bytes - bytes_before;
            if bytes >= SYNC_HAND_OFF_BYTES_MIN as u64 {
                let log = self.clone();
                hand_off(Box::new(move || log.sync_and_answer(end, after)));
            } else {
                self.sync_and_answer(end, after);
            }
        }
    }

    /// Syncs up to `end` and answers a round's appends.
    fn sync_and_answer(&self, end: u64, after: Vec<(Instant, AfterSync)>) {
        let synced = self.sync_to(end);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::log::{Acks, LogOptions};
    use crate::simulated::SimulatedMedium;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Where each append landed and how its sync went, in answer order.
    type Answers = Arc<Mutex<Vec<(u64, Result<(), String>)>>>;

    fn batch(value_bytes: usize) -> Vec<u8> {
        let value = vec![b'v'; value_bytes];
        let mut builder = carteiro::record::RecordBatchBuilder::new();
        builder
            .append(&carteiro::record::NewRecord {
                timestamp: 1,
                key: None,
                value: Some(&value),
                headers: &[],
            })
            .expect("record");
        builder.build().expect("batch")
    }

    fn open(medium: &SimulatedMedium) -> Arc<Log> {
        let options = LogOptions {
            medium: Arc::new(medium.clone()),
            ..LogOptions::default()
        };
        Arc::new(Log::open("/data/q-0", LogConfig::default(), &options).expect("open"))
    }

    /// An append of `value_bytes` that records where it landed and, after
    /// the sync, whether it was made durable.
    fn append(value_bytes: usize, answers: &Answers) -> QueuedAppend {
        let answers = answers.clone();
        Box::new(move |log: &Log| {
            let checked =
                crate::batch::CheckedBatch::new(bytes::Bytes::from(batch(value_bytes))).ok()?;
            let info = log.append_checked(&checked, Acks::Appended).ok()?;
            Some(Box::new(move |synced: Result<(), AppendError>| {
                let mut answers = answers.lock().unwrap_or_else(|p| p.into_inner());
                answers.push((info.base_offset, synced.map_err(|e| e.to_string())));
            }) as AfterSync)
        })
    }

    #[test]
    fn a_round_is_appended_in_order_synced_once_and_answered_after_the_sync() {
        let medium = SimulatedMedium::new();
        let log = open(&medium);
        let answers = Arc::new(Mutex::new(Vec::new()));
        assert!(log.queue_append(append(10, &answers)), "nobody drains yet");
        assert!(
            !log.queue_append(append(10, &answers)),
            "one drainer is enough"
        );
        assert!(!log.queue_append(append(10, &answers)));
        let syncs = medium.syncs();
        let handed = AtomicUsize::new(0);
        log.drain_appends(&|job| {
            handed.fetch_add(1, Ordering::Relaxed);
            job()
        });
        assert_eq!(medium.syncs(), syncs + 1, "one sync for the round");
        assert_eq!(
            handed.load(Ordering::Relaxed),
            0,
            "a small round syncs in place"
        );
        assert_eq!(log.durable_offset(), 3);
        let answers = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(answers, vec![(0, Ok(())), (1, Ok(())), (2, Ok(()))]);
        // The queue is drained: the next append needs a drainer again.
        assert!(log.queue_append(append(10, &answers_sink())));
    }

    fn answers_sink() -> Answers {
        Arc::new(Mutex::new(Vec::new()))
    }

    #[test]
    fn a_large_round_is_synced_by_the_hand_off_and_a_failed_sync_answers_each_with_the_failure() {
        let medium = SimulatedMedium::new();
        let log = open(&medium);
        let answers = answers_sink();
        log.queue_append(append(SYNC_HAND_OFF_BYTES_MIN, &answers));
        let handed = AtomicUsize::new(0);
        log.drain_appends(&|job| {
            handed.fetch_add(1, Ordering::Relaxed);
            job()
        });
        assert_eq!(handed.load(Ordering::Relaxed), 1);
        assert_eq!(log.durable_offset(), 1);
        log.queue_append(append(10, &answers));
        log.queue_append(append(10, &answers));
        medium.fail_after_syncs(0);
        log.drain_appends(&|job| job());
        let answers = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(answers[0], (0, Ok(())));
        assert_eq!(answers.len(), 3);
        for (_, answer) in &answers[1..] {
            assert!(
                answer
                    .as_ref()
                    .is_err_and(|e| e.contains("simulated power loss")),
                "{answer:?}"
            );
        }
        assert_eq!(
            log.durable_offset(),
            1,
            "nothing past the failed sync is durable"
        );
    }
}
