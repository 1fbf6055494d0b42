//! `/api/`: the console's JSON. Reads: topics, one topic, a partition's
//! messages, groups, one group, rates. Writes: create a topic, delete a
//! topic. Each handler checks its inputs (`input`), calls the core (what
//! reads the disk on the blocking pool), and answers JSON (`views`,
//! `messages`); every failure is one [`ApiError`] shape (`error`).
//! docs/http.md describes every endpoint and field.

mod error;
mod input;
mod messages;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use carteiro_core::Broker;
use serde::Serialize;

pub use error::{ApiError, ERROR_VALUE_CHARS_MAX};
pub use input::{BODY_BYTES_MAX, QUERY_BYTES_MAX};
pub use messages::{
    FIELD_SHOWN_BYTES_MAX, HEADERS_SHOWN_MAX, MESSAGE_READ_WAIT, MESSAGE_READS_IN_FLIGHT_MAX,
    MESSAGES_DECODED_BYTES_MAX, MESSAGES_LIMIT_DEFAULT, MESSAGES_LIMIT_MAX,
    MESSAGES_READ_BYTES_MAX, MESSAGES_SHOWN_BYTES_MAX,
};

use super::HttpState;
use super::rates::{RATE_INTERVAL, RATE_SAMPLES_MAX, RatePoint};
use messages::Start;
use views::{GroupView, TopicView};

type Answer = Result<Response, ApiError>;

/// The routes under `/api`.
pub(super) fn router() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/topics", get(topics).post(create_topic))
        .route("/topics/{name}", get(topic).delete(delete_topic))
        .route(
            "/topics/{name}/partitions/{partition}/messages",
            get(partition_messages),
        )
        .route("/groups", get(groups))
        .route("/groups/{group}", get(group))
        .route("/rates", get(rates))
        .fallback(no_such_path)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
}

/// The core, once recovery ended.
fn broker(state: &HttpState) -> Result<Arc<Broker>, ApiError> {
    state.broker.get().cloned().ok_or(ApiError::Recovering)
}

/// `value` as a JSON answer with `status`.
fn json(status: StatusCode, value: &impl Serialize) -> Answer {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

/// Runs blocking work (what reads the disk) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("a blocking task failed: {e}")))?
}

/// A path's parameters, or the reason they do not parse.
fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Path(value)| value)
        .map_err(|e| ApiError::invalid("path", "", e.body_text()))
}

/// A topic the console may show: a valid user topic's name.
fn user_topic(broker: &Broker, name: &str) -> Result<(), ApiError> {
    input::topic_name(name)?;
    broker.check_user_topic("name", name)?;
    Ok(())
}

#[derive(Serialize)]
struct TopicList {
    topics: Vec<TopicView>,
}

/// `GET /api/topics`: every user topic, described.
async fn topics(State(state): State<Arc<HttpState>>, uri: Uri) -> Answer {
    input::params(&uri, &[])?;
    let broker = broker(&state)?;
    let described = blocking(move || {
        Ok(broker
            .list_topics()
            .into_iter()
            // A topic deleted meanwhile is left out.
            .filter_map(|(name, _)| broker.describe_topic(&name).ok())
            .collect::<Vec<_>>())
    })
    .await?;
    let topics = described
        .into_iter()
        .map(|t| {
            let rate = state.rates.latest(&t.name);
            TopicView::new(t, rate)
        })
        .collect();
    json(StatusCode::OK, &TopicList { topics })
}

/// `GET /api/topics/{name}`: one topic.
async fn topic(
    State(state): State<Arc<HttpState>>,
    name: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Answer {
    let name = path(name)?;
    input::params(&uri, &[])?;
    let broker = broker(&state)?;
    user_topic(&broker, &name)?;
    let described = {
        let name = name.clone();
        blocking(move || Ok(broker.describe_topic(&name)?)).await?
    };
    json(
        StatusCode::OK,
        &TopicView::new(described, state.rates.latest(&name)),
    )
}

/// `POST /api/topics` with `{"name": ..., "partitions": ...}`.
async fn create_topic(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    input::same_origin(&headers)?;
    input::params(&uri, &[])?;
    input::json_content_type(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge {
                limit: BODY_BYTES_MAX,
            }
        } else {
            ApiError::invalid("body", "", e.body_text())
        }
    })?;
    let new = input::new_topic(&body)?;
    let broker = broker(&state)?;
    let created = broker
        .create_topic(&new.name, new.partitions, &Default::default())
        .await?;
    tracing::info!(topic = %new.name, partitions = new.partitions, "topic created from the HTTP API");
    json(StatusCode::CREATED, &TopicView::new(created, None))
}

