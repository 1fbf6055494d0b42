//! `Producer`: batches records per partition and sends them as pre-encoded
//! record batches (the broker's fast path).
//!
//! `send` hands a record to a background task and returns a [`Delivery`]
//! that resolves to where the record landed. The task groups records by
//! partition into one batch until it reaches `batch_bytes` or has waited
//! `linger` (a partition with `max_in_flight_per_partition` requests out
//! keeps filling its batch instead), and sends the batches pipelined on one
//! `ProduceStream`: the broker appends a stream's requests in the order they
//! were sent, so several requests in flight to one partition never reorder
//! it. When the stream fails, every unacknowledged batch goes back to the
//! front of its partition's queue in its original order and is sent again on
//! a new stream after an exponential backoff, until `delivery_timeout`. A
//! full buffer makes `send` wait: backpressure.
//!
//! By default the producer is idempotent (Kafka's KIP-98): it asks the
//! broker for a producer id before its first batch and stamps each batch,
//! as it is first sent, with the id, an epoch and the sequence number of its
//! first record in its partition. A batch sent again after a broken stream
//! keeps its stamp, so the broker appends it once and answers the copy with
//! the offsets of the first: every record delivered is in its partition
//! exactly once, in the order `send` accepted it. A batch refused for good
//! (or out of time) fails alone: the producer takes the next epoch and
//! restamps what is still queued, starting each partition's sequence at 0
//! (the bookkeeping is in the private `idempotence` module). With
//! `idempotent: false` batches carry no stamp and delivery is at least
//! once: a batch appended whose acknowledgement was lost is appended again.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use carteiro::proto;
pub use carteiro::record::Compression;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::connection::{BROKER_DEFAULT, channel};
use crate::error::ClientError;
use crate::record::{ProducerRecord, RecordMetadata};

mod batch;
mod idempotence;
mod partitioner;
mod sender;

pub use idempotence::IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX;

use sender::Sender;

/// Default time a batch waits for more records, in ms.
pub const LINGER_MS_DEFAULT: u64 = 5;
/// Default batch size at which a batch is sent at once, in bytes (below
/// the broker's default 1 MiB batch limit).
pub const BATCH_BYTES_DEFAULT: usize = 512 * 1024;
/// Default most produce requests in flight across partitions (at most the
/// broker's `PRODUCE_STREAM_IN_FLIGHT_MAX`, 32, are read ahead).
pub const MAX_IN_FLIGHT_DEFAULT: usize = 16;
/// Default most produce requests in flight to one partition (Kafka's
/// `max.in.flight.requests.per.connection`).
pub const MAX_IN_FLIGHT_PER_PARTITION_DEFAULT: usize = 5;
/// Default records accepted by `send` but not yet sent; more make `send` wait.
pub const BUFFER_RECORDS_DEFAULT: usize = 100_000;
/// Most commands taken from `send` in one round of the background task,
/// so replies and timers are not starved by a flood of records.
pub(crate) const COMMANDS_PER_ROUND_MAX: usize = 1024;
/// Default keyless bytes a topic's sticky partition takes before keyless
/// records move on to the next partition (Kafka's `batch.size` default, which
/// its uniform sticky partitioner uses the same way).
pub const STICKY_BYTES_DEFAULT: usize = 16 * 1024;
/// Default first retry backoff, in ms; it doubles up to [`RETRY_BACKOFF_MAX_MS`].
pub const RETRY_BACKOFF_MS_DEFAULT: u64 = 50;
/// Longest retry backoff, in ms.
pub const RETRY_BACKOFF_MAX_MS: u64 = 2_000;
/// Default time a record may take to be delivered, retries included, in ms (Kafka's 2 minutes).
pub const DELIVERY_TIMEOUT_MS_DEFAULT: u64 = 120_000;
/// Default age after which a topic's layout is asked of the broker again,
/// in ms (Kafka's `metadata.max.age.ms`, 5 minutes): a topic grown since
/// gets its keys placed over its new partition count.
pub const METADATA_MAX_AGE_MS_DEFAULT: u64 = 300_000;

/// When the broker acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Once durable under the topic's flush policy (the default).
    #[default]
    Durable,
    /// Once appended.
    Appended,
}

impl From<Acks> for proto::Acks {
    fn from(acks: Acks) -> proto::Acks {
        match acks {
            Acks::Durable => proto::Acks::Durable,
            Acks::Appended => proto::Acks::Appended,
        }
    }
}

