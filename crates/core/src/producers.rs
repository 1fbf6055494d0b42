//! Idempotent producers (Kafka's KIP-98): the ids and epochs the broker
//! gives out. Each partition log checks the producer id, epoch and
//! sequence numbers its batches carry, so a batch is appended once however
//! often it is sent; this module only hands out the identities.
//!
//! A new producer gets a new id, unique across restarts (allocated durably
//! by the store), with epoch 0. A producer that starts its sequence
//! numbers again (after its state was lost, or to fence an older instance
//! of itself) asks for the next epoch of its id: batches of older epochs
//! are then refused. An id whose epochs are exhausted gets a new id.

use crate::broker::Broker;
use crate::error::{BrokerError, join_error};

/// The highest epoch; past it a producer gets a new id.
pub const PRODUCER_EPOCH_MAX: i16 = i16::MAX;

/// A producer's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Its id, 0 or more.
    pub producer_id: i64,
    /// Its epoch, 0 or more.
    pub epoch: i16,
}

impl Broker {
    /// A new producer id with epoch 0 or, given a producer's current
    /// identity, the same id with the next epoch (a new id once the epochs
    /// run out).
    pub async fn init_producer_id(
        &self,
        current: Option<ProducerIdentity>,
    ) -> Result<ProducerIdentity, BrokerError> {
        self.check_running()?;
        if let Some(current) = current {
            if current.producer_id < 0 {
                return Err(BrokerError::invalid(
                    "producer_id",
                    format!(
                        "{} is negative: ask without it for a new id",
                        current.producer_id
                    ),
                ));
            }
            if current.epoch < 0 {
                return Err(BrokerError::invalid(
                    "producer_epoch",
                    format!("{} is negative", current.epoch),
                ));
            }
            if current.epoch < PRODUCER_EPOCH_MAX {
                return Ok(ProducerIdentity {
                    producer_id: current.producer_id,
                    epoch: current.epoch + 1,
                });
            }
        }
        let store = self.store.clone();
        let producer_id = tokio::task::spawn_blocking(move || store.allocate_producer_id())
            .await
            .map_err(join_error)??;
        Ok(ProducerIdentity {
            producer_id,
            epoch: 0,
        })
    }
}
