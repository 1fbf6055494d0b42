//! A topic: its name, its config and its partition logs; and what a topic
//! name may be.

use std::sync::Arc;

use crate::config::LogConfig;
use crate::error::StoreError;
use crate::log::Log;
use crate::metadata::TopicRecord;

/// Longest topic name, in characters (Kafka's limit).
pub const TOPIC_NAME_MAX_CHARS: usize = 249;
/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 1024;

/// A topic's partition count and the config of each of its logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Number of partitions, 1 to [`PARTITIONS_MAX`].
    pub partitions: u32,
    /// Config of every partition log.
    pub log: LogConfig,
}

/// A topic: its name, config and partition logs.
#[derive(Debug)]
pub struct Topic {
    pub(super) name: String,
    pub(super) config: TopicConfig,
    pub(super) created_ms: i64,
    pub(super) partitions: Vec<Arc<Log>>,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its config.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// When it was created, in ms since the Unix epoch.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Its partition logs, by partition number.
    pub fn partitions(&self) -> &[Arc<Log>] {
        &self.partitions
    }

    /// What `topics.meta` records of it.
    pub(super) fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            partitions: self.config.partitions,
            config: self.config.log.clone(),
            created_ms: self.created_ms,
        }
    }

    /// Refuses a new partition count unless it is more than the topic has
    /// and at most [`PARTITIONS_MAX`] (what [`Store::add_partitions`]
    /// checks, for a caller that only validates).
    ///
    /// [`Store::add_partitions`]: super::Store::add_partitions
    pub fn check_increase(&self, count: u32) -> Result<(), StoreError> {
        let current = self.config.partitions;
        if count <= current || count > PARTITIONS_MAX {
            return Err(StoreError::InvalidPartitionIncrease {
                topic: self.name.clone(),
                current,
                asked: count,
                max: PARTITIONS_MAX,
            });
        }
        Ok(())
    }

    /// One partition's log.
    pub fn partition(&self, partition: u32) -> Result<&Arc<Log>, StoreError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| StoreError::UnknownPartition {
                topic: self.name.clone(),
                partition,
                count: self.partitions.len() as u32,
            })
    }
}

/// Checks a new topic's name, partition count and log config.
pub(super) fn check_topic_config(name: &str, config: &TopicConfig) -> Result<(), StoreError> {
    validate_topic_name(name)?;
    if config.partitions == 0 || config.partitions > PARTITIONS_MAX {
        return Err(StoreError::InvalidPartitionCount {
            partitions: config.partitions,
            max: PARTITIONS_MAX,
        });
    }
    config.log.validate()?;
    Ok(())
}

/// Checks a topic name: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| {
        Err(StoreError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must be 1 to 249 characters, got 0".into());
    }
    if name.chars().count() > TOPIC_NAME_MAX_CHARS {
        return invalid(format!(
            "must be 1 to {TOPIC_NAME_MAX_CHARS} characters, got {}",
            name.chars().count()
        ));
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not topic names".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "character {c:?} is not allowed: use a-z, A-Z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(())
}
