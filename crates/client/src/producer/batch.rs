//! A batch of one partition's records: filled, then encoded (and, for an
//! idempotent producer, stamped) once, and sent as the same bytes until
//! the broker answers; then each record's sender is told.

use bytes::Bytes;
use carteiro::record::{BatchError, Compression, ProducerStamp, RecordBatchBuilder};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::DeliveryResult;
use super::idempotence::{Sequences, restamp};
use crate::error::ClientError;
use crate::record::{RecordMetadata, TopicPartition};

/// A batch being filled or waiting to be sent.
pub(super) struct Pending {
    pub(super) builder: RecordBatchBuilder,
    pub(super) waiters: Vec<(oneshot::Sender<DeliveryResult>, i64)>,
    pub(super) created: Instant,
    pub(super) encoded: Option<Bytes>,
    /// An idempotent producer's stamp on `encoded`.
    pub(super) stamp: Option<ProducerStamp>,
    /// It was in flight on a stream that broke before saying what became of
    /// it: it may be in the log under its stamp, so it is not restamped
    /// until the broker has answered it (appended or a duplicate).
    pub(super) maybe_appended: bool,
}

impl Pending {
    /// An empty batch, compressed with `compression` when built.
    pub(super) fn new(compression: Compression) -> Self {
        Pending {
            builder: RecordBatchBuilder::new().with_compression(compression),
            waiters: Vec::new(),
            created: Instant::now(),
            encoded: None,
            stamp: None,
            maybe_appended: false,
        }
    }

    /// The batch's bytes to send: built the first time (stamped with the
    /// next sequence if `sequences`), then the same bytes each time, unless
    /// their stamp is of an older epoch: then restamped with the next
    /// sequence of the current one.
    pub(super) fn encode(
        &mut self,
        tp: &TopicPartition,
        sequences: Option<&mut Sequences>,
    ) -> Result<Bytes, BatchError> {
        let records = i32::try_from(self.waiters.len()).expect("a batch holds below 2^31 records");
        let bytes = match (self.encoded.take(), sequences) {
            (Some(bytes), None) => bytes,
            (Some(bytes), Some(sequences))
                if self.stamp.is_none_or(|s| sequences.is_current(&s)) =>
            {
                bytes
            }
            (Some(bytes), Some(sequences)) => {
                let stamp = sequences.stamp_for(tp);
                let bytes = restamp(bytes, stamp)?;
                sequences.sent(tp, records);
                self.stamp = Some(stamp);
                bytes
            }
            (None, sequences) => {
                let mut builder = std::mem::take(&mut self.builder);
                let stamp = sequences.as_ref().map(|s| s.stamp_for(tp));
                if let Some(stamp) = stamp {
                    builder = builder.with_producer(stamp);
                }
                let bytes = Bytes::from(builder.build()?);
                if let Some(sequences) = sequences {
                    sequences.sent(tp, records);
                }
                self.stamp = stamp;
                bytes
            }
        };
        self.encoded = Some(bytes.clone());
        Ok(bytes)
    }

    /// Tells every record's sender that it failed.
    pub(super) fn fail(self, error: ClientError) {
        for (waiter, _) in self.waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }

    /// Tells every record's sender where it landed.
    pub(super) fn deliver(self, tp: &TopicPartition, base_offset: i64) {
        for (i, (waiter, timestamp)) in self.waiters.into_iter().enumerate() {
            let metadata = RecordMetadata {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset: base_offset + i as i64,
                timestamp_ms: timestamp,
            };
            let _ = waiter.send(Ok(metadata));
        }
    }
}

#[cfg(test)]
/// A batch of `records` records, with waiters to deliver to (for tests).
pub(super) fn filled(records: usize) -> (Pending, Vec<oneshot::Receiver<DeliveryResult>>) {
    let mut pending = Pending::new(Compression::None);
    let mut receivers = Vec::new();
    for i in 0..records {
        let value = format!("v{i}");
        pending
            .builder
            .append(&carteiro::record::NewRecord {
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(value.as_bytes()),
                headers: &[],
            })
            .expect("fits");
        let (done, delivery) = oneshot::channel();
        pending.waiters.push((done, 1_700_000_000_000));
        receivers.push(delivery);
    }
    (pending, receivers)
}

