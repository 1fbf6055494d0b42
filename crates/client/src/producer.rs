//! `Producer`: batches records per partition and sends them as pre-encoded
//! record batches (the broker's fast path).
//!
//! `send` hands a record to a background task and returns a [`Delivery`]
//! that resolves to where the record landed. The task groups records by
//! partition into one batch until it reaches `batch_bytes` or has waited
//! `linger`, keeps at most one request in flight per partition (so a retry
//! can never reorder a partition) and at most `max_in_flight` overall, and
//! retries transient failures with exponential backoff until
//! `delivery_timeout`. A full buffer makes `send` wait: backpressure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use carteiro::partitioner::partition_for_key;
use carteiro::proto::{self, admin_client::AdminClient, broker_client::BrokerClient};
use carteiro::record::{Header, NewRecord, RecordBatchBuilder};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::connection::{BROKER_DEFAULT, REQUEST_BYTES_MAX, call_error, channel};
use crate::error::ClientError;
use crate::record::{ProducerRecord, RecordMetadata, TopicPartition};

/// Default time a batch waits for more records, in ms.
pub const LINGER_MS_DEFAULT: u64 = 5;
/// Default batch size at which a batch is sent at once, in bytes (below
/// the broker's default 1 MiB batch limit).
pub const BATCH_BYTES_DEFAULT: usize = 512 * 1024;
/// Default most produce requests in flight across partitions.
pub const MAX_IN_FLIGHT_DEFAULT: usize = 16;
/// Default records accepted by `send` but not yet sent; more make `send` wait.
pub const BUFFER_RECORDS_DEFAULT: usize = 100_000;
/// Default first retry backoff, in ms; it doubles up to [`RETRY_BACKOFF_MAX_MS`].
pub const RETRY_BACKOFF_MS_DEFAULT: u64 = 50;
/// Longest retry backoff, in ms.
pub const RETRY_BACKOFF_MAX_MS: u64 = 2_000;
/// Default time a record may take to be delivered, retries included, in ms (Kafka's 2 minutes).
pub const DELIVERY_TIMEOUT_MS_DEFAULT: u64 = 120_000;

/// When the broker acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once durable under the topic's flush policy (the default).
    #[default]
    Durable,
    /// Once appended.
    Appended,
}

/// A producer's settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port` of the broker.
    pub broker: String,
    /// How long a batch waits for more records.
    pub linger: Duration,
    /// Size at which a batch is sent without waiting, bytes.
    pub batch_bytes: usize,
    /// Most requests in flight across partitions.
    pub max_in_flight: usize,
    /// Records accepted but not yet sent before `send` waits.
    pub buffer_records: usize,
    /// When the broker acknowledges.
    pub acks: Acks,
    /// First retry backoff; doubles on each retry.
    pub retry_backoff: Duration,
    /// Longest a record may take to be delivered.
    pub delivery_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            broker: BROKER_DEFAULT.to_string(),
            linger: Duration::from_millis(LINGER_MS_DEFAULT),
            batch_bytes: BATCH_BYTES_DEFAULT,
            max_in_flight: MAX_IN_FLIGHT_DEFAULT,
            buffer_records: BUFFER_RECORDS_DEFAULT,
            acks: Acks::Durable,
            retry_backoff: Duration::from_millis(RETRY_BACKOFF_MS_DEFAULT),
            delivery_timeout: Duration::from_millis(DELIVERY_TIMEOUT_MS_DEFAULT),
        }
    }
}

impl ProducerConfig {
    /// Defaults, for the broker at `broker`.
    pub fn new(broker: impl Into<String>) -> Self {
        ProducerConfig {
            broker: broker.into(),
            ..Self::default()
        }
    }
}

type DeliveryResult = Result<RecordMetadata, ClientError>;

/// Resolves to where a record landed, or why it could not be delivered.
#[derive(Debug)]
pub struct Delivery(oneshot::Receiver<DeliveryResult>);

