//! The broker's HTTP listener: `/metrics` (Prometheus' text format),
//! `/livez` and `/readyz` (probes), the web console at `/` (`console`) and
//! its JSON under `/api/` (`api`), with live rates sampled every second
//! (`rates`). It starts before recovery, so that a probe can tell a broker
//! that is still recovering (alive, not ready) from one that is down.

pub mod api;
mod connections;
mod console;
mod metrics;
pub mod rates;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carteiro_core::Broker;
use tokio::net::TcpListener;

/// What the HTTP listener knows of the broker: nothing until recovery
/// ends, then the core; ready once every listener is up.
#[derive(Debug, Default)]
pub struct HttpState {
    broker: OnceLock<Arc<Broker>>,
    ready: AtomicBool,
    rates: rates::Rates,
}

impl HttpState {
    /// A state for a broker that is starting.
    pub fn new() -> Arc<HttpState> {
        Arc::new(HttpState::default())
    }

    /// Recovery ended: the core is open (and serves no client yet).
    pub fn opened(&self, broker: Arc<Broker>) {
        rates::first_sample(&self.rates, &broker);
        let _ = self.broker.set(broker);
    }

    /// Every listener is up (or, with `false`, the broker is stopping).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self.broker.get().is_some_and(|b| b.check_running().is_ok())
    }
}

/// The routes; anything else is 404 naming the path's shape.
fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/", get(console::page))
        .route("/console/{asset}", get(console::asset))
        .nest("/api", api::router())
        .fallback(not_found)
        .with_state(state)
}

/// Serves on `listener` until `shutdown` resolves; samples the rates
/// (`rates`) meanwhile.
pub async fn serve(
    listener: TcpListener,
    connections_max: u32,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sampled = state.clone();
    let sampler = tokio::spawn(async move {
        rates::sample_forever(&sampled.rates, || sampled.broker.get().cloned()).await;
    });
    let listener = connections::LimitedListener::new(listener, connections_max);
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    sampler.abort();
    served
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else if state.broker.get().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering: not ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: listeners starting or stopping\n",
        )
            .into_response()
    }
}

async fn metrics_text(State(state): State<Arc<HttpState>>) -> Response {
    let broker = state.broker.get().cloned();
    let ready = state.is_ready();
    // Reading every partition's figures and the process's files is
    // blocking work: off the async workers.
    let rendered = tokio::task::spawn_blocking(move || metrics::render(broker, ready)).await;
    match rendered {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot render the metrics\n",
        )
            .into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let path: String = uri.path().chars().take(64).collect();
    (
        StatusCode::NOT_FOUND,
        format!(
            "no such path {path:?}: try / (the console), /api/topics, /metrics, /livez or /readyz\n"
        ),
    )
        .into_response()
}