/// A producer's settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port` of the broker.
    pub broker: String,
    /// How long a batch waits for more records.
    pub linger: Duration,
    /// Size at which a batch is sent without waiting, bytes; a topic with a
    /// smaller `max_batch_bytes` gets batches of at most that.
    pub batch_bytes: usize,
    /// Keyless bytes sent to a topic's sticky partition before keyless
    /// records move on to the next partition (they also move on when the
    /// sticky partition's batch is sent).
    pub sticky_bytes: usize,
    /// Most requests in flight across partitions.
    pub max_in_flight: usize,
    /// Most requests in flight to one partition; more than one pipelines
    /// them (order holds: see the module documentation).
    pub max_in_flight_per_partition: usize,
    /// Records accepted but not yet sent before `send` waits.
    pub buffer_records: usize,
    /// When the broker acknowledges.
    pub acks: Acks,
    /// First retry backoff; doubles on each retry.
    pub retry_backoff: Duration,
    /// Longest a record may take to be delivered.
    pub delivery_timeout: Duration,
    /// The codec of the batches sent (Kafka's `compression.type`); none by
    /// default. A batch whose records do not shrink goes uncompressed, as
    /// librdkafka sends it; the broker checks a compressed batch's records
    /// once decompressed, and stores it as sent. `batch_bytes` and the
    /// topic's `max_batch_bytes` are met by the records uncompressed, so a
    /// compressed batch is never over them. Batches are compressed on the
    /// producer's background task as they are sent.
    pub compression: Compression,
    /// How long a topic's layout (partition count, largest batch) is
    /// trusted before the producer asks the broker again.
    pub metadata_max_age: Duration,
    /// Each record lands in its partition exactly once, however often its
    /// batch is sent again (Kafka's `enable.idempotence`; true by default).
    /// The producer asks the broker for a producer id (`InitProducerId`)
    /// before its first batch and stamps each batch with it, an epoch and
    /// per-partition sequence numbers; a batch sent again is recognised and
    /// answered with its first offsets. Needs `max_in_flight_per_partition`
    /// of at most [`IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX`] (5), the batches
    /// the broker remembers per producer and partition. False: no stamp,
    /// and a batch whose acknowledgement was lost is appended again (at
    /// least once).
    pub idempotent: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            broker: BROKER_DEFAULT.to_string(),
            linger: Duration::from_millis(LINGER_MS_DEFAULT),
            batch_bytes: BATCH_BYTES_DEFAULT,
            sticky_bytes: STICKY_BYTES_DEFAULT,
            max_in_flight: MAX_IN_FLIGHT_DEFAULT,
            max_in_flight_per_partition: MAX_IN_FLIGHT_PER_PARTITION_DEFAULT,
            buffer_records: BUFFER_RECORDS_DEFAULT,
            acks: Acks::Durable,
            retry_backoff: Duration::from_millis(RETRY_BACKOFF_MS_DEFAULT),
            delivery_timeout: Duration::from_millis(DELIVERY_TIMEOUT_MS_DEFAULT),
            compression: Compression::None,
            metadata_max_age: Duration::from_millis(METADATA_MAX_AGE_MS_DEFAULT),
            idempotent: true,
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

pub(crate) type DeliveryResult = Result<RecordMetadata, ClientError>;

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

pub(crate) enum Command {
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
        if config.batch_bytes == 0
            || config.sticky_bytes == 0
            || config.max_in_flight == 0
            || config.max_in_flight_per_partition == 0
            || config.buffer_records == 0
        {
            return Err(ClientError::Invalid(
                "batch_bytes, sticky_bytes, max_in_flight, max_in_flight_per_partition and buffer_records must be at least 1".into(),
            ));
        }
        if config.idempotent
            && config.max_in_flight_per_partition > IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX
        {
            return Err(ClientError::Invalid(format!(
                "max_in_flight_per_partition {} is over {IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX}, the most an idempotent producer may have: the broker recognises a batch sent again only among a producer's last {IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX} to a partition (set idempotent to false for more)",
                config.max_in_flight_per_partition
            )));
        }
        if let Compression::Unknown(id) = config.compression {
            return Err(ClientError::Invalid(format!(
                "compression codec {id} is not one of none, gzip, snappy, lz4, zstd"
            )));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idempotent_producer_refuses_more_in_flight_per_partition_than_the_broker_remembers() {
        let config = |idempotent, in_flight| ProducerConfig {
            idempotent,
            max_in_flight_per_partition: in_flight,
            ..ProducerConfig::default()
        };
        assert!(
            ProducerConfig::default().idempotent,
            "idempotent by default"
        );
        let refused = Producer::new(config(true, IDEMPOTENT_IN_FLIGHT_PER_PARTITION_MAX + 1))
            .err()
            .expect("refused");
        assert!(
            refused
                .to_string()
                .contains("max_in_flight_per_partition 6 is over 5"),
            "{refused}"
        );
        // Allowed without idempotence (checked before any runtime is needed,
        // so build one for the producer's task).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let producer = Producer::new(config(false, 6)).expect("allowed");
            let at_most = Producer::new(config(true, 5)).expect("allowed");
            drop((producer, at_most));
        });
    }
}
