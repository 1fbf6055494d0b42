//! The broker's configuration: flags, environment variables and an optional
//! TOML file, in that order of precedence, over the defaults below.

use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Where the broker listens when not told.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7099";
/// The data directory when not told, relative to the working directory.
pub const DATA_DIR_DEFAULT: &str = "carteiro-data";
/// Default most open client connections; more are refused at accept.
pub const MAX_CONNECTIONS_DEFAULT: u32 = 1024;
/// Default most requests being served at once; more get RESOURCE_EXHAUSTED.
pub const MAX_REQUESTS_IN_FLIGHT_DEFAULT: u32 = 1024;
/// Default most bytes of produce requests being appended at once, in bytes (256 MiB).
pub const MAX_BUFFERED_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// Default most fetches (long polls included) served at once, apart from
/// other requests, so that waiting consumers never starve produce and admin.
pub const MAX_FETCHES_IN_FLIGHT_DEFAULT: u32 = 1024;
/// Default most fetches served at once for one connection.
pub const MAX_FETCHES_PER_CONNECTION_DEFAULT: u32 = 64;
/// Default most bytes of fetch replies being gathered or waiting to be
/// sent at once (256 MiB).
pub const MAX_FETCH_BYTES_IN_FLIGHT_DEFAULT: u64 =
    carteiro_core::fetch::FETCH_BYTES_IN_FLIGHT_MAX_DEFAULT;
