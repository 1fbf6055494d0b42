//! One function per `logctl` subcommand, one module per command group;
//! here the argument types they share.

use carteiro_client::{Acks, ClientError, Compression};
use clap::ValueEnum;

mod consume;
mod groups;
mod produce;
mod topics;

pub use consume::{ConsumeArgs, consume, offsets};
pub use groups::{ResetArgs, groups_describe, groups_list, groups_reset};
pub use produce::{ProduceArgs, produce};
pub use topics::{
    AlterArgs, CreateArgs, topics_alter, topics_create, topics_delete, topics_describe, topics_list,
};

/// Refuses `--partition` past the topic's `count` partitions, as the broker
/// would (NOT_FOUND, exit code 4), before any input is read.
fn check_partition(topic: &str, partition: Option<u32>, count: u32) -> Result<(), ClientError> {
    match partition {
        Some(p) if p >= count => Err(ClientError::Broker {
            code: tonic::Code::NotFound,
            message: format!(
                "unknown partition {p} of topic {topic:?}: {}",
                carteiro::partitioner::partition_count_text(count)
            ),
        }),
        _ => Ok(()),
    }
}

/// Flush policy names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlushArg {
    /// Sync before acknowledging each produce
    Always,
    /// Sync every --flush-interval-ms
    Interval,
    /// Leave syncing to the operating system
    Os,
}

/// Acknowledgement names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Once durable under the topic's flush policy
    Durable,
    /// Once appended
    Appended,
}

impl From<AcksArg> for Acks {
    fn from(arg: AcksArg) -> Acks {
        match arg {
            AcksArg::Durable => Acks::Durable,
            AcksArg::Appended => Acks::Appended,
        }
    }
}

/// Compression codec names on the command line (Kafka's `compression.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// Batches as they are
    None,
    /// gzip
    Gzip,
    /// snappy (xerial framing, as the Java client writes)
    Snappy,
    /// lz4 (LZ4 frame)
    Lz4,
    /// zstd
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(arg: CompressionArg) -> Compression {
        match arg {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Snappy => Compression::Snappy,
            CompressionArg::Lz4 => Compression::Lz4,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}
