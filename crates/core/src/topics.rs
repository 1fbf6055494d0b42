//! Topic admin: create (with settings checked and defaults filled in),
//! add partitions, delete (forgetting the topic's commits), list and
//! describe.

use std::sync::Arc;

use carteiro_storage::store::{TOPIC_NAME_MAX_CHARS, validate_topic_name};
use carteiro_storage::{FlushPolicy, LOG_HEADER_BYTES, LogConfig, StoreError, Topic, TopicConfig};

use crate::broker::{Broker, INTERNAL_TOPIC_PREFIX};
use crate::error::{BrokerError, join_error};

/// A retention limit as clients set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep everything.
    Unlimited,
    /// Delete closed segments past this (ms of age, or bytes of log).
    Limit(u64),
}

/// What a client may set on a new topic; `None` takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// Age past which closed segments are deleted.
    pub retention_ms: Option<Retention>,
    /// Size past which the oldest closed segments are deleted.
    pub retention_bytes: Option<Retention>,
    /// Segment size, bytes.
    pub segment_bytes: Option<u64>,
    /// Age at which a segment rolls, ms.
    pub segment_ms: Option<u64>,
    /// Largest batch accepted, bytes (unless set, shrunk to fit a small segment).
    pub max_batch_bytes: Option<u32>,
    /// When appends are synced.
    pub flush: Option<FlushPolicy>,
}

impl TopicSettings {
    /// The log config these settings give over `defaults`. Limits are
    /// checked when the topic is created.
    pub fn log_config(&self, defaults: &LogConfig) -> LogConfig {
        let segment_bytes = self.segment_bytes.unwrap_or(defaults.segment_bytes);
        let fits = segment_bytes
            .saturating_sub(LOG_HEADER_BYTES as u64)
            .min(u64::from(u32::MAX)) as u32;
        let retention = |setting: Option<Retention>, default: Option<u64>| match setting {
            None => default,
            Some(Retention::Unlimited) => None,
            Some(Retention::Limit(v)) => Some(v),
        };
        LogConfig {
            retention_ms: retention(self.retention_ms, defaults.retention_ms),
            retention_bytes: retention(self.retention_bytes, defaults.retention_bytes),
            segment_bytes,
            segment_ms: self.segment_ms.unwrap_or(defaults.segment_ms),
            max_batch_bytes: self
                .max_batch_bytes
                .unwrap_or(defaults.max_batch_bytes.min(fits)),
            index_interval_bytes: defaults.index_interval_bytes.min(fits),
            flush: self.flush.unwrap_or(defaults.flush),
            ..defaults.clone()
        }
    }
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition.
    pub partition: u32,
    /// Its first offset.
    pub start_offset: u64,
    /// The next offset to be written.
    pub end_offset: u64,
    /// Offsets below this are visible to consumers.
    pub high_watermark: u64,
    /// Bytes of segment files in use.
    pub size_bytes: u64,
    /// Number of segments.
    pub segment_count: usize,
}

/// A topic as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Its name.
    pub name: String,
    /// Its effective config, every field set.
    pub config: LogConfig,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: i64,
    /// Its partitions.
    pub partitions: Vec<PartitionDescription>,
}

/// A topic's description from the store's view of it.
pub fn describe(topic: &Topic) -> TopicDescription {
    TopicDescription {
        name: topic.name().to_string(),
        config: topic.config().log.clone(),
        created_ms: topic.created_ms(),
        partitions: topic
            .partitions()
            .iter()
            .enumerate()
            .map(|(partition, log)| {
                let stats = log.stats();
                PartitionDescription {
                    partition: partition as u32,
                    start_offset: stats.start_offset,
                    end_offset: stats.end_offset,
                    high_watermark: log.high_watermark(),
                    size_bytes: stats.size_bytes,
                    segment_count: stats.segment_count,
                }
            })
            .collect(),
    }
}

/// A growth the store refused (the count is not more than the topic has,
/// or over the limit), as the field `partitions`.
fn partitions_refused(e: StoreError) -> BrokerError {
    match e {
        e @ StoreError::InvalidPartitionIncrease { .. } => {
            BrokerError::invalid("partitions", e.to_string())
        }
        e => e.into(),
    }
}

fn check_name(name: &str) -> Result<(), BrokerError> {
    validate_topic_name(name).map_err(|e| BrokerError::invalid("name", e.to_string()))
}

