//! Idempotent producers (Kafka's KIP-98): what a partition remembers of
//! each producer so that a batch sent twice is stored once.
//!
//! A batch whose header carries a producer id ([`NO_PRODUCER_ID`], -1, means
//! none) is checked against that producer's state before anything is
//! written, as Kafka's `ProducerStateManager` does:
//! - an epoch older than the producer's is fenced;
//! - a newer epoch (or a producer this partition does not know) must start
//!   at sequence 0;
//! - in the same epoch, a batch whose sequence range equals one of the
//!   last [`PRODUCER_BATCHES_KEPT`] batches appended is a duplicate,
//!   answered with where the original landed; otherwise it must start
//!   right after the last one (sequences wrap from `i32::MAX` to 0).
//!
//! Only appended batches change the state. A partition holds at most
//! [`PRODUCERS_PER_PARTITION_MAX`] producers; one idle for
//! `producer_id_expiration_ms` is forgotten.
//!
//! This module is the state machine alone, with no I/O: `snapshot` (the
//! `<offset>.snapshot` file that carries it across restarts) and `ids`
//! (the `producer-ids.meta` allocator) sit beside it, and the log loads,
//! checks and saves it (`log/producers.rs`).

use std::collections::{HashMap, VecDeque};

use carteiro::record::{BatchHeader, sequence_after};

use crate::config::ms_i64;
use crate::error::AppendError;

pub(crate) mod ids;
pub(crate) mod snapshot;
#[cfg(test)]
mod tests;

/// The producer id of a batch that is not idempotent (Kafka's
/// `RecordBatch.NO_PRODUCER_ID`): such a batch is neither checked nor
/// remembered. Any negative id is treated alike, as Kafka does.
pub const NO_PRODUCER_ID: i64 = -1;
/// How many of a producer's last appended batches a partition keeps, to
/// recognise a batch sent again (Kafka's `NUM_BATCHES_TO_RETAIN`, 5: a
/// producer has at most 5 requests in flight per partition).
pub const PRODUCER_BATCHES_KEPT: usize = 5;
/// Most producers a partition holds state for; a new one past it is
/// refused ([`AppendError::TooManyProducers`]) once idle ones are expired.
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Default time after its last append when a producer's state is
/// forgotten, in ms (1 day, Kafka's `producer.id.expiration.ms`).
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
/// Producer ids are reserved on disk this many at a time
/// (`producer-ids.meta` records the end of the current block).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// The producer fields of a batch that has a producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    /// The batch's base sequence.
    pub first_seq: i32,
    /// Its last record's sequence: `first_seq + last_offset_delta`, wrapping.
    pub last_seq: i32,
}

impl ProducerBatch {
    /// The producer fields of `header`, or `None` if the batch has no
    /// producer id (it is not idempotent).
    #[inline]
    pub(crate) fn of(header: &BatchHeader) -> Option<ProducerBatch> {
        if header.producer_id < 0 {
            return None;
        }
        Some(ProducerBatch {
            producer_id: header.producer_id,
            epoch: header.producer_epoch,
            first_seq: header.base_sequence,
            last_seq: sequence_after(header.base_sequence, header.last_offset_delta),
        })
    }

    /// Where this batch landed.
    pub(crate) fn placed(
        &self,
        base_offset: u64,
        last_offset: u64,
        append_time_ms: i64,
    ) -> BatchMetadata {
        BatchMetadata {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            base_offset,
            last_offset,
            append_time_ms,
        }
    }
}

/// One appended batch of a producer, as kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: u64,
    pub last_offset: u64,
    /// The log's time when it was appended (for a batch found by a scan of
    /// the log rather than in a snapshot: its largest record timestamp).
    pub append_time_ms: i64,
}

/// What a partition knows of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    /// Its last batches of this epoch, oldest first: 1 to
    /// [`PRODUCER_BATCHES_KEPT`].
    pub batches: VecDeque<BatchMetadata>,
    /// When it last appended, by the log's clock, for expiry.
    pub last_append_ms: i64,
}

impl ProducerEntry {
    fn new(epoch: i16, batch: BatchMetadata, last_append_ms: i64) -> Self {
        let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_KEPT);
        batches.push_back(batch);
        ProducerEntry {
            epoch,
            batches,
            last_append_ms,
        }
    }

    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn last_offset(&self) -> u64 {
        self.batches.back().map_or(0, |b| b.last_offset)
    }
}

/// Every producer of one partition. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    limit: usize,
    expiration_ms: i64,
}

