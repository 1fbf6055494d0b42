//! Produce: each partition's record batch goes to the core as it came (the
//! broker rewrites only its base offset, outside the CRC). A connection's
//! produce requests are appended in the order they came, queued to each
//! partition's draining thread through the connection's standalone
//! [`Pipeline`] (one failing refuses none after it, as in Kafka); the
//! reply waits for the request's acks while later requests are read.
//!
//! acks 0 and 1 wait for the append; acks -1 (all) waits until the append
//! is durable under the topic's flush policy. A produce with acks 0 gets
//! no reply; if it fails, the connection is closed (as Kafka does), so the
//! client learns of it.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use carteiro_core::pipeline::Pipeline;
use carteiro_core::produce::{
    Appended, PartitionAppend as Landed, Payload, ProduceRequest as CoreProduce,
};
use carteiro_core::{Acks, BrokerError};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};

use super::metadata::ensure_topic;
use super::text;
use crate::error::{Family, KafkaError, kafka_error};
use crate::listener::Edge;
use crate::request::{Body, Frame, Outcome, Reply};

/// One partition of a produce: appended (waiting for its acks) or failed.
enum PartitionAppend {
    Appended(Appended),
    Failed(KafkaError),
}

impl PartitionAppend {
    /// Waits for its acks: where it landed, or why it did not.
    async fn acknowledged(self) -> Result<Vec<Landed>, KafkaError> {
        match self {
            PartitionAppend::Appended(appended) => {
                appended.acknowledged().await.map_err(|e| produce_error(&e))
            }
            PartitionAppend::Failed(e) => Err(e),
        }
    }
}

fn acks_of(acks: i16) -> Result<Acks, KafkaError> {
    match acks {
        0 | 1 => Ok(Acks::Appended),
        -1 => Ok(Acks::Durable),
        other => Err(KafkaError::new(
            ResponseError::InvalidRequiredAcks,
            format!("acks is {other}: it must be 0, 1 or -1 (all)"),
        )),
    }
}

/// Appends every partition's batch in order, after the connection's
/// earlier ones (`pipeline`), and returns the reply to come.
pub(crate) async fn append(
    edge: &Arc<Edge>,
    pipeline: &mut Pipeline,
    request: ProduceRequest,
    version: i16,
) -> Outcome {
    let acks = acks_of(request.acks);
    let transactional = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !id.0.is_empty());
    let mut topics: Vec<(TopicName, Vec<(i32, PartitionAppend)>)> = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.as_str().to_string();
        let exists = if transactional || acks.is_err() {
            Ok(())
        } else {
            ensure_topic(edge, &name, true).await
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len().min(1024));
        for data in topic.partition_data {
            let failed = |e: KafkaError| (data.index, PartitionAppend::Failed(e));
            let outcome = if transactional {
                failed(KafkaError::new(
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "transactions are not supported by this broker: produce without a transactional id",
                ))
            } else if let Err(e) = &acks {
                failed(e.clone())
            } else if let Err(e) = &exists {
                failed(kafka_error(e, Family::Data))
            } else if let Ok(partition) = u32::try_from(data.index) {
                let Some(records) = data.records else {
                    partitions.push(failed(KafkaError::new(
                        ResponseError::InvalidRecord,
                        "records is null: send one record batch",
                    )));
                    continue;
                };
                let produce = CoreProduce {
                    topic: name.clone(),
                    partition: Some(partition),
                    payload: Payload::Batch(records),
                    acks: acks.clone().unwrap_or(Acks::Appended),
                };
                match edge.broker.append_in(pipeline, produce).await {
                    Ok(appended) => (data.index, PartitionAppend::Appended(appended)),
                    Err(e) => failed(produce_error(&e)),
                }
            } else {
                failed(KafkaError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!(
                        "partition {} of topic {name:?} does not exist: partitions start at 0",
                        data.index
                    ),
                ))
            };
            partitions.push(outcome);
        }
        topics.push((topic.name, partitions));
    }
    if request.acks == 0 {
        // No reply: wait for the appends (acks 0 waits for nothing more),
        // so that a failure closes the connection. A flush-`always` log
        // syncs them anyway, for its readers.
        let mut failures = Vec::new();
        for (_, partition) in topics.into_iter().flat_map(|(_, p)| p) {
            if let Err(e) = partition.acknowledged().await {
                failures.push(e);
            }
        }
        let Some(first) = failures.first() else {
            return Outcome::NoReply;
        };
        // No reply carries the codes: they are counted here.
        if let Some(api) = crate::metrics::api_index(kafka_protocol::messages::ApiKey::Produce) {
            for e in &failures {
                crate::metrics::count_error(api, e.code());
            }
        }
        return Outcome::Close(format!("a produce with acks=0 failed: {}", first.message));
    }
    Outcome::Later(tokio::spawn(async move {
        Some(Reply::new(ResponseKind::Produce(
            acknowledge(topics, version).await,
        )))
    }))
}

fn produce_error(e: &BrokerError) -> KafkaError {
    kafka_error(e, Family::Data)
}

