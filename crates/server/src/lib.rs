//! The Carteiro broker: joins the storage engine to the gRPC contract.
//!
//! - [`config`]: flags, environment and TOML file.
//! - [`server`]: assembling the services and running until shutdown.
//! - `broker`, `admin` (private): the `Broker` and `Admin` services;
//!   `broker::produce` appends, unary and pipelined on a stream.
//! - `offsets` (private): committed group offsets in an internal topic.
//! - [`coordinator`]: group membership and generations; [`assignment`]:
//!   who gets which partitions; `groups` (private) is the gRPC service.
//! - `limits` (private): connections, requests in flight, bytes buffered.
//! - `convert` (private): wire types to storage types and back.
//! - [`error`]: every failure, and the one place it becomes a gRPC status.

mod admin;
pub mod assignment;
mod broker;
pub mod config;
mod convert;
pub mod coordinator;
pub mod error;
mod groups;
mod limits;
mod offsets;
pub mod server;
mod shared;

pub use broker::PRODUCE_STREAM_IN_FLIGHT_MAX;
pub use config::{Args, BrokerConfig};
pub use error::BrokerError;
pub use server::{ServeError, open_store, serve};
