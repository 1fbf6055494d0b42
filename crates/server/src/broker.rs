//! The `Broker` gRPC service: produce, fetch, list offsets, and committed
//! group offsets.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carteiro::proto::{self, broker_server::Broker};
use carteiro_storage::{FlushPolicy, Log, LogRead, ReadError};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use crate::config::{
    FETCH_MAX_BYTES_DEFAULT, FETCH_MAX_WAIT_MS_MAX, PARTITION_FETCH_MAX_BYTES_DEFAULT,
};
use crate::convert;
use crate::error::{BrokerError, join_error};
use crate::offsets::{COMMIT_METADATA_MAX_BYTES, Committed, validate_group};
use crate::shared::Shared;

mod produce;

pub use produce::PRODUCE_STREAM_IN_FLIGHT_MAX;

/// Most bytes a client may ask for in one fetch reply (64 MiB).
pub const FETCH_MAX_BYTES_LIMIT: u32 = 64 * 1024 * 1024;
/// Most partitions in one fetch, list-offsets or commit request.
pub const PARTITIONS_PER_REQUEST_MAX: usize = 10_000;

/// The `Broker` service.
pub struct BrokerService {
    shared: Arc<Shared>,
}

impl BrokerService {
    /// A service over the shared broker state.
    pub fn new(shared: Arc<Shared>) -> Self {
        BrokerService { shared }
    }
}

/// Offsets below this are readable: for `always` topics the synced end, so a
/// consumer never sees what a crash could take back.
pub(crate) fn high_watermark(log: &Log) -> u64 {
    if log.config().flush == FlushPolicy::Always {
        log.durable_offset()
    } else {
        log.end_offset()
    }
}

fn readable(log: &Log, offset: u64, max_bytes: usize) -> Result<LogRead, ReadError> {
    if log.config().flush == FlushPolicy::Always {
        log.read_durable(offset, max_bytes)
    } else {
        log.read(offset, max_bytes)
    }
}

/// Most damaged batches remembered as already logged; past it, the memory
/// starts afresh (and each is logged once more).
const DAMAGE_REPORTED_MAX: usize = 1024;

/// Damage already logged, so that a consumer retrying at a damaged batch
/// does not flood the log with the same line.
static DAMAGE_REPORTED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn report_damage_once(e: &BrokerError) {
    let message = e.to_string();
    let mut reported = DAMAGE_REPORTED.lock().unwrap_or_else(|p| p.into_inner());
    if reported.len() >= DAMAGE_REPORTED_MAX {
        reported.clear();
    }
    if reported.insert(message) {
        tracing::error!(error = %e, "serving a fetch: damaged data");
    }
}

fn partition_error(e: BrokerError) -> proto::PartitionError {
    let (valid_start, valid_end) = match &e {
        BrokerError::Read(ReadError::OffsetOutOfRange { start, end, .. })
        | BrokerError::PartitionRead {
            source: ReadError::OffsetOutOfRange { start, end, .. },
            ..
        } => (*start as i64, *end as i64),
        _ => (0, 0),
    };
    if e.code() == tonic::Code::DataLoss {
        report_damage_once(&e);
    }
    proto::PartitionError {
        code: e.code() as i32,
        message: e.to_string(),
        valid_start,
        valid_end,
    }
}

/// Checks the length of a request's list of partitions (or commits, or
/// queries): at most [`PARTITIONS_PER_REQUEST_MAX`], and at least one unless `may_be_empty`.
fn check_entries(field: &'static str, n: usize, may_be_empty: bool) -> Result<(), BrokerError> {
    if n == 0 && !may_be_empty {
        return Err(BrokerError::invalid(
            field,
            "empty: name at least one partition",
        ));
    }
    if n > PARTITIONS_PER_REQUEST_MAX {
        return Err(BrokerError::invalid(
            field,
            format!("{n} entries exceed the limit of {PARTITIONS_PER_REQUEST_MAX}"),
        ));
    }
    Ok(())
}

fn offset_field(field: &'static str, offset: i64) -> Result<u64, BrokerError> {
    u64::try_from(offset).map_err(|_| BrokerError::invalid(field, format!("{offset} is negative")))
}

/// One partition's part of a fetch reply, and what to wait on if it is empty.
struct Gathered {
    reply: proto::PartitionRecords,
    bytes: usize,
    watch: Option<(Arc<Log>, u64)>,
}

