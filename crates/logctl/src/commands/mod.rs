//! One function per `logctl` subcommand, one module per command group;
//! here the argument types they share.

use carteiro_client::Acks;
use clap::ValueEnum;

mod consume;
mod groups;
mod produce;
mod topics;

pub use consume::{ConsumeArgs, consume, offsets};
pub use groups::{ResetArgs, groups_describe, groups_list, groups_reset};
pub use produce::{ProduceArgs, produce};
pub use topics::{CreateArgs, topics_create, topics_delete, topics_describe, topics_list};

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