/// Default most bytes of request messages held at once, from their first
/// byte until their reply is sent (256 MiB).
pub const MAX_REQUEST_BYTES_IN_FLIGHT_DEFAULT: u64 = 256 * 1024 * 1024;
/// Default time a new connection has to send the HTTP/2 preface, in ms.
pub const CONNECTION_HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default time a connection may send nothing before it is closed, in ms
/// (Kafka's `connections.max.idle.ms`, 10 minutes).
pub const CONNECTION_IDLE_TIMEOUT_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// Where the Kafka listener listens when not told (Kafka's port).
pub const KAFKA_LISTEN_DEFAULT: &str = "127.0.0.1:9092";
/// The value of `kafka_listen` that turns the Kafka listener off.
pub const KAFKA_LISTEN_OFF: &str = "off";
/// Where the HTTP listener (metrics, probes) listens when not told
/// (Redpanda's admin port).
pub const HTTP_LISTEN_DEFAULT: &str = "127.0.0.1:9644";
/// The value of `http_listen` that turns the HTTP listener off.
pub const HTTP_LISTEN_OFF: &str = "off";
/// Longest startup delay a test may inject, in ms.
pub const STARTUP_DELAY_MS_MAX: u64 = 60_000;
/// Default partitions of a topic created automatically (Kafka's `num.partitions`).
pub const DEFAULT_PARTITIONS_DEFAULT: u32 = 1;
/// Default period between two retention passes, in ms (Kafka's 5 minutes).
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 5 * 60 * 1000;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Command-line flags; each also reads an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "carteiro",
    version,
    about = "Carteiro: a durable log broker. With no arguments it serves on loopback with ./carteiro-data."
)]
pub struct Args {
    /// Address to listen on, HOST:PORT (port 0 picks a free one) [default: 127.0.0.1:7099]
    #[arg(long, env = "CARTEIRO_LISTEN")]
    pub listen: Option<String>,
    /// Data directory [default: ./carteiro-data]
    #[arg(long, env = "CARTEIRO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A TOML file with any of these settings (flags and environment win)
    #[arg(long, env = "CARTEIRO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format; the level comes from RUST_LOG (default info) [default: text]
    #[arg(long, env = "CARTEIRO_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Most open client connections [default: 1024]
    #[arg(long, env = "CARTEIRO_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Most requests served at once [default: 1024]
    #[arg(long, env = "CARTEIRO_MAX_REQUESTS_IN_FLIGHT")]
    pub max_requests_in_flight: Option<u32>,
    /// Most bytes of produce requests appended at once [default: 268435456]
    #[arg(long, env = "CARTEIRO_MAX_BUFFERED_BYTES")]
    pub max_buffered_bytes: Option<u64>,
    /// Period between retention passes, ms [default: 300000]
    #[arg(long, env = "CARTEIRO_RETENTION_CHECK_INTERVAL_MS")]
    pub retention_check_interval_ms: Option<u64>,
    /// Most fetches (long polls included) served at once [default: 1024]
    #[arg(long, env = "CARTEIRO_MAX_FETCHES_IN_FLIGHT")]
    pub max_fetches_in_flight: Option<u32>,
    /// Most fetches served at once for one connection [default: 64]
    #[arg(long, env = "CARTEIRO_MAX_FETCHES_PER_CONNECTION")]
    pub max_fetches_per_connection: Option<u32>,
    /// Most bytes of fetch replies gathered or waiting to be sent at once [default: 268435456]
    #[arg(long, env = "CARTEIRO_MAX_FETCH_BYTES_IN_FLIGHT")]
    pub max_fetch_bytes_in_flight: Option<u64>,
    /// Most bytes of request messages held at once, counted before they are decoded [default: 268435456]
    #[arg(long, env = "CARTEIRO_MAX_REQUEST_BYTES_IN_FLIGHT")]
    pub max_request_bytes_in_flight: Option<u64>,
    /// Time a new connection has to start HTTP/2, ms [default: 10000]
    #[arg(long, env = "CARTEIRO_CONNECTION_HANDSHAKE_TIMEOUT_MS")]
    pub connection_handshake_timeout_ms: Option<u64>,
    /// Time a connection may send nothing before it is closed, ms [default: 600000]
    #[arg(long, env = "CARTEIRO_CONNECTION_IDLE_TIMEOUT_MS")]
    pub connection_idle_timeout_ms: Option<u64>,
    /// Open partitions whose synced data is damaged by cutting it (logged), instead of refusing
    #[arg(long, env = "CARTEIRO_REPAIR")]
    pub repair: bool,
    /// Address of the Kafka listener, HOST:PORT (port 0 picks a free one), or "off" [default: 127.0.0.1:9092]
    #[arg(long, env = "CARTEIRO_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    /// HOST:PORT that Kafka clients are told to connect to [default: the Kafka listener's address]
    #[arg(long, env = "CARTEIRO_KAFKA_ADVERTISED")]
    pub kafka_advertised: Option<String>,
    /// Largest Kafka request, bytes [default: 104857600]
    #[arg(long, env = "CARTEIRO_KAFKA_REQUEST_BYTES_MAX")]
    pub kafka_request_bytes_max: Option<u32>,
    /// Create a missing topic when a Kafka client produces to it or asks for its metadata [default: true]
    #[arg(long, env = "CARTEIRO_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of a topic created automatically or with the default count [default: 1]
    #[arg(long, env = "CARTEIRO_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<u32>,
    /// An idempotent producer idle this long on a partition is forgotten there, ms [default: 86400000]
    #[arg(long, env = "CARTEIRO_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<u64>,
    /// Address of the HTTP listener (/metrics, /livez, /readyz), HOST:PORT, or "off" [default: 127.0.0.1:9644]
    #[arg(long, env = "CARTEIRO_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Tests only: wait this long before recovery starts, ms (readiness probes see a slow recovery)
    #[arg(long, hide = true)]
    pub debug_startup_delay_ms: Option<u64>,
}

/// The same settings from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    max_connections: Option<u32>,
    max_requests_in_flight: Option<u32>,
    max_buffered_bytes: Option<u64>,
    retention_check_interval_ms: Option<u64>,
    max_fetches_in_flight: Option<u32>,
    max_fetches_per_connection: Option<u32>,
    max_fetch_bytes_in_flight: Option<u64>,
    max_request_bytes_in_flight: Option<u64>,
    connection_handshake_timeout_ms: Option<u64>,
    connection_idle_timeout_ms: Option<u64>,
    repair: Option<bool>,
    kafka_listen: Option<String>,
    kafka_advertised: Option<String>,
    kafka_request_bytes_max: Option<u32>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<u32>,
    producer_id_expiration_ms: Option<u64>,
    http_listen: Option<String>,
}