/// One partition's part of a fetch reply: whole batches from `offset`
/// within `budget` bytes. Blocking (it reads files). Damage met after some
/// batches ends the part there; damage at the first batch is the
/// partition's error (DATA_LOSS, naming the offset, file and byte).
fn gather_partition(
    shared: &Shared,
    request: &proto::FetchPartition,
    budget: usize,
    decoded: bool,
) -> Gathered {
    let mut reply = proto::PartitionRecords {
        topic: request.topic.clone(),
        partition: request.partition,
        next_offset: request.offset,
        ..Default::default()
    };
    let failed = |mut reply: proto::PartitionRecords, e: BrokerError| {
        reply.error = Some(partition_error(e));
        Gathered {
            reply,
            bytes: 0,
            watch: None,
        }
    };
    let log = match shared.store.partition(&request.topic, request.partition) {
        Ok(log) => log,
        Err(e) => return failed(reply, e.into()),
    };
    let hwm = high_watermark(&log);
    reply.high_watermark = hwm as i64;
    reply.log_start_offset = log.start_offset() as i64;
    let offset = match offset_field("partitions.offset", request.offset) {
        Ok(offset) => offset,
        Err(e) => return failed(reply, e),
    };
    let partition_max = match request.max_bytes {
        0 => PARTITION_FETCH_MAX_BYTES_DEFAULT,
        n => n.min(FETCH_MAX_BYTES_LIMIT),
    } as usize;
    let budget = budget.min(partition_max);
    let mut chunks = Vec::new();
    let (mut at, mut taken) = (offset, 0usize);
    while taken < budget {
        match readable(&log, at, budget - taken) {
            Ok(read) if read.batches.is_empty() => break,
            Ok(read) => {
                taken += read.batches.len();
                at = read.next_offset;
                chunks.push(read.batches);
            }
            // The batches before the damage are served; the next fetch, at
            // the damaged offset, gets the error.
            Err(ReadError::Corrupt { .. }) if !chunks.is_empty() => break,
            Err(source) => {
                let e = BrokerError::PartitionRead {
                    topic: request.topic.clone(),
                    partition: request.partition,
                    source,
                };
                return failed(reply, e);
            }
        }
    }
    reply.next_offset = at as i64;
    if decoded {
        if let Err(e) = convert::decode_records(&chunks, offset, &mut reply.records) {
            let e = BrokerError::DataLoss(format!(
                "topic {:?} partition {}: {e}",
                request.topic, request.partition
            ));
            return failed(reply, e);
        }
    } else {
        reply.record_batches = chunks;
    }
    Gathered {
        reply,
        bytes: taken,
        watch: Some((log, hwm)),
    }
}

/// One pass over a fetch's partitions.
struct FetchRound {
    reply: proto::FetchResponse,
    /// Bytes of batches in the reply.
    total: usize,
    /// Bytes of the reply's limit left.
    budget: usize,
    /// The logs to wait on, and the high watermark each was read at.
    watches: Vec<(Arc<Log>, u64)>,
}

