//! `carteiro`: the broker binary. With no arguments it serves on
//! 127.0.0.1:7099 with its data in ./carteiro-data.

use std::process::ExitCode;

use carteiro_server::config::{HTTP_LISTEN_OFF, KAFKA_LISTEN_OFF, LogFormat};
use carteiro_server::http::HttpState;
use carteiro_server::reserving_allocator::ReservingAllocator;
use carteiro_server::server::kafka_options;
use carteiro_server::{Args, BrokerConfig, open_broker, serve};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// See [`ReservingAllocator`]: a client's count cannot abort the broker.
#[global_allocator]
static ALLOCATOR: ReservingAllocator = ReservingAllocator;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// right after the startup line is printed stops the broker cleanly.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match handlers {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                tracing::error!("cannot listen for signals; stop the broker with SIGKILL");
                std::future::pending::<()>().await
            }
        }
    }
}

/// Raises the soft limit of open files to the hard limit: every partition
/// holds a few files open, and every client a socket.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(open_files = ?limit.maximum, "raised the open files limit"),
            Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
        }
    }
}

fn main() -> ExitCode {
    let config = match BrokerConfig::from_args(Args::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("carteiro: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("carteiro: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    raise_open_files_limit();
    runtime.block_on(async move {
        // The HTTP listener first: its probes answer during recovery
        // (alive, not ready).
        let http_state = HttpState::new();
        let (http_stop, http_stopped) = tokio::sync::watch::channel(false);
        let http = if config.http_listen == HTTP_LISTEN_OFF {
            None
        } else {
            match tokio::net::TcpListener::bind(&config.http_listen).await {
                Ok(listener) => {
                    let address = listener
                        .local_addr()
                        .map_or_else(|_| config.http_listen.clone(), |a| a.to_string());
                    let mut stopped = http_stopped.clone();
                    let connections_max = config.max_connections;
                    let state = http_state.clone();
                    tokio::spawn(async move {
                        let stop = async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        };
                        let served =
                            carteiro_server::http::serve(listener, connections_max, state, stop).await;
                        if let Err(e) = served {
                            tracing::error!(error = %e, "the HTTP listener failed");
                        }
                    });
                    Some(address)
                }
                Err(e) => {
                    eprintln!(
                        "carteiro: cannot listen for HTTP on {}: {e} (choose another address with --http-listen, or turn it off with --http-listen off)",
                        config.http_listen
                    );
                    return ExitCode::FAILURE;
                }
            }
        };
        if config.debug_startup_delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(config.debug_startup_delay_ms)).await;
        }
        // Recovery first, the client ports second: while partitions are
        // checked, clients are refused at once instead of hanging on a
        // silent port.
        let broker = match open_broker(&config).await {
            Ok(opened) => opened,
            Err(e) => {
                eprintln!("carteiro: {e}");
                return ExitCode::FAILURE;
            }
        };
        http_state.opened(broker.clone());
        let listener = match tokio::net::TcpListener::bind(&config.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("carteiro: cannot listen on {}: {e}", config.listen);
                let _ = tokio::task::spawn_blocking(move || broker.close()).await;
                return ExitCode::FAILURE;
            }
        };
        let kafka = if config.kafka_listen == KAFKA_LISTEN_OFF {
            None
        } else {
            let bound = match tokio::net::TcpListener::bind(&config.kafka_listen).await {
                Ok(kafka) => kafka_options(&config, &kafka).map(|options| (kafka, options)),
                Err(e) => Err(format!(
                    "cannot listen for Kafka clients on {}: {e} (choose another address with --kafka-listen, or turn it off with --kafka-listen off)",
                    config.kafka_listen
                )),
            };
            match bound {
                Ok(kafka) => Some(kafka),
                Err(e) => {
                    eprintln!("carteiro: {e}");
                    let _ = tokio::task::spawn_blocking(move || broker.close()).await;
                    return ExitCode::FAILURE;
                }
            }
        };
        let signal = shutdown_signal();
        let stopping = http_state.clone();
        let shutdown = async move {
            signal.await;
            stopping.set_ready(false);
        };
        let address = listener
            .local_addr()
            .map_or_else(|_| config.listen.clone(), |a| a.to_string());
        let kafka_address = match &kafka {
            Some((listener, options)) => {
                let bound = listener
                    .local_addr()
                    .map_or_else(|_| config.kafka_listen.clone(), |a| a.to_string());
                let advertised = format!("{}:{}", options.advertised_host, options.advertised_port);
                if advertised == bound {
                    format!("kafka on {bound}")
                } else {
                    format!("kafka on {bound} (advertised {advertised})")
                }
            }
            None => "kafka off".to_string(),
        };
        let data =
            std::fs::canonicalize(&config.data_dir).unwrap_or_else(|_| config.data_dir.clone());
        let http_address = http.map_or_else(|| "http off".to_string(), |a| format!("http on {a}"));
        println!(
            "carteiro {} listening on {address}, {kafka_address}, {http_address}, data in {}",
            env!("CARGO_PKG_VERSION"),
            data.display()
        );
        http_state.set_ready(true);
        let served = serve(config, listener, kafka, broker, shutdown).await;
        let _ = http_stop.send(true);
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("carteiro: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
