//! Consumer groups' committed offsets, kept durable in an internal topic.
//!
//! Every commit is a record batch appended (and synced) to the one
//! partition of `__consumer_offsets`: key `group NUL topic NUL partition`,
//! value the offset (8 bytes, big-endian) then the metadata (UTF-8), or a
//! null value when a deleted topic's commits are dropped. At start the log
//! is replayed into memory; the latest record for a key wins.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use carteiro::record::{NewRecord, RecordBatch, RecordBatchBuilder};
use carteiro_storage::store::Store;
use carteiro_storage::{FlushPolicy, Log, LogConfig, StoreError, TopicConfig};

use crate::error::BrokerError;

/// The internal topic holding commits.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Longest group id, in characters.
pub const GROUP_ID_MAX_CHARS: usize = 249;
/// Longest commit metadata, in bytes.
pub const COMMIT_METADATA_MAX_BYTES: usize = 4096;
/// Segment size of the internal topic, in bytes.
const OFFSETS_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The caller's text.
    pub metadata: String,
}

/// A (group, topic, partition) key.
type Key = (String, String, u32);

/// The committed offsets of every group.
pub struct GroupOffsets {
    log: Arc<Log>,
    /// Held across append and apply, so memory follows the log's order.
    state: Mutex<BTreeMap<Key, Committed>>,
}

/// Checks a group id: 1 to 249 characters, none of them control characters.
pub fn validate_group(group: &str) -> Result<(), BrokerError> {
    let chars = group.chars().count();
    if chars == 0 || chars > GROUP_ID_MAX_CHARS {
        return Err(BrokerError::invalid(
            "group",
            format!("{group:?} has {chars} characters; it must have 1 to {GROUP_ID_MAX_CHARS}"),
        ));
    }
    if let Some(c) = group.chars().find(|c| c.is_control()) {
        return Err(BrokerError::invalid(
            "group",
            format!("{group:?} contains control character {c:?}"),
        ));
    }
    Ok(())
}

fn encode_key((group, topic, partition): &Key) -> Vec<u8> {
    format!("{group}\0{topic}\0{partition}").into_bytes()
}

fn decode_key(key: &[u8]) -> Option<Key> {
    let text = std::str::from_utf8(key).ok()?;
    let mut parts = text.split('\0');
    let (group, topic, partition) = (parts.next()?, parts.next()?, parts.next()?);
    Some((
        group.to_string(),
        topic.to_string(),
        partition.parse().ok()?,
    ))
}

fn encode_value(committed: &Committed) -> Vec<u8> {
    let mut value = committed.offset.to_be_bytes().to_vec();
    value.extend_from_slice(committed.metadata.as_bytes());
    value
}

fn decode_value(value: &[u8]) -> Option<Committed> {
    let (offset, metadata) = value.split_first_chunk::<8>()?;
    Some(Committed {
        offset: i64::from_be_bytes(*offset),
        metadata: String::from_utf8(metadata.to_vec()).ok()?,
    })
}

