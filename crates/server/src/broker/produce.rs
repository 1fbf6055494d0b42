//! Produce, unary and pipelined on a stream: checking a request, splitting
//! it into one batch per partition, appending, and waiting until the
//! batches meet the request's acks.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use carteiro::partitioner::partition_for_key;
use carteiro::proto;
use carteiro_storage::{AppendInfo, FlushPolicy, Log};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::BrokerService;
use crate::convert;
use crate::error::{BrokerError, join_error};
use crate::limits::Admitted;

/// Most requests of one produce stream appended but not yet acknowledged;
/// the broker reads no further until one is (HTTP/2 flow control then
/// holds the client back).
pub const PRODUCE_STREAM_IN_FLIGHT_MAX: usize = 32;

/// Replies of a produce stream, in the order they are ready.
pub type ProduceReplies = ReceiverStream<Result<proto::ProduceStreamReply, Status>>;

/// One partition's share of a produce request.
struct PlannedBatch {
    partition: u32,
    log: Arc<Log>,
    batch: Bytes,
    field: &'static str,
}

/// A request whose batches are appended and which waits to meet its acks.
struct Appended {
    topic: String,
    acks: proto::Acks,
    /// Each partition's append, in the order of the reply.
    appends: Vec<(u32, Arc<Log>, AppendInfo)>,
    /// Holds the request's share of the produce limits until it is acknowledged.
    _admitted: Admitted,
}

impl Appended {
    /// Waits until every append meets the acks, then builds the reply.
    async fn acknowledged(self) -> Result<proto::ProduceResponse, BrokerError> {
        let mut reply = proto::ProduceResponse::default();
        for (partition, log, info) in self.appends {
            meet_acks(&log, &info, self.acks).await?;
            reply.partitions.push(proto::PartitionAppend {
                topic: self.topic.clone(),
                partition,
                base_offset: info.base_offset as i64,
                record_count: (info.last_offset - info.base_offset + 1) as u32,
                append_time_ms: info.append_time_ms,
            });
        }
        Ok(reply)
    }
}

/// Waits until an append meets `acks` under its log's flush policy
/// (`info.durable` says the append itself already synced).
async fn meet_acks(
    log: &Arc<Log>,
    info: &AppendInfo,
    acks: proto::Acks,
) -> Result<(), BrokerError> {
    let durable = acks == proto::Acks::Durable;
    let end = info.last_offset + 1;
    match log.config().flush {
        FlushPolicy::Always if durable && !info.durable => {
            // Concurrent callers share one sync (group commit in `sync_to`).
            let syncer = log.clone();
            tokio::task::spawn_blocking(move || syncer.sync_to(end))
                .await
                .map_err(join_error)?
                .map_err(|source| BrokerError::Append {
                    field: "record_batch",
                    source,
                })?;
        }
        FlushPolicy::Always if !durable => sync_in_background(log, end),
        FlushPolicy::IntervalMs(_) if durable => {
            // The maintenance thread's next interval flush acknowledges it.
            log.grown_past(info.last_offset, true).await;
        }
        _ => {}
    }
    Ok(())
}

impl BrokerService {
    /// Serves a unary produce.
    pub(super) async fn produce_unary(
        &self,
        request: proto::ProduceRequest,
    ) -> Result<proto::ProduceResponse, BrokerError> {
        self.append_request(request, true)
            .await?
            .acknowledged()
            .await
    }

