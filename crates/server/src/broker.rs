//! The `Broker` gRPC service: produce, fetch, list offsets, and committed
//! group offsets. Each method turns its request into a core call and the
//! answer back.

use std::sync::Arc;

use carteiro::proto::{self, broker_server::Broker};
use carteiro_core::BrokerError;
use carteiro_core::fetch::{
    FetchPartition, FetchRequest, FetchReservation, OffsetSpec, check_entries,
};
use carteiro_core::groups::OffsetCommit;
use carteiro_storage::ReadError;
use tonic::{Request, Response, Status, Streaming};

use crate::body_budget::HeldUntilSent;
use crate::convert;
use crate::error::{code, status};
use crate::grpc_metrics;
use crate::shared::Shared;

mod produce;

pub use produce::PRODUCE_STREAM_IN_FLIGHT_MAX;

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

fn partition_error(e: BrokerError) -> proto::PartitionError {
    let (valid_start, valid_end) = match &e {
        BrokerError::Read(ReadError::OffsetOutOfRange { start, end, .. })
        | BrokerError::PartitionRead {
            source: ReadError::OffsetOutOfRange { start, end, .. },
            ..
        } => (*start as i64, *end as i64),
        _ => (0, 0),
    };
    proto::PartitionError {
        code: code(&e) as i32,
        message: e.to_string(),
        valid_start,
        valid_end,
    }
}

/// One partition's part of a fetch as the contract shows it: raw batches,
/// or (with `decode_from`, the offset asked for, and the reply's decoding
/// budget) the records decoded from them at and after it.
fn partition_records(
    data: carteiro_core::fetch::PartitionData,
    decode_from: Option<(i64, &mut convert::DecodeBudget)>,
) -> proto::PartitionRecords {
    let mut part = proto::PartitionRecords {
        topic: data.topic,
        partition: data.partition,
        high_watermark: data.high_watermark as i64,
        log_start_offset: data.log_start_offset as i64,
        next_offset: data.next_offset,
        error: data.error.map(partition_error),
        ..Default::default()
    };
    let Some((asked, budget)) = decode_from else {
        part.record_batches = data.batches;
        return part;
    };
    let from = u64::try_from(asked).unwrap_or(0);
    match convert::decode_records(&data.batches, from, budget, &mut part.records) {
        Ok(None) => {}
        // The reply's decoding budget ran out: the rest is for the next fetch.
        Ok(Some(next)) => part.next_offset = next,
        Err(e) => {
            let e = BrokerError::DataLoss(format!(
                "topic {:?} partition {}: {e}",
                part.topic, part.partition
            ));
            part.records.clear();
            part.next_offset = asked;
            part.error = Some(partition_error(e));
        }
    }
    part
}

impl BrokerService {
    /// The reply, and its share of the reply budget, held until it is sent.
    async fn fetch_inner(
        &self,
        request: proto::FetchRequest,
    ) -> Result<(proto::FetchResponse, FetchReservation), BrokerError> {
        let allowed = "FETCH_FORMAT_RAW_BATCHES (0), FETCH_FORMAT_DECODED (1)";
        let decoded = convert::known::<proto::FetchFormat>("format", request.format, allowed)?
            == proto::FetchFormat::Decoded;
        let request = FetchRequest {
            partitions: request
                .partitions
                .into_iter()
                .map(|p| FetchPartition {
                    topic: p.topic,
                    partition: p.partition,
                    offset: p.offset,
                    max_bytes: p.max_bytes,
                })
                .collect(),
            max_bytes: request.max_bytes,
            min_bytes: request.min_bytes,
            max_wait_ms: request.max_wait_ms,
        };
        // Decoding starts at the offset each partition asked for.
        let decode_from: Option<Vec<i64>> =
            decoded.then(|| request.partitions.iter().map(|p| p.offset).collect());
        let fetched = self.shared.broker.fetch(request).await?;
        let (partitions, reservation) = (fetched.partitions, fetched.reservation);
        let Some(offsets) = decode_from else {
            // Raw batches move into the reply as they are.
            let partitions = partitions
                .into_iter()
                .map(|data| partition_records(data, None))
                .collect();
            return Ok((proto::FetchResponse { partitions }, reservation));
        };
        // Decoding walks every record: off the async workers.
        tokio::task::spawn_blocking(move || {
            let fetched_bytes = partitions
                .iter()
                .flat_map(|p| &p.batches)
                .map(|chunk| chunk.len())
                .sum();
            let mut budget = convert::DecodeBudget::new(fetched_bytes);
            let partitions = partitions
                .into_iter()
                .zip(offsets)
                .map(|(data, asked)| partition_records(data, Some((asked, &mut budget))))
                .collect();
            (proto::FetchResponse { partitions }, reservation)
        })
        .await
        .map_err(|e| BrokerError::Internal(format!("fetch reply task failed: {e}")))
    }

