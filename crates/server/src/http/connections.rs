//! The HTTP listener's connections, bounded: past the limit a new
//! connection is closed at accept (and logged), as the gRPC and Kafka
//! listeners do, so that idle or slow clients cannot hold unbounded
//! sockets and tasks.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::connections::accept_within;

/// A listener that hands out at most `limit` connections at once.
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limit: u32,
    /// The wait after failed accepts (see `accept_within`).
    backoff: Duration,
}

impl LimitedListener {
    pub(crate) fn new(inner: TcpListener, limit: u32) -> Self {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(limit as usize)),
            limit,
            backoff: Duration::ZERO,
        }
    }
}

/// A connection holding its place until it closes.
pub(crate) struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for LimitedListener {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Counted, std::net::SocketAddr) {
        let limit = self.limit;
        let (stream, peer, permit) =
            accept_within(&self.inner, &self.permits, &mut self.backoff, |peer| {
                tracing::warn!(%peer, limit, "http connection refused: the limit of open connections is reached");
            })
            .await;
        (
            Counted {
                stream,
                _permit: permit,
            },
            peer,
        )
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
