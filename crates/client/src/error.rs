//! The client's one error type.

use tonic::Code;

/// Why a client call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker answered with an error status.
    #[error("{message} ({code:?})")]
    Broker {
        /// The gRPC status code.
        code: Code,
        /// The broker's message, naming the field, value and limit.
        message: String,
    },
    /// The broker could not be reached.
    #[error("broker {broker} unreachable: {reason}")]
    Unreachable {
        /// The address.
        broker: String,
        /// Why.
        reason: String,
    },
    /// The caller's input is invalid before it reaches the broker.
    #[error("{0}")]
    Invalid(String),
    /// The producer or consumer was closed.
    #[error("closed")]
    Closed,
    /// A delivery did not complete within its timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

impl ClientError {
    /// The gRPC code, for errors the broker sent.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for errors worth retrying: the broker is restarting, busy or unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => {
                matches!(
                    code,
                    Code::Unavailable
                        | Code::ResourceExhausted
                        | Code::DeadlineExceeded
                        | Code::Aborted
                        | Code::Unknown
                )
            }
            ClientError::Unreachable { .. } | ClientError::Timeout(_) => true,
            _ => false,
        }
    }

    /// True if the broker said the topic or partition does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Broker {
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}
