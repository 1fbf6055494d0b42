//! The broker's errors, and the one place they become gRPC status codes.

use carteiro_storage::{AppendError, OpenError, ReadError, StoreError};
use tonic::{Code, Status};

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
    /// No consumer group of that name has committed offsets.
    #[error("unknown group {group:?}: it has no committed offsets")]
    UnknownGroup {
        /// The group.
        group: String,
    },
    /// A group member is fenced: it left, expired, is of an old generation,
    /// or does not own the partition.
    #[error("{message}")]
    Fenced {
        /// What is wrong and what to do.
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

    /// The gRPC status code of this error. Every error maps here, nowhere else.
    pub fn code(&self) -> Code {
        match self {
            BrokerError::Store(e) => match e {
                StoreError::UnknownTopic { .. } | StoreError::UnknownPartition { .. } => {
                    Code::NotFound
                }
                StoreError::TopicExists { .. } => Code::AlreadyExists,
                StoreError::InvalidTopicName { .. }
                | StoreError::InvalidPartitionCount { .. }
                | StoreError::Config(_) => Code::InvalidArgument,
                StoreError::DirectoryInUse { .. } => Code::FailedPrecondition,
                StoreError::Io { source, .. }
                | StoreError::Open {
                    source: OpenError::Io { source, .. },
                    ..
                } if disk_full(source) => Code::ResourceExhausted,
                _ => Code::Internal,
            },
            BrokerError::Append { source, .. } => match source {
                AppendError::BatchTooLarge { .. } | AppendError::InvalidBatch(_) => {
                    Code::InvalidArgument
                }
                AppendError::Io { source, .. } if disk_full(source) => Code::ResourceExhausted,
                AppendError::Closed { .. } => Code::Unavailable,
                _ => Code::Internal,
            },
            BrokerError::Read(e) | BrokerError::PartitionRead { source: e, .. } => match e {
                ReadError::OffsetOutOfRange { .. } => Code::OutOfRange,
                _ => Code::DataLoss,
            },
            BrokerError::DataLoss(_) => Code::DataLoss,
            BrokerError::UnknownGroup { .. } => Code::NotFound,
            BrokerError::Fenced { .. } => Code::FailedPrecondition,
            BrokerError::InvalidArgument { .. } => Code::InvalidArgument,
            BrokerError::ResourceExhausted { .. } => Code::ResourceExhausted,
            BrokerError::ShuttingDown => Code::Unavailable,
            BrokerError::Internal(_) => Code::Internal,
        }
    }
}

fn disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
}

impl From<BrokerError> for Status {
    fn from(e: BrokerError) -> Status {
        let code = e.code();
        if code == Code::Internal || code == Code::DataLoss {
            tracing::error!(error = %e, "request failed");
        }
        Status::new(code, e.to_string())
    }
}

/// Maps a task that panicked or was cancelled; the request fails, the broker goes on.
pub(crate) fn join_error(e: tokio::task::JoinError) -> BrokerError {
    BrokerError::Internal(format!("storage task failed: {e}"))
}
