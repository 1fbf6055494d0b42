//! Making appends durable: the group commit.
//!
//! A log is synced by `fdatasync` of its active segment, which covers every
//! byte written to it before the call. Syncs of one disk are serialized
//! beneath us (the block layer sends one cache flush at a time; a flush
//! asked for while one runs waits for it and then runs again), so two
//! syncs of a log never usefully overlap: measured on the project's
//! machine, two threads syncing one file each wait about two syncs. What a
//! durable append must not do is wait for another thread to wake before
//! its sync starts, or for a sync that began before it arrived to end
//! before anyone starts the next.
//!
//! So the thread that appended syncs ([`Log::sync_appended`]) if no sync
//! of the log is running; if one is, it leaves a request and returns, and
//! the syncing thread syncs again the moment its sync ends, covering every
//! append before that moment. Acknowledgements wait for the durable offset
//! to pass them ([`Log::wait_durable`]), woken by the sync that moves it,
//! with no hop of their own, as are consumers' long polls on a flush-`always`
//! log (whose high watermark is the durable offset).
//!
//! [`Log::sync_to`] is the blocking form for callers that wait in place.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Log, lock};
use crate::config::{FlushPolicy, ms_i64};
use crate::error::AppendError;

/// Where the last sync got to. Held while a sync runs.
pub(super) struct SyncState {
    pub(super) segment_base: u64,
    pub(super) synced_bytes: usize,
    pub(super) last_checkpoint_ms: i64,
    pub(super) last_sync_ms: i64,
    /// Batches appended when the last sync began (see [`super::LogTimings`]).
    pub(super) synced_batches: u64,
}

/// Whose turn it is to sync ([`Log::sync_appended`]).
#[derive(Debug, Default)]
pub(super) struct SyncTurn {
    /// A thread is syncing and will look at `requested` before it stops.
    running: bool,
    /// Appends were made since the running sync began and want syncing.
    requested: bool,
}

impl Log {
    /// Makes everything appended so far durable, on this thread, unless a
    /// thread is syncing this log already: then this returns at once and
    /// that thread syncs again, covering this thread's appends, as soon as
    /// its sync ends. Whoever syncs keeps going while appends keep asking,
    /// so under load one thread syncs back to back. Wait for an append with
    /// [`wait_durable`](Self::wait_durable).
    ///
    /// An error means the log has stopped (a failed sync); waiters see it too.
    pub fn sync_appended(&self) -> Result<(), AppendError> {
        if !self.take_sync_turn() {
            return Ok(());
        }
        loop {
            let synced = {
                let mut state = lock(&self.sync);
                self.sync_locked(&mut state)
            };
            if !self.sync_again(synced.is_ok()) {
                return synced;
            }
        }
    }

    /// True if this thread is now the one syncing; false if another is,
    /// which will sync again for this thread's appends.
    fn take_sync_turn(&self) -> bool {
        let mut turn = lock(&self.sync_turn);
        if turn.running {
            turn.requested = true;
            return false;
        }
        turn.running = true;
        true
    }

    /// Called by the syncing thread after each sync: true if appends asked
    /// for another since it began (and the last one succeeded); else the
    /// turn ends. Under the turn's lock, so no request is missed: one made
    /// before this check is seen here, one after finds no thread syncing.
    fn sync_again(&self, succeeded: bool) -> bool {
        let mut turn = lock(&self.sync_turn);
        if succeeded && turn.requested {
            turn.requested = false;
            return true;
        }
        turn.running = false;
        turn.requested = false;
        false
    }

    /// Resolves once every offset below `end` is durable, or with the
    /// log's failure if it stopped first. Someone must have been asked to
    /// sync past `end` ([`sync_appended`](Self::sync_appended)). The wait
    /// is observed in the durable-wait histogram ([`super::LogTimings`]).
    pub async fn wait_durable(&self, end: u64) -> Result<(), AppendError> {
        let waiting = Instant::now();
        loop {
            if self.durable_offset() >= end {
                break;
            }
            self.check_failed()?;
            let listener = self.synced.listen();
            if self.durable_offset() >= end {
                break;
            }
            self.check_failed()?;
            listener.await;
        }
        self.timings.durable_wait.observe_since(waiting);
        Ok(())
    }

    /// Returns once every offset below `offset` is synced. Concurrent callers
    /// share one sync: whoever syncs covers everything published so far.
    pub fn sync_to(&self, offset: u64) -> Result<(), AppendError> {
        if self.durable_offset() >= offset {
            return Ok(());
        }
        let mut state = lock(&self.sync);
        if self.durable_offset() >= offset {
            return Ok(());
        }
        self.sync_locked(&mut state)
    }

