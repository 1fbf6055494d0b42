//! Connections: the accept loop and what a connection may hold. At most
//! `max_connections` are open (more are closed at accept); a new connection
//! must start HTTP/2 within the handshake timeout and is closed after the
//! idle timeout without a byte from its client. Accepting backs off when
//! the process runs out of file descriptors instead of spinning.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use carteiro_storage::metrics::GaugeHold;

use crate::grpc_metrics::{self, Limit};

/// Bytes of the HTTP/2 client preface, which must arrive within the
/// handshake timeout.
const HTTP2_PREFACE_BYTES: usize = 24;
/// First pause after a failed accept, in ms; it doubles up to [`ACCEPT_BACKOFF_MAX_MS`].
const ACCEPT_BACKOFF_MIN_MS: u64 = 5;
/// Longest pause after failed accepts, in ms.
const ACCEPT_BACKOFF_MAX_MS: u64 = 1_000;

/// How long a connection may take to start, and may stay silent.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// To send the HTTP/2 preface.
    pub handshake: Duration,
    /// Between two reads of anything from the client.
    pub idle: Duration,
}

/// A client connection that holds one of the broker's connection places.
pub struct LimitedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Counted among the open connections while it lives.
    _open: GaugeHold,
    timeouts: ConnectionTimeouts,
    /// Bytes read so far, up to the preface's length.
    started: usize,
    /// The handshake deadline, then a lower bound of the idle one: the
    /// timer is moved on to `last_read + idle` only when it fires, not at
    /// every read.
    deadline: Pin<Box<Sleep>>,
    /// When the client last sent something (after the preface).
    last_read: Instant,
}

impl LimitedStream {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, timeouts: ConnectionTimeouts) -> Self {
        LimitedStream {
            inner,
            _permit: permit,
            _open: grpc_metrics::connection_open(),
            timeouts,
            started: 0,
            deadline: Box::pin(tokio::time::sleep(timeouts.handshake)),
            last_read: Instant::now(),
        }
    }
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    let was_started = self.started >= HTTP2_PREFACE_BYTES;
                    self.started = (self.started + read).min(HTTP2_PREFACE_BYTES);
                    // Until the preface is in, the handshake deadline stands.
                    if self.started >= HTTP2_PREFACE_BYTES {
                        self.last_read = Instant::now();
                        if !was_started {
                            let idle_end = self.last_read + self.timeouts.idle;
                            self.deadline.as_mut().reset(idle_end);
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => loop {
                if self.deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let what = if self.started < HTTP2_PREFACE_BYTES {
                    "did not start HTTP/2 within the handshake timeout"
                } else {
                    // Reads since the timer was set moved the real deadline on.
                    let idle_end = self.last_read + self.timeouts.idle;
                    if idle_end > Instant::now() {
                        self.deadline.as_mut().reset(idle_end);
                        continue;
                    }
                    "sent nothing for the idle timeout"
                };
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connection closed: the client {what}"),
                )));
            },
            other => other,
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts the next connection `places` has a place for, with its place.
/// One past the limit is closed at once (`refused` is told its peer, to
/// log and count it); a failing accept (out of file descriptors and the
/// like) waits, longer each time up to a second, with one warning each,
/// instead of spinning. `backoff` carries the wait from call to call.
pub(crate) async fn accept_within(
    listener: &TcpListener,
    places: &Arc<Semaphore>,
    backoff: &mut Duration,
    refused: impl Fn(std::net::SocketAddr),
) -> (TcpStream, std::net::SocketAddr, OwnedSemaphorePermit) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                *backoff = Duration::ZERO;
                accepted
            }
            Err(e) => {
                *backoff = (*backoff * 2)
                    .max(Duration::from_millis(ACCEPT_BACKOFF_MIN_MS))
                    .min(Duration::from_millis(ACCEPT_BACKOFF_MAX_MS));
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(*backoff).await;
                continue;
            }
        };
        match places.clone().try_acquire_owned() {
            Ok(permit) => return (stream, peer, permit),
            Err(_) => {
                refused(peer);
                drop(stream);
            }
        }
    }
}

/// Accepts connections while fewer than `max_connections` are open; closes
/// the others at once. The stream ends when the server stops.
pub fn limited_incoming(
    listener: TcpListener,
    max_connections: u32,
    timeouts: ConnectionTimeouts,
) -> ReceiverStream<io::Result<LimitedStream>> {
    let places = Arc::new(Semaphore::new(max_connections as usize));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut backoff = Duration::ZERO;
        loop {
            let (stream, peer, permit) =
                accept_within(&listener, &places, &mut backoff, |peer| {
                    grpc_metrics::refused(Limit::Connections);
                    tracing::warn!(%peer, max_connections, "connection refused: max_connections reached");
                })
                .await;
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "set_nodelay failed");
            }
            if tx
                .send(Ok(LimitedStream::new(stream, permit, timeouts)))
                .await
                .is_err()
            {
                return; // the server stopped
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A connection accepted into a `LimitedStream`, and its client side.
    async fn connected(timeouts: ConnectionTimeouts) -> (LimitedStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let client = TcpStream::connect(address).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a place");
        (LimitedStream::new(server, permit, timeouts), client)
    }

    /// Sends `bytes` and reads them on the broker's side.
    async fn pass(
        stream: &mut LimitedStream,
        client: &mut TcpStream,
        bytes: &[u8],
    ) -> io::Result<()> {
        client.write_all(bytes).await.expect("write");
        let mut buf = vec![0; bytes.len()];
        stream.read_exact(&mut buf).await.map(|_| ())
    }

    #[tokio::test(start_paused = true)]
    async fn reads_keep_a_connection_open_past_the_idle_timeout_and_silence_closes_it() {
        let timeouts = ConnectionTimeouts {
            handshake: Duration::from_secs(1),
            idle: Duration::from_secs(10),
        };
        let (mut stream, mut client) = connected(timeouts).await;
        pass(&mut stream, &mut client, &[0; HTTP2_PREFACE_BYTES])
            .await
            .expect("the preface");
        // 30 s in all, a byte every 6 s: never 10 s silent.
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(6)).await;
            pass(&mut stream, &mut client, b"x")
                .await
                .expect("a connection that speaks stays open");
        }
        let started = Instant::now();
        let mut buf = [0u8; 1];
        let closed = stream.read(&mut buf).await.expect_err("silence closes it");
        assert_eq!(closed.kind(), io::ErrorKind::TimedOut);
        assert!(closed.to_string().contains("idle timeout"), "{closed}");
        // Closed 10 s after the last byte, not earlier.
        assert!(
            started.elapsed() >= Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_the_preface_is_closed_at_the_handshake_timeout() {
        let timeouts = ConnectionTimeouts {
            handshake: Duration::from_secs(1),
            idle: Duration::from_secs(10),
        };
        let (mut stream, mut client) = connected(timeouts).await;
        pass(&mut stream, &mut client, b"GET")
            .await
            .expect("a few bytes");
        let mut buf = [0u8; 1];
        let closed = stream.read(&mut buf).await.expect_err("closed");
        assert!(closed.to_string().contains("handshake timeout"), "{closed}");
    }
}