/// Every partition's part of a fetch reply, within `max_bytes` in all. Blocking.
fn gather(
    shared: &Shared,
    request: &proto::FetchRequest,
    max_bytes: usize,
    decoded: bool,
) -> FetchRound {
    let mut round = FetchRound {
        reply: proto::FetchResponse::default(),
        total: 0,
        budget: max_bytes,
        watches: Vec::new(),
    };
    for partition in &request.partitions {
        let gathered = gather_partition(shared, partition, round.budget, decoded);
        round.budget = round.budget.saturating_sub(gathered.bytes);
        round.total += gathered.bytes;
        round.reply.partitions.push(gathered.reply);
        round.watches.extend(gathered.watch);
    }
    round
}

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn produce(
        &self,
        request: Request<proto::ProduceRequest>,
    ) -> Result<Response<proto::ProduceResponse>, Status> {
        Ok(Response::new(
            self.produce_unary(request.into_inner()).await?,
        ))
    }

    type ProduceStreamStream = produce::ProduceReplies;

    async fn produce_stream(
        &self,
        request: Request<Streaming<proto::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        self.shared.check_running()?;
        Ok(Response::new(self.produce_streamed(request.into_inner())))
    }

    async fn fetch(
        &self,
        request: Request<proto::FetchRequest>,
    ) -> Result<Response<proto::FetchResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        self.shared.check_running()?;
        let request = request.into_inner();
        check_entries("partitions", request.partitions.len(), false)?;
        if request.max_wait_ms > FETCH_MAX_WAIT_MS_MAX {
            let message = format!(
                "{} exceeds the limit of {FETCH_MAX_WAIT_MS_MAX}",
                request.max_wait_ms
            );
            return Err(BrokerError::invalid("max_wait_ms", message).into());
        }
        let max_bytes = match request.max_bytes {
            0 => FETCH_MAX_BYTES_DEFAULT,
            n => n.min(FETCH_MAX_BYTES_LIMIT),
        } as usize;
        let decoded = request.format() == proto::FetchFormat::Decoded;
        let deadline = Instant::now() + Duration::from_millis(u64::from(request.max_wait_ms));
        let mut shutdown = self.shared.shutdown.clone();
        let request = Arc::new(request);
        loop {
            let (shared, asked) = (self.shared.clone(), request.clone());
            let FetchRound {
                reply,
                total,
                budget,
                watches,
            } = tokio::task::spawn_blocking(move || gather(&shared, &asked, max_bytes, decoded))
                .await
                .map_err(join_error)?;
            let done = total >= request.min_bytes as usize
                || total > 0 && budget == 0
                || watches.is_empty()
                || Instant::now() >= deadline
                || *shutdown.borrow();
            if done {
                return Ok(Response::new(reply));
            }
            // Woken by an append (or sync) of any partition, never by polling.
            let mut grown: FuturesUnordered<_> = watches
                .iter()
                .map(|(log, hwm)| log.grown_past(*hwm, log.config().flush == FlushPolicy::Always))
                .collect();
            tokio::select! {
                _ = grown.next() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn list_offsets(
        &self,
        request: Request<proto::ListOffsetsRequest>,
    ) -> Result<Response<proto::ListOffsetsResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        self.shared.check_running()?;
        let request = request.into_inner();
        check_entries("queries", request.queries.len(), true)?;
        for (i, query) in request.queries.iter().enumerate() {
            if query.spec.is_none() {
                return Err(BrokerError::invalid(
                    "queries.spec",
                    format!("query {i} sets none of earliest, latest, timestamp_ms"),
                )
                .into());
            }
        }
        let store = self.shared.store.clone();
        let answers = tokio::task::spawn_blocking(move || {
            request
                .queries
                .into_iter()
                .map(|query| {
                    let mut answer = proto::OffsetAnswer {
                        topic: query.topic.clone(),
                        partition: query.partition,
                        ..Default::default()
                    };
                    let result: Result<u64, BrokerError> = (|| {
                        let log = store.partition(&query.topic, query.partition)?;
                        Ok(match query.spec {
                            Some(proto::offset_query::Spec::Earliest(_)) => log.start_offset(),
                            Some(proto::offset_query::Spec::TimestampMs(ts)) => {
                                let hwm = high_watermark(&log);
                                log.offset_for_timestamp(ts)?.map_or(hwm, |o| o.min(hwm))
                            }
                            _ => high_watermark(&log),
                        })
                    })();
                    match result {
                        Ok(offset) => answer.offset = offset as i64,
                        Err(e) => answer.error = Some(partition_error(e)),
                    }
                    answer
                })
                .collect()
        })
        .await
        .map_err(join_error)?;
        Ok(Response::new(proto::ListOffsetsResponse { answers }))
    }

    async fn commit_offsets(
        &self,
        request: Request<proto::CommitOffsetsRequest>,
    ) -> Result<Response<proto::CommitOffsetsResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        self.shared.check_running()?;
        let request = request.into_inner();
        validate_group(&request.group)?;
        check_entries("commits", request.commits.len(), false)?;
        let mut commits = Vec::with_capacity(request.commits.len());
        for commit in request.commits {
            self.shared
                .check_user_topic("commits.topic", &commit.topic)?;
            self.shared
                .store
                .partition(&commit.topic, commit.partition)
                .map_err(BrokerError::from)?;
            offset_field("commits.offset", commit.offset)?;
            if commit.metadata.len() > COMMIT_METADATA_MAX_BYTES {
                let message = format!(
                    "{} bytes exceed the limit of {COMMIT_METADATA_MAX_BYTES}",
                    commit.metadata.len()
                );
                return Err(BrokerError::invalid("commits.metadata", message).into());
            }
            commits.push((
                commit.topic,
                commit.partition,
                Committed {
                    offset: commit.offset,
                    metadata: commit.metadata,
                },
            ));
        }
        let owned: Vec<(String, u32)> = commits.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        self.shared.coordinator.check_commit(
            &request.group,
            &request.member_id,
            request.generation,
            &owned,
        )?;
        let offsets = self.shared.offsets.clone();
        let now = self.shared.now_ms();
        tokio::task::spawn_blocking(move || offsets.commit(&request.group, commits, now))
            .await
            .map_err(join_error)??;
        Ok(Response::new(proto::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        request: Request<proto::FetchOffsetsRequest>,
    ) -> Result<Response<proto::FetchOffsetsResponse>, Status> {
        let _admitted = self.shared.limits.admit()?;
        self.shared.check_running()?;
        let request = request.into_inner();
        validate_group(&request.group)?;
        check_entries("partitions", request.partitions.len(), true)?;
        let offsets = &self.shared.offsets;
        let found = if request.partitions.is_empty() {
            offsets
                .group(&request.group)
                .into_iter()
                .map(|(topic, partition, c)| proto::CommittedOffset {
                    topic,
                    partition,
                    offset: c.offset,
                    metadata: c.metadata,
                })
                .collect()
        } else {
            request
                .partitions
                .into_iter()
                .map(
                    |tp| match offsets.get(&request.group, &tp.topic, tp.partition) {
                        Some(c) => proto::CommittedOffset {
                            topic: tp.topic,
                            partition: tp.partition,
                            offset: c.offset,
                            metadata: c.metadata,
                        },
                        None => proto::CommittedOffset {
                            topic: tp.topic,
                            partition: tp.partition,
                            offset: -1,
                            metadata: String::new(),
                        },
                    },
                )
                .collect()
        };
        Ok(Response::new(proto::FetchOffsetsResponse {
            offsets: found,
        }))
    }
}