/// The broker's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// HOST:PORT to listen on.
    pub listen: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Log output format.
    pub log_format: LogFormat,
    /// Most open connections.
    pub max_connections: u32,
    /// Most requests in flight.
    pub max_requests_in_flight: u32,
    /// Most produce bytes being appended at once.
    pub max_buffered_bytes: u64,
    /// Period between retention passes, ms.
    pub retention_check_interval_ms: u64,
    /// Most fetches in flight.
    pub max_fetches_in_flight: u32,
    /// Most fetches in flight for one connection.
    pub max_fetches_per_connection: u32,
    /// Most bytes of fetch replies gathered at once.
    pub max_fetch_bytes_in_flight: u64,
    /// Most bytes of request messages held at once.
    pub max_request_bytes_in_flight: u64,
    /// Time a new connection has to start HTTP/2, ms.
    pub connection_handshake_timeout_ms: u64,
    /// Time a connection may send nothing before it is closed, ms.
    pub connection_idle_timeout_ms: u64,
    /// Cut damaged durable data instead of refusing to open.
    pub repair: bool,
    /// HOST:PORT of the Kafka listener, or [`KAFKA_LISTEN_OFF`].
    pub kafka_listen: String,
    /// HOST:PORT told to Kafka clients; `None` is the listener's address.
    pub kafka_advertised: Option<String>,
    /// Largest Kafka request, bytes.
    pub kafka_request_bytes_max: u32,
    /// Create missing topics on a Kafka produce or metadata request.
    pub auto_create_topics: bool,
    /// Partitions of a topic created automatically.
    pub default_partitions: u32,
    /// Idle time after which a partition forgets an idempotent producer, ms.
    pub producer_id_expiration_ms: u64,
    /// HOST:PORT of the HTTP listener, or [`HTTP_LISTEN_OFF`].
    pub http_listen: String,
    /// A delay before recovery, ms (tests only).
    pub debug_startup_delay_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: LISTEN_DEFAULT.to_string(),
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            log_format: LogFormat::Text,
            max_connections: MAX_CONNECTIONS_DEFAULT,
            max_requests_in_flight: MAX_REQUESTS_IN_FLIGHT_DEFAULT,
            max_buffered_bytes: MAX_BUFFERED_BYTES_DEFAULT,
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            max_fetches_in_flight: MAX_FETCHES_IN_FLIGHT_DEFAULT,
            max_fetches_per_connection: MAX_FETCHES_PER_CONNECTION_DEFAULT,
            max_fetch_bytes_in_flight: MAX_FETCH_BYTES_IN_FLIGHT_DEFAULT,
            max_request_bytes_in_flight: MAX_REQUEST_BYTES_IN_FLIGHT_DEFAULT,
            connection_handshake_timeout_ms: CONNECTION_HANDSHAKE_TIMEOUT_MS_DEFAULT,
            connection_idle_timeout_ms: CONNECTION_IDLE_TIMEOUT_MS_DEFAULT,
            repair: false,
            kafka_listen: KAFKA_LISTEN_DEFAULT.to_string(),
            kafka_advertised: None,
            kafka_request_bytes_max: carteiro_kafka::REQUEST_BYTES_MAX_DEFAULT,
            auto_create_topics: true,
            default_partitions: DEFAULT_PARTITIONS_DEFAULT,
            producer_id_expiration_ms: carteiro_storage::PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            http_listen: HTTP_LISTEN_DEFAULT.to_string(),
            debug_startup_delay_ms: 0,
        }
    }
}

/// Checks that setting `field` is HOST:PORT with a port of 0 to 65535;
/// returns the host and the port.
pub fn check_listen<'a>(field: &str, listen: &'a str) -> Result<(&'a str, u16), String> {
    let shown: String = listen.chars().take(64).collect();
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(format!(
            "{field} is {shown:?}: it must be HOST:PORT, for example 127.0.0.1:7099"
        ));
    };
    if host.is_empty() {
        return Err(format!(
            "{field} is {shown:?}: the host is missing, for example 127.0.0.1{listen}"
        ));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!(
            "{field} is {shown:?}: port {port:?} is not a number from 0 to 65535"
        ));
    };
    Ok((host, port))
}

