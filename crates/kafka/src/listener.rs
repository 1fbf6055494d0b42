//! The Kafka listener: accepts connections up to a limit and serves each
//! until the broker shuts down.

use std::sync::Arc;
use std::time::Duration;

use carteiro_core::Broker;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::connection::serve_connection;
use crate::metrics::{self, Limit};

/// What the Kafka edge is told at start.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// The host Metadata and FindCoordinator tell clients to connect to.
    pub advertised_host: String,
    /// The port Metadata and FindCoordinator tell clients to connect to.
    pub advertised_port: u16,
    /// Most open Kafka connections; more are closed at accept.
    pub connections_max: u32,
    /// Largest request frame, in bytes.
    pub request_bytes_max: u32,
    /// Most bytes of request frames held at once over every connection,
    /// counted from their length prefix before they are read.
    pub request_bytes_in_flight_max: u64,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A produce or metadata request for a missing topic creates it.
    pub auto_create_topics: bool,
    /// Partitions of a topic created automatically, or by a CreateTopics
    /// that asks for the default (-1).
    pub default_partitions: u32,
}

/// What every connection shares.
pub(crate) struct Edge {
    pub broker: Arc<Broker>,
    pub options: KafkaOptions,
    /// Request bytes in flight, in KiB.
    pub request_kib: Arc<Semaphore>,
}

/// Serves Kafka clients on `listener` until the broker shuts down, then
/// stops accepting and waits for open connections to finish the requests
/// they have read.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, options: KafkaOptions) {
    let connections = Arc::new(Semaphore::new(options.connections_max as usize));
    let edge = Arc::new(Edge {
        request_kib: Arc::new(Semaphore::new(carteiro_core::fetch::kib(
            options.request_bytes_in_flight_max,
        ) as usize)),
        broker: broker.clone(),
        options,
    });
    let mut shutdown = broker.shutdown_signal();
    let mut open = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "kafka listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::refused(Limit::Connections);
            tracing::warn!(
                %peer,
                limit = edge.options.connections_max,
                "kafka connection refused: the limit of open connections is reached"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.clone();
        let counted = metrics::connection_open();
        open.spawn(async move {
            serve_connection(stream, peer, edge).await;
            drop(permit);
            drop(counted);
        });
    }
    drop(listener);
    while open.join_next().await.is_some() {}
}
