//! Consumer groups' committed offsets, kept durable in an internal topic.
//!
//! Every commit is a record batch appended (and synced) to the one
//! partition of `__consumer_offsets`: key `group NUL topic NUL partition`,
//! value the offset (8 bytes, big-endian) then the metadata (UTF-8), or a
//! null value when a deleted topic's commits are dropped. At start the log
//! is replayed into memory; the latest record for a key wins.
//!
//! The topic is compacted by snapshot: once the records appended since the
//! last snapshot outnumber the live commits (and [`COMPACT_RECORDS_MIN`]),
//! the log rolls, every live commit is appended again, synced, and the
//! segments before the snapshot are deleted. Startup then replays about
//! twice the live commits, not the whole history. A crash mid-snapshot
//! leaves the old segments in place, and replaying them with a partial
//! snapshot gives the same state (the latest record per key wins).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use carteiro::record::{NewRecord, RecordBatch, RecordBatchBuilder};
use carteiro_storage::error::quoted;
use carteiro_storage::store::Store;
use carteiro_storage::{FlushPolicy, Log, LogConfig, ReadError, StoreError, TopicConfig};

use crate::error::BrokerError;

/// The internal topic holding commits.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Longest group id, in characters.
pub const GROUP_ID_MAX_CHARS: usize = 249;
/// Longest commit metadata, in bytes.
pub const COMMIT_METADATA_MAX_BYTES: usize = 4096;
/// Segment size of the internal topic, in bytes.
const OFFSETS_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Fewest records appended since the last snapshot that trigger the next one.
pub const COMPACT_RECORDS_MIN: u64 = 10_000;
/// Most commits per batch of a snapshot (each at most about 5 KiB, so a
/// batch stays well under the topic's 1 MiB batch limit).
const SNAPSHOT_BATCH_RECORDS_MAX: usize = 100;

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

/// How the committed offsets are opened.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsOptions {
    /// Skip damaged batches of the internal topic found while replaying it
    /// (their commits are lost, and reported) instead of refusing to start.
    pub repair: bool,
    /// Records appended since the last snapshot that trigger the next one
    /// (at least; never fewer than the live commits).
    pub compact_records_min: u64,
}

impl Default for OffsetsOptions {
    fn default() -> Self {
        OffsetsOptions {
            repair: false,
            compact_records_min: COMPACT_RECORDS_MIN,
        }
    }
}

/// What the writer of commits keeps: how many records the log holds beyond
/// the commits in memory.
struct Writer {
    /// Records appended since the last snapshot began (or replayed at start).
    since_snapshot: u64,
}

/// The committed offsets of every group.
pub struct CommittedOffsets {
    log: Arc<Log>,
    /// Held across append, sync and apply, so memory follows the log's
    /// order. Readers never take it: they read `commits`, which a writer
    /// locks only to apply what is already durable.
    writer: Mutex<Writer>,
    commits: RwLock<BTreeMap<Key, Committed>>,
    options: OffsetsOptions,
}

