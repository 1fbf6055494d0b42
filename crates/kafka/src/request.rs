//! A request frame, decoded, and the dispatcher that sends it to its
//! handler.
//!
//! An API key the codec does not know, or a version outside the range this
//! broker serves, closes the connection as Kafka does: the client cannot
//! be answered in a shape it would read. Two exceptions, as Kafka: an
//! ApiVersions request newer than served gets a v0 answer with
//! UNSUPPORTED_VERSION and the ranges (KIP-511), and Produce v0-2, which
//! are advertised, get UNSUPPORTED_VERSION.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use carteiro_core::fetch::FetchReservation;
use carteiro_core::pipeline::Pipeline;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use tokio::task::JoinHandle;

use crate::handlers;
use crate::listener::Edge;
use crate::metrics;
use crate::versions::served;

/// A request's header and its undecoded body.
pub(crate) struct Frame {
    pub key: Option<ApiKey>,
    pub raw_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub header: Option<RequestHeader>,
    pub body: Bytes,
}

impl Frame {
    /// Reads the header of a frame at least
    /// [`REQUEST_HEADER_FIXED_BYTES`](crate::connection::REQUEST_HEADER_FIXED_BYTES) long.
    pub fn parse(mut bytes: Bytes) -> Result<Frame, String> {
        let fixed = bytes.slice(..crate::connection::REQUEST_HEADER_FIXED_BYTES);
        let (raw_key, version, correlation_id) = {
            let mut fixed = &fixed[..];
            (fixed.get_i16(), fixed.get_i16(), fixed.get_i32())
        };
        let key = ApiKey::try_from(raw_key).ok();
        let Some(api) = key else {
            return Ok(Frame {
                key,
                raw_key,
                version,
                correlation_id,
                header: None,
                body: Bytes::new(),
            });
        };
        // The header's own version follows from the API's version; an
        // ApiVersions newer than the codec knows still has a v2 header.
        let known = api.valid_versions();
        let header_version = api.request_header_version(version.clamp(known.min, known.max));
        let header = decode_guarded(|| RequestHeader::decode(&mut bytes, header_version))
            .map_err(|e| format!("{api:?} v{version}: request header: {e}"))?;
        Ok(Frame {
            key,
            raw_key,
            version,
            correlation_id,
            header: Some(header),
            body: bytes,
        })
    }

    /// The client's id, or "" if it sent none.
    pub fn client_id(&self) -> String {
        self.header
            .as_ref()
            .and_then(|h| h.client_id.as_ref())
            .map(|id| id.as_str().to_string())
            .unwrap_or_default()
    }
}

/// Runs a decoder, turning a panic inside the codec into an error: a
/// client's bytes must never take a connection task down.
pub(crate) fn decode_guarded<T, E: std::fmt::Display>(
    decode: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("malformed request".to_string()),
    }
}

/// A reply's body.
pub(crate) enum Body {
    /// A response for the codec to encode at the request's version.
    Kind(ResponseKind),
    /// A response for the codec to encode at this version instead (an
    /// ApiVersions too new for us is answered as v0).
    KindAt(ResponseKind, i16),
    /// A body already encoded, with its response header version.
    Raw {
        /// The body's bytes.
        bytes: Bytes,
        /// 0 or 1.
        header_version: i16,
    },
}

/// A reply, and what it holds until its bytes are written.
pub(crate) struct Reply {
    pub body: Body,
    /// A fetch's share of the reply budget.
    pub hold: Option<FetchReservation>,
}

impl Reply {
    /// A reply that holds nothing.
    pub fn new(body: ResponseKind) -> Self {
        Reply {
            body: Body::Kind(body),
            hold: None,
        }
    }
}

/// What the connection does with a request.
pub(crate) enum Outcome {
    /// Answer now.
    Reply(Box<Reply>),
    /// Answer when this task ends; later requests are read meanwhile.
    Later(JoinHandle<Option<Reply>>),
    /// No answer (a produce with acks=0).
    NoReply,
    /// Close the connection, for this reason.
    Close(String),
}

/// Decodes a frame's body and runs its handler. Produce requests are
/// appended here, in the order they came (queued through the connection's
/// `pipeline`); everything else runs in its own task so that a long poll
/// does not hold up the requests behind it.
pub(crate) async fn route(edge: &Arc<Edge>, pipeline: &mut Pipeline, frame: Frame) -> Outcome {
    let Some(key) = frame.key else {
        return Outcome::Close(format!("unknown API key {}", frame.raw_key));
    };
    let version = frame.version;
    let Some(range) = served(key) else {
        return Outcome::Close(format!("{key:?} (API key {}) is not served", frame.raw_key));
    };
    if key == ApiKey::ApiVersions && version > range.max {
        return Outcome::Reply(Box::new(Reply {
            body: Body::KindAt(handlers::api_versions::unsupported(), 0),
            hold: None,
        }));
    }
    // Requests answered by closing the connection count their error here.
    let api = metrics::api_index(key).unwrap_or(usize::MAX);
    if version < range.advertised_min || version > range.max {
        metrics::count_error(api, ResponseError::UnsupportedVersion.code());
        return Outcome::Close(format!(
            "{key:?} v{version} is not served: versions {}..={}",
            range.advertised_min, range.max
        ));
    }
    if version < range.served_min {
        metrics::count_error(api, ResponseError::UnsupportedVersion.code());
        return match handlers::produce::refuse_old_version(&frame) {
            Ok(reply) => Outcome::Reply(Box::new(reply)),
            Err(reason) => Outcome::Close(reason),
        };
    }
    let client_id = frame.client_id();
    let mut body = frame.body;
    let request = match decode_guarded(|| RequestKind::decode(key, &mut body, version)) {
        Ok(request) => request,
        Err(e) => {
            metrics::count_error(api, ResponseError::InvalidRequest.code());
            return Outcome::Close(format!("{key:?} v{version}: malformed request: {e}"));
        }
    };
    if let RequestKind::Produce(produce) = request {
        return handlers::produce::append(edge, pipeline, produce, version).await;
    }
    let edge = edge.clone();
    Outcome::Later(tokio::spawn(async move {
        handlers::handle(&edge, request, version, client_id).await
    }))
}
