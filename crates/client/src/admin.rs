//! `Admin`: topics and consumer groups.

use carteiro::proto::{self, admin_client::AdminClient, broker_client::BrokerClient};
use tonic::transport::Channel;

use crate::connection::{REPLY_BYTES_MAX, call_error, channel, list_offsets};
use crate::error::ClientError;
use crate::record::TopicPartition;

/// When a new topic's appends are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flush {
    /// Before every DURABLE produce is acknowledged (the default).
    #[default]
    Always,
    /// Every this many milliseconds.
    IntervalMs(u64),
    /// Left to the operating system.
    Os,
}

/// A new topic's settings; `None` takes the broker's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSettings {
    /// Keep records this long, ms; `Some(-1)` forever.
    pub retention_ms: Option<i64>,
    /// Keep at most this many bytes per partition; `Some(-1)` no limit.
    pub retention_bytes: Option<i64>,
    /// Segment size, bytes.
    pub segment_bytes: Option<u64>,
    /// Segment age at which it rolls, ms.
    pub segment_ms: Option<u64>,
    /// Largest batch, bytes.
    pub max_batch_bytes: Option<u32>,
    /// Flush policy.
    pub flush: Flush,
}

/// Where to move a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Each partition's first offset.
    Earliest,
    /// Each partition's end.
    Latest,
    /// This offset in every partition.
    Offset(i64),
    /// The first offset at or after this time (ms) in each partition.
    Time(i64),
}

/// Topic and group administration.
#[derive(Debug, Clone)]
pub struct Admin {
    broker: String,
    admin: AdminClient<Channel>,
    data: BrokerClient<Channel>,
}

impl Admin {
    /// A client of the broker at `broker` (`host:port`); connects on first use.
    pub fn connect(broker: &str) -> Result<Admin, ClientError> {
        let channel = channel(broker)?;
        Ok(Admin {
            broker: broker.to_string(),
            admin: AdminClient::new(channel.clone()),
            data: BrokerClient::new(channel).max_decoding_message_size(REPLY_BYTES_MAX),
        })
    }

    fn err(&self) -> impl Fn(tonic::Status) -> ClientError + '_ {
        |status| call_error(&self.broker, status)
    }

    /// Creates a topic.
    pub async fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        settings: &TopicSettings,
    ) -> Result<proto::TopicDescription, ClientError> {
        let (flush, flush_interval_ms) = match settings.flush {
            Flush::Always => (proto::FlushPolicy::Always, None),
            Flush::IntervalMs(ms) => (proto::FlushPolicy::Interval, Some(ms)),
            Flush::Os => (proto::FlushPolicy::Os, None),
        };
        let config = proto::TopicConfig {
            retention_ms: settings.retention_ms,
            retention_bytes: settings.retention_bytes,
            segment_bytes: settings.segment_bytes,
            segment_ms: settings.segment_ms,
            max_batch_bytes: settings.max_batch_bytes,
            flush: flush as i32,
            flush_interval_ms,
        };
        let request = proto::CreateTopicRequest {
            name: name.into(),
            partitions,
            config: Some(config),
        };
        Ok(self
            .admin
            .create_topic(request)
            .await
            .map_err(self.err())?
            .into_inner())
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        self.admin
            .delete_topic(proto::DeleteTopicRequest { name: name.into() })
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Every topic with its partition count.
    pub async fn list_topics(&mut self) -> Result<Vec<proto::TopicSummary>, ClientError> {
        Ok(self
            .admin
            .list_topics(proto::ListTopicsRequest {})
            .await
            .map_err(self.err())?
            .into_inner()
            .topics)
    }

    /// A topic's config and per-partition offsets and sizes.
    pub async fn describe_topic(
        &mut self,
        name: &str,
    ) -> Result<proto::TopicDescription, ClientError> {
        Ok(self
            .admin
            .describe_topic(proto::DescribeTopicRequest { name: name.into() })
            .await
            .map_err(self.err())?
            .into_inner())
    }

    /// Grows a topic to `partitions` in all (more than it has); with
    /// `validate_only`, checks and changes nothing. Answers the topic as
    /// it is then.
    pub async fn create_partitions(
        &mut self,
        name: &str,
        partitions: u32,
        validate_only: bool,
    ) -> Result<proto::TopicDescription, ClientError> {
        let request = proto::CreatePartitionsRequest {
            name: name.into(),
            partitions,
            validate_only,
        };
        Ok(self
            .admin
            .create_partitions(request)
            .await
            .map_err(self.err())?
            .into_inner())
    }

    /// Every group with committed offsets.
    pub async fn list_groups(&mut self) -> Result<Vec<String>, ClientError> {
        Ok(self
            .admin
            .list_groups(proto::ListGroupsRequest {})
            .await
            .map_err(self.err())?
            .into_inner()
            .groups)
    }

    /// A group's committed offsets, log ends and lag.
    pub async fn describe_group(
        &mut self,
        group: &str,
    ) -> Result<proto::GroupDescription, ClientError> {
        Ok(self
            .admin
            .describe_group(proto::DescribeGroupRequest {
                group: group.into(),
            })
            .await
            .map_err(self.err())?
            .into_inner())
    }

    /// Earliest and latest offsets of every partition of a topic.
    pub async fn offsets(&mut self, topic: &str) -> Result<Vec<(u32, i64, i64)>, ClientError> {
        let partitions = self.describe_topic(topic).await?.partitions;
        let mut out = Vec::with_capacity(partitions as usize);
        let tps: Vec<TopicPartition> = (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        let earliest = self
            .list_offsets(&tps, proto::offset_query::Spec::Earliest(true))
            .await?;
        let latest = self
            .list_offsets(&tps, proto::offset_query::Spec::Latest(true))
            .await?;
        for (p, (e, l)) in earliest.into_iter().zip(latest).enumerate() {
            out.push((p as u32, e, l));
        }
        Ok(out)
    }

    /// One offset per partition by `spec`.
    pub async fn list_offsets(
        &mut self,
        partitions: &[TopicPartition],
        spec: proto::offset_query::Spec,
    ) -> Result<Vec<i64>, ClientError> {
        list_offsets(&mut self.data, &self.broker, partitions, spec).await
    }

    /// Moves a group's committed offsets for every partition of `topic`.
    /// Returns the new offset of each partition.
    pub async fn reset_offsets(
        &mut self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<(u32, i64)>, ClientError> {
        let partitions = self.describe_topic(topic).await?.partitions;
        let tps: Vec<TopicPartition> = (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect();
        let offsets = match to {
            ResetTo::Earliest => {
                self.list_offsets(&tps, proto::offset_query::Spec::Earliest(true))
                    .await?
            }
            ResetTo::Latest => {
                self.list_offsets(&tps, proto::offset_query::Spec::Latest(true))
                    .await?
            }
            ResetTo::Time(ms) => {
                self.list_offsets(&tps, proto::offset_query::Spec::TimestampMs(ms))
                    .await?
            }
            ResetTo::Offset(offset) => vec![offset; tps.len()],
        };
        let commits = tps
            .iter()
            .zip(&offsets)
            .map(|(tp, &offset)| proto::OffsetCommit {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                metadata: String::new(),
            })
            .collect();
        self.data
            .commit_offsets(proto::CommitOffsetsRequest {
                group: group.into(),
                commits,
                member_id: String::new(),
                generation: 0,
            })
            .await
            .map_err(self.err())?;
        Ok(tps.iter().map(|tp| tp.partition).zip(offsets).collect())
    }
}