/// Checks a group id: 1 to 249 characters, none of them control characters.
pub fn validate_group(group: &str) -> Result<(), BrokerError> {
    let chars = group.chars().count();
    if chars == 0 || chars > GROUP_ID_MAX_CHARS {
        return Err(BrokerError::invalid(
            "group",
            format!(
                "{} has {chars} characters; it must have 1 to {GROUP_ID_MAX_CHARS}",
                quoted(group)
            ),
        ));
    }
    if let Some(c) = group.chars().find(|c| c.is_control()) {
        return Err(BrokerError::invalid(
            "group",
            format!("{} contains control character {c:?}", quoted(group)),
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

fn append_error(source: carteiro_storage::AppendError) -> BrokerError {
    BrokerError::Append {
        field: "commits",
        source,
    }
}

/// One record of the internal topic applied to the commits: a commit, or
/// (no value) its removal.
fn apply_one(commits: &mut BTreeMap<Key, Committed>, key: Key, value: Option<Committed>) {
    match value {
        Some(committed) => commits.insert(key, committed),
        None => commits.remove(&key),
    };
}

/// One batch of commit records.
fn commit_batch(entries: &[(Key, Option<Committed>)], now_ms: i64) -> Result<Vec<u8>, BrokerError> {
    let encoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
        .iter()
        .map(|(key, value)| (encode_key(key), value.as_ref().map(encode_value)))
        .collect();
    let mut builder = RecordBatchBuilder::new();
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
    builder
        .build()
        .map_err(|e| BrokerError::invalid("commits", e.to_string()))
}

impl CommittedOffsets {
    /// Opens (creating if needed) the internal topic and replays it,
    /// keeping only commits of partitions that exist. A damaged batch
    /// refuses to start, naming its offset, file and byte, unless
    /// `options.repair` (then its commits are given up, and logged).
    pub fn open(store: &Store, options: OffsetsOptions) -> Result<CommittedOffsets, BrokerError> {
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
        let mut commits = BTreeMap::new();
        let mut replayed = 0u64;
        let mut offset = log.start_offset();
        loop {
            let read = match log.read(offset, 1 << 20) {
                Ok(read) => read,
                Err(ReadError::Corrupt {
                    file,
                    position,
                    offset: damaged,
                    reason,
                }) => {
                    let at = format!(
                        "{OFFSETS_TOPIC} holds a damaged batch at offset {damaged} in {} at byte {position}: {reason}",
                        file.display()
                    );
                    if !options.repair {
                        return Err(BrokerError::DataLoss(format!(
                            "{at}; refusing to start without the commits it holds (--repair gives them up)"
                        )));
                    }
                    offset = log.offset_after_damage(damaged, position);
                    tracing::error!(
                        from = damaged,
                        to = offset,
                        "repair: {at}; giving up the commits at offsets {damaged}..{offset}"
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if read.batches.is_empty() {
                break;
            }
            let mut rest = &read.batches[..];
            while !rest.is_empty() {
                // Reads hand out only batches whose CRC was checked.
                let (batch, tail) = RecordBatch::parse(rest)
                    .map_err(|e| BrokerError::DataLoss(format!("{OFFSETS_TOPIC}: {e}")))?;
                let records = batch
                    .records()
                    .map_err(|e| BrokerError::DataLoss(format!("{OFFSETS_TOPIC}: {e}")))?;
                for record in records.iter() {
                    let record = record
                        .map_err(|e| BrokerError::DataLoss(format!("{OFFSETS_TOPIC}: {e}")))?;
                    replayed += 1;
                    let Some(key) = record.key.and_then(decode_key) else {
                        continue;
                    };
                    apply_one(&mut commits, key, record.value.and_then(decode_value));
                }
                rest = tail;
            }
            offset = read.next_offset;
        }
        // Commits of deleted topics (a tombstone that a full disk refused).
        commits.retain(|(_, topic, partition): &Key, _| store.partition(topic, *partition).is_ok());
        tracing::info!(
            commits = commits.len(),
            replayed,
            replayed_to = offset,
            "replayed committed offsets"
        );
        let offsets = CommittedOffsets {
            log,
            writer: Mutex::new(Writer {
                since_snapshot: replayed,
            }),
            commits: RwLock::new(commits),
            options,
        };
        offsets.compact_if_due(&mut offsets.writer(), store.clock().now_ms())?;
        Ok(offsets)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commits(&self) -> RwLockReadGuard<'_, BTreeMap<Key, Committed>> {
        self.commits.read().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, entries: Vec<(Key, Option<Committed>)>) {
        let mut commits = self.commits.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in entries {
            apply_one(&mut commits, key, value);
        }
    }

    /// Records the internal topic held when it was last replayed or
    /// snapshotted, plus those appended since: what a restart would replay.
    pub fn records_since_snapshot(&self) -> u64 {
        self.writer().since_snapshot
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
        // Encoded before the lock: it needs nothing the other writers change.
        let batch = commit_batch(&entries, now_ms)?;
        let mut writer = self.writer();
        self.log.append(&batch).map_err(append_error)?;
        writer.since_snapshot += entries.len() as u64;
        self.apply(entries);
        if let Err(e) = self.compact_if_due(&mut writer, now_ms) {
            // The commit is durable; the next one tries the snapshot again.
            tracing::warn!(error = %e, "could not compact {OFFSETS_TOPIC}");
        }
        Ok(())
    }

    /// Writes a snapshot if enough records were appended since the last.
    fn compact_if_due(&self, writer: &mut Writer, now_ms: i64) -> Result<(), BrokerError> {
        let due = self
            .options
            .compact_records_min
            .max(self.commits().len() as u64);
        if writer.since_snapshot < due {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let base = self.log.roll().map_err(append_error)?;
        let entries: Vec<(Key, Option<Committed>)> = self
            .commits()
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for chunk in entries.chunks(SNAPSHOT_BATCH_RECORDS_MAX) {
            let batch = commit_batch(chunk, now_ms)?;
            self.log.append_unsynced(&batch).map_err(append_error)?;
        }
        self.log.flush().map_err(append_error)?;
        let deleted = self.log.delete_segments_before(base);
        tracing::info!(
            commits = entries.len(),
            replaced_records = writer.since_snapshot,
            deleted_segments = deleted.deleted_segments.len(),
            ms = started.elapsed().as_millis() as u64,
            "compacted {OFFSETS_TOPIC} by snapshot"
        );
        writer.since_snapshot = 0;
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
    /// If the tombstones cannot be written (a full disk), the commits are
    /// still dropped from memory, and the next start drops them too, as
    /// their topic no longer exists.
    pub fn forget_topic(&self, topic: &str, now_ms: i64) {
        let keys: Vec<Key> = self
            .commits()
            .keys()
            .filter(|(_, t, _)| t == topic)
            .cloned()
            .collect();
        if let Err(e) = self.write(keys.iter().map(|k| (k.clone(), None)).collect(), now_ms) {
            tracing::warn!(topic, error = %e, "could not record that the deleted topic's commits are gone");
            self.apply(keys.into_iter().map(|k| (k, None)).collect());
        }
    }

    /// One committed offset.
    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<Committed> {
        self.commits()
            .get(&(group.to_string(), topic.to_string(), partition))
            .cloned()
    }

    /// All of a group's commits, by topic and partition.
    pub fn group(&self, group: &str) -> Vec<(String, u32, Committed)> {
        self.commits()
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), c)| (t.clone(), *p, c.clone()))
            .collect()
    }

    /// Every group with at least one commit.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.commits().keys().map(|(g, _, _)| g.clone()).collect();
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

    fn store(dir: &std::path::Path) -> Arc<Store> {
        let options = carteiro_storage::StoreOptions {
            maintenance_interval_ms: None,
            ..Default::default()
        };
        let store = Store::open(dir, options).expect("store");
        if store.topic("orders").is_err() {
            let config = TopicConfig {
                partitions: 4,
                log: LogConfig::default(),
            };
            store.create_topic("orders", config).expect("topic");
        }
        store
    }

    fn compacting(min: u64) -> OffsetsOptions {
        OffsetsOptions {
            repair: false,
            compact_records_min: min,
        }
    }

    #[test]
    fn snapshots_bound_what_a_restart_replays_and_keep_the_latest_commit_of_each_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut expected = BTreeMap::new();
        {
            let store = store(dir.path());
            let offsets = CommittedOffsets::open(&store, compacting(50)).expect("open");
            for round in 0..400i64 {
                let group = format!("g{}", round % 5);
                let partition = (round % 4) as u32;
                let committed = Committed {
                    offset: round,
                    metadata: format!("round {round}"),
                };
                offsets
                    .commit(
                        &group,
                        vec![("orders".into(), partition, committed.clone())],
                        1,
                    )
                    .expect("commit");
                expected.insert((group, partition), committed);
                // The log never holds much more than the live commits and one threshold.
                assert!(offsets.records_since_snapshot() < 50, "round {round}");
            }
            let log = store.partition(OFFSETS_TOPIC, 0).expect("log");
            assert!(
                log.start_offset() > 0,
                "segments before the last snapshot were deleted"
            );
            assert!(
                log.end_offset() - log.start_offset() < 20 + 50,
                "{:?}",
                log.stats()
            );
        }
        let store = store(dir.path());
        let offsets = CommittedOffsets::open(&store, compacting(50)).expect("reopen");
        assert!(offsets.records_since_snapshot() < 20 + 50);
        for ((group, partition), committed) in &expected {
            assert_eq!(
                offsets.get(group, "orders", *partition).as_ref(),
                Some(committed)
            );
        }
        assert_eq!(offsets.groups().len(), 5);
    }

    #[test]
    fn commits_of_a_deleted_topic_do_not_come_back_even_if_their_tombstones_were_never_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = store(dir.path());
            let offsets = CommittedOffsets::open(&store, OffsetsOptions::default()).expect("open");
            let committed = Committed {
                offset: 3,
                metadata: String::new(),
            };
            offsets
                .commit("g", vec![("orders".into(), 1, committed)], 1)
                .expect("commit");
            // Deleted without tombstones, as when a full disk refuses them.
            store.delete_topic("orders").expect("delete");
        }
        let options = carteiro_storage::StoreOptions {
            maintenance_interval_ms: None,
            ..Default::default()
        };
        let store = Store::open(dir.path(), options).expect("store");
        let offsets = CommittedOffsets::open(&store, OffsetsOptions::default()).expect("reopen");
        assert_eq!(offsets.get("g", "orders", 1), None);
        assert!(offsets.groups().is_empty());
    }
}
