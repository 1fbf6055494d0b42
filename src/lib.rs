//! Carteiro's contract: what crosses a process boundary.
//!
//! - [`record`]: Apache Kafka's RecordBatch v2, the unit on disk and on the
//!   wire: a builder that encodes and a zero-copy reader that validates.
//! - [`proto`] (feature `grpc`): the types generated from `proto/`.
//!
//! The storage crate depends on this crate without the `grpc` feature, so
//! it sees the codec and nothing of gRPC.

pub mod record;

/// Types generated from `proto/carteiro/v1`.
#[cfg(feature = "grpc")]
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("carteiro.v1");
}