    fn sync_locked(&self, state: &mut SyncState) -> Result<(), AppendError> {
        self.check_failed()?;
        // Read the end first: all offsets below it are then in closed segments
        // (synced when they rolled) or in the active one's published bytes.
        let end = self.end_offset();
        // Counted before the end is published, so at least the batches below `end`.
        let batches = self.timings.batches();
        let active = {
            let segments = self.segments.read().unwrap_or_else(|p| p.into_inner());
            segments.last().cloned()
        };
        let Some(active) = active else {
            return Ok(());
        };
        let published = active.log.published();
        if state.segment_base != active.base_offset {
            state.segment_base = active.base_offset;
            state.synced_bytes = 0;
        }
        if published > state.synced_bytes {
            let syncing = Instant::now();
            if let Err(e) = active.log.sync() {
                return Err(self.fail("syncing", &active.log_path, e));
            }
            self.timings.sync.observe_since(syncing);
            self.timings
                .sync_batches
                .observe(batches.saturating_sub(state.synced_batches));
            state.synced_bytes = published;
        }
        // Batches a roll synced since are not counted in the next sync's.
        state.synced_batches = batches;
        let now = self.clock.now_ms();
        state.last_sync_ms = now;
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        self.synced.notify(usize::MAX);
        if now.saturating_sub(state.last_checkpoint_ms)
            >= ms_i64(self.config.checkpoint_interval_ms)
        {
            state.last_checkpoint_ms = now;
            if self.background_checkpoints.load(Ordering::Acquire) {
                // Off the sync path: its fsyncs and rename would hold up
                // every produce waiting on this log for about a millisecond.
                self.checkpoint_due.store(true, Ordering::Release);
            } else if let Err(e) = self.write_recovery_point(self.durable_offset()) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "could not write recovery checkpoint");
            }
        }
        Ok(())
    }

    /// Syncs everything appended so far.
    pub fn flush(&self) -> Result<(), AppendError> {
        self.sync_to(self.end_offset())
    }

    /// Under [`FlushPolicy::IntervalMs`], syncs if the interval has passed
    /// since the last sync and something is unsynced. A no-op otherwise.
    pub fn flush_if_due(&self) -> Result<(), AppendError> {
        let FlushPolicy::IntervalMs(interval) = self.config.flush else {
            return Ok(());
        };
        if self.durable_offset() >= self.end_offset() {
            return Ok(());
        }
        let mut state = lock(&self.sync);
        if self.clock.now_ms().saturating_sub(state.last_sync_ms) < ms_i64(interval) {
            return Ok(());
        }
        self.sync_locked(&mut state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogConfig;
    use crate::log::LogOptions;
    use crate::simulated::SimulatedMedium;
    use std::sync::Arc;

    fn batch() -> Vec<u8> {
        let mut builder = carteiro::record::RecordBatchBuilder::new();
        builder
            .append(&carteiro::record::NewRecord {
                timestamp: 1,
                key: None,
                value: Some(b"v"),
                headers: &[],
            })
            .expect("record");
        builder.build().expect("batch")
    }

    fn open(medium: &SimulatedMedium) -> Log {
        let options = LogOptions {
            medium: Arc::new(medium.clone()),
            ..LogOptions::default()
        };
        Log::open("/data/t-0", LogConfig::default(), &options).expect("open")
    }

    #[test]
    fn an_append_made_while_another_thread_syncs_is_synced_by_that_thread() {
        let medium = SimulatedMedium::new();
        let log = open(&medium);
        // Another thread is mid-sync.
        assert!(log.take_sync_turn());
        let info = log.append_unsynced(&batch()).expect("append");
        let syncs = medium.syncs();
        // This thread leaves its sync to that one and returns at once.
        log.sync_appended().expect("handed over");
        assert_eq!(medium.syncs(), syncs, "no sync of its own");
        assert!(log.durable_offset() <= info.last_offset);
        // The syncing thread, its sync done, sees the request and syncs again.
        assert!(log.sync_again(true));
        let mut state = lock(&log.sync);
        log.sync_locked(&mut state).expect("sync");
        drop(state);
        assert!(log.durable_offset() > info.last_offset);
        assert_eq!(medium.syncs(), syncs + 1);
        // Nothing more was asked: its turn ends, and the next append's
        // thread syncs for itself.
        assert!(!log.sync_again(true));
        let next = log.append_unsynced(&batch()).expect("append");
        log.sync_appended().expect("sync");
        assert!(log.durable_offset() > next.last_offset);
    }

    #[test]
    fn a_failed_sync_ends_the_turn_and_wakes_durable_waiters_with_the_error() {
        let medium = SimulatedMedium::new();
        let log = open(&medium);
        let info = log.append_unsynced(&batch()).expect("append");
        medium.fail_after_syncs(0);
        assert!(log.sync_appended().is_err());
        assert!(!lock(&log.sync_turn).running, "the turn ended");
        let mut wait = std::pin::pin!(log.wait_durable(info.last_offset + 1));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match wait.as_mut().poll(&mut context) {
            std::task::Poll::Ready(Err(AppendError::Failed { .. })) => {}
            other => panic!("expected the log's failure, got {other:?}"),
        }
    }
}