impl Broker {
    /// Creates a user topic; durable when it returns. Groups subscribed to
    /// it rebalance.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        settings: &TopicSettings,
    ) -> Result<TopicDescription, BrokerError> {
        self.check_running()?;
        check_name(name)?;
        self.check_user_topic("name", name)?;
        let config = TopicConfig {
            partitions,
            log: settings.log_config(&LogConfig::default()),
        };
        let (store, owned) = (self.store.clone(), name.to_string());
        let topic = tokio::task::spawn_blocking(move || store.create_topic(&owned, config))
            .await
            .map_err(join_error)??;
        self.coordinator.topic_changed(name);
        Ok(describe(&topic))
    }

    /// Checks what [`create_topic`](Self::create_topic) would check, and
    /// creates nothing: a name that is free and valid, the partition count,
    /// the settings (a Kafka client's `validate_only`).
    pub fn check_new_topic(
        &self,
        name: &str,
        partitions: u32,
        settings: &TopicSettings,
    ) -> Result<(), BrokerError> {
        self.check_running()?;
        check_name(name)?;
        self.check_user_topic("name", name)?;
        let config = TopicConfig {
            partitions,
            log: settings.log_config(&LogConfig::default()),
        };
        Ok(self.store.check_new_topic(name, &config)?)
    }

    /// Grows a user topic to `count` partitions (Kafka's CreatePartitions);
    /// durable when it returns. The partitions it has keep their data; the
    /// new ones start empty, and groups subscribed to it rebalance onto
    /// them. A count not above the current one, or above
    /// [`PARTITIONS_MAX`](carteiro_storage::store::PARTITIONS_MAX), is refused (field `partitions`). With
    /// `validate_only`, checks and changes nothing, answering the topic as
    /// it is.
    pub async fn create_partitions(
        self: &Arc<Self>,
        name: &str,
        count: u32,
        validate_only: bool,
    ) -> Result<TopicDescription, BrokerError> {
        self.check_running()?;
        self.check_user_topic("name", name)?;
        let topic = self.store.topic(name)?;
        topic.check_increase(count).map_err(partitions_refused)?;
        if validate_only {
            return Ok(describe(&topic));
        }
        let (store, owned) = (self.store.clone(), name.to_string());
        // Another growth may win a race: the same refusal as above.
        let grown = tokio::task::spawn_blocking(move || store.add_partitions(&owned, count))
            .await
            .map_err(join_error)?
            .map_err(partitions_refused)?;
        self.coordinator.topic_changed(name);
        Ok(describe(&grown))
    }

    /// Deletes a user topic with its data and every group's commits of it.
    pub async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        self.check_running()?;
        self.check_user_topic("name", name)?;
        let (broker, owned) = (self.clone(), name.to_string());
        tokio::task::spawn_blocking(move || -> Result<(), BrokerError> {
            broker.store.delete_topic(&owned)?;
            broker.offsets.forget_topic(&owned, broker.now_ms());
            Ok(())
        })
        .await
        .map_err(join_error)??;
        self.coordinator.topic_changed(name);
        Ok(())
    }

    /// The user topics (not internal ones), by name: name and partition count.
    pub fn list_topics(&self) -> Vec<(String, u32)> {
        self.store
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with(INTERNAL_TOPIC_PREFIX))
            .map(|t| (t.name().to_string(), t.config().partitions))
            .collect()
    }

    /// One topic as it is now.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription, BrokerError> {
        if name.chars().count() > TOPIC_NAME_MAX_CHARS {
            return Err(BrokerError::invalid(
                "name",
                format!("longer than {TOPIC_NAME_MAX_CHARS} characters"),
            ));
        }
        Ok(describe(self.store.topic(name)?.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_fill_in_defaults_and_shrink_the_batch_limit_to_a_small_segment() {
        let defaults = LogConfig::default();
        let small = TopicSettings {
            segment_bytes: Some(4096),
            retention_ms: Some(Retention::Unlimited),
            ..TopicSettings::default()
        };
        let config = small.log_config(&defaults);
        assert_eq!(config.segment_bytes, 4096);
        assert_eq!(config.max_batch_bytes, 4096 - LOG_HEADER_BYTES as u32);
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.retention_bytes, defaults.retention_bytes);
        assert_eq!(TopicSettings::default().log_config(&defaults), defaults);
    }
}
