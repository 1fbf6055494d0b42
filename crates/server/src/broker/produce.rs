//! Produce over gRPC, unary and pipelined on a stream: each request turns
//! into a core append; the core plans, checks and appends, and says when
//! the acks are met. The stream keeps the order and the in-flight bound.

use carteiro::proto;
use carteiro_core::BrokerError;
use carteiro_core::pipeline::Pipeline;
use carteiro_core::produce::{Appended, PartitionAppend};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::BrokerService;
use crate::convert;
use crate::error::status;
use crate::grpc_metrics::{self, PRODUCE_STREAM};
use crate::limits::Admitted;

/// Most requests of one produce stream appended but not yet acknowledged;
/// the broker reads no further until one is (HTTP/2 flow control then
/// holds the client back).
pub const PRODUCE_STREAM_IN_FLIGHT_MAX: usize = 32;

/// Longest a stream ending with an error status keeps its request side
/// open for that status to reach the client, in ms.
const STREAM_STATUS_GRACE_MS: u64 = 5_000;

/// Replies of a produce stream, in the order they are ready.
pub type ProduceReplies = ReceiverStream<Result<proto::ProduceStreamReply, Status>>;

fn reply(topic: &str, landed: Vec<PartitionAppend>) -> proto::ProduceResponse {
    proto::ProduceResponse {
        partitions: landed
            .into_iter()
            .map(|p| proto::PartitionAppend {
                topic: topic.to_string(),
                partition: p.partition,
                base_offset: p.base_offset as i64,
                record_count: p.record_count,
                append_time_ms: p.append_time_ms,
                duplicate: p.duplicate,
            })
            .collect(),
    }
}

/// A request appended, waiting to meet its acks, holding its admission.
struct Pending {
    topic: String,
    appended: Appended,
    _admitted: Admitted,
}

impl Pending {
    async fn acknowledged(self) -> Result<proto::ProduceResponse, BrokerError> {
        let landed = self.appended.acknowledged().await?;
        Ok(reply(&self.topic, landed))
    }
}

impl BrokerService {
    /// Serves a unary produce.
    pub(super) async fn produce_unary(
        &self,
        request: proto::ProduceRequest,
    ) -> Result<proto::ProduceResponse, BrokerError> {
        self.append_request(request, None)
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
        let mut shutdown = self.shared.broker.shutdown_signal();
        tokio::spawn(async move {
            let mut waiting = FuturesUnordered::new();
            // The stream's appends, in the order sent.
            let mut pipeline = Pipeline::default();
            let mut sequence = 0u64;
            let mut reading = true;
            // A request that could not be read ends the stream with this
            // status, after the replies to the requests before it.
            let mut ending: Option<Status> = None;
            loop {
                tokio::select! {
                    next = requests.message(), if reading && waiting.len() < PRODUCE_STREAM_IN_FLIGHT_MAX => {
                        let request = match next {
                            Ok(Some(request)) => request,
                            // The client is done sending.
                            Ok(None) => {
                                reading = false;
                                continue;
                            }
                            // It could not be decoded, or the client is gone
                            // (then the status goes nowhere, and that ends it).
                            Err(status) => {
                                reading = false;
                                let status = unreadable(sequence, status);
                                let _counted = grpc_metrics::start(PRODUCE_STREAM);
                                grpc_metrics::count_status(PRODUCE_STREAM, status.code());
                                ending = Some(status);
                                continue;
                            }
                        };
                        // Each request of the stream counts on its own.
                        let counted = grpc_metrics::start(PRODUCE_STREAM);
                        let this = sequence;
                        sequence += 1;
                        match service.append_request(request, Some(&mut pipeline)).await {
                            Ok(pending) => waiting.push(Box::pin(async move {
                                (this, counted, pending.acknowledged().await)
                            })
                                as futures_util::future::BoxFuture<'static, _>),
                            Err(e) => {
                                // Nothing after a failure is appended, so a
                                // client's retry cannot reorder the partition.
                                reading = false;
                                waiting.push(Box::pin(std::future::ready((this, counted, Err(e)))));
                            }
                        }
                    }
                    Some((this, counted, result)) = waiting.next(), if !waiting.is_empty() => {
                        let failed = result.is_err();
                        let reply = stream_reply(this, result);
                        grpc_metrics::count_status_number(PRODUCE_STREAM, reply.error_code);
                        let sent = replies.send(Ok(reply)).await;
                        drop(counted);
                        if sent.is_err() {
                            // The client is gone: what was appended stays,
                            // and the waits end here, releasing their admissions.
                            return;
                        }
                        if failed {
                            reading = false;
                        }
                    }
                    // The client is gone (cancelled, or its connection
                    // closed): stop waiting, releasing the admissions held.
                    () = replies.closed(), if reading || !waiting.is_empty() => return,
                    // Shutdown ends the stream once what was appended is
                    // acknowledged (the core flushes every log as it begins).
                    changed = shutdown.changed(), if reading => {
                        if changed.is_err() || *shutdown.borrow() {
                            reading = false;
                        }
                    }
                    else => break,
                }
            }
            if let Some(status) = ending
                && replies.send(Err(status)).await.is_ok()
            {
                // Keep the request side open until the status has gone out
                // (the response is done when its receiver is dropped): a
                // request body dropped early resets the whole stream, and the
                // client would see a broken pipe instead of the status.
                let sent = Duration::from_millis(STREAM_STATUS_GRACE_MS);
                let _ = tokio::time::timeout(sent, replies.closed()).await;
            }
            drop(requests);
        });
        ReceiverStream::new(stream)
    }

    /// Admits and appends one request, in `pipeline` when it comes on a
    /// stream (its acks met later: see `Broker::append` and
    /// `carteiro_core::pipeline`).
    async fn append_request(
        &self,
        request: proto::ProduceRequest,
        pipeline: Option<&mut Pipeline>,
    ) -> Result<Pending, BrokerError> {
        let admitted = self.shared.limits.admit_produce(request.encoded_len())?;
        let topic = request.topic.clone();
        let request = convert::produce_request(request)?;
        let broker = &self.shared.broker;
        let appended = match pipeline {
            Some(pipeline) => broker.append_in(pipeline, request).await?,
            None => broker.append(request).await?,
        };
        Ok(Pending {
            topic,
            appended,
            _admitted: admitted,
        })
    }
}

/// The status that ends a stream whose request number `sequence` could not
/// be read: INVALID_ARGUMENT for a request that is not a `ProduceRequest`.
fn unreadable(sequence: u64, status: Status) -> Status {
    let code = match status.code() {
        tonic::Code::Internal | tonic::Code::Unknown => tonic::Code::InvalidArgument,
        code => code,
    };
    Status::new(
        code,
        format!(
            "request {sequence} of the stream could not be read ({}); nothing from it on was appended",
            status.message()
        ),
    )
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
            let status = status(e);
            proto::ProduceStreamReply {
                sequence,
                response: None,
                error_code: status.code() as i32,
                error_message: status.message().to_string(),
            }
        }
    }
}
