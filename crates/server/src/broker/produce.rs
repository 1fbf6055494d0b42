//! Produce over gRPC, unary and pipelined on a stream: each request turns
//! into a core append; the core plans, checks and appends, and says when
//! the acks are met. The stream keeps the order and the in-flight bound.

use carteiro::proto;
use carteiro_core::BrokerError;
use carteiro_core::produce::{Appended, PartitionAppend};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::BrokerService;
use crate::convert;
use crate::error::status;
use crate::limits::Admitted;

/// Most requests of one produce stream appended but not yet acknowledged;
/// the broker reads no further until one is (HTTP/2 flow control then
/// holds the client back).
pub const PRODUCE_STREAM_IN_FLIGHT_MAX: usize = 32;

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
        let mut shutdown = self.shared.broker.shutdown_signal();
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
                            Ok(pending) => waiting.push(Box::pin(async move {
                                (this, pending.acknowledged().await)
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

    /// Admits and appends one request (see `Broker::append` for
    /// `wait_in_append`).
    async fn append_request(
        &self,
        request: proto::ProduceRequest,
        wait_in_append: bool,
    ) -> Result<Pending, BrokerError> {
        let admitted = self.shared.limits.admit_produce(request.encoded_len())?;
        let topic = request.topic.clone();
        let request = convert::produce_request(request)?;
        let appended = self.shared.broker.append(request, wait_in_append).await?;
        Ok(Pending {
            topic,
            appended,
            _admitted: admitted,
        })
    }
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