/// Waits for each append's acks, in order, and builds the reply.
async fn acknowledge(
    topics: Vec<(TopicName, Vec<(i32, PartitionAppend)>)>,
    version: i16,
) -> ProduceResponse {
    let mut responses = Vec::with_capacity(topics.len());
    for (name, partitions) in topics {
        let mut answers = Vec::with_capacity(partitions.len());
        for (index, outcome) in partitions {
            let answer = PartitionProduceResponse::default()
                .with_index(index)
                .with_log_append_time_ms(-1);
            answers.push(match outcome.acknowledged().await {
                Ok(landed) => {
                    let base = landed.first().map_or(-1, |l| l.base_offset as i64);
                    answer.with_base_offset(base)
                }
                Err(e) => {
                    let answer = answer.with_error_code(e.code()).with_base_offset(-1);
                    if version >= 8 {
                        answer.with_error_message(Some(text(e.message)))
                    } else {
                        answer
                    }
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(answers),
        );
    }
    ProduceResponse::default().with_responses(responses)
}

/// Answers a Produce v0-2 (advertised, not served) with UNSUPPORTED_VERSION
/// for each partition it names, encoded by hand: the codec knows only v3
/// and later. Nothing is appended.
pub(crate) fn refuse_old_version(frame: &Frame) -> Result<Reply, String> {
    let version = frame.version;
    let mut body = frame.body.clone();
    let malformed = || format!("Produce v{version}: malformed request");
    let acks = take_i16(&mut body).ok_or_else(malformed)?;
    take_i32(&mut body).ok_or_else(malformed)?;
    let mut out = BytesMut::new();
    let topic_count = take_count(&mut body).ok_or_else(malformed)?;
    out.put_i32(topic_count as i32);
    for _ in 0..topic_count {
        let name = take_string(&mut body).ok_or_else(malformed)?;
        out.put_i16(name.len() as i16);
        out.put_slice(&name);
        let partition_count = take_count(&mut body).ok_or_else(malformed)?;
        out.put_i32(partition_count as i32);
        for _ in 0..partition_count {
            let index = take_i32(&mut body).ok_or_else(malformed)?;
            let records = take_i32(&mut body).ok_or_else(malformed)?;
            if records > 0 {
                let n = records as usize;
                if body.remaining() < n {
                    return Err(malformed());
                }
                body.advance(n);
            }
            out.put_i32(index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0);
    }
    if acks == 0 {
        return Err(format!(
            "Produce v{version} is not served (versions 3 and later are): the request had acks=0, so it is refused by closing the connection"
        ));
    }
    Ok(Reply {
        body: Body::Raw {
            bytes: out.freeze(),
            header_version: 0,
        },
        hold: None,
    })
}

fn take_i16(body: &mut Bytes) -> Option<i16> {
    (body.remaining() >= 2).then(|| body.get_i16())
}

fn take_i32(body: &mut Bytes) -> Option<i32> {
    (body.remaining() >= 4).then(|| body.get_i32())
}

/// An array's length, never more than the bytes left could hold (each
/// entry takes at least 4 bytes), so that a lying count allocates nothing.
fn take_count(body: &mut Bytes) -> Option<usize> {
    let n = usize::try_from(take_i32(body)?).ok()?;
    (n <= body.remaining() / 4).then_some(n)
}

fn take_string(body: &mut Bytes) -> Option<Bytes> {
    let n = usize::try_from(take_i16(body)?).ok()?;
    (body.remaining() >= n).then(|| body.split_to(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(version: i16, body: Bytes) -> Frame {
        Frame {
            key: Some(kafka_protocol::messages::ApiKey::Produce),
            raw_key: 0,
            version,
            correlation_id: 7,
            header: None,
            body,
        }
    }

    #[test]
    fn an_old_produce_gets_unsupported_version_for_each_partition() {
        let mut body = BytesMut::new();
        body.put_i16(1); // acks
        body.put_i32(1000); // timeout
        body.put_i32(1); // one topic
        body.put_i16(6);
        body.put_slice(b"orders");
        body.put_i32(2); // two partitions
        for partition in [0, 1] {
            body.put_i32(partition);
            body.put_i32(3);
            body.put_slice(b"abc");
        }
        let reply = refuse_old_version(&frame(2, body.freeze())).expect("answered");
        let Body::Raw { bytes, .. } = reply.body else {
            panic!("a raw body")
        };
        let mut b = bytes;
        assert_eq!(b.get_i32(), 1);
        assert_eq!(b.get_i16(), 6);
        b.advance(6);
        assert_eq!(b.get_i32(), 2);
        for partition in [0, 1] {
            assert_eq!(b.get_i32(), partition);
            assert_eq!(b.get_i16(), 35);
            assert_eq!(b.get_i64(), -1);
            assert_eq!(b.get_i64(), -1);
        }
        assert_eq!(b.get_i32(), 0);
        assert!(b.is_empty());
    }

    #[test]
    fn an_old_produce_with_a_lying_count_is_refused() {
        let mut body = BytesMut::new();
        body.put_i16(1);
        body.put_i32(1000);
        body.put_i32(i32::MAX);
        assert!(refuse_old_version(&frame(0, body.freeze())).is_err());
    }
}
