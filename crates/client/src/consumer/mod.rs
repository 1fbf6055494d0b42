//! `Consumer`: reads records from assigned partitions, tracking its own
//! position in each, and commits them for its group.
//!
//! Positions start from the group's committed offsets, or else from
//! `auto_offset_reset`. `poll` long-polls every assigned partition in one
//! fetch and decodes the returned batches locally (keys and values are views
//! of the fetched bytes). Transient failures, such as a broker restart, are
//! retried inside `poll`; the caller sees at most an empty poll.

use std::collections::BTreeMap;
use std::time::Duration;

use carteiro::proto::{
    self, admin_client::AdminClient, broker_client::BrokerClient, groups_client::GroupsClient,
};
use carteiro::record::RecordBatch;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::connection::{BROKER_DEFAULT, REPLY_BYTES_MAX, call_error, channel, list_offsets};
use crate::error::ClientError;
use crate::record::{ConsumerRecord, TopicPartition};

mod membership;

use membership::{Membership, RebalanceListener, Signal};
pub use membership::{RebalanceEvent, Strategy};

/// Default period of automatic commits, in ms (Kafka's 5 s).
pub const AUTO_COMMIT_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// Default most bytes fetched per partition in one poll (1 MiB).
pub const PARTITION_FETCH_BYTES_DEFAULT: u32 = 1024 * 1024;
/// Pause between retries of a failed poll, in ms.
const POLL_RETRY_MS: u64 = 100;
/// Default session timeout of a group member, in ms.
pub const SESSION_TIMEOUT_MS_DEFAULT: u32 = 10_000;
/// Default time the coordinator waits for members to rejoin, in ms.
pub const REBALANCE_TIMEOUT_MS_DEFAULT: u32 = 30_000;

/// Where to start in a partition the group has no committed offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The first offset in the partition.
    #[default]
    Earliest,
    /// The end: only records produced from now on.
    Latest,
}

/// How commits happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Only when the application calls `commit` or `commit_async`.
    Manual,
    /// At the start of a poll once this much time has passed since the last commit.
    Auto(Duration),
}

/// A consumer's settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `host:port` of the broker.
    pub broker: String,
    /// The consumer group, whose committed offsets positions start from.
    pub group_id: Option<String>,
    /// Where to start without a committed offset, and after an offset fell out of range.
    pub auto_offset_reset: OffsetReset,
    /// When positions are committed (needs a group).
    pub commit: CommitMode,
    /// Most bytes per partition per poll.
    pub partition_fetch_bytes: u32,
    /// With a group: the member is dropped if its heartbeats stop this long, ms.
    pub session_timeout_ms: u32,
    /// With a group: how long the coordinator waits for members to rejoin, ms.
    /// Call `poll` at least this often, or the group moves on without you.
    pub rebalance_timeout_ms: u32,
    /// With a group: how partitions are split.
    pub strategy: Strategy,
    /// A name for this process in `DescribeGroup`.
    pub client_id: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            broker: BROKER_DEFAULT.to_string(),
            group_id: None,
            auto_offset_reset: OffsetReset::Earliest,
            commit: CommitMode::Auto(Duration::from_millis(AUTO_COMMIT_INTERVAL_MS_DEFAULT)),
            partition_fetch_bytes: PARTITION_FETCH_BYTES_DEFAULT,
            session_timeout_ms: SESSION_TIMEOUT_MS_DEFAULT,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS_DEFAULT,
            strategy: Strategy::Range,
            client_id: "carteiro-consumer".into(),
        }
    }
}

impl ConsumerConfig {
    /// Defaults for the broker at `broker`, in `group` (or none).
    pub fn new(broker: impl Into<String>, group: Option<&str>) -> Self {
        ConsumerConfig {
            broker: broker.into(),
            group_id: group.map(str::to_string),
            ..Self::default()
        }
    }
}

/// Where to move a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The first offset in the partition.
    Beginning,
    /// The end.
    End,
    /// This offset.
    Offset(i64),
    /// The first offset at or after this time, ms since the Unix epoch.
    Time(i64),
}