#[derive(Serialize)]
struct Deleted {
    deleted: String,
}

/// `DELETE /api/topics/{name}`.
async fn delete_topic(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Answer {
    input::same_origin(&headers)?;
    let name = path(name)?;
    input::params(&uri, &[])?;
    let broker = broker(&state)?;
    user_topic(&broker, &name)?;
    broker.delete_topic(&name).await?;
    tracing::info!(topic = %name, "topic deleted from the HTTP API");
    json(StatusCode::OK, &Deleted { deleted: name })
}

/// `GET /api/topics/{name}/partitions/{partition}/messages?limit=&offset=|time=`.
async fn partition_messages(
    State(state): State<Arc<HttpState>>,
    segments: Result<Path<(String, String)>, PathRejection>,
    uri: Uri,
) -> Answer {
    let (name, partition) = path(segments)?;
    let params = input::params(&uri, &["limit", "offset", "time"])?;
    let broker = broker(&state)?;
    user_topic(&broker, &name)?;
    let partition = input::partition(&partition)?;
    let limit = params
        .number("limit", 1, i64::from(MESSAGES_LIMIT_MAX))?
        .map_or(MESSAGES_LIMIT_DEFAULT, |n| n as u32);
    let offset = params.number("offset", 0, i64::MAX)?;
    let time = params.number("time", 0, i64::MAX)?;
    let start = match (offset, time) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "time",
                params.get("time").unwrap_or_default(),
                "cannot be given with offset: choose one",
            ));
        }
        (Some(offset), None) => Start::Offset(offset as u64),
        (None, Some(ms)) => Start::Time(ms),
        (None, None) => Start::Latest,
    };
    let read = messages::read(broker, name, partition, start, limit).await?;
    json(StatusCode::OK, &read)
}

#[derive(Serialize)]
struct GroupList {
    groups: Vec<GroupView>,
}

/// `GET /api/groups`: every group with members or commits.
async fn groups(State(state): State<Arc<HttpState>>, uri: Uri) -> Answer {
    input::params(&uri, &[])?;
    let broker = broker(&state)?;
    let groups = blocking(move || {
        Ok(broker
            .list_groups()
            .into_iter()
            // A group that emptied meanwhile is left out.
            .filter_map(|g| broker.describe_group(&g).ok())
            .map(GroupView::from)
            .collect::<Vec<_>>())
    })
    .await?;
    json(StatusCode::OK, &GroupList { groups })
}

/// `GET /api/groups/{group}`.
async fn group(
    State(state): State<Arc<HttpState>>,
    group: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Answer {
    let group = path(group)?;
    input::params(&uri, &[])?;
    input::group(&group)?;
    let broker = broker(&state)?;
    let described = blocking(move || Ok(broker.describe_group(&group)?)).await?;
    json(StatusCode::OK, &GroupView::from(described))
}

#[derive(Serialize)]
struct TopicRates {
    topic: String,
    samples: Vec<RatePoint>,
}

#[derive(Serialize)]
struct RateList {
    interval_ms: u64,
    samples_max: usize,
    topics: Vec<TopicRates>,
}

/// `GET /api/rates?topic=&seconds=`: samples of the last `seconds` (at
/// most what the ring keeps), of one topic or of all.
async fn rates(State(state): State<Arc<HttpState>>, uri: Uri) -> Answer {
    let params = input::params(&uri, &["topic", "seconds"])?;
    let interval_ms = RATE_INTERVAL.as_millis() as u64;
    let kept_s = (RATE_SAMPLES_MAX as u64 * interval_ms / 1000) as i64;
    let seconds = params.number("seconds", 1, kept_s)?.unwrap_or(kept_s) as u32;
    let topics = match params.get("topic") {
        Some(topic) => {
            input::topic_name(topic)?;
            vec![TopicRates {
                topic: topic.to_string(),
                samples: state.rates.series(topic, seconds),
            }]
        }
        None => state
            .rates
            .all(seconds)
            .into_iter()
            .map(|(topic, samples)| TopicRates { topic, samples })
            .collect(),
    };
    json(
        StatusCode::OK,
        &RateList {
            interval_ms,
            samples_max: RATE_SAMPLES_MAX,
            topics,
        },
    )
}

/// Any other path under `/api/`.
async fn no_such_path(uri: Uri) -> ApiError {
    // A nested router sees the path without its `/api` prefix.
    ApiError::NoSuchPath {
        path: error::cut(&format!("/api{}", uri.path())),
    }
}

/// A method a path does not serve.
async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
