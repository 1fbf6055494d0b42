//! The Carteiro broker's gRPC edge and binary: the contract's services over
//! the broker core (`carteiro-core`).
//!
//! - [`config`]: flags, environment and TOML file.
//! - [`server`]: assembling the services and running until shutdown.
//! - `broker`, `admin`, `groups` (private): the `Broker`, `Admin` and
//!   `Groups` services, each method a core call between two conversions;
//!   `broker::produce` keeps a stream's order and in-flight bound.
//! - `convert` (private): the contract's types to the core's and back.
//! - [`body_budget`]: request bodies counted before they are decoded, fetch
//!   replies holding their share until sent, decode errors as INVALID_ARGUMENT.
//! - `limits` (private): requests, produce bytes and fetches in flight;
//!   `connections` (private): the accept loop, connection limit and timeouts.
//! - `grpc_metrics` (private): the gRPC edge's requests, statuses,
//!   connections and refusals, counted in atomics for `/metrics`.
//! - [`error`]: the one place a core error becomes a gRPC status.
//! - [`http`]: the HTTP listener: `/metrics`, `/livez`, `/readyz`, the web
//!   console at `/` and its JSON under `/api/`.
//! - [`reserving_allocator`]: the binary's allocator, so that a count a
//!   client sends cannot abort the process.
//!
//! The Kafka edge is its own crate (`carteiro-kafka`); [`server::serve`]
//! runs it beside the gRPC services on the same core.

mod admin;
pub mod body_budget;
mod broker;
pub mod config;
mod connections;
mod convert;
pub mod error;
mod groups;
mod grpc_metrics;
pub mod http;
mod limits;
pub mod reserving_allocator;
pub mod server;
mod shared;

pub use broker::PRODUCE_STREAM_IN_FLIGHT_MAX;
pub use config::{Args, BrokerConfig};
pub use server::{ServeError, open_broker, serve};