impl Future for Delivery {
    type Output = DeliveryResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed)))
    }
}

enum Command {
    Send {
        topic: String,
        record: ProducerRecord,
        done: oneshot::Sender<DeliveryResult>,
    },
    Flush(oneshot::Sender<()>),
}

/// A batching, retrying producer. See the module documentation.
pub struct Producer {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Producer {
    /// A producer for the broker in `config`; connects on first use. Needs a tokio runtime.
    pub fn new(config: ProducerConfig) -> Result<Producer, ClientError> {
        if config.batch_bytes == 0 || config.max_in_flight == 0 || config.buffer_records == 0 {
            return Err(ClientError::Invalid(
                "batch_bytes, max_in_flight and buffer_records must be at least 1".into(),
            ));
        }
        let channel = channel(&config.broker)?;
        let (commands, rx) = mpsc::channel(config.buffer_records);
        let sender = Sender::new(config, channel);
        let task = tokio::spawn(sender.run(rx));
        Ok(Producer { commands, task })
    }

    /// Hands `record` to the producer, waiting while its buffer is full, and
    /// returns the [`Delivery`] to await for the outcome.
    pub async fn send(&self, topic: &str, record: ProducerRecord) -> Result<Delivery, ClientError> {
        let (done, delivery) = oneshot::channel();
        self.commands
            .send(Command::Send {
                topic: topic.to_string(),
                record,
                done,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(Delivery(delivery))
    }

    /// Sends one record and waits until it is delivered.
    pub async fn send_and_wait(&self, topic: &str, record: ProducerRecord) -> DeliveryResult {
        self.send(topic, record).await?.await
    }

    /// Sends everything accepted so far at once and returns when each of
    /// those records is delivered or has failed.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (done, flushed) = oneshot::channel();
        self.commands
            .send(Command::Flush(done))
            .await
            .map_err(|_| ClientError::Closed)?;
        flushed.await.map_err(|_| ClientError::Closed)
    }

    /// Flushes, then stops the producer. Nothing accepted is lost.
    pub async fn close(self) -> Result<(), ClientError> {
        self.flush().await?;
        drop(self.commands);
        self.task
            .await
            .map_err(|e| ClientError::Invalid(format!("producer task failed: {e}")))
    }
}

/// A batch being filled or waiting to be sent.
struct Pending {
    builder: RecordBatchBuilder,
    waiters: Vec<(oneshot::Sender<DeliveryResult>, i64)>,
    created: Instant,
    encoded: Option<Bytes>,
    attempts: u32,
    not_before: Option<Instant>,
}

impl Pending {
    fn new() -> Self {
        Pending {
            builder: RecordBatchBuilder::new(),
            waiters: Vec::new(),
            created: Instant::now(),
            encoded: None,
            attempts: 0,
            not_before: None,
        }
    }