    /// Serves a produce stream: appends its requests one after another in
    /// the order they came, and acknowledges each as soon as it meets its
    /// acks, while later ones are being appended.
    pub(super) fn produce_streamed(
        &self,
        mut requests: Streaming<proto::ProduceRequest>,
    ) -> ProduceReplies {
        let (replies, stream) = mpsc::channel(PRODUCE_STREAM_IN_FLIGHT_MAX);
        let service = BrokerService {
            shared: self.shared.clone(),
        };
        let mut shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            let mut waiting = FuturesUnordered::new();
            let mut sequence = 0u64;
            let mut reading = true;
            loop {
                tokio::select! {
                    next = requests.message(), if reading && waiting.len() < PRODUCE_STREAM_IN_FLIGHT_MAX => {
                        let request = match next {
                            Ok(Some(request)) => request,
                            // The client is done sending, or gone.
                            Ok(None) | Err(_) => {
                                reading = false;
                                continue;
                            }
                        };
                        let this = sequence;
                        sequence += 1;
                        match service.append_request(request, false).await {
                            Ok(appended) => waiting.push(Box::pin(async move {
                                (this, appended.acknowledged().await)
                            })
                                as futures_util::future::BoxFuture<'static, _>),
                            Err(e) => {
                                // Nothing after a failure is appended, so a
                                // client's retry cannot reorder the partition.
                                reading = false;
                                waiting.push(Box::pin(std::future::ready((this, Err(e)))));
                            }
                        }
                    }
                    Some((this, result)) = waiting.next(), if !waiting.is_empty() => {
                        let failed = result.is_err();
                        if replies.send(Ok(stream_reply(this, result))).await.is_err() {
                            // The client stopped listening; what was appended stays.
                            reading = false;
                        }
                        if failed {
                            reading = false;
                        }
                    }
                    // Shutdown ends the stream once what was appended is acknowledged.
                    changed = shutdown.changed(), if reading => {
                        if changed.is_err() || *shutdown.borrow() {
                            reading = false;
                        }
                    }
                    else => break,
                }
            }
        });
        ReceiverStream::new(stream)
    }

    fn admit_produce(&self, request: &proto::ProduceRequest) -> Result<Admitted, BrokerError> {
        let admitted = self.shared.limits.admit_produce(request.encoded_len())?;
        self.shared.check_running()?;
        Ok(admitted)
    }

    /// Checks and appends one request. With `sync_in_append` (unary), a
    /// DURABLE batch on a flush-always topic is synced in the same blocking
    /// call as its append: one thread hop, not two. A stream's requests
    /// are not, or the next request would wait behind the sync.
    async fn append_request(
        &self,
        request: proto::ProduceRequest,
        sync_in_append: bool,
    ) -> Result<Appended, BrokerError> {
        let admitted = self.admit_produce(&request)?;
        let acks = request.acks();
        let mut appends = Vec::new();
        for planned in self.plan(&request)? {
            let sync_now = sync_in_append
                && acks == proto::Acks::Durable
                && planned.log.config().flush == FlushPolicy::Always;
            match append(&planned, sync_now).await {
                Ok(info) => appends.push((planned.partition, planned.log, info)),
                Err(e) => {
                    // The request fails, but what it appended to earlier
                    // partitions stays and must become readable.
                    for (_, log, info) in &appends {
                        if log.config().flush == FlushPolicy::Always && !info.durable {
                            sync_in_background(log, info.last_offset + 1);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(Appended {
            acks,
            topic: request.topic,
            appends,
            _admitted: admitted,
        })
    }

    /// Checks a request and splits it into one batch per partition.
    fn plan(&self, request: &proto::ProduceRequest) -> Result<Vec<PlannedBatch>, BrokerError> {
        self.shared.check_user_topic("topic", &request.topic)?;
        let topic = self.shared.store.topic(&request.topic)?;
        let partitions = topic.config().partitions;
        if let Some(partition) = request.partition {
            topic.partition(partition)?;
        }
        let now = self.shared.now_ms();
        let batches: Vec<(u32, Bytes, &'static str)> =
            match (request.records.is_empty(), request.record_batch.is_empty()) {
                (true, true) => {
                    return Err(BrokerError::invalid(
                        "records",
                        "empty produce: set records or record_batch",
                    ));
                }
                (false, false) => {
                    return Err(BrokerError::invalid(
                        "record_batch",
                        "set either records or record_batch, not both",
                    ));
                }
                (true, false) => {
                    let partition =
                        match (request.partition, convert::first_key(&request.record_batch)) {
                            (Some(p), _) => p,
                            (None, Some(key)) => partition_for_key(&key, partitions),
                            (None, None) => self.next_spread(&request.topic, partitions),
                        };
                    vec![(partition, request.record_batch.clone(), "record_batch")]
                }
                (false, true) => {
                    // Keyless records of one request stay together in one partition.
                    let mut spread = None;
                    let mut order: Vec<u32> = Vec::new();
                    let mut groups: HashMap<u32, Vec<&proto::Record>> = HashMap::new();
                    for record in &request.records {
                        let partition = match (request.partition, &record.key) {
                            (Some(p), _) => p,
                            (None, Some(key)) => partition_for_key(key, partitions),
                            (None, None) => *spread.get_or_insert_with(|| {
                                self.next_spread(&request.topic, partitions)
                            }),
                        };
                        let group = groups.entry(partition).or_default();
                        if group.is_empty() {
                            order.push(partition);
                        }
                        group.push(record);
                    }
                    let mut batches = Vec::with_capacity(order.len());
                    for partition in order {
                        let records = groups.remove(&partition).unwrap_or_default();
                        batches.push((
                            partition,
                            Bytes::from(convert::encode_records(&records, now)?),
                            "records",
                        ));
                    }
                    batches
                }
            };
        batches
            .into_iter()
            .map(|(partition, batch, field)| {
                Ok(PlannedBatch {
                    partition,
                    log: topic.partition(partition)?.clone(),
                    batch,
                    field,
                })
            })
            .collect()
    }

    fn next_spread(&self, topic: &str, partitions: u32) -> u32 {
        let mut spread = self.shared.spread.lock().unwrap_or_else(|p| p.into_inner());
        let counter = spread.entry(topic.to_string()).or_insert(0);
        let partition = *counter % partitions.max(1);
        *counter = counter.wrapping_add(1);
        partition
    }
}

/// Syncs `log` up to `end` with nobody waiting: consumers of an `always`
/// topic see records only once they are synced.
fn sync_in_background(log: &Arc<Log>, end: u64) {
    let syncer = log.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = syncer.sync_to(end) {
            tracing::error!(error = %e, "background sync failed");
        }
    });
}

/// Appends a planned batch on a blocking thread, synced too if `sync_now`.
async fn append(planned: &PlannedBatch, sync_now: bool) -> Result<AppendInfo, BrokerError> {
    let (log, batch) = (planned.log.clone(), planned.batch.clone());
    tokio::task::spawn_blocking(move || {
        if sync_now {
            log.append(&batch)
        } else {
            log.append_unsynced(&batch)
        }
    })
    .await
    .map_err(join_error)?
    .map_err(|source| BrokerError::Append {
        field: planned.field,
        source,
    })
}

fn stream_reply(
    sequence: u64,
    result: Result<proto::ProduceResponse, BrokerError>,
) -> proto::ProduceStreamReply {
    match result {
        Ok(response) => proto::ProduceStreamReply {
            sequence,
            response: Some(response),
            ..Default::default()
        },
        Err(e) => {
            let status = Status::from(e);
            proto::ProduceStreamReply {
                sequence,
                response: None,
                error_code: status.code() as i32,
                error_message: status.message().to_string(),
            }
        }
    }
}
