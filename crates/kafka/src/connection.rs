//! One Kafka connection: frames in, replies out in the order the requests
//! came, with every resource a client can hold bounded.
//!
//! A frame is a 4-byte big-endian length and that many bytes. The length is
//! checked against the request limit and counted against the broker's
//! budget of request bytes in flight before a byte of the body is read.
//! Requests are read while earlier ones are served (up to
//! [`REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX`](crate::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX));
//! a writer task sends their replies in request order. Produce requests
//! are appended in the order they came, before the next request is read.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use carteiro_core::pipeline::Pipeline;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::task::JoinHandle;

use carteiro_storage::metrics::RequestTimer;

use crate::REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX;
use crate::listener::Edge;
use crate::metrics::{self, Limit};
use crate::request::{Body, Frame, Outcome, Reply, route};

/// Bytes of a request header before its client id: api key, api version,
/// correlation id. A shorter frame is not a request.
pub(crate) const REQUEST_HEADER_FIXED_BYTES: usize = 8;

/// A reply being made, in the order of its request.
pub(crate) struct Pending {
    pub correlation_id: i32,
    pub version: i16,
    pub reply: JoinHandle<Option<Reply>>,
    /// The request's share of the bytes-in-flight budget, held until its
    /// reply is written.
    pub permit: OwnedSemaphorePermit,
    /// The request's API (its place in the served table), and its timer:
    /// in flight until the reply is written.
    pub timer: Option<(usize, RequestTimer)>,
}

/// Why a connection stopped reading.
enum Stop {
    /// The client closed it, or went idle, or the broker is stopping.
    Quiet,
    /// The client broke the protocol or a limit: logged once.
    Refused(String),
}

/// Serves one connection until the client closes it, breaks the protocol,
/// goes idle past the timeout, or the broker shuts down.
pub(crate) async fn serve_connection(stream: TcpStream, peer: SocketAddr, edge: Arc<Edge>) {
    let (reader, writer) = stream.into_split();
    let (replies, queue) = mpsc::channel::<Pending>(REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX);
    let writing = tokio::spawn(write_replies(writer, queue));
    match read_requests(reader, &edge, replies).await {
        Stop::Quiet => {}
        Stop::Refused(reason) => {
            tracing::warn!(%peer, "kafka connection closed: {reason}");
        }
    }
    // Replies to every request already read are still written.
    let _ = writing.await;
}

async fn read_requests(
    mut reader: OwnedReadHalf,
    edge: &Arc<Edge>,
    replies: mpsc::Sender<Pending>,
) -> Stop {
    let mut shutdown = edge.broker.shutdown_signal();
    let limit = edge.options.request_bytes_max;
    // The connection's produces, appended in the order they came.
    let mut pipeline = Pipeline::standalone();
    loop {
        let mut prefix = [0u8; 4];
        let read = tokio::select! {
            read = tokio::time::timeout(edge.options.idle_timeout, reader.read_exact(&mut prefix)) => read,
            _ = shutdown.changed() => return Stop::Quiet,
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Stop::Quiet,
            Err(_) => return Stop::Quiet,
        }
        let length = i32::from_be_bytes(prefix);
        let Ok(length) = u32::try_from(length) else {
            return Stop::Refused(format!("request length {length} is negative"));
        };
        if length > limit {
            metrics::refused(Limit::RequestBytes);
            return Stop::Refused(format!(
                "request length {length} bytes exceeds the limit of {limit} bytes (--kafka-request-bytes-max)"
            ));
        }
        if (length as usize) < REQUEST_HEADER_FIXED_BYTES {
            return Stop::Refused(format!(
                "request length {length} bytes is shorter than a request header ({REQUEST_HEADER_FIXED_BYTES} bytes)"
            ));
        }
        // Counted before the body is read, so that the connections together
        // cannot hold more than the budget.
        let permit = tokio::select! {
            permit = edge.request_kib.clone().acquire_many_owned(carteiro_core::fetch::kib(u64::from(length))) => match permit {
                Ok(permit) => permit,
                Err(_) => return Stop::Quiet,
            },
            _ = shutdown.changed() => return Stop::Quiet,
        };
        let read = tokio::time::timeout(edge.options.idle_timeout, read_body(&mut reader, length));
        let body = match read.await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) | Err(_) => {
                return Stop::Refused(format!(
                    "the connection ended inside a {length}-byte request"
                ));
            }
        };
        let frame = match Frame::parse(body.freeze()) {
            Ok(frame) => frame,
            Err(reason) => return Stop::Refused(reason),
        };
        let (correlation_id, version) = (frame.correlation_id, frame.version);
        let api = frame.key.and_then(metrics::api_index);
        let timer = api.and_then(|api| Some((api, metrics::start(api)?)));
        let reply = match route(edge, &mut pipeline, frame).await {
            Outcome::Reply(reply) => tokio::spawn(async move { Some(*reply) }),
            Outcome::Later(reply) => reply,
            Outcome::NoReply => continue,
            Outcome::Close(reason) => return Stop::Refused(reason),
        };
        let pending = Pending {
            correlation_id,
            version,
            reply,
            permit,
            timer,
        };
        if replies.send(pending).await.is_err() {
            return Stop::Quiet;
        }
    }
}

