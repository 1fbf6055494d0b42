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
    timeouts: ConnectionTimeouts,
    /// Bytes read so far, up to the preface's length.
    started: usize,
    /// When the connection is closed unless its client sends something.
    deadline: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, timeouts: ConnectionTimeouts) -> Self {
        LimitedStream {
            inner,
            _permit: permit,
            timeouts,
            started: 0,
            deadline: Box::pin(tokio::time::sleep(timeouts.handshake)),
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
                    self.started = (self.started + read).min(HTTP2_PREFACE_BYTES);
                    // Until the preface is in, the handshake deadline stands.
                    if self.started >= HTTP2_PREFACE_BYTES {
                        let idle = self.timeouts.idle;
                        self.deadline.as_mut().reset(Instant::now() + idle);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let what = if self.started < HTTP2_PREFACE_BYTES {
                        "did not start HTTP/2 within the handshake timeout"
                    } else {
                        "sent nothing for the idle timeout"
                    };
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connection closed: the client {what}"),
                    )))
                }
                Poll::Pending => Poll::Pending,
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
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => {
                    backoff = Duration::ZERO;
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors and the like pass: wait (longer
                    // each time, one warning each) instead of spinning.
                    backoff = (backoff * 2)
                        .max(Duration::from_millis(ACCEPT_BACKOFF_MIN_MS))
                        .min(Duration::from_millis(ACCEPT_BACKOFF_MAX_MS));
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let Ok(permit) = places.clone().try_acquire_owned() else {
                tracing::warn!(%peer, max_connections, "connection refused: max_connections reached");
                drop(stream);
                continue;
            };
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
