//! Produce: choosing partitions (given, the key's hash, or spread in
//! turn), checking each batch once, appending, and waiting until the
//! appends meet the request's acknowledgement level.
//!
//! An edge that pipelines requests (a gRPC stream, a Kafka connection)
//! calls [`Broker::append`] for each in the order they came and then waits
//! on each [`Appended`] while later ones are appended.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use carteiro::partitioner::partition_for_key;
use carteiro::record::{Header, NewRecord, RecordBatchBuilder};
use carteiro_storage::{AckWait, Acks, AppendError, AppendInfo, CheckedBatch, Log};

use crate::broker::Broker;
use crate::error::{BrokerError, join_error};

/// A record for the core to encode (the easy path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducedRecord {
    /// The key, if any (records with a key go to its hash's partition).
    pub key: Option<Bytes>,
    /// The value; `None` is a null value.
    pub value: Option<Bytes>,
    /// Headers: key and value.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Ms since the Unix epoch; 0 takes the broker's append time.
    pub timestamp_ms: i64,
}

/// What a produce carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// One record batch the client encoded, appended as it came (after one
    /// check); its base offset is replaced.
    Batch(Bytes),
    /// Records the core encodes, one batch per partition they go to.
    Records(Vec<ProducedRecord>),
}

impl Payload {
    /// The request field that carries it, for error messages.
    fn field(&self) -> &'static str {
        match self {
            Payload::Batch(_) => "record_batch",
            Payload::Records(_) => "records",
        }
    }
}

/// One produce request.
#[derive(Debug, Clone)]
pub struct ProduceRequest {
    /// The topic.
    pub topic: String,
    /// The partition; `None` chooses one per record: the key's hash, or the
    /// next partition in turn for keyless records (kept together).
    pub partition: Option<u32>,
    /// The records.
    pub payload: Payload,
    /// When to acknowledge.
    pub acks: Acks,
}

/// Where one partition's share of a request landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionAppend {
    /// The partition.
    pub partition: u32,
    /// Offset of its first record.
    pub base_offset: u64,
    /// Records appended.
    pub record_count: u32,
    /// The log's time of the append, ms since the Unix epoch.
    pub append_time_ms: i64,
    /// True if an idempotent producer's batch had been appended already:
    /// not appended again; the offsets and time are those it got then.
    pub duplicate: bool,
}

/// A request whose batches are appended and which waits to meet its acks.
#[derive(Debug)]
pub struct Appended {
    acks: Acks,
    landing: Landing,
}

/// Where a request's appends stand.
#[derive(Debug)]
enum Landing {
    /// Appended already: each partition's append, in the order of the reply.
    Appended(Vec<(u32, Arc<Log>, AppendInfo)>),
    /// Queued to one partition's log ([`crate::pipeline`]); the answer
    /// comes once the append meets the acks (or failed).
    Queued {
        partition: u32,
        log: Arc<Log>,
        answer: tokio::sync::oneshot::Receiver<Result<AppendInfo, BrokerError>>,
    },
}

impl Appended {
    /// A request queued to `log`'s appending thread.
    pub(crate) fn queued(
        acks: Acks,
        partition: u32,
        log: Arc<Log>,
        answer: tokio::sync::oneshot::Receiver<Result<AppendInfo, BrokerError>>,
    ) -> Self {
        Appended {
            acks,
            landing: Landing::Queued {
                partition,
                log,
                answer,
            },
        }
    }

    /// Waits until every append meets the acks; where each landed.
    pub async fn acknowledged(self) -> Result<Vec<PartitionAppend>, BrokerError> {
        let appends = match self.landing {
            Landing::Appended(appends) => appends,
            Landing::Queued {
                partition,
                log,
                answer,
            } => {
                let info = answer.await.map_err(|_| {
                    BrokerError::Internal("a queued append was dropped unanswered".into())
                })??;
                vec![(partition, log, info)]
            }
        };
        let mut landed = Vec::with_capacity(appends.len());
        for (partition, log, info) in appends {
            meet_acks(&log, &info, self.acks).await?;
            landed.push(PartitionAppend {
                partition,
                base_offset: info.base_offset,
                record_count: (info.last_offset - info.base_offset + 1) as u32,
                append_time_ms: info.append_time_ms,
                duplicate: info.duplicate,
            });
        }
        Ok(landed)
    }
}