/// Reads exactly `length` bytes of a request body into fresh memory that
/// is never zeroed first (a produce body is mostly records: zeroing it
/// cost as much as a copy).
async fn read_body(reader: &mut OwnedReadHalf, length: u32) -> std::io::Result<BytesMut> {
    let mut body = BytesMut::with_capacity(length as usize);
    let mut limited = reader.take(u64::from(length));
    while body.len() < length as usize {
        if limited.read_buf(&mut body).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(body)
}

/// Writes each reply in request order.
async fn write_replies(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Pending>) {
    let mut out = BytesMut::new();
    while let Some(pending) = queue.recv().await {
        let reply = match pending.reply.await {
            Ok(Some(reply)) => reply,
            // A request that ended without a reply (its task failed):
            // the client cannot match later replies, so the connection ends.
            Ok(None) | Err(_) => return,
        };
        out.clear();
        if let Err(e) = encode_reply(
            &mut out,
            pending.correlation_id,
            pending.version,
            &reply.body,
        ) {
            tracing::error!(error = %e, "kafka: cannot encode a reply; closing the connection");
            return;
        }
        if let (Some((api, _)), Body::Kind(kind) | Body::KindAt(kind, _)) =
            (&pending.timer, &reply.body)
        {
            metrics::count_reply_errors(*api, kind);
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
        // The reply's bytes are with the kernel: its holds go.
        drop(reply.hold);
        drop(pending.permit);
        // The request is done.
        drop(pending.timer);
        if out.capacity() > 1024 * 1024 {
            out = BytesMut::new();
        }
    }
}

/// One framed reply: length, header, body.
pub(crate) fn encode_reply(
    out: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    body: &Body,
) -> Result<(), String> {
    let header_version = match body {
        Body::Kind(kind) => kind.header_version(version),
        Body::KindAt(kind, at) => kind.header_version(*at),
        Body::Raw { header_version, .. } => *header_version,
    };
    out.put_u32(0);
    out.put_i32(correlation_id);
    if header_version >= 1 {
        // No tagged fields in the header.
        out.put_u8(0);
    }
    match body {
        Body::Kind(kind) => kind.encode(out, version).map_err(|e| e.to_string())?,
        Body::KindAt(kind, at) => kind.encode(out, *at).map_err(|e| e.to_string())?,
        Body::Raw { bytes, .. } => out.extend_from_slice(bytes),
    }
    let length = u32::try_from(out.len() - 4).map_err(|_| "reply over 4 GiB".to_string())?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataResponse, ResponseKind};

    #[test]
    fn a_reply_is_length_correlation_id_header_tags_then_body() {
        // ApiVersions replies always have header v0 (no tagged fields).
        let mut out = BytesMut::new();
        let body = Body::Kind(ResponseKind::ApiVersions(ApiVersionsResponse::default()));
        encode_reply(&mut out, 9, 3, &body).expect("encodes");
        let length = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(length, out.len() - 4);
        assert_eq!(&out[4..8], &9i32.to_be_bytes());
        // error code 0 follows the correlation id at once.
        assert_eq!(&out[8..10], &[0, 0]);
        // Metadata v9 is flexible: one empty tag buffer after the id.
        let mut flexible = BytesMut::new();
        let body = Body::Kind(ResponseKind::Metadata(MetadataResponse::default()));
        encode_reply(&mut flexible, 10, 9, &body).expect("encodes");
        let mut plain = BytesMut::new();
        encode_reply(&mut plain, 10, 8, &body).expect("encodes");
        assert_eq!(flexible[8], 0, "no tagged fields in the header");
        // v9's body is v8's in compact encoding plus its tag buffers: it
        // never shrinks by the header byte.
        assert_ne!(flexible.len(), plain.len());
    }
}