impl GroupOffsets {
    /// Opens (creating if needed) the internal topic and replays it.
    pub fn open(store: &Store) -> Result<GroupOffsets, BrokerError> {
        let topic = match store.topic(OFFSETS_TOPIC) {
            Ok(topic) => topic,
            Err(StoreError::UnknownTopic { .. }) => {
                let log = LogConfig {
                    segment_bytes: OFFSETS_SEGMENT_BYTES,
                    retention_ms: None,
                    flush: FlushPolicy::Always,
                    ..LogConfig::default()
                };
                store.create_topic(OFFSETS_TOPIC, TopicConfig { partitions: 1, log })?
            }
            Err(e) => return Err(e.into()),
        };
        let log = topic.partition(0)?.clone();
        let mut state = BTreeMap::new();
        let mut offset = log.start_offset();
        loop {
            let read = log.read(offset, 1 << 20)?;
            if read.batches.is_empty() {
                break;
            }
            let mut rest = &read.batches[..];
            while !rest.is_empty() {
                let (batch, tail) = RecordBatch::parse(rest).map_err(|e| {
                    BrokerError::Internal(format!("{OFFSETS_TOPIC} holds a bad batch: {e}"))
                })?;
                let records = batch
                    .records()
                    .map_err(|e| BrokerError::Internal(format!("{OFFSETS_TOPIC}: {e}")))?;
                for record in records {
                    let record = record
                        .map_err(|e| BrokerError::Internal(format!("{OFFSETS_TOPIC}: {e}")))?;
                    let Some(key) = record.key.and_then(decode_key) else {
                        continue;
                    };
                    match record.value.and_then(decode_value) {
                        Some(committed) => state.insert(key, committed),
                        None => state.remove(&key),
                    };
                }
                rest = tail;
            }
            offset = read.next_offset;
        }
        tracing::debug!(
            commits = state.len(),
            replayed_to = offset,
            "replayed committed offsets"
        );
        Ok(GroupOffsets {
            log,
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> MutexGuard<'_, BTreeMap<Key, Committed>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends and syncs `entries` as one batch, then applies them. Blocking.
    fn write(
        &self,
        entries: Vec<(Key, Option<Committed>)>,
        now_ms: i64,
    ) -> Result<(), BrokerError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut state = self.state();
        let mut builder = RecordBatchBuilder::new();
        let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
            .iter()
            .map(|(key, value)| (encode_key(key), value.as_ref().map(encode_value)))
            .collect();
        for (key, value) in &encoded {
            let record = NewRecord {
                timestamp: now_ms,
                key: Some(key),
                value: value.as_deref(),
                headers: &[],
            };
            builder
                .append(&record)
                .map_err(|e| BrokerError::invalid("commits", e.to_string()))?;
        }
        let batch = builder
            .build()
            .map_err(|e| BrokerError::invalid("commits", e.to_string()))?;
        self.log
            .append(&batch)
            .map_err(|source| BrokerError::Append {
                field: "commits",
                source,
            })?;
        for (key, value) in entries {
            match value {
                Some(committed) => state.insert(key, committed),
                None => state.remove(&key),
            };
        }
        Ok(())
    }

    /// Stores a group's commits durably (all or none). The caller has
    /// checked that the topics and partitions exist. Blocking.
    pub fn commit(
        &self,
        group: &str,
        commits: Vec<(String, u32, Committed)>,
        now_ms: i64,
    ) -> Result<(), BrokerError> {
        let entries = commits
            .into_iter()
            .map(|(topic, partition, committed)| {
                ((group.to_string(), topic, partition), Some(committed))
            })
            .collect();
        self.write(entries, now_ms)
    }

    /// Drops every group's commits for `topic` (it was deleted). Blocking.
    pub fn forget_topic(&self, topic: &str, now_ms: i64) -> Result<(), BrokerError> {
        let keys: Vec<Key> = self
            .state()
            .keys()
            .filter(|(_, t, _)| t == topic)
            .cloned()
            .collect();
        self.write(keys.into_iter().map(|k| (k, None)).collect(), now_ms)
    }

    /// One committed offset.
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<Committed> {
        self.state()
            .get(&(group.to_string(), topic.to_string(), partition))
            .cloned()
    }

    /// All of a group's commits, by topic and partition.
    pub fn group(&self, group: &str) -> Vec<(String, u32, Committed)> {
        self.state()
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), c)| (t.clone(), *p, c.clone()))
            .collect()
    }

    /// Every group with at least one commit.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.state().keys().map(|(g, _, _)| g.clone()).collect();
        groups.dedup();
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = ("g".to_string(), "orders.v2".to_string(), 7);
        assert_eq!(decode_key(&encode_key(&key)), Some(key));
        let value = Committed {
            offset: 42,
            metadata: "worker-1".into(),
        };
        assert_eq!(decode_value(&encode_value(&value)), Some(value));
        assert_eq!(decode_value(&[1, 2, 3]), None);
    }

    #[test]
    fn group_ids_are_checked() {
        assert!(validate_group("payments-consumers").is_ok());
        assert!(validate_group("").is_err());
        assert!(validate_group("a\nb").is_err());
        assert!(validate_group(&"g".repeat(250)).is_err());
    }
}
