//! The one place the core's errors become gRPC status codes.

use carteiro_core::BrokerError;
use carteiro_storage::{AppendError, ReadError, StoreError};
use tonic::{Code, Status};

/// The gRPC status code of a core error. Every error maps here, nowhere else.
pub fn code(e: &BrokerError) -> Code {
    if e.is_out_of_resources() {
        return Code::ResourceExhausted;
    }
    match e {
        BrokerError::Store(e) => match e {
            StoreError::UnknownTopic { .. } | StoreError::UnknownPartition { .. } => Code::NotFound,
            StoreError::TopicExists { .. } => Code::AlreadyExists,
            StoreError::InvalidTopicName { .. }
            | StoreError::InvalidPartitionCount { .. }
            | StoreError::InvalidPartitionIncrease { .. }
            | StoreError::Config(_) => Code::InvalidArgument,
            StoreError::DirectoryInUse { .. } => Code::FailedPrecondition,
            _ => Code::Internal,
        },
        BrokerError::Append { source, .. } => match source {
            AppendError::BatchTooLarge { .. } | AppendError::InvalidBatch(_) => {
                Code::InvalidArgument
            }
            AppendError::Closed { .. } => Code::Unavailable,
            AppendError::OutOfOrderSequence { .. }
            | AppendError::ProducerFenced { .. }
            | AppendError::UnknownProducerId { .. } => Code::FailedPrecondition,
            AppendError::TooManyProducers { .. } => Code::ResourceExhausted,
            _ => Code::Internal,
        },
        BrokerError::Read(e) | BrokerError::PartitionRead { source: e, .. } => match e {
            ReadError::OffsetOutOfRange { .. } => Code::OutOfRange,
            _ => Code::DataLoss,
        },
        BrokerError::DataLoss(_) => Code::DataLoss,
        BrokerError::UnknownGroup { .. } => Code::NotFound,
        BrokerError::Fenced { .. }
        | BrokerError::RebalanceInProgress { .. }
        | BrokerError::InconsistentGroupProtocol { .. } => Code::FailedPrecondition,
        BrokerError::InvalidArgument { .. } => Code::InvalidArgument,
        BrokerError::ResourceExhausted { .. } => Code::ResourceExhausted,
        BrokerError::ShuttingDown => Code::Unavailable,
        // Transient: the client sends it again, in order.
        BrokerError::NotAppendedAfterFailure => Code::Aborted,
        BrokerError::Internal(_) => Code::Internal,
        _ => Code::Internal,
    }
}

/// A core error as a gRPC status, its message naming the field, value and limit.
pub fn status(e: BrokerError) -> Status {
    let code = code(&e);
    if code == Code::Internal {
        tracing::error!(error = %e, "request failed");
    }
    Status::new(code, e.to_string())
}
