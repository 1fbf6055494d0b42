//! Where a producer's records go: each topic's layout as the broker
//! described it (partition count, largest batch), and the partition of each
//! record — the one it names, its key's, or for keyless records the topic's
//! sticky partition (Kafka's uniform sticky partitioner, KIP-794): keyless
//! records fill one partition's batch, then move on to the next partition,
//! so they spread over the partitions batch by batch without making
//! batches smaller.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use carteiro::partitioner::partition_for_key;

use crate::error::ClientError;
use crate::record::ProducerRecord;

/// A topic as the producer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicLayout {
    /// Partitions 0..partitions.
    pub partitions: u32,
    /// The topic's `max_batch_bytes`: the broker refuses larger batches.
    pub batch_bytes_max: usize,
}

/// The sticky partition of one topic and the keyless bytes sent to it since it was chosen.
#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: u32,
    bytes: usize,
}

/// What the producer knows of one topic.
#[derive(Debug)]
struct TopicState {
    layout: TopicLayout,
    /// When the broker said so.
    learned: Instant,
    /// Chosen at the first keyless record.
    sticky: Option<Sticky>,
}

/// Chooses partitions; see the module documentation.
#[derive(Debug)]
pub(crate) struct Partitioner {
    topics: HashMap<String, TopicState>,
    /// Keyless bytes after which a topic's sticky partition moves on, even
    /// if its batch is still open.
    sticky_bytes: usize,
    /// How long a layout is trusted.
    max_age: Duration,
}

impl Partitioner {
    pub(crate) fn new(sticky_bytes: usize, max_age: Duration) -> Self {
        Partitioner {
            topics: HashMap::new(),
            sticky_bytes: sticky_bytes.max(1),
            max_age,
        }
    }

    /// The layout of `topic`, if known and younger than the max age (an
    /// older one is asked of the broker again: the topic may have grown).
    pub(crate) fn layout(&self, topic: &str) -> Option<TopicLayout> {
        self.topics
            .get(topic)
            .filter(|t| t.learned.elapsed() < self.max_age)
            .map(|t| t.layout)
    }

    /// Records what the broker said of `topic`; a layout learned again
    /// keeps the sticky partition if it still exists.
    pub(crate) fn learn(&mut self, topic: &str, layout: TopicLayout) {
        let sticky = self
            .topics
            .get(topic)
            .and_then(|t| t.sticky)
            .filter(|s| s.partition < layout.partitions);
        self.topics.insert(
            topic.to_string(),
            TopicState {
                layout,
                learned: Instant::now(),
                sticky,
            },
        );
    }

