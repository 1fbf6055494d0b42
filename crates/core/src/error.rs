//! The core's one error type. It names what went wrong in the request's
//! terms; each edge maps it to its wire's codes in one place (the gRPC
//! edge to status codes, the Kafka edge to Kafka error codes).

use carteiro_storage::{AppendError, OpenError, ReadError, StoreError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A topic operation failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// An append failed; `field` is the request field that carried the records.
    #[error("{field}: {source}")]
    Append {
        /// The request field.
        field: &'static str,
        /// Why.
        #[source]
        source: AppendError,
    },
    /// A read failed.
    #[error("{0}")]
    Read(#[from] ReadError),
    /// A read of one partition failed: the stored data is damaged (the
    /// message names the offset, file and byte) or the offset is out of range.
    #[error("topic {topic:?} partition {partition}: {source}")]
    PartitionRead {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// Stored records that cannot be decoded: damaged data.
    #[error("{0}")]
    DataLoss(String),
    /// A request field is invalid.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field.
        field: &'static str,
        /// What is wrong, with the value and the limit.
        message: String,
    },
    /// No consumer group of that name has committed offsets or members.
    #[error("unknown group {group:?}: it has no committed offsets")]
    UnknownGroup {
        /// The group.
        group: String,
    },
    /// A group member is fenced: it left, expired, is of an old generation,
    /// or does not own the partition.
    #[error("{message}")]
    Fenced {
        /// Which of those.
        reason: crate::coordinator::FenceReason,
        /// What is wrong and what to do.
        message: String,
    },
    /// The group is forming a new generation; the member must join again.
    #[error("group {group:?} is rebalancing: join again")]
    RebalanceInProgress {
        /// The group.
        group: String,
    },
    /// A member asked for a kind of group, or protocols, that the group's
    /// other members do not share.
    #[error("{message}")]
    InconsistentGroupProtocol {
        /// What differs.
        message: String,
    },
    /// A limit of the broker is reached; try again later.
    #[error("{what}: limit of {limit} reached, try again later")]
    ResourceExhausted {
        /// The limit.
        what: &'static str,
        /// Its value.
        limit: u64,
    },
    /// The broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// A pipelined request that was not appended because one sent before
    /// it failed ([`crate::pipeline`]): send it again after that one.
    #[error("not appended: a request sent before it on this stream failed; send it again")]
    NotAppendedAfterFailure,
    /// A failure that is not the client's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

impl BrokerError {
    /// Shorthand for [`BrokerError::InvalidArgument`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        BrokerError::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    /// True if the disk (or the user's quota) is full, or the process is
    /// out of file descriptors: the request may succeed once they are freed.
    pub fn is_out_of_resources(&self) -> bool {
        let io = match self {
            BrokerError::Store(StoreError::Io { source, .. })
            | BrokerError::Store(StoreError::Open {
                source: OpenError::Io { source, .. },
                ..
            })
            | BrokerError::Append {
                source: AppendError::Io { source, .. },
                ..
            } => source,
            _ => return false,
        };
        // EMFILE and ENFILE: the process's or the system's open files.
        const OPEN_FILES_EXHAUSTED: [i32; 2] = [24, 23];
        carteiro_storage::error::is_disk_full(io)
            || io
                .raw_os_error()
                .is_some_and(|code| OPEN_FILES_EXHAUSTED.contains(&code))
    }
}

/// Maps a storage task that panicked or was cancelled; the request fails,
/// the broker goes on.
pub(crate) fn join_error(e: tokio::task::JoinError) -> BrokerError {
    BrokerError::Internal(format!("storage task failed: {e}"))
}