/// A consumer. See the module documentation.
pub struct Consumer {
    config: ConsumerConfig,
    client: BrokerClient<Channel>,
    admin: AdminClient<Channel>,
    groups: GroupsClient<Channel>,
    positions: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
    last_commit: Instant,
    subscription: Vec<String>,
    membership: Option<Membership>,
    listener: Option<RebalanceListener>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Dropped without `close`: heartbeats stop, and the group notices
        // within the session timeout, as it would for a crash.
        if let Some(membership) = &self.membership {
            membership.heartbeat.abort();
        }
    }
}

impl Consumer {
    /// A consumer of the broker in `config`, with nothing assigned yet.
    pub fn new(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let channel = channel(&config.broker)?;
        Ok(Consumer {
            client: BrokerClient::new(channel.clone()).max_decoding_message_size(REPLY_BYTES_MAX),
            admin: AdminClient::new(channel.clone()),
            groups: GroupsClient::new(channel),
            config,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            last_commit: Instant::now(),
            subscription: Vec::new(),
            membership: None,
            listener: None,
        })
    }

    fn err(&self) -> impl Fn(tonic::Status) -> ClientError + '_ {
        |status| call_error(&self.config.broker, status)
    }

    /// Subscribes to `topics`. With a group id the consumer joins the group
    /// and the coordinator assigns it a share of the partitions, rebalancing
    /// as members come and go; without one it takes every partition.
    /// Unknown topics are an error.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<(), ClientError> {
        let mut partitions = Vec::new();
        for topic in topics {
            let described = self
                .admin
                .describe_topic(proto::DescribeTopicRequest {
                    name: topic.to_string(),
                })
                .await
                .map_err(self.err())?
                .into_inner();
            partitions.extend((0..described.partitions).map(|p| TopicPartition::new(*topic, p)));
        }
        if self.config.group_id.is_some() {
            self.subscription = topics.iter().map(|t| t.to_string()).collect();
            return self.join().await;
        }
        self.assign(partitions).await
    }

    /// Consumes exactly these partitions, outside any group membership.
    /// Each starts at the group's committed offset, else at `auto_offset_reset`.
    pub async fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<(), ClientError> {
        if let Some(old) = self.membership.take() {
            old.heartbeat.abort();
        }
        self.assign_positions(partitions).await
    }

    async fn assign_positions(
        &mut self,
        partitions: Vec<TopicPartition>,
    ) -> Result<(), ClientError> {
        let mut positions = BTreeMap::new();
        let committed = self.committed_offsets(&partitions).await?;
        let mut unset = Vec::new();
        for tp in partitions {
            match committed.get(&tp) {
                Some(&offset) if offset >= 0 => {
                    positions.insert(tp, offset);
                }
                _ => unset.push(tp),
            }
        }
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => proto::offset_query::Spec::Earliest(true),
            OffsetReset::Latest => proto::offset_query::Spec::Latest(true),
        };
        for (tp, offset) in self.list_offsets(&unset, spec).await? {
            positions.insert(tp, offset);
        }
        self.committed = committed
            .into_iter()
            .filter(|(tp, _)| positions.contains_key(tp))
            .collect();
        self.positions = positions;
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    /// The offset the next poll reads from `partition` of `topic`, if assigned.
    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.positions
            .get(&TopicPartition::new(topic, partition))
            .copied()
    }

    async fn committed_offsets(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let Some(group) = self.config.group_id.clone() else {
            return Ok(BTreeMap::new());
        };
        let request = proto::FetchOffsetsRequest {
            group,
            partitions: partitions
                .iter()
                .map(|tp| proto::TopicPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })
                .collect(),
        };
        let reply = self
            .client
            .fetch_offsets(request)
            .await
            .map_err(self.err())?
            .into_inner();
        Ok(reply
            .offsets
            .into_iter()
            .map(|o| (TopicPartition::new(o.topic, o.partition), o.offset))
            .collect())
    }

    async fn list_offsets(
        &mut self,
        partitions: &[TopicPartition],
        spec: proto::offset_query::Spec,
    ) -> Result<Vec<(TopicPartition, i64)>, ClientError> {
        let offsets = list_offsets(&mut self.client, &self.config.broker, partitions, spec).await?;
        Ok(partitions.iter().cloned().zip(offsets).collect())
    }

    /// Moves one assigned partition's position.
    pub async fn seek(&mut self, topic: &str, partition: u32, to: Seek) -> Result<(), ClientError> {
        let tp = TopicPartition::new(topic, partition);
        if !self.positions.contains_key(&tp) {
            return Err(ClientError::Invalid(format!(
                "partition {partition} of {topic:?} is not assigned to this consumer"
            )));
        }
        let offset = match to {
            Seek::Offset(offset) => offset,
            Seek::Beginning => {
                self.list_offsets(
                    std::slice::from_ref(&tp),
                    proto::offset_query::Spec::Earliest(true),
                )
                .await?[0]
                    .1
            }
            Seek::End => {
                self.list_offsets(
                    std::slice::from_ref(&tp),
                    proto::offset_query::Spec::Latest(true),
                )
                .await?[0]
                    .1
            }
            Seek::Time(ms) => {
                self.list_offsets(
                    std::slice::from_ref(&tp),
                    proto::offset_query::Spec::TimestampMs(ms),
                )
                .await?[0]
                    .1
            }
        };
        self.positions.insert(tp, offset);
        Ok(())
    }

    /// Moves every assigned partition's position.
    pub async fn seek_all(&mut self, to: Seek) -> Result<(), ClientError> {
        for tp in self.assignment() {
            self.seek(&tp.topic, tp.partition, to).await?;
        }
        Ok(())
    }

    /// Replays history: every assigned partition back to its first offset.
    pub async fn seek_to_beginning(&mut self) -> Result<(), ClientError> {
        self.seek_all(Seek::Beginning).await
    }

    /// Waits up to `timeout` for records from the assigned partitions and
    /// returns them in offset order per partition (empty if none came).
    ///
    /// Cancel-safe for positions: they move past records only in the same
    /// step that returns them (`take` does not await), so a poll dropped
    /// midway skips nothing.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        if self.membership.is_some() && self.signal() != Signal::Ok {
            self.rebalance().await?;
        }
        if self.positions.is_empty() {
            let Some(membership) = self.membership.as_mut() else {
                return Err(ClientError::Invalid(
                    "no partitions assigned: call subscribe or assign first".into(),
                ));
            };
            // A member with no partitions waits for the next rebalance.
            let _ = tokio::time::timeout(timeout, membership.signal.changed()).await;
            return Ok(Vec::new());
        }
        if let CommitMode::Auto(interval) = self.config.commit
            && self.config.group_id.is_some()
            && self.last_commit.elapsed() >= interval
            && let Err(e) = self.commit().await
        {
            tracing::warn!(error = %e, "automatic commit failed; will retry");
        }
        let deadline = Instant::now() + timeout;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let request = proto::FetchRequest {
                partitions: self
                    .positions
                    .iter()
                    .map(|(tp, &offset)| proto::FetchPartition {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset,
                        max_bytes: self.config.partition_fetch_bytes,
                    })
                    .collect(),
                min_bytes: 1,
                max_wait_ms: wait.as_millis().min(u128::from(u32::MAX)) as u32,
                ..Default::default()
            };
            let mut client = self.client.clone();
            let mut signal = self.membership.as_ref().map(|m| m.signal.clone());
            let rebalancing = async {
                match signal.as_mut() {
                    Some(signal) => {
                        let _ = signal.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let fetched = tokio::select! {
                fetched = client.fetch(request) => fetched,
                // A rebalance is waiting for this member: handle it on the next poll.
                _ = rebalancing => return Ok(Vec::new()),
            };
            match fetched {
                Ok(reply) => return self.take(reply.into_inner()).await,
                Err(status) => {
                    let error = call_error(&self.config.broker, status);
                    if !error.is_transient() {
                        return Err(error);
                    }
                    if Instant::now() >= deadline {
                        tracing::debug!(error = %error, "poll found the broker unavailable");
                        return Ok(Vec::new());
                    }
                    tokio::time::sleep(Duration::from_millis(POLL_RETRY_MS).min(wait)).await;
                }
            }
        }
    }

    /// Moves positions past the fetched records and returns them. Must not
    /// await: `poll`'s cancel safety rests on it.
    async fn take(
        &mut self,
        reply: proto::FetchResponse,
    ) -> Result<Vec<ConsumerRecord>, ClientError> {
        let mut out = Vec::new();
        for partition in reply.partitions {
            let tp = TopicPartition::new(partition.topic, partition.partition);
            let Some(&position) = self.positions.get(&tp) else {
                continue;
            };
            if let Some(error) = partition.error {
                if error.code == tonic::Code::OutOfRange as i32 {
                    // Retention removed our position, or it is past the end: reset as Kafka does.
                    let reset = match self.config.auto_offset_reset {
                        OffsetReset::Earliest => error.valid_start,
                        OffsetReset::Latest => error.valid_end,
                    };
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, position, reset, "offset out of range; resetting");
                    self.positions.insert(tp, reset);
                    continue;
                }
                return Err(ClientError::Broker {
                    code: tonic::Code::from_i32(error.code),
                    message: error.message,
                });
            }
            let mut next = position;
            for chunk in &partition.record_batches {
                let mut rest = &chunk[..];
                while !rest.is_empty() {
                    let (batch, tail) = RecordBatch::parse(rest)
                        .map_err(|e| ClientError::Invalid(format!("fetched batch: {e}")))?;
                    rest = tail;
                    if batch.last_offset() < position {
                        // Wholly before the position: not even decompressed.
                        continue;
                    }
                    let records = batch
                        .records()
                        .map_err(|e| ClientError::Invalid(format!("fetched batch: {e}")))?;
                    // Keys and values lie in the decompressed records of a
                    // compressed batch, in the fetched bytes otherwise.
                    let source = records.decompressed().unwrap_or(chunk);
                    for record in records.iter() {
                        let record = record
                            .map_err(|e| ClientError::Invalid(format!("fetched record: {e}")))?;
                        if record.offset < position {
                            continue;
                        }
                        next = record.offset + 1;
                        out.push(ConsumerRecord {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            offset: record.offset,
                            timestamp_ms: record.timestamp,
                            key: record.key.map(|k| source.slice_ref(k)),
                            value: record.value.map(|v| source.slice_ref(v)),
                            headers: record
                                .headers
                                .iter()
                                .map(|h| {
                                    (
                                        String::from_utf8_lossy(h.key).into_owned(),
                                        h.value.map(|v| source.slice_ref(v)),
                                    )
                                })
                                .collect(),
                        });
                    }
                }
            }
            self.positions.insert(tp, next.max(position));
        }
        Ok(out)
    }

    /// The positions a commit would store.
    fn uncommitted(&self) -> Vec<proto::OffsetCommit> {
        self.positions
            .iter()
            .filter(|(tp, offset)| self.committed.get(*tp) != Some(*offset))
            .map(|(tp, &offset)| proto::OffsetCommit {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                metadata: String::new(),
            })
            .collect()
    }

    /// Commits the current positions (everything returned by earlier polls)
    /// for the group, and waits until they are durable.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let Some(group) = self.config.group_id.clone() else {
            return Err(ClientError::Invalid("commit needs a group_id".into()));
        };
        let commits = self.uncommitted();
        self.last_commit = Instant::now();
        if commits.is_empty() {
            return Ok(());
        }
        let (member_id, generation) = self.member();
        let request = proto::CommitOffsetsRequest {
            group,
            commits: commits.clone(),
            member_id,
            generation,
        };
        if let Err(status) = self.client.commit_offsets(request).await {
            let error = call_error(&self.config.broker, status);
            if error.code() == Some(tonic::Code::FailedPrecondition) && self.membership.is_some() {
                // Fenced: this member's generation is over. Rejoin on the next poll.
                self.force_rejoin();
            }
            return Err(error);
        }
        for c in commits {
            self.committed
                .insert(TopicPartition::new(c.topic, c.partition), c.offset);
        }
        Ok(())
    }

    /// Commits the current positions in the background; the handle says how it went.
    pub fn commit_async(
        &mut self,
    ) -> Result<tokio::task::JoinHandle<Result<(), ClientError>>, ClientError> {
        let Some(group) = self.config.group_id.clone() else {
            return Err(ClientError::Invalid("commit needs a group_id".into()));
        };
        let commits = self.uncommitted();
        self.last_commit = Instant::now();
        for c in &commits {
            self.committed
                .insert(TopicPartition::new(c.topic.clone(), c.partition), c.offset);
        }
        let mut client = self.client.clone();
        let broker = self.config.broker.clone();
        let (member_id, generation) = self.member();
        Ok(tokio::spawn(async move {
            if commits.is_empty() {
                return Ok(());
            }
            let request = proto::CommitOffsetsRequest {
                group,
                commits,
                member_id,
                generation,
            };
            client
                .commit_offsets(request)
                .await
                .map_err(|s| call_error(&broker, s))?;
            Ok(())
        }))
    }
}