/// Waits until an append meets `acks`, as its log's flush policy says.
async fn meet_acks(log: &Arc<Log>, info: &AppendInfo, acks: Acks) -> Result<(), BrokerError> {
    match log.ack_wait(info, acks) {
        // The appending thread syncs (see `Broker::append`).
        AckWait::Now | AckWait::NowSyncSoon { .. } => {}
        // Woken by the sync that moves the durable offset past `end`.
        AckWait::Sync { end } => {
            log.wait_durable(end)
                .await
                .map_err(|source| BrokerError::Append {
                    field: "record_batch",
                    source,
                })?
        }
        // The maintenance thread's next interval flush makes it durable.
        AckWait::Flush { end } => log.grown_past(end - 1, true).await,
    }
    Ok(())
}

/// One partition's share of a request, checked.
struct PlannedBatch {
    partition: u32,
    log: Arc<Log>,
    batch: CheckedBatch,
}

fn invalid_batch(field: &'static str, e: carteiro::record::BatchError) -> BrokerError {
    BrokerError::Append {
        field,
        source: AppendError::InvalidBatch(e),
    }
}

/// Checks a client's batch as it came: valid (CRC and all), and neither
/// transactional nor a control batch. Reads all of it: blocking for a
/// large batch.
pub(crate) fn check_batch(field: &'static str, bytes: Bytes) -> Result<CheckedBatch, BrokerError> {
    let batch = CheckedBatch::new(bytes).map_err(|e| invalid_batch(field, e))?;
    let attributes = batch.header().attributes;
    if attributes.is_transactional() || attributes.is_control() {
        return Err(BrokerError::invalid(
            field,
            format!(
                "attributes {:#06x}: transactional and control batches are not supported",
                attributes.0
            ),
        ));
    }
    Ok(batch)
}

/// Encodes records into one batch; timestamps of 0 become `now_ms`.
fn encode_records(records: &[&ProducedRecord], now_ms: i64) -> Result<Bytes, BrokerError> {
    let mut builder = RecordBatchBuilder::new();
    for record in records {
        let headers: Vec<Header<'_>> = record
            .headers
            .iter()
            .map(|(key, value)| Header {
                key: key.as_bytes(),
                value: value.as_deref(),
            })
            .collect();
        let timestamp = if record.timestamp_ms == 0 {
            now_ms
        } else {
            record.timestamp_ms
        };
        let new = NewRecord {
            timestamp,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &headers,
        };
        builder
            .append(&new)
            .map_err(|e| BrokerError::invalid("records", e.to_string()))?;
    }
    builder
        .build()
        .map(Bytes::from)
        .map_err(|e| BrokerError::invalid("records", e.to_string()))
}

impl Broker {
    /// Produces: appends, then waits until the request's acks are met.
    pub async fn produce(
        self: &Arc<Self>,
        request: ProduceRequest,
    ) -> Result<Vec<PartitionAppend>, BrokerError> {
        self.append(request).await?.acknowledged().await
    }

