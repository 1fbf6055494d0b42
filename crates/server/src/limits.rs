//! Bounds under load: connections, requests in flight and produce bytes
//! being appended. Past a limit a request is refused at once with
//! RESOURCE_EXHAUSTED (and a connection is closed at accept), so a flood of
//! clients slows down instead of exhausting memory.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use carteiro_core::BrokerError;

/// The request-level limits.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    requests: Arc<Semaphore>,
    max_requests: u32,
    bytes: Arc<Semaphore>,
    max_bytes: u64,
}

/// Proof that a request was admitted; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    _request: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl RequestLimits {
    /// Limits of `max_requests` in flight and `max_bytes` of produce data.
    pub fn new(max_requests: u32, max_bytes: u64) -> Self {
        // Semaphores count in u32 units here: bytes are counted in KiB.
        let kib = (max_bytes / 1024).clamp(1, u64::from(u32::MAX)) as usize;
        RequestLimits {
            requests: Arc::new(Semaphore::new(max_requests as usize)),
            max_requests,
            bytes: Arc::new(Semaphore::new(kib)),
            max_bytes,
        }
    }

    /// Admits a request, or refuses it if `max_requests` are in flight.
    pub fn admit(&self) -> Result<Admitted, BrokerError> {
        let request = self.requests.clone().try_acquire_owned().map_err(|_| {
            BrokerError::ResourceExhausted {
                what: "requests in flight",
                limit: u64::from(self.max_requests),
            }
        })?;
        Ok(Admitted {
            _request: request,
            _bytes: None,
        })
    }

    /// Admits a produce request carrying `bytes` of records.
    pub fn admit_produce(&self, bytes: usize) -> Result<Admitted, BrokerError> {
        let mut admitted = self.admit()?;
        let kib = (bytes as u64)
            .div_ceil(1024)
            .max(1)
            .min(u64::from(u32::MAX)) as u32;
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(kib)
            .map_err(|_| BrokerError::ResourceExhausted {
                what: "produce bytes being appended (max_buffered_bytes)",
                limit: self.max_bytes,
            })?;
        admitted._bytes = Some(permit);
        Ok(admitted)
    }
}

/// A client connection that holds one of the broker's connection places.
pub struct LimitedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
/// the others at once. The stream ends when the listener fails.
pub fn limited_incoming(
    listener: TcpListener,
    max_connections: u32,
) -> ReceiverStream<io::Result<LimitedStream>> {
    let places = Arc::new(Semaphore::new(max_connections as usize));
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like pass; keep accepting.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::task::yield_now().await;
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
                .send(Ok(LimitedStream {
                    inner: stream,
                    _permit: permit,
                }))
                .await
                .is_err()
            {
                return; // the server stopped
            }
        }
    });
    ReceiverStream::new(rx)
}
