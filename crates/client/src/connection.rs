//! Connections to a broker: one HTTP/2 channel that reconnects by itself.

use std::time::Duration;

use carteiro::proto::{self, broker_client::BrokerClient};
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;
use crate::record::TopicPartition;

/// The broker address when none is given (the broker's own default).
pub const BROKER_DEFAULT: &str = "127.0.0.1:7099";
/// How long to wait for a TCP connection, in ms.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Largest reply accepted, in bytes (the broker's largest fetch plus framing).
pub const REPLY_BYTES_MAX: usize = 80 * 1024 * 1024;
/// Largest request sent, in bytes (the broker's largest batch plus framing).
pub const REQUEST_BYTES_MAX: usize = 65 * 1024 * 1024;

/// A lazily connected channel to `broker` (`host:port` or a URL). It
/// connects on first use and reconnects after the broker restarts.
pub fn channel(broker: &str) -> Result<Channel, ClientError> {
    let url = if broker.contains("://") {
        broker.to_string()
    } else {
        format!("http://{broker}")
    };
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| ClientError::Invalid(format!("broker address {broker:?}: {e}")))?
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .initial_stream_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024);
    Ok(endpoint.connect_lazy())
}

/// Maps a failed call to the client error, telling transport failures apart.
pub fn call_error(broker: &str, status: tonic::Status) -> ClientError {
    // tonic reports a refused or dropped connection with a transport error as
    // the source (as UNAVAILABLE, UNKNOWN or CANCELLED, depending on when it
    // closed); a status the broker sent has no source.
    if std::error::Error::source(&status).is_some() {
        return ClientError::Unreachable {
            broker: broker.to_string(),
            reason: status.message().to_string(),
        };
    }
    status.into()
}

/// One offset per partition by `spec` (earliest, latest or by time), in order.
pub(crate) async fn list_offsets(
    client: &mut BrokerClient<Channel>,
    broker: &str,
    partitions: &[TopicPartition],
    spec: proto::offset_query::Spec,
) -> Result<Vec<i64>, ClientError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let queries = partitions
        .iter()
        .map(|tp| proto::OffsetQuery {
            topic: tp.topic.clone(),
            partition: tp.partition,
            spec: Some(spec),
        })
        .collect();
    let answers = client
        .list_offsets(proto::ListOffsetsRequest { queries })
        .await
        .map_err(|s| call_error(broker, s))?
        .into_inner()
        .answers;
    answers
        .into_iter()
        .map(|a| match a.error {
            Some(e) => Err(ClientError::Broker {
                code: tonic::Code::from_i32(e.code),
                message: e.message,
            }),
            None => Ok(a.offset),
        })
        .collect()
}
