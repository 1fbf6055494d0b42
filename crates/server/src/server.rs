//! Assembling and running the broker: open the core, build the gRPC
//! services (Broker, Admin, Groups, health, reflection), serve until
//! shutdown, then close every log cleanly.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use carteiro::proto::admin_server::AdminServer;
use carteiro::proto::broker_server::BrokerServer;
use carteiro::proto::groups_server::GroupsServer;
use carteiro_core::fetch::FETCH_MAX_BYTES_LIMIT;
use carteiro_core::{Broker, BrokerOptions};
use carteiro_kafka::KafkaOptions;
use carteiro_storage::config::MAX_BATCH_BYTES_MAX;
use tokio::net::TcpListener;

use crate::admin::AdminService;
use crate::body_budget::{BodyBudget, BodyBudgetLayer};
use crate::broker::BrokerService;
use crate::config::BrokerConfig;
use crate::connections::{ConnectionTimeouts, limited_incoming};
use crate::groups::GroupsService;
use crate::limits::RequestLimits;
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
/// Most requests (HTTP/2 streams) open at once on one connection.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 256;

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

/// Opens the broker core over the data directory: every partition
/// recovered, the committed offsets replayed.
pub async fn open_broker(config: &BrokerConfig) -> Result<Arc<Broker>, ServeError> {
    let options = BrokerOptions {
        data_dir: config.data_dir.clone(),
        repair: config.repair,
        retention_check_interval_ms: config.retention_check_interval_ms,
        fetch_bytes_in_flight_max: config.max_fetch_bytes_in_flight,
        producer_id_expiration_ms: config.producer_id_expiration_ms,
    };
    let open_err = |reason: String| ServeError::Open {
        dir: config.data_dir.clone(),
        reason,
    };
    tokio::task::spawn_blocking(move || Broker::open(&options).map_err(|e| e.to_string()))
        .await
        .map_err(|e| open_err(e.to_string()))?
        .map_err(open_err)
}

/// What the Kafka edge is told: the advertised address is
/// `--kafka-advertised`, else the address `listener` is bound to (which
/// must then be a specific one, not 0.0.0.0).
pub fn kafka_options(
    config: &BrokerConfig,
    listener: &TcpListener,
) -> Result<KafkaOptions, String> {
    let (host, port) = match &config.kafka_advertised {
        Some(advertised) => {
            let (host, port) = crate::config::check_listen("kafka_advertised", advertised)?;
            (host.to_string(), port)
        }
        None => {
            let bound = listener
                .local_addr()
                .map_err(|e| format!("kafka listener: {e}"))?;
            if bound.ip().is_unspecified() {
                return Err(format!(
                    "kafka_listen is {}: on every interface, clients need an address to connect to: set --kafka-advertised HOST:PORT",
                    config.kafka_listen
                ));
            }
            (bound.ip().to_string(), bound.port())
        }
    };
    Ok(KafkaOptions {
        advertised_host: host,
        advertised_port: port,
        connections_max: config.max_connections,
        request_bytes_max: config.kafka_request_bytes_max,
        request_bytes_in_flight_max: config.max_request_bytes_in_flight,
        idle_timeout: Duration::from_millis(config.connection_idle_timeout_ms),
        auto_create_topics: config.auto_create_topics,
        default_partitions: config.default_partitions,
    })
}

/// Serves gRPC on `listener` (and Kafka's protocol, if given its listener
/// and options) until `shutdown` resolves, then stops accepting, lets
/// requests in flight finish (long polls return at once), and closes every
/// log cleanly.
pub async fn serve(
    config: BrokerConfig,
    listener: TcpListener,
    kafka: Option<(TcpListener, KafkaOptions)>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let expiry = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.run_group_expiry().await })
    };
    let kafka = kafka.map(|(listener, options)| {
        tokio::spawn(carteiro_kafka::serve(listener, broker.clone(), options))
    });
    let shared = Arc::new(Shared {
        broker: broker.clone(),
        limits: RequestLimits::new(&config),
    });
    let broker_service = BrokerServer::new(BrokerService::new(shared.clone()))
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
    // Both reflection versions: grpcurl speaks v1, Python's grpcio-reflection
    // and other tools only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(carteiro::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let timeouts = ConnectionTimeouts {
        handshake: Duration::from_millis(config.connection_handshake_timeout_ms),
        idle: Duration::from_millis(config.connection_idle_timeout_ms),
    };
    let incoming = limited_incoming(listener, config.max_connections, timeouts);
    let stopping = broker.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing requests in flight");
        stopping.shut_down();
        health_reporter
            .set_not_serving::<BrokerServer<BrokerService>>()
            .await;
        health_reporter
            .set_not_serving::<AdminServer<AdminService>>()
            .await;
    };
    let served = tonic::transport::Server::builder()
        .layer(BodyBudgetLayer::new(BodyBudget::new(
            config.max_request_bytes_in_flight,
        )))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_concurrent_streams(Some(STREAMS_PER_CONNECTION_MAX))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(broker_service)
        .add_service(admin)
        .add_service(groups)
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    broker.shut_down();
    let _ = expiry.await;
    if let Some(kafka) = kafka {
        let _ = kafka.await;
    }
    drop(shared);
    let closed = tokio::task::spawn_blocking(move || broker.close()).await;
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
