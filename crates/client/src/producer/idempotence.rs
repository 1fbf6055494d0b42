//! The idempotent producer's bookkeeping (Kafka's KIP-98), without I/O.
//!
//! The broker gives the producer an id and an epoch (`InitProducerId`).
//! Each batch carries them and the sequence number of its first record in
//! its partition; the broker appends a producer's batches to a partition
//! once each, in sequence, and answers a batch sent again (one of the
//! producer's last [`IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX`] to the
//! partition) with the offsets it got the first time.
//!
//! A batch is stamped when it is first encoded and keeps its stamp, byte
//! for byte, when it is sent again after a broken stream. A stamped batch
//! given up (refused for good, or out of time) leaves a gap the broker would
//! refuse every later batch for, so the producer asks for the next epoch,
//! starts every partition's sequence at 0 again and restamps each batch
//! not yet acknowledged, in queue order, when it is next sent.

use std::collections::HashMap;

use bytes::Bytes;
use carteiro::record::{BatchError, ProducerStamp, sequence_after, stamp_producer};

use crate::record::TopicPartition;

/// The most batches an idempotent producer may have in flight to one
/// partition: the broker remembers a producer's last 5 batches per
/// partition, and recognises a batch sent again only among them.
pub const IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX: usize = 5;

/// A producer id and epoch the broker gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The id, 0 or more.
    pub(crate) producer_id: i64,
    /// The epoch; a newer one fences the older.
    pub(crate) epoch: i16,
}

/// The producer's identity and the next sequence number of each partition.
#[derive(Debug)]
pub(crate) struct Sequences {
    identity: Identity,
    next: HashMap<TopicPartition, i32>,
    /// A batch stamped under this identity was given up: its sequence
    /// numbers are a gap, so the next epoch is needed before more is sent.
    bump_needed: bool,
}

impl Sequences {
    /// Sequences of a producer the broker has just named.
    pub(crate) fn new(identity: Identity) -> Self {
        Sequences {
            identity,
            next: HashMap::new(),
            bump_needed: false,
        }
    }

    /// The current id and epoch.
    pub(crate) fn identity(&self) -> Identity {
        self.identity
    }

    /// True once a batch of this epoch was given up, until the next epoch.
    pub(crate) fn bump_needed(&self) -> bool {
        self.bump_needed
    }

    /// Takes the identity the broker gave (the next epoch, or a new id):
    /// every partition starts again at sequence 0.
    pub(crate) fn adopt(&mut self, identity: Identity) {
        self.identity = identity;
        self.next.clear();
        self.bump_needed = false;
    }

    /// True if `stamp` is of the current id and epoch.
    pub(crate) fn is_current(&self, stamp: &ProducerStamp) -> bool {
        stamp.producer_id == self.identity.producer_id && stamp.epoch == self.identity.epoch
    }

    /// Notes that a batch with `stamp` will never be sent again.
    pub(crate) fn given_up(&mut self, stamp: &ProducerStamp) {
        if self.is_current(stamp) {
            self.bump_needed = true;
        }
    }

    /// The stamp of the next batch to `tp` (call [`sent`](Self::sent) once it is used).
    pub(crate) fn stamp_for(&self, tp: &TopicPartition) -> ProducerStamp {
        ProducerStamp {
            producer_id: self.identity.producer_id,
            epoch: self.identity.epoch,
            base_sequence: self.next.get(tp).copied().unwrap_or(0),
        }
    }

    /// Counts a batch of `records` records stamped for `tp`.
    pub(crate) fn sent(&mut self, tp: &TopicPartition, records: i32) {
        let next = self.next.entry(tp.clone()).or_insert(0);
        *next = sequence_after(*next, records);
    }
}

/// `batch` (a whole batch, as built) with `stamp` instead of its own.
pub(crate) fn restamp(batch: Bytes, stamp: ProducerStamp) -> Result<Bytes, BatchError> {
    // No copy if nothing else holds the bytes any more.
    let mut bytes = Vec::from(batch);
    stamp_producer(&mut bytes, stamp)?;
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(partition: u32) -> TopicPartition {
        TopicPartition::new("t", partition)
    }

    #[test]
    fn each_partition_counts_its_own_records_from_zero() {
        let mut s = Sequences::new(Identity {
            producer_id: 7,
            epoch: 0,
        });
        assert_eq!(s.stamp_for(&tp(0)).base_sequence, 0);
        s.sent(&tp(0), 3);
        s.sent(&tp(1), 10);
        s.sent(&tp(0), 2);
        assert_eq!(
            s.stamp_for(&tp(0)),
            ProducerStamp {
                producer_id: 7,
                epoch: 0,
                base_sequence: 5
            }
        );
        assert_eq!(s.stamp_for(&tp(1)).base_sequence, 10);
        s.next.insert(tp(2), i32::MAX - 1);
        s.sent(&tp(2), 4);
        assert_eq!(s.stamp_for(&tp(2)).base_sequence, 2, "wrapped");
    }

    #[test]
    fn a_current_batch_given_up_needs_the_next_epoch_and_it_restarts_every_partition() {
        let mut s = Sequences::new(Identity {
            producer_id: 7,
            epoch: 0,
        });
        s.sent(&tp(0), 3);
        s.sent(&tp(1), 4);
        let old = s.stamp_for(&tp(0));
        assert!(!s.bump_needed());
        s.given_up(&old);
        assert!(s.bump_needed());
        s.adopt(Identity {
            producer_id: 7,
            epoch: 1,
        });
        assert!(!s.bump_needed());
        assert!(!s.is_current(&old));
        assert_eq!(
            s.stamp_for(&tp(1)),
            ProducerStamp {
                producer_id: 7,
                epoch: 1,
                base_sequence: 0
            }
        );
        // A batch of the old epoch given up now leaves no gap in the new one.
        s.given_up(&old);
        assert!(!s.bump_needed());
    }
}
