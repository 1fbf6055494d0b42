//! The one mapping from the core's errors to Kafka error codes. A handler
//! says which family of API failed, because Kafka clients act on codes by
//! family: a data request that meets a stopping broker refreshes metadata
//! and retries (NOT_LEADER_OR_FOLLOWER), a group request looks for its
//! coordinator again (COORDINATOR_NOT_AVAILABLE).

use carteiro_core::BrokerError;
use carteiro_core::coordinator::FenceReason;
use carteiro_storage::{AppendError, ReadError, StoreError};
use kafka_protocol::ResponseError;

/// Which family of API a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Produce, fetch, list offsets, metadata.
    Data,
    /// Group membership and committed offsets.
    Group,
    /// Topic admin.
    Admin,
}

/// A Kafka error: its code and a message for the clients that show one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KafkaError {
    /// The error.
    pub error: ResponseError,
    /// What went wrong, naming the field, the value and the limit.
    pub message: String,
}

impl KafkaError {
    /// An error with a message.
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        KafkaError {
            error,
            message: message.into(),
        }
    }

    /// The wire code.
    pub fn code(&self) -> i16 {
        self.error.code()
    }
}

/// The Kafka error for a core error met by an API of `family`.
pub(crate) fn kafka_error(e: &BrokerError, family: Family) -> KafkaError {
    use ResponseError as K;
    let error = match e {
        BrokerError::Store(store) => match store {
            StoreError::UnknownTopic { .. } | StoreError::UnknownPartition { .. } => {
                K::UnknownTopicOrPartition
            }
            StoreError::TopicExists { .. } => K::TopicAlreadyExists,
            StoreError::InvalidTopicName { .. } => K::InvalidTopicException,
            StoreError::InvalidPartitionCount { .. } => K::InvalidPartitions,
            StoreError::Config(_) => K::InvalidConfig,
            _ if e.is_out_of_resources() => K::KafkaStorageError,
            _ => K::KafkaStorageError,
        },
        BrokerError::Append { source, .. } => match source {
            AppendError::BatchTooLarge { .. } => K::MessageTooLarge,
            AppendError::InvalidBatch(carteiro::record::BatchError::ChecksumMismatch {
                ..
            }) => K::CorruptMessage,
            AppendError::InvalidBatch(_) => K::InvalidRecord,
            AppendError::OutOfOrderSequence { .. } => K::OutOfOrderSequenceNumber,
            AppendError::ProducerFenced { .. } => K::InvalidProducerEpoch,
            AppendError::UnknownProducerId { .. } => K::UnknownProducerId,
            // Kafka has no per-partition limit of producers; this is the
            // code for a broker's policy refusing a request.
            AppendError::TooManyProducers { .. } => K::PolicyViolation,
            _ => K::KafkaStorageError,
        },
        BrokerError::Read(read) | BrokerError::PartitionRead { source: read, .. } => match read {
            ReadError::OffsetOutOfRange { .. } => K::OffsetOutOfRange,
            _ => K::KafkaStorageError,
        },
        BrokerError::DataLoss(_) => K::KafkaStorageError,
        BrokerError::InvalidArgument { field, .. } => match *field {
            "name" | "topic" | "topics" | "commits.topic" => K::InvalidTopicException,
            "partitions" if family == Family::Admin => K::InvalidPartitions,
            "config" => K::InvalidConfig,
            "group" | "group_id" => K::InvalidGroupId,
            "session_timeout_ms" | "rebalance_timeout_ms" => K::InvalidSessionTimeout,
            "commits.metadata" => K::OffsetMetadataTooLarge,
            "commits.offset" | "partitions.offset" => K::OffsetOutOfRange,
            "record_batch" | "records" => K::InvalidRecord,
            _ => K::InvalidRequest,
        },
        BrokerError::UnknownGroup { .. } => K::GroupIdNotFound,
        BrokerError::Fenced { reason, .. } => match reason {
            FenceReason::UnknownMember | FenceReason::GroupHasMembers => K::UnknownMemberId,
            FenceReason::StaleGeneration | FenceReason::NotOwner => K::IllegalGeneration,
        },
        BrokerError::RebalanceInProgress { .. } => K::RebalanceInProgress,
        BrokerError::InconsistentGroupProtocol { .. } => K::InconsistentGroupProtocol,
        BrokerError::ResourceExhausted { what, .. } if what.contains("members") => {
            K::GroupMaxSizeReached
        }
        BrokerError::ResourceExhausted { .. } => K::ThrottlingQuotaExceeded,
        BrokerError::ShuttingDown => match family {
            Family::Data => K::NotLeaderOrFollower,
            Family::Group => K::CoordinatorNotAvailable,
            Family::Admin => K::NotController,
        },
        _ if e.is_out_of_resources() => K::KafkaStorageError,
        _ => K::UnknownServerError,
    };
    KafkaError::new(error, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopping_broker_sends_each_family_where_its_clients_retry() {
        let e = BrokerError::ShuttingDown;
        assert_eq!(
            kafka_error(&e, Family::Data).error,
            ResponseError::NotLeaderOrFollower
        );
        assert_eq!(
            kafka_error(&e, Family::Group).error,
            ResponseError::CoordinatorNotAvailable
        );
    }

    #[test]
    fn fences_become_member_and_generation_errors() {
        let fenced = |reason| BrokerError::Fenced {
            reason,
            message: String::new(),
        };
        assert_eq!(
            kafka_error(&fenced(FenceReason::UnknownMember), Family::Group).code(),
            25
        );
        assert_eq!(
            kafka_error(&fenced(FenceReason::StaleGeneration), Family::Group).code(),
            22
        );
    }
}