fn positive(field: &str, value: u64) -> Result<(), String> {
    if value == 0 {
        return Err(format!("{field} is 0; it must be at least 1"));
    }
    Ok(())
}

impl BrokerConfig {
    /// Flags and environment over the file named by `--config` over the defaults.
    pub fn from_args(args: Args) -> Result<BrokerConfig, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let d = BrokerConfig::default();
        // Each setting: the flag (or its environment variable), else the
        // file's, else the default.
        macro_rules! layered {
            ($field:ident) => {
                args.$field.or(file.$field).unwrap_or(d.$field)
            };
        }
        let config = BrokerConfig {
            listen: layered!(listen),
            data_dir: layered!(data_dir),
            log_format: layered!(log_format),
            max_connections: layered!(max_connections),
            max_requests_in_flight: layered!(max_requests_in_flight),
            max_buffered_bytes: layered!(max_buffered_bytes),
            retention_check_interval_ms: layered!(retention_check_interval_ms),
            max_fetches_in_flight: layered!(max_fetches_in_flight),
            max_fetches_per_connection: layered!(max_fetches_per_connection),
            max_fetch_bytes_in_flight: layered!(max_fetch_bytes_in_flight),
            max_request_bytes_in_flight: layered!(max_request_bytes_in_flight),
            connection_handshake_timeout_ms: layered!(connection_handshake_timeout_ms),
            connection_idle_timeout_ms: layered!(connection_idle_timeout_ms),
            repair: args.repair || file.repair.unwrap_or(false),
            kafka_listen: layered!(kafka_listen),
            kafka_advertised: args.kafka_advertised.or(file.kafka_advertised),
            kafka_request_bytes_max: layered!(kafka_request_bytes_max),
            auto_create_topics: layered!(auto_create_topics),
            default_partitions: layered!(default_partitions),
            producer_id_expiration_ms: layered!(producer_id_expiration_ms),
            http_listen: layered!(http_listen),
            debug_startup_delay_ms: args.debug_startup_delay_ms.unwrap_or(0),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every limit.
    pub fn validate(&self) -> Result<(), String> {
        check_listen("listen", &self.listen)?;
        if self.kafka_listen != KAFKA_LISTEN_OFF {
            check_listen("kafka_listen", &self.kafka_listen)?;
        }
        if self.http_listen != HTTP_LISTEN_OFF {
            check_listen("http_listen", &self.http_listen)?;
        }
        if self.debug_startup_delay_ms > STARTUP_DELAY_MS_MAX {
            return Err(format!(
                "debug_startup_delay_ms is {}; it must be at most {STARTUP_DELAY_MS_MAX}",
                self.debug_startup_delay_ms
            ));
        }
        if let Some(advertised) = &self.kafka_advertised {
            let (_, port) = check_listen("kafka_advertised", advertised)?;
            if port == 0 {
                return Err(format!(
                    "kafka_advertised is {advertised:?}: clients cannot connect to port 0"
                ));
            }
        }
        let storage_max = carteiro_storage::store::PARTITIONS_MAX;
        if !(1..=storage_max).contains(&self.default_partitions) {
            return Err(format!(
                "default_partitions is {}; it must be 1 to {storage_max}",
                self.default_partitions
            ));
        }
        // The largest batch a topic may accept must fit in a request.
        let min_kafka = carteiro_storage::config::MAX_BATCH_BYTES_MAX;
        if self.kafka_request_bytes_max < min_kafka.min(1024 * 1024) {
            return Err(format!(
                "kafka_request_bytes_max is {}; it must be at least {}",
                self.kafka_request_bytes_max,
                min_kafka.min(1024 * 1024)
            ));
        }
        positive("max_connections", u64::from(self.max_connections))?;
        positive(
            "max_requests_in_flight",
            u64::from(self.max_requests_in_flight),
        )?;
        positive(
            "retention_check_interval_ms",
            self.retention_check_interval_ms,
        )?;
        positive(
            "max_fetches_in_flight",
            u64::from(self.max_fetches_in_flight),
        )?;
        positive(
            "max_fetches_per_connection",
            u64::from(self.max_fetches_per_connection),
        )?;
        positive(
            "connection_handshake_timeout_ms",
            self.connection_handshake_timeout_ms,
        )?;
        positive(
            "connection_idle_timeout_ms",
            self.connection_idle_timeout_ms,
        )?;
        positive("producer_id_expiration_ms", self.producer_id_expiration_ms)?;
        // One partition's default share must fit.
        let min_fetch = u64::from(carteiro_core::fetch::PARTITION_FETCH_MAX_BYTES_DEFAULT);
        if self.max_fetch_bytes_in_flight < min_fetch {
            return Err(format!(
                "max_fetch_bytes_in_flight is {}; it must be at least {min_fetch}",
                self.max_fetch_bytes_in_flight
            ));
        }
        // The largest request message must fit.
        let min_request = crate::server::GRPC_REQUEST_BYTES_MAX as u64;
        if self.max_request_bytes_in_flight < min_request {
            return Err(format!(
                "max_request_bytes_in_flight is {}; it must be at least {min_request} (the largest request message)",
                self.max_request_bytes_in_flight
            ));
        }
        // A produce of the largest batch any topic accepts must fit.
        let min_buffer = u64::from(carteiro_storage::config::MAX_BATCH_BYTES_MAX);
        if self.max_buffered_bytes < min_buffer {
            return Err(format!(
                "max_buffered_bytes is {}; it must be at least {min_buffer} (the largest batch a topic may accept)",
                self.max_buffered_bytes
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("data_dir is empty".into());
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("carteiro").chain(list.iter().copied()))
            .expect("valid flags")
    }

    #[test]
    fn no_arguments_means_loopback_and_a_local_data_dir() {
        let config = BrokerConfig::from_args(args(&[])).expect("defaults are valid");
        assert_eq!(config.listen, "127.0.0.1:7099");
        assert_eq!(config.data_dir, PathBuf::from("carteiro-data"));
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("carteiro.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/from/file\"\nmax_connections = 7\n",
        )
        .expect("write");
        let config = BrokerConfig::from_args(args(&[
            "--config",
            path.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:2",
        ]))
        .expect("valid");
        assert_eq!(config.listen, "127.0.0.1:2");
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
        assert_eq!(config.max_connections, 7);
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listne = \"x\"\n").expect("write");
        let err = BrokerConfig::from_args(args(&["--config", path.to_str().expect("utf-8")]))
            .expect_err("unknown key");
        assert!(err.contains("listne"), "{err}");
        let err = BrokerConfig::from_args(args(&["--max-connections", "0"])).expect_err("zero");
        assert!(err.contains("max_connections is 0"), "{err}");
    }

    #[test]
    fn kafka_settings_default_to_port_9092_and_are_checked() {
        let config = BrokerConfig::from_args(args(&[])).expect("defaults are valid");
        assert_eq!(config.kafka_listen, "127.0.0.1:9092");
        assert!(config.auto_create_topics);
        let off = BrokerConfig::from_args(args(&["--kafka-listen", "off"])).expect("off");
        assert_eq!(off.kafka_listen, KAFKA_LISTEN_OFF);
        let err = BrokerConfig::from_args(args(&["--kafka-listen", "9092"])).expect_err("no host");
        assert!(err.contains("kafka_listen is \"9092\""), "{err}");
        let err =
            BrokerConfig::from_args(args(&["--kafka-advertised", "broker:0"])).expect_err("port 0");
        assert!(
            err.contains("kafka_advertised") && err.contains("port 0"),
            "{err}"
        );
        let err = BrokerConfig::from_args(args(&["--default-partitions", "0"])).expect_err("zero");
        assert!(err.contains("default_partitions is 0"), "{err}");
        let closed =
            BrokerConfig::from_args(args(&["--auto-create-topics", "false"])).expect("valid");
        assert!(!closed.auto_create_topics);
    }
}
