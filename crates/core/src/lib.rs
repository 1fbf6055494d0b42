//! Carteiro's broker core: everything a broker does with its log that does
//! not depend on a wire protocol. Each edge (gRPC, Kafka) turns its wire's
//! requests into calls on [`Broker`] and the answers back, and maps
//! [`BrokerError`] to its own codes in one place.
//!
//! It knows the storage engine and the record codec, and no wire protocol
//! (`cargo tree -p carteiro-core` holds no tonic, prost, h2 or hyper).
//! Modules, one concept each:
//! - [`broker`]: the core itself, opened over a data directory; shutdown.
//! - [`topics`]: create, delete, list, describe.
//! - [`produce`]: choosing partitions, one check per batch, appends and
//!   their acknowledgement levels.
//! - [`fetch`]: fetch with long poll and byte limits; list offsets.
//! - [`committed`]: committed offsets, durable in `__consumer_offsets`.
//! - [`coordinator`]: group membership for Carteiro's assigned groups and
//!   Kafka's classic protocol; [`assignment`]: range and round robin.
//! - [`groups`]: the group API clients use: join, sync, heartbeat, leave,
//!   commit, describe.
//! - [`producers`]: idempotent producers' ids and epochs (each partition
//!   log deduplicates their batches).
//! - [`error`]: the one error type, [`BrokerError`].

pub mod assignment;
pub mod broker;
pub mod committed;
pub mod coordinator;
pub mod error;
pub mod fetch;
pub mod groups;
pub mod pipeline;
pub mod produce;
pub mod producers;
pub mod topics;

pub use broker::{Broker, BrokerOptions, INTERNAL_TOPIC_PREFIX};
pub use carteiro_storage::{Acks, FlushPolicy};
pub use error::BrokerError;
