//! Bounds under load, per request: requests in flight, produce bytes being
//! appended, and, apart from those, fetches (long polls hold theirs while
//! they wait), per connection and in all.
//! Past a limit a request is refused at once with RESOURCE_EXHAUSTED, so a
//! flood of clients slows down instead of exhausting memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use carteiro_core::BrokerError;
use carteiro_core::fetch::kib;

use crate::config::BrokerConfig;
use crate::grpc_metrics::{self, Limit};

/// The request-level limits.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    requests: Arc<Semaphore>,
    max_requests: u32,
    bytes: Arc<Semaphore>,
    max_bytes: u64,
    fetches: Arc<Semaphore>,
    max_fetches: u32,
    /// Fetches in flight per connection (entries only while non-zero, so at
    /// most one per open connection).
    per_connection: Arc<Mutex<HashMap<SocketAddr, u32>>>,
    max_per_connection: u32,
}

/// Proof that a fetch was admitted; dropping it frees its places.
#[derive(Debug)]
pub struct FetchAdmitted {
    _fetch: OwnedSemaphorePermit,
    _connection: Option<ConnectionSlot>,
}

/// One fetch's place in its connection's count; dropping it gives it back.
#[derive(Debug)]
struct ConnectionSlot {
    peer: SocketAddr,
    counts: Arc<Mutex<HashMap<SocketAddr, u32>>>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// Proof that a request was admitted; dropping it frees the place.
#[derive(Debug)]
pub struct Admitted {
    _request: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

impl RequestLimits {
    /// The limits `config` sets.
    pub fn new(config: &BrokerConfig) -> Self {
        RequestLimits {
            requests: Arc::new(Semaphore::new(config.max_requests_in_flight as usize)),
            max_requests: config.max_requests_in_flight,
            bytes: Arc::new(Semaphore::new(kib(config.max_buffered_bytes) as usize)),
            max_bytes: config.max_buffered_bytes,
            fetches: Arc::new(Semaphore::new(config.max_fetches_in_flight as usize)),
            max_fetches: config.max_fetches_in_flight,
            per_connection: Arc::new(Mutex::new(HashMap::new())),
            max_per_connection: config.max_fetches_per_connection,
        }
    }

    /// Admits a fetch from `peer`, or refuses it past the fetches in flight
    /// (in all, or for the connection). The reply bytes it gathers are the
    /// core's budget.
    pub fn admit_fetch(&self, peer: Option<SocketAddr>) -> Result<FetchAdmitted, BrokerError> {
        let fetch = self.fetches.clone().try_acquire_owned().map_err(|_| {
            grpc_metrics::refused(Limit::FetchesInFlight);
            BrokerError::ResourceExhausted {
                what: "fetches in flight",
                limit: u64::from(self.max_fetches),
            }
        })?;
        let connection = match peer {
            Some(peer) => {
                let mut counts = self
                    .per_connection
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let count = counts.entry(peer).or_insert(0);
                if *count >= self.max_per_connection {
                    grpc_metrics::refused(Limit::FetchesPerConnection);
                    return Err(BrokerError::ResourceExhausted {
                        what: "fetches in flight on one connection",
                        limit: u64::from(self.max_per_connection),
                    });
                }
                *count += 1;
                Some(ConnectionSlot {
                    peer,
                    counts: self.per_connection.clone(),
                })
            }
            None => None,
        };
        Ok(FetchAdmitted {
            _fetch: fetch,
            _connection: connection,
        })
    }

    /// Admits a request, or refuses it if `max_requests` are in flight.
    pub fn admit(&self) -> Result<Admitted, BrokerError> {
        let request = self.requests.clone().try_acquire_owned().map_err(|_| {
            grpc_metrics::refused(Limit::RequestsInFlight);
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
        let permit = self
            .bytes
            .clone()
            .try_acquire_many_owned(kib(bytes as u64))
            .map_err(|_| {
                grpc_metrics::refused(Limit::ProduceBytes);
                BrokerError::ResourceExhausted {
                    what: "produce bytes being appended (max_buffered_bytes)",
                    limit: self.max_bytes,
                }
            })?;
        admitted._bytes = Some(permit);
        Ok(admitted)
    }
}