#[cfg(test)]
mod tests {
    use carteiro::record::RecordBatch;

    use super::*;
    use crate::producer::idempotence::Identity;

    fn stamp_of(bytes: &Bytes) -> (i64, i16, i32) {
        let batch = RecordBatch::parse_exact(bytes).expect("a valid batch");
        let h = batch.header();
        (h.producer_id, h.producer_epoch, h.base_sequence)
    }

    #[test]
    fn batches_are_stamped_when_first_encoded_and_sent_again_byte_for_byte() {
        let tp = TopicPartition::new("t", 0);
        let mut sequences = Sequences::new(Identity {
            producer_id: 42,
            epoch: 0,
        });
        let (mut a, _a) = filled(3);
        let (mut b, _b) = filled(2);
        let first_a = a.encode(&tp, Some(&mut sequences)).expect("a");
        let first_b = b.encode(&tp, Some(&mut sequences)).expect("b");
        assert_eq!(stamp_of(&first_a), (42, 0, 0));
        assert_eq!(stamp_of(&first_b), (42, 0, 3));
        // Sent again after a broken stream: the same bytes, no new sequence.
        assert_eq!(a.encode(&tp, Some(&mut sequences)).expect("a"), first_a);
        assert_eq!(sequences.stamp_for(&tp).base_sequence, 5);
        // Another partition counts from 0.
        let (mut c, _c) = filled(1);
        let other = TopicPartition::new("t", 1);
        let first_c = c.encode(&other, Some(&mut sequences)).expect("c");
        assert_eq!(stamp_of(&first_c), (42, 0, 0));
    }

    #[test]
    fn after_the_next_epoch_the_batches_left_are_restamped_from_zero_in_queue_order() {
        let tp = TopicPartition::new("t", 0);
        let mut sequences = Sequences::new(Identity {
            producer_id: 42,
            epoch: 0,
        });
        sequences.sent(&tp, i32::MAX - 1);
        let mut queue: Vec<Pending> = [2, 3, 4].into_iter().map(|n| filled(n).0).collect();
        let first: Vec<Bytes> = queue
            .iter_mut()
            .map(|p| p.encode(&tp, Some(&mut sequences)).expect("encoded"))
            .collect();
        // Sequences wrap past i32::MAX to 0, as Kafka's do.
        let bases: Vec<i32> = first.iter().map(|b| stamp_of(b).2).collect();
        assert_eq!(bases, vec![i32::MAX - 1, 0, 3]);
        // The first is refused for good: the next epoch, the others restamped.
        let refused = queue.remove(0);
        sequences.given_up(&refused.stamp.expect("stamped"));
        assert!(sequences.bump_needed());
        sequences.adopt(Identity {
            producer_id: 42,
            epoch: 1,
        });
        let again: Vec<Bytes> = queue
            .iter_mut()
            .map(|p| p.encode(&tp, Some(&mut sequences)).expect("restamped"))
            .collect();
        let stamps: Vec<(i64, i16, i32)> = again.iter().map(stamp_of).collect();
        assert_eq!(stamps, vec![(42, 1, 0), (42, 1, 3)]);
        // Only the stamp (and the CRC) changed.
        for (before, after) in first[1..].iter().zip(&again) {
            let unstamped = |b: &Bytes| {
                let mut v = b.to_vec();
                v[carteiro::record::CRC_AT..carteiro::record::ATTRIBUTES_AT].fill(0);
                v[carteiro::record::PRODUCER_ID_AT..carteiro::record::RECORD_COUNT_AT].fill(0);
                v
            };
            assert_eq!(unstamped(before), unstamped(after));
        }
        // And kept from then on.
        assert_eq!(
            queue[1].encode(&tp, Some(&mut sequences)).expect("same"),
            again[1]
        );
        assert_eq!(sequences.stamp_for(&tp).base_sequence, 7);
    }

    #[test]
    fn a_producer_that_is_not_idempotent_sends_unstamped_batches() {
        let tp = TopicPartition::new("t", 0);
        let (mut a, _a) = filled(2);
        let bytes = a.encode(&tp, None).expect("built");
        assert_eq!(stamp_of(&bytes), (-1, -1, -1));
        assert!(a.stamp.is_none());
        assert_eq!(a.encode(&tp, None).expect("same"), bytes);
    }
}