    fn fail(self, error: ClientError) {
        for (waiter, _) in self.waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}

type Outcome = (
    TopicPartition,
    Pending,
    Result<proto::ProduceResponse, ClientError>,
);

struct Sender {
    config: ProducerConfig,
    client: BrokerClient<Channel>,
    admin: AdminClient<Channel>,
    partitions: HashMap<String, u32>,
    sticky: HashMap<String, u32>,
    open: HashMap<TopicPartition, Pending>,
    ready: HashMap<TopicPartition, VecDeque<Pending>>,
    busy: HashSet<TopicPartition>,
    in_flight: FuturesUnordered<BoxFuture<'static, Outcome>>,
    flush_waiters: Vec<oneshot::Sender<()>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Sender {
    fn new(config: ProducerConfig, channel: Channel) -> Self {
        Sender {
            client: BrokerClient::new(channel.clone()).max_encoding_message_size(REQUEST_BYTES_MAX),
            admin: AdminClient::new(channel),
            config,
            partitions: HashMap::new(),
            sticky: HashMap::new(),
            open: HashMap::new(),
            ready: HashMap::new(),
            busy: HashSet::new(),
            in_flight: FuturesUnordered::new(),
            flush_waiters: Vec::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut accepting = true;
        loop {
            self.dispatch();
            self.notify_flushed();
            if !accepting && self.is_idle() {
                return;
            }
            let wake = self.next_wake();
            tokio::select! {
                command = commands.recv(), if accepting => match command {
                    Some(Command::Send { topic, record, done }) => self.accept(topic, record, done).await,
                    Some(Command::Flush(done)) => {
                        self.seal_all();
                        self.flush_waiters.push(done);
                    }
                    None => {
                        accepting = false;
                        self.seal_all();
                    }
                },
                Some((tp, pending, result)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.complete(tp, pending, result);
                }
                _ = sleep_until(wake) => self.seal_expired(),
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.open.is_empty()
            && self.ready.values().all(VecDeque::is_empty)
            && self.in_flight.is_empty()
    }

    fn notify_flushed(&mut self) {
        if !self.flush_waiters.is_empty() && self.is_idle() {
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let linger = self.open.values().map(|p| p.created + self.config.linger);
        let retries = self
            .ready
            .values()
            .filter_map(|q| q.front().and_then(|p| p.not_before));
        linger.chain(retries).min()
    }

    async fn partition_count(&mut self, topic: &str) -> Result<u32, ClientError> {
        if let Some(&count) = self.partitions.get(topic) {
            return Ok(count);
        }
        let described = self
            .admin
            .describe_topic(proto::DescribeTopicRequest {
                name: topic.to_string(),
            })
            .await
            .map_err(|s| call_error(&self.config.broker, s))?;
        let count = described.into_inner().partitions;
        self.partitions.insert(topic.to_string(), count);
        Ok(count)
    }

    async fn accept(
        &mut self,
        topic: String,
        record: ProducerRecord,
        done: oneshot::Sender<DeliveryResult>,
    ) {
        let count = match self.partition_count(&topic).await {
            Ok(count) => count,
            Err(e) => {
                let _ = done.send(Err(e));
                return;
            }
        };
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p >= count => {
                let message = format!(
                    "partition {p} of topic {topic:?} does not exist: it has partitions 0..{count}"
                );
                let _ = done.send(Err(ClientError::Invalid(message)));
                return;
            }
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => *self.sticky.entry(topic.clone()).or_insert(0) % count.max(1),
        };
        let tp = TopicPartition::new(topic, partition);
        let timestamp = record.timestamp_ms.unwrap_or_else(now_ms);
        let headers: Vec<Header<'_>> = record
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k.as_bytes(),
                value: v.as_deref(),
            })
            .collect();
        let new = NewRecord {
            timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        };
        let size = self
            .open
            .get(&tp)
            .map(|p| p.builder.record_size(&new) + p.builder.size_bytes());
        if size.is_some_and(|s| s > self.config.batch_bytes) {
            self.seal(&tp);
        }
        let pending = self.open.entry(tp.clone()).or_insert_with(Pending::new);
        if let Err(e) = pending.builder.append(&new) {
            let _ = done.send(Err(ClientError::Invalid(e.to_string())));
            return;
        }
        pending.waiters.push((done, timestamp));
        if pending.builder.size_bytes() >= self.config.batch_bytes {
            self.seal(&tp);
        }
    }

    /// Moves a partition's open batch to its send queue.
    fn seal(&mut self, tp: &TopicPartition) {
        if let Some(pending) = self.open.remove(tp) {
            if record_is_keyless_sticky(&self.sticky, tp) {
                let next = self.partitions.get(&tp.topic).copied().unwrap_or(1).max(1);
                if let Some(s) = self.sticky.get_mut(&tp.topic) {
                    *s = (*s + 1) % next;
                }
            }
            self.ready.entry(tp.clone()).or_default().push_back(pending);
        }
    }

    fn seal_all(&mut self) {
        let all: Vec<TopicPartition> = self.open.keys().cloned().collect();
        for tp in all {
            self.seal(&tp);
        }
    }

    fn seal_expired(&mut self) {
        let now = Instant::now();
        let expired: Vec<TopicPartition> = self
            .open
            .iter()
            .filter(|(_, p)| p.created + self.config.linger <= now)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in expired {
            self.seal(&tp);
        }
    }

    /// Starts requests for partitions with a batch ready and none in flight.
    fn dispatch(&mut self) {
        let now = Instant::now();
        let candidates: Vec<TopicPartition> = self
            .ready
            .iter()
            .filter(|(tp, q)| {
                !self.busy.contains(*tp)
                    && q.front()
                        .is_some_and(|p| p.not_before.is_none_or(|t| t <= now))
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in candidates {
            if self.in_flight.len() >= self.config.max_in_flight {
                return;
            }
            let Some(mut pending) = self.ready.get_mut(&tp).and_then(VecDeque::pop_front) else {
                continue;
            };
            if self.ready.get(&tp).is_some_and(VecDeque::is_empty) {
                self.ready.remove(&tp);
            }
            let batch = match &pending.encoded {
                Some(bytes) => bytes.clone(),
                None => {
                    let builder = std::mem::take(&mut pending.builder);
                    match builder.build() {
                        Ok(bytes) => {
                            let bytes = Bytes::from(bytes);
                            pending.encoded = Some(bytes.clone());
                            bytes
                        }
                        Err(e) => {
                            pending.fail(ClientError::Invalid(e.to_string()));
                            continue;
                        }
                    }
                }
            };
            pending.attempts += 1;
            self.busy.insert(tp.clone());
            let mut client = self.client.clone();
            let broker = self.config.broker.clone();
            let acks = match self.config.acks {
                Acks::Durable => proto::Acks::Durable,
                Acks::Appended => proto::Acks::Appended,
            };
            let request = proto::ProduceRequest {
                topic: tp.topic.clone(),
                partition: Some(tp.partition),
                record_batch: batch,
                acks: acks as i32,
                ..Default::default()
            };
            self.in_flight.push(Box::pin(async move {
                let result = client
                    .produce(request)
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|s| call_error(&broker, s));
                (tp, pending, result)
            }));
        }
    }

    fn complete(
        &mut self,
        tp: TopicPartition,
        mut pending: Pending,
        result: Result<proto::ProduceResponse, ClientError>,
    ) {
        self.busy.remove(&tp);
        match result {
            Ok(reply) => {
                let base = reply.partitions.first().map_or(-1, |p| p.base_offset);
                for (i, (waiter, timestamp)) in pending.waiters.into_iter().enumerate() {
                    let metadata = RecordMetadata {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: base + i as i64,
                        timestamp_ms: timestamp,
                    };
                    let _ = waiter.send(Ok(metadata));
                }
            }
            Err(e)
                if e.is_transient() && pending.created.elapsed() < self.config.delivery_timeout =>
            {
                // Retry first: the partition's later batches wait behind it, so order holds.
                let backoff = self
                    .config
                    .retry_backoff
                    .saturating_mul(1 << pending.attempts.min(16).saturating_sub(1));
                let backoff = backoff.min(Duration::from_millis(RETRY_BACKOFF_MAX_MS));
                tracing::debug!(topic = %tp.topic, partition = tp.partition, attempt = pending.attempts, ?backoff, error = %e, "retrying produce");
                pending.not_before = Some(Instant::now() + backoff);
                self.ready.entry(tp).or_default().push_front(pending);
            }
            Err(e) if e.is_transient() => {
                pending.fail(ClientError::Timeout(self.config.delivery_timeout))
            }
            Err(e) => {
                if e.is_not_found() {
                    self.partitions.remove(&tp.topic);
                }
                pending.fail(e);
            }
        }
    }
}

fn record_is_keyless_sticky(sticky: &HashMap<String, u32>, tp: &TopicPartition) -> bool {
    sticky.get(&tp.topic).is_some_and(|&p| p == tp.partition)
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