    /// Checks and appends one request, without waiting for its acks: a
    /// pipelining edge appends its next request while this one's sync runs.
    /// Nothing is appended if the request is refused before its first
    /// append.
    ///
    /// Runs on the blocking pool (checking a batch reads all of it), and
    /// the same thread then syncs the flush-`always` logs it appended to
    /// ([`Log::sync_appended`]) after handing back the result: the sync
    /// starts with no thread to wake, and the acknowledgement is woken by
    /// the durable offset moving.
    pub async fn append(
        self: &Arc<Self>,
        request: ProduceRequest,
    ) -> Result<Appended, BrokerError> {
        self.check_running()?;
        let broker = self.clone();
        let (reply, appended) = tokio::sync::oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            let (result, logs) = broker.append_blocking(request);
            // The caller may be gone; the appends still get synced.
            let _ = reply.send(result);
            for log in logs {
                if let Err(e) = log.sync_appended() {
                    tracing::error!(dir = %log.dir().display(), error = %e, "sync after append failed");
                }
            }
        });
        match appended.await {
            Ok(result) => result,
            // The task ended without answering: it panicked.
            Err(_) => Err(match task.await {
                Err(e) => join_error(e),
                Ok(()) => BrokerError::Internal("append task ended without a result".into()),
            }),
        }
    }

    /// Appends a request's batches; also the logs that now want a sync,
    /// including those appended to before a failure (what they hold stays
    /// and must become readable).
    fn append_blocking(
        &self,
        request: ProduceRequest,
    ) -> (Result<Appended, BrokerError>, Vec<Arc<Log>>) {
        let field = request.payload.field();
        let acks = request.acks;
        let planned = match self.plan(request) {
            Ok(planned) => planned,
            Err(e) => return (Err(e), Vec::new()),
        };
        let mut appends: Vec<(u32, Arc<Log>, AppendInfo)> = Vec::with_capacity(planned.len());
        let mut failure = None;
        for planned in planned {
            match planned.log.append_checked(&planned.batch, Acks::Appended) {
                Ok(info) => appends.push((planned.partition, planned.log, info)),
                Err(source) => {
                    failure = Some(BrokerError::Append { field, source });
                    break;
                }
            }
        }
        let to_sync = appends
            .iter()
            .filter(|(_, log, _)| log.syncs_after_append())
            .map(|(_, log, _)| log.clone())
            .collect();
        match failure {
            Some(e) => (Err(e), to_sync),
            None => (
                Ok(Appended {
                    acks,
                    landing: Landing::Appended(appends),
                }),
                to_sync,
            ),
        }
    }

    /// Checks a request and splits it into one checked batch per partition.
    fn plan(&self, request: ProduceRequest) -> Result<Vec<PlannedBatch>, BrokerError> {
        self.check_user_topic("topic", &request.topic)?;
        let topic = self.store.topic(&request.topic)?;
        let partitions = topic.config().partitions;
        if let Some(partition) = request.partition {
            topic.partition(partition)?;
        }
        let field = request.payload.field();
        let batches: Vec<(u32, CheckedBatch)> = match request.payload {
            Payload::Batch(bytes) => {
                let batch = check_batch(field, bytes)?;
                let partition = match (request.partition, batch.first_key()) {
                    (Some(p), _) => p,
                    (None, Some(key)) => partition_for_key(key, partitions),
                    (None, None) => self.next_spread(&request.topic, partitions),
                };
                vec![(partition, batch)]
            }
            Payload::Records(records) => {
                if records.is_empty() {
                    return Err(BrokerError::invalid(
                        "records",
                        "empty produce: set records or record_batch",
                    ));
                }
                // Keyless records of one request stay together in one partition.
                let mut spread = None;
                let mut order: Vec<u32> = Vec::new();
                let mut groups: HashMap<u32, Vec<&ProducedRecord>> = HashMap::new();
                for record in &records {
                    let partition = match (request.partition, &record.key) {
                        (Some(p), _) => p,
                        (None, Some(key)) => partition_for_key(key, partitions),
                        (None, None) => *spread
                            .get_or_insert_with(|| self.next_spread(&request.topic, partitions)),
                    };
                    let group = groups.entry(partition).or_default();
                    if group.is_empty() {
                        order.push(partition);
                    }
                    group.push(record);
                }
                let now = self.now_ms();
                let mut batches = Vec::with_capacity(order.len());
                for partition in order {
                    let records = groups.remove(&partition).unwrap_or_default();
                    let bytes = encode_records(&records, now)?;
                    let batch = CheckedBatch::new(bytes).map_err(|e| invalid_batch(field, e))?;
                    batches.push((partition, batch));
                }
                batches
            }
        };
        batches
            .into_iter()
            .map(|(partition, batch)| {
                Ok(PlannedBatch {
                    partition,
                    log: topic.partition(partition)?.clone(),
                    batch,
                })
            })
            .collect()
    }

    fn next_spread(&self, topic: &str, partitions: u32) -> u32 {
        let mut spread = self.spread.lock().unwrap_or_else(|p| p.into_inner());
        let counter = spread.entry(topic.to_string()).or_insert(0);
        let partition = *counter % partitions.max(1);
        *counter = counter.wrapping_add(1);
        partition
    }
}
