//! Carteiro's contract: what crosses a process boundary.
//!
//! - [`record`]: Apache Kafka's RecordBatch v2, the unit on disk and on the
//!   wire: a builder that encodes and a zero-copy reader that validates.
//! - [`partitioner`]: which partition a key goes to, the function every
//!   client and the broker share.
//! - [`consumer_protocol`]: the assignment bytes Kafka consumers pass
//!   through a classic group, read to show each member's partitions.
//! - [`proto`] (feature `grpc`): the types generated from `proto/`, and
//!   [`FILE_DESCRIPTOR_SET`] for gRPC reflection.
//!
//! The storage crate depends on this crate without the `grpc` feature, so
//! it sees the codec and nothing of gRPC.

pub mod consumer_protocol;
pub mod partitioner;
pub mod record;

/// Types generated from `proto/carteiro/v1`.
#[cfg(feature = "grpc")]
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("carteiro.v1");
}

/// The encoded `FileDescriptorSet` of `proto/`, for gRPC server reflection.
#[cfg(feature = "grpc")]
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carteiro_descriptor.bin"));
