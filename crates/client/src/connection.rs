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
        check_host_port(broker)?;
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

/// Checks a `HOST:PORT` address before it is used, so a mistake is named
/// (no port, a port out of range) instead of surfacing later as "tcp
/// connect error".
fn check_host_port(broker: &str) -> Result<(), ClientError> {
    let invalid = |why: String| {
        Err(ClientError::Invalid(format!(
            "broker address {broker:?}: {why}; use HOST:PORT, e.g. {BROKER_DEFAULT}"
        )))
    };
    // An IPv6 host is bracketed: [::1]:7099.
    let (host, port) = match broker.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, port),
        _ => return invalid("no port".into()),
    };
    if host.is_empty() {
        return invalid("no host".into());
    }
    match port.parse::<u32>() {
        Ok(p) if (1..=u32::from(u16::MAX)).contains(&p) => Ok(()),
        Ok(p) => invalid(format!("port {p} is out of range (1 to 65535)")),
        Err(_) => invalid(format!("port {port:?} is not a number")),
    }
}

/// Maps a failed call to the client error, telling transport failures apart.
pub fn call_error(broker: &str, status: tonic::Status) -> ClientError {
    // tonic reports a refused or dropped connection with a transport error as
    // the source (as UNAVAILABLE, UNKNOWN or CANCELLED, depending on when it
    // closed); a status the broker sent has no source.
    if std::error::Error::source(&status).is_some() {
        return ClientError::Unreachable {
            broker: broker.to_string(),
            reason: error_chain(&status),
        };
    }
    status.into()
}

/// The message of `status` and of each error under it ("tcp connect error:
/// Connection refused (os error 111)"), so the cause is named, not only the step.
fn error_chain(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        let message = error.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = error.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_usable_port_are_named() {
        for (address, why) in [
            ("127.0.0.1", "no port"),
            ("localhost", "no port"),
            ("::1", "no port"),
            ("127.0.0.1:99999", "port 99999 is out of range (1 to 65535)"),
            ("127.0.0.1:0", "port 0 is out of range"),
            ("127.0.0.1:http", "port \"http\" is not a number"),
            (":7099", "no host"),
        ] {
            let err = check_host_port(address).expect_err("must fail").to_string();
            assert!(err.contains(why), "{address}: {err}");
            assert!(err.contains(&format!("{address:?}")), "{address}: {err}");
        }
        for address in ["127.0.0.1:7099", "localhost:1", "[::1]:7099"] {
            check_host_port(address).expect("in a test");
        }
    }
}
