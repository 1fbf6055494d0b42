//! Assembling and running the broker: open the store, build the services
//! (Broker, Admin, health, reflection), serve until shutdown, then close
//! every log cleanly.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carteiro::proto::admin_server::AdminServer;
use carteiro::proto::broker_server::BrokerServer;
use carteiro::proto::groups_server::GroupsServer;
use carteiro_storage::config::MAX_BATCH_BYTES_MAX;
use carteiro_storage::{LogOptions, Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::AdminService;
use crate::broker::{BrokerService, FETCH_MAX_BYTES_LIMIT};
use crate::config::BrokerConfig;
use crate::coordinator::{Coordinator, SESSION_CHECK_INTERVAL_MS};
use crate::groups::GroupsService;
use crate::limits::{RequestLimits, limited_incoming};
use crate::offsets::{GroupOffsets, OffsetsOptions};
use crate::shared::Shared;

/// Largest gRPC request accepted, in bytes: the largest batch a topic may
/// accept (64 MiB) plus room for the request's other fields. A batch above
/// a topic's own `max_batch_bytes` still arrives and gets INVALID_ARGUMENT
/// naming that limit.
pub const GRPC_REQUEST_BYTES_MAX: usize = MAX_BATCH_BYTES_MAX as usize + 64 * 1024;
/// Largest gRPC reply, in bytes: the largest fetch plus framing.
pub const GRPC_REPLY_BYTES_MAX: usize = FETCH_MAX_BYTES_LIMIT as usize + 1024 * 1024;
/// HTTP/2 flow-control window per stream, in bytes: a whole 1 MiB batch in flight.
const STREAM_WINDOW_BYTES: u32 = 2 * 1024 * 1024;
/// HTTP/2 flow-control window per connection, in bytes.
const CONNECTION_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// Why the broker could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The store could not be opened.
    #[error("opening data directory {dir}: {reason}")]
    Open {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The gRPC server failed.
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Closing the store failed; some logs may not be closed cleanly.
    #[error("closing: {0}")]
    Close(String),
}

/// Opens the store and the committed offsets in the data directory.
pub async fn open_store(
    config: &BrokerConfig,
) -> Result<(Arc<Store>, Arc<GroupOffsets>), ServeError> {
    let options = StoreOptions {
        log: LogOptions {
            repair: config.repair,
            ..LogOptions::default()
        },
        retention_check_interval_ms: config.retention_check_interval_ms,
        ..StoreOptions::default()
    };
    let dir = config.data_dir.clone();
    let repair = config.repair;
    let open_err = |reason: String| ServeError::Open {
        dir: config.data_dir.clone(),
        reason,
    };
    tokio::task::spawn_blocking(move || {
        let store = Store::open(&dir, options).map_err(|e| e.to_string())?;
        report_repairs(&store);
        let offsets = GroupOffsets::open(
            &store,
            OffsetsOptions {
                repair,
                ..OffsetsOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        Ok((store, Arc::new(offsets)))
    })
    .await
    .map_err(|e| open_err(e.to_string()))?
    .map_err(open_err)
}

/// Names, per partition, the offsets a `--repair` start gave up.
fn report_repairs(store: &Store) {
    for topic in store.topics() {
        for (partition, log) in topic.partitions().iter().enumerate() {
            if let Some(lost) = &log.recovery_report().lost_offsets {
                tracing::error!(
                    topic = topic.name(),
                    partition,
                    from = lost.start,
                    to = lost.end,
                    "repair gave up offsets {}..{} of topic {:?} partition {partition}",
                    lost.start,
                    lost.end,
                    topic.name()
                );
            }
        }
    }
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting,
/// lets requests in flight finish (long polls return at once), and closes
/// every log cleanly.
pub async fn serve(
    config: BrokerConfig,
    listener: TcpListener,
    store: Arc<Store>,
    offsets: Arc<GroupOffsets>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let clock: Arc<dyn carteiro_storage::Clock> = Arc::new(carteiro_storage::SystemClock);
    let coordinator = Arc::new(Coordinator::new(store.clone()));
    let expiry = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(SESSION_CHECK_INTERVAL_MS));
            loop {
                tick.tick().await;
                coordinator.expire();
            }
        })
    };
    let shared = Arc::new(Shared {
        store: store.clone(),
        offsets,
        coordinator,
        limits: RequestLimits::new(config.max_requests_in_flight, config.max_buffered_bytes),
        shutdown: stop_rx,
        spread: Mutex::new(Default::default()),
        clock,
    });
    let broker = BrokerServer::new(BrokerService::new(shared.clone()))
        .max_decoding_message_size(GRPC_REQUEST_BYTES_MAX)
        .max_encoding_message_size(GRPC_REPLY_BYTES_MAX);
    let groups = GroupsServer::new(GroupsService::new(shared.clone()));
    let admin = AdminServer::new(AdminService::new(shared.clone()))
        .max_decoding_message_size(GRPC_REQUEST_BYTES_MAX)
        .max_encoding_message_size(GRPC_REPLY_BYTES_MAX);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<BrokerServer<BrokerService>>()
        .await;
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(carteiro::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let incoming = limited_incoming(listener, config.max_connections);
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
        health_reporter
            .set_not_serving::<BrokerServer<BrokerService>>()
            .await;
        health_reporter
            .set_not_serving::<AdminServer<AdminService>>()
            .await;
    };
    let served = tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .add_service(health)
        .add_service(reflection)
        .add_service(broker)
        .add_service(admin)
        .add_service(groups)
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    expiry.abort();
    drop(shared);
    let closed = tokio::task::spawn_blocking(move || store.close()).await;
    served?;
    match closed {
        Ok(Ok(())) => {
            tracing::info!("all logs closed cleanly");
            Ok(())
        }
        Ok(Err(e)) => Err(ServeError::Close(e.to_string())),
        Err(e) => Err(ServeError::Close(e.to_string())),
    }
}
