//! Connections to a broker: one HTTP/2 channel that reconnects by itself.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::error::ClientError;

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
pub(crate) fn call_error(broker: &str, status: tonic::Status) -> ClientError {
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