    /// Forgets `topic` (deleted, or re-created with another layout): the
    /// next record asks the broker again.
    pub(crate) fn forget(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The partition for `record` of `record_bytes` (roughly its encoded
    /// size) to `topic`, whose layout must be known.
    pub(crate) fn choose(
        &mut self,
        topic: &str,
        record: &ProducerRecord,
        record_bytes: usize,
    ) -> Result<u32, ClientError> {
        let Some(state) = self.topics.get_mut(topic) else {
            return Err(ClientError::Invalid(format!(
                "topic {topic:?} is not known to the producer yet"
            )));
        };
        let count = state.layout.partitions.max(1);
        match (record.partition, &record.key) {
            (Some(p), _) if p >= count => Err(ClientError::Invalid(format!(
                "partition {p} of topic {topic:?} does not exist: {}",
                carteiro::partitioner::partition_count_text(count)
            ))),
            (Some(p), _) => Ok(p),
            (None, Some(key)) => Ok(partition_for_key(key, count)),
            (None, None) => {
                let sticky = state.sticky.get_or_insert_with(|| Sticky {
                    partition: random_below(count),
                    bytes: 0,
                });
                if sticky.bytes >= self.sticky_bytes {
                    *sticky = Sticky {
                        partition: (sticky.partition + 1) % count,
                        bytes: 0,
                    };
                }
                sticky.bytes += record_bytes;
                Ok(sticky.partition)
            }
        }
    }

    /// A batch of `topic`'s `partition` was sealed: if it was the sticky
    /// partition, the next keyless record starts a batch on the next one.
    pub(crate) fn batch_sealed(&mut self, topic: &str, partition: u32) {
        if let Some(sticky) = self.topics.get_mut(topic).and_then(|t| t.sticky.as_mut())
            && sticky.partition == partition
        {
            sticky.bytes = self.sticky_bytes;
        }
    }
}

/// A random partition below `count`, so producers started together do not
/// all begin on partition 0.
fn random_below(count: u32) -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(count);
    (hasher.finish() % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn keyless() -> ProducerRecord {
        ProducerRecord::value(Bytes::from_static(b"v"))
    }

    fn partitioner(partitions: u32, sticky_bytes: usize) -> Partitioner {
        let mut p = Partitioner::new(sticky_bytes, Duration::from_secs(3600));
        p.learn(
            "t",
            TopicLayout {
                partitions,
                batch_bytes_max: 1 << 20,
            },
        );
        p
    }

    #[test]
    fn keyless_records_stay_on_one_partition_until_its_bytes_are_spent() {
        let mut p = partitioner(3, 100);
        let first = p.choose("t", &keyless(), 40).expect("in a test");
        assert_eq!(p.choose("t", &keyless(), 40).expect("in a test"), first);
        assert_eq!(p.choose("t", &keyless(), 40).expect("in a test"), first);
        // 120 bytes sent: the next record moves on.
        let second = p.choose("t", &keyless(), 40).expect("in a test");
        assert_eq!(second, (first + 1) % 3);
    }

    #[test]
    fn keyless_records_cover_every_partition_evenly() {
        let mut p = partitioner(4, 10);
        let mut counts = [0u32; 4];
        for _ in 0..4_000 {
            counts[p.choose("t", &keyless(), 10).expect("in a test") as usize] += 1;
        }
        assert_eq!(counts, [1_000; 4]);
    }

    #[test]
    fn a_sealed_sticky_batch_moves_keyless_records_on() {
        let mut p = partitioner(2, 1 << 20);
        let first = p.choose("t", &keyless(), 1).expect("in a test");
        p.batch_sealed("t", 1 - first);
        assert_eq!(p.choose("t", &keyless(), 1).expect("in a test"), first);
        p.batch_sealed("t", first);
        assert_eq!(p.choose("t", &keyless(), 1).expect("in a test"), 1 - first);
    }

    #[test]
    fn keyed_and_named_partitions_are_kept() {
        let mut p = partitioner(5, 1);
        let keyed = ProducerRecord {
            key: Some(Bytes::from_static(b"user-7")),
            ..keyless()
        };
        assert_eq!(
            p.choose("t", &keyed, 1).expect("in a test"),
            partition_for_key(b"user-7", 5)
        );
        let named = ProducerRecord {
            partition: Some(4),
            ..keyless()
        };
        assert_eq!(p.choose("t", &named, 1).expect("in a test"), 4);
        let missing = ProducerRecord {
            partition: Some(5),
            ..keyless()
        };
        let err = p
            .choose("t", &missing, 1)
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("partition 5") && err.contains("5 partitions, numbered 0 to 4"),
            "{err}"
        );
    }

    #[test]
    fn a_layout_is_asked_again_once_older_than_the_max_age() {
        let layout = |partitions| TopicLayout {
            partitions,
            batch_bytes_max: 1 << 20,
        };
        let mut fresh = Partitioner::new(16, Duration::from_secs(3600));
        fresh.learn("t", layout(2));
        assert_eq!(fresh.layout("t"), Some(layout(2)));
        let mut stale = Partitioner::new(16, Duration::ZERO);
        stale.learn("t", layout(2));
        assert_eq!(stale.layout("t"), None, "asked again");
        stale.learn("t", layout(4));
        let mut keyed = ProducerRecord::value(Bytes::from_static(b"v"));
        keyed.key = Some(Bytes::from_static(b"customer-17"));
        assert_eq!(
            stale.choose("t", &keyed, 10).expect("known"),
            partition_for_key(b"customer-17", 4),
            "keys map over the new count"
        );
    }
}
