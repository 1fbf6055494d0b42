//! InitProducerId: an idempotent producer's id and epoch (KIP-98), from
//! the core. A transactional id is refused: transactions are not offered.
//! From v3 a producer may name its current id and epoch to get the next
//! epoch of its id (KIP-360).

use std::sync::Arc;

use carteiro_core::producers::ProducerIdentity;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::error::{Family, kafka_error};
use crate::listener::Edge;

/// Kafka's "no producer id".
const NO_PRODUCER_ID: i64 = -1;

/// Answers InitProducerId.
pub(crate) async fn init_producer_id(
    edge: &Arc<Edge>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(-1)
    };
    if let Some(id) = request.transactional_id.filter(|id| !id.0.is_empty()) {
        tracing::info!(transactional_id = %id.0.as_str(), "refused InitProducerId: transactions are not supported");
        return refused(ResponseError::TransactionalIdAuthorizationFailed);
    }
    let current = (request.producer_id.0 != NO_PRODUCER_ID).then_some(ProducerIdentity {
        producer_id: request.producer_id.0,
        epoch: request.producer_epoch,
    });
    match edge.broker.init_producer_id(current).await {
        Ok(given) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(given.producer_id))
            .with_producer_epoch(given.epoch),
        Err(e) => refused(kafka_error(&e, Family::Data).error),
    }
}