impl ProducerStates {
    /// No producers; at most `limit`, each forgotten `expiration_ms` after
    /// its last append.
    pub(crate) fn new(limit: usize, expiration_ms: u64) -> Self {
        ProducerStates {
            producers: HashMap::new(),
            limit,
            expiration_ms: ms_i64(expiration_ms),
        }
    }

    /// How many producers it holds.
    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// True if it holds none.
    pub(crate) fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// One producer's state.
    #[cfg(test)]
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// The largest producer id it holds.
    pub(crate) fn max_producer_id(&self) -> Option<i64> {
        self.producers.keys().copied().max()
    }

    /// Every producer, by id.
    pub(crate) fn sorted(&self) -> Vec<(i64, &ProducerEntry)> {
        let mut all: Vec<(i64, &ProducerEntry)> =
            self.producers.iter().map(|(id, e)| (*id, e)).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    /// Puts a producer's state as a snapshot holds it.
    pub(crate) fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        self.producers.insert(producer_id, entry);
    }

    /// Checks `batch` before it is appended: `Ok(None)` to append it
    /// (then [`record`](Self::record) it), `Ok(Some(original))` if it is a
    /// duplicate of a kept batch, or why it is refused. Changes nothing but,
    /// for a new producer at the limit, the expiry of idle producers.
    pub(crate) fn check(
        &mut self,
        batch: &ProducerBatch,
        now_ms: i64,
    ) -> Result<Option<BatchMetadata>, AppendError> {
        let producer_id = batch.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            if batch.first_seq != 0 {
                return Err(AppendError::UnknownProducerId {
                    producer_id,
                    sequence: batch.first_seq,
                });
            }
            if self.producers.len() >= self.limit {
                self.remove_expired(now_ms);
                if self.producers.len() >= self.limit {
                    return Err(AppendError::TooManyProducers { limit: self.limit });
                }
            }
            return Ok(None);
        };
        if batch.epoch < entry.epoch {
            return Err(AppendError::ProducerFenced {
                producer_id,
                epoch: batch.epoch,
                current: entry.epoch,
            });
        }
        if batch.epoch > entry.epoch {
            if batch.first_seq != 0 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id,
                    expected: 0,
                    received: batch.first_seq,
                });
            }
            return Ok(None);
        }
        if let Some(original) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == batch.first_seq && b.last_seq == batch.last_seq)
        {
            return Ok(Some(*original));
        }
        let expected = entry.last_seq().map_or(0, |last| sequence_after(last, 1));
        if batch.first_seq != expected {
            return Err(AppendError::OutOfOrderSequence {
                producer_id,
                expected,
                received: batch.first_seq,
            });
        }
        Ok(None)
    }

    /// Records an appended batch, placed as `placed`, at `activity_ms` (the
    /// log's time of the append). A batch of another epoch than the
    /// producer's starts its state afresh; one of the same epoch joins its
    /// last batches, the oldest dropped past [`PRODUCER_BATCHES_KEPT`].
    /// Replaying the log's batches in order through this rebuilds the state.
    pub(crate) fn record(
        &mut self,
        batch: &ProducerBatch,
        placed: BatchMetadata,
        activity_ms: i64,
    ) {
        match self.producers.get_mut(&batch.producer_id) {
            Some(entry) if entry.epoch == batch.epoch => {
                if entry.batches.len() >= PRODUCER_BATCHES_KEPT {
                    entry.batches.pop_front();
                }
                entry.batches.push_back(placed);
                entry.last_append_ms = entry.last_append_ms.max(activity_ms);
            }
            _ => {
                self.producers.insert(
                    batch.producer_id,
                    ProducerEntry::new(batch.epoch, placed, activity_ms),
                );
            }
        }
    }

    /// Forgets producers that have not appended for the expiration time;
    /// returns how many.
    pub(crate) fn remove_expired(&mut self, now_ms: i64) -> usize {
        let before = self.producers.len();
        let expiration_ms = self.expiration_ms;
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_append_ms) < expiration_ms);
        before - self.producers.len()
    }

    /// Keeps at most `keep` producers, those whose last batch is newest (a
    /// rebuild from the log may find more than the limit); returns how many
    /// were dropped.
    pub(crate) fn keep_newest(&mut self, keep: usize) -> usize {
        if self.producers.len() <= keep {
            return 0;
        }
        let mut by_age: Vec<(u64, i64)> = self
            .producers
            .iter()
            .map(|(id, e)| (e.last_offset(), *id))
            .collect();
        by_age.sort_unstable();
        let dropped = self.producers.len() - keep;
        for (_, id) in &by_age[..dropped] {
            self.producers.remove(id);
        }
        dropped
    }
}
