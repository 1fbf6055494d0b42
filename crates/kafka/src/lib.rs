//! Carteiro's Kafka edge: Apache Kafka's wire protocol served from the
//! broker core, beside the gRPC edge, so that stock Kafka clients (kcat,
//! librdkafka, the Java client, kafka-python, KafkaJS) produce, consume in
//! groups and manage topics unchanged.
//!
//! Record batches pass through as bytes: a produce hands the client's batch
//! to the core as it came, a fetch hands out the stored bytes. The codec is
//! the `kafka-protocol` crate (generated from Kafka's own schemas).
//!
//! Modules, one concept each:
//! - [`versions`]: the APIs and versions served, one table that both the
//!   ApiVersions answer and the dispatcher read.
//! - `connection`: framing, limits and in-order replies on one socket.
//! - `request`: a frame's header, decoded; the dispatcher to the handlers.
//! - `handlers`: one module per API family, each a decoded request in and a
//!   response value out, calling the core.
//! - `error`: the one mapping from the core's errors to Kafka error codes.
//! - [`metrics`]: requests, their durations and error codes per API,
//!   connections and refusals, in atomics read when `/metrics` is scraped.

mod connection;
mod error;
mod handlers;
mod listener;
pub mod metrics;
mod request;
pub mod versions;

pub use listener::{KafkaOptions, serve};

/// Largest request frame accepted, in bytes, by default (Kafka's
/// `socket.request.max.bytes`, 100 MiB). A larger length prefix closes the
/// connection before anything is allocated for it.
pub const REQUEST_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;
/// Requests read from one connection and not yet answered; past it the
/// connection is not read until a reply is written (back pressure, not an
/// error: librdkafka pipelines up to a million).
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX: usize = 64;
/// The node id of this broker: the controller, the coordinator of every
/// group and every partition's leader until replication.
pub const NODE_ID: i32 = 0;
/// The cluster id reported in Metadata.
pub const CLUSTER_ID: &str = "carteiro";

/// What a client may do, as Kafka's bit set of ACL operations, answered
/// when a client asks (Metadata v8+, DescribeGroups v3+). With no
/// authorizer every operation a resource supports is allowed, as Kafka
/// answers: on a topic READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS (bits 3-8, 10, 11).
pub const TOPIC_AUTHORIZED_OPERATIONS: i32 = 3576;
/// On the cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE (bits 5, 7-12).
pub const CLUSTER_AUTHORIZED_OPERATIONS: i32 = 8096;
/// On a group: READ, DELETE, DESCRIBE (bits 3, 6, 8).
pub const GROUP_AUTHORIZED_OPERATIONS: i32 = 328;