    async fn list_offsets_inner(
        &self,
        request: proto::ListOffsetsRequest,
    ) -> Result<proto::ListOffsetsResponse, BrokerError> {
        check_entries("queries", request.queries.len(), true)?;
        let mut queries = Vec::with_capacity(request.queries.len());
        for (i, query) in request.queries.into_iter().enumerate() {
            let spec = match query.spec {
                Some(proto::offset_query::Spec::Earliest(_)) => OffsetSpec::Earliest,
                Some(proto::offset_query::Spec::Latest(_)) => OffsetSpec::Latest,
                Some(proto::offset_query::Spec::TimestampMs(ts)) => OffsetSpec::Timestamp(ts),
                None => {
                    return Err(BrokerError::invalid(
                        "queries.spec",
                        format!("query {i} sets none of earliest, latest, timestamp_ms"),
                    ));
                }
            };
            queries.push((query.topic, query.partition, spec));
        }
        let broker = self.shared.broker.clone();
        let answers = tokio::task::spawn_blocking(move || {
            queries
                .into_iter()
                .map(|(topic, partition, spec)| {
                    let mut answer = proto::OffsetAnswer {
                        partition,
                        ..Default::default()
                    };
                    match broker.list_offset(&topic, partition, spec) {
                        Ok(offset) => answer.offset = offset as i64,
                        Err(e) => answer.error = Some(partition_error(e)),
                    }
                    answer.topic = topic;
                    answer
                })
                .collect()
        })
        .await
        .map_err(|e| BrokerError::Internal(format!("list offsets task failed: {e}")))?;
        Ok(proto::ListOffsetsResponse { answers })
    }

    async fn commit_offsets_inner(
        &self,
        request: proto::CommitOffsetsRequest,
    ) -> Result<proto::CommitOffsetsResponse, BrokerError> {
        let commits = request
            .commits
            .into_iter()
            .map(|c| OffsetCommit {
                topic: c.topic,
                partition: c.partition,
                offset: c.offset,
                metadata: c.metadata,
            })
            .collect();
        self.shared
            .broker
            .commit_offsets(
                &request.group,
                &request.member_id,
                request.generation,
                commits,
            )
            .await?;
        Ok(proto::CommitOffsetsResponse {})
    }

    fn fetch_offsets_inner(
        &self,
        request: proto::FetchOffsetsRequest,
    ) -> Result<proto::FetchOffsetsResponse, BrokerError> {
        carteiro_core::committed::validate_group(&request.group)?;
        check_entries("partitions", request.partitions.len(), true)?;
        let broker = &self.shared.broker;
        let offsets = if request.partitions.is_empty() {
            broker
                .committed_offsets(&request.group)
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
                .map(|tp| {
                    let committed =
                        broker.committed_offset(&request.group, &tp.topic, tp.partition);
                    proto::CommittedOffset {
                        offset: committed.as_ref().map_or(-1, |c| c.offset),
                        metadata: committed.map(|c| c.metadata).unwrap_or_default(),
                        topic: tp.topic,
                        partition: tp.partition,
                    }
                })
                .collect()
        };
        Ok(proto::FetchOffsetsResponse { offsets })
    }
}

#[tonic::async_trait]
impl Broker for BrokerService {
    async fn produce(
        &self,
        request: Request<proto::ProduceRequest>,
    ) -> Result<Response<proto::ProduceResponse>, Status> {
        self.produce_unary(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    type ProduceStreamStream = produce::ProduceReplies;

    async fn produce_stream(
        &self,
        request: Request<Streaming<proto::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        if let Err(e) = self.shared.broker.check_running() {
            // Refused before any request of the stream is read: one request.
            let _counted = grpc_metrics::start(grpc_metrics::PRODUCE_STREAM);
            let status = status(e);
            grpc_metrics::count_status(grpc_metrics::PRODUCE_STREAM, status.code());
            return Err(status);
        }
        Ok(Response::new(self.produce_streamed(request.into_inner())))
    }

    async fn fetch(
        &self,
        request: Request<proto::FetchRequest>,
    ) -> Result<Response<proto::FetchResponse>, Status> {
        // Fetches have their own budget, so long polls never starve others.
        let _admitted = self
            .shared
            .limits
            .admit_fetch(request.remote_addr())
            .map_err(status)?;
        let request = request.into_inner();
        let (reply, reservation) = self.fetch_inner(request).await.map_err(status)?;
        let mut response = Response::new(reply);
        // The reply's bytes stay counted until the connection has taken them.
        response
            .extensions_mut()
            .insert(HeldUntilSent::new(reservation));
        Ok(response)
    }

    async fn list_offsets(
        &self,
        request: Request<proto::ListOffsetsRequest>,
    ) -> Result<Response<proto::ListOffsetsResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        self.shared.broker.check_running().map_err(status)?;
        self.list_offsets_inner(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn commit_offsets(
        &self,
        request: Request<proto::CommitOffsetsRequest>,
    ) -> Result<Response<proto::CommitOffsetsResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        self.commit_offsets_inner(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn init_producer_id(
        &self,
        request: Request<proto::InitProducerIdRequest>,
    ) -> Result<Response<proto::InitProducerIdResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        let current = convert::producer_identity(request.into_inner()).map_err(status)?;
        let given = self
            .shared
            .broker
            .init_producer_id(current)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::InitProducerIdResponse {
            producer_id: given.producer_id,
            producer_epoch: i32::from(given.epoch),
        }))
    }

    async fn fetch_offsets(
        &self,
        request: Request<proto::FetchOffsetsRequest>,
    ) -> Result<Response<proto::FetchOffsetsResponse>, Status> {
        let _admitted = self.shared.limits.admit().map_err(status)?;
        self.shared.broker.check_running().map_err(status)?;
        self.fetch_offsets_inner(request.into_inner())
            .map(Response::new)
            .map_err(status)
    }
}
