//! The store's metadata files: `topics.meta` in the data directory (every
//! topic with its partition count and config) and `partition.meta` in each
//! partition directory (the topic and partition that directory belongs
//! to, with the topic's config, so that a lost `topics.meta` can be
//! rebuilt and a directory is never taken for one of ours unless it is).
//! The only module that uses bincode (2.0.1, frozen): a 16-byte header with
//! magic, version, length and a CRC-32 (of the header and payload) guards
//! each bincode payload, so a damaged file is an error, never a wrong config.

use serde::{Deserialize, Serialize};

use crate::config::LogConfig;

/// File name of the metadata file in the data directory.
pub(crate) const METADATA_FILE: &str = "topics.meta";
/// File name of the marker in each partition directory.
pub(crate) const PARTITION_MARKER_FILE: &str = "partition.meta";
/// The temporary file an atomic write of the marker goes through.
pub(crate) const PARTITION_MARKER_TMP_FILE: &str = "partition.meta.tmp";
const MAGIC: [u8; 4] = *b"CRTM";
const PARTITION_MAGIC: [u8; 4] = *b"CRTP";
/// Version of the metadata format.
pub(crate) const METADATA_VERSION: u16 = 1;
/// Size of the metadata header, in bytes.
pub(crate) const METADATA_HEADER_BYTES: usize = 16;
/// Largest metadata payload accepted, in bytes (far above any real topic list).
pub(crate) const METADATA_MAX_BYTES: usize = 64 * 1024 * 1024;

/// One topic as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopicRecord {
    pub name: String,
    pub partitions: u32,
    pub config: LogConfig,
    pub created_ms: i64,
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<METADATA_MAX_BYTES>()
}

/// What a partition directory's marker says: whose it is. Its topic's
/// `partitions` is the count the topic had when this partition was made
/// (a topic may grow later; `topics.meta` holds the count now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionMarker {
    pub partition: u32,
    pub topic: TopicRecord,
}

impl PartitionMarker {
    /// True if this marker proves its directory is partition `partition`
    /// of the topic `record` describes: the same partition, name,
    /// incarnation (`created_ms`) and config, written when the topic had
    /// at most `record.partitions` partitions (partitions are only added).
    pub(crate) fn belongs_to(&self, record: &TopicRecord, partition: u32) -> bool {
        self.partition == partition
            && partition < self.topic.partitions
            && self.topic.partitions <= record.partitions
            && self.topic.same_topic(record)
    }
}

impl TopicRecord {
    /// True if `other` is the same topic (name, incarnation and config),
    /// whatever the partition counts.
    pub(crate) fn same_topic(&self, other: &TopicRecord) -> bool {
        self.name == other.name
            && self.created_ms == other.created_ms
            && self.config == other.config
    }
}

/// Encodes the topic list with its header.
pub(crate) fn encode(topics: &[TopicRecord]) -> Result<Vec<u8>, String> {
    encode_with(MAGIC, topics)
}

/// Decodes a metadata file; `Err` says what is wrong with it.
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<TopicRecord>, String> {
    decode_with(MAGIC, bytes)
}

/// Encodes a partition marker with its header.
pub(crate) fn encode_marker(marker: &PartitionMarker) -> Result<Vec<u8>, String> {
    encode_with(PARTITION_MAGIC, marker)
}

/// Decodes a partition marker; `Err` says what is wrong with it.
pub(crate) fn decode_marker(bytes: &[u8]) -> Result<PartitionMarker, String> {
    decode_with(PARTITION_MAGIC, bytes)
}

fn encode_with<T: Serialize + ?Sized>(magic: [u8; 4], value: &T) -> Result<Vec<u8>, String> {
    let payload =
        bincode::serde::encode_to_vec(value, bincode_config()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(METADATA_HEADER_BYTES + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&METADATA_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(&out, &payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// CRC-32 of the header's first 12 bytes and the payload.
fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..12]);
    hasher.update(payload);
    hasher.finalize()
}

fn decode_with<T: serde::de::DeserializeOwned>(magic: [u8; 4], bytes: &[u8]) -> Result<T, String> {
    let header = bytes
        .get(..METADATA_HEADER_BYTES)
        .ok_or("shorter than its header")?;
    if header[0..4] != magic {
        return Err("bad magic".into());
    }
    let version = u16::from_be_bytes([header[4], header[5]]);
    if version != METADATA_VERSION {
        return Err(format!(
            "version {version} not supported (this build reads {METADATA_VERSION})"
        ));
    }
    let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let payload = &bytes[METADATA_HEADER_BYTES..];
    if payload.len() != len {
        return Err(format!(
            "header says {len} bytes of payload, file holds {}",
            payload.len()
        ));
    }
    let stored = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let actual = checksum(header, payload);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, bytes give {actual:#010x}"
        ));
    }
    let (value, used) =
        bincode::serde::decode_from_slice(payload, bincode_config()).map_err(|e| e.to_string())?;
    if used != payload.len() {
        return Err(format!("{} bytes after the payload", payload.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FlushPolicy;

    fn sample() -> Vec<TopicRecord> {
        vec![
            TopicRecord {
                name: "orders".into(),
                partitions: 3,
                config: LogConfig::default(),
                created_ms: 1,
            },
            TopicRecord {
                name: "audit.log".into(),
                partitions: 1,
                config: LogConfig {
                    flush: FlushPolicy::IntervalMs(50),
                    retention_bytes: Some(1 << 30),
                    ..LogConfig::default()
                },
                created_ms: 2,
            },
        ]
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&sample()).expect("encodes");
        assert_eq!(decode(&bytes), Ok(sample()));
    }

    #[test]
    fn a_marker_round_trips_and_is_not_a_topic_list() {
        let marker = PartitionMarker {
            partition: 2,
            topic: sample().remove(0),
        };
        let bytes = encode_marker(&marker).expect("encodes");
        assert_eq!(decode_marker(&bytes), Ok(marker));
        assert!(decode(&bytes).is_err(), "magic tells them apart");
    }

    #[test]
    fn a_marker_belongs_to_its_topic_at_any_later_partition_count() {
        let topic = sample().remove(0);
        let marker = PartitionMarker {
            partition: 2,
            topic: topic.clone(),
        };
        assert!(marker.belongs_to(&topic, 2));
        let grown = TopicRecord {
            partitions: 8,
            ..topic.clone()
        };
        assert!(
            marker.belongs_to(&grown, 2),
            "a marker from before a growth"
        );
        assert!(!marker.belongs_to(&grown, 1), "another partition");
        let shrunk = TopicRecord {
            partitions: 2,
            ..topic.clone()
        };
        assert!(!marker.belongs_to(&shrunk, 2), "a count that went down");
        let again = TopicRecord {
            created_ms: topic.created_ms + 1,
            ..grown
        };
        assert!(!marker.belongs_to(&again, 2), "another incarnation");
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_an_error() {
        let bytes = encode(&sample()).expect("encodes");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
            assert!(decode(&bytes[..i]).is_err(), "truncation to {i} accepted");
        }
    }
}
