//! Memory held by request and reply bodies, bounded at the HTTP/2 layer,
//! under every gRPC service:
//!
//! - **Requests are counted before they are decoded.** Each gRPC message
//!   announces its length in a 5-byte prefix; the broker reserves that many
//!   bytes of the request budget when the prefix arrives, before tonic
//!   buffers the message, and refuses a message over
//!   [`GRPC_REQUEST_BYTES_MAX`] with INVALID_ARGUMENT naming its size and the
//!   limit. With the budget spent, the request waits (its client's flow
//!   control stops it) up to [`REQUEST_BYTES_WAIT_MS`], then gets
//!   RESOURCE_EXHAUSTED. A unary request's reservation lasts until its reply
//!   is sent, so it covers the decoded request while the handler works on
//!   it. On a client stream ([`CLIENT_STREAMING_PATHS`]) a message's
//!   reservation lasts until tonic asks for more bytes after it (it has
//!   decoded the message by then; a produce's bytes are counted from there
//!   by the produce admission), so an idle stream holds nothing.
//! - **Fetch replies keep their share until sent.** A handler may put a
//!   [`HeldUntilSent`] in its reply's extensions (a fetch puts its share of
//!   the core's reply budget); it is dropped when the reply body has been
//!   handed to the connection, not when the handler returns, so a slow
//!   reader holds its share while its reply waits in memory.
//! - **Undecodable messages are INVALID_ARGUMENT.** tonic answers a message
//!   that is not valid protobuf (or has a string that is not UTF-8) with
//!   INTERNAL; the contract says bad input is INVALID_ARGUMENT, and this is
//!   where the status is corrected.
//! - **Every request is counted here** for `/metrics` (see
//!   `grpc_metrics`): begun when the layer sees it, done when its reply
//!   body is, with the status of its trailers.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use carteiro_core::fetch::kib;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tonic::body::Body;

use crate::grpc_metrics::{self, Limit};
use crate::server::GRPC_REQUEST_BYTES_MAX;

/// Longest a request waits for room in the request budget, in ms.
pub const REQUEST_BYTES_WAIT_MS: u64 = 5_000;
/// Bytes of a gRPC message prefix: a compression flag and a u32 length.
const GRPC_PREFIX_BYTES: usize = 5;
/// How tonic's protobuf decoder begins the message of its INTERNAL status.
const DECODE_ERROR_PREFIX: &[u8] = b"failed to decode Protobuf message";
/// How tonic begins its OUT_OF_RANGE for a message over a service's own
/// decoding limit (the Groups service keeps tonic's 4 MiB).
const TOO_LARGE_PREFIX: &[u8] = b"Error, decoded message length too large";

/// The methods whose requests are streams of messages: a message's
/// reservation ends when the next is asked for, not with the reply.
pub const CLIENT_STREAMING_PATHS: &[&str] = &[
    "/carteiro.v1.Broker/ProduceStream",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Something a reply keeps alive until its body has been sent.
#[derive(Clone)]
pub struct HeldUntilSent {
    _value: Arc<dyn Any + Send + Sync>,
}

impl HeldUntilSent {
    /// Holds `value` until the reply carrying this is sent.
    pub fn new(value: impl Any + Send + Sync) -> Self {
        HeldUntilSent {
            _value: Arc::new(value),
        }
    }
}

/// The request-body budget, shared by every connection.
#[derive(Clone)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
}

impl BodyBudget {
    /// A budget of `bytes` of request messages at once.
    pub fn new(bytes: u64) -> Self {
        BodyBudget {
            kib: Arc::new(Semaphore::new(kib(bytes) as usize)),
            total_kib: kib(bytes),
        }
    }
}

/// The layer that applies the budget to a service.
#[derive(Clone)]
pub struct BodyBudgetLayer {
    budget: BodyBudget,
}

impl BodyBudgetLayer {
    /// Applies `budget`.
    pub fn new(budget: BodyBudget) -> Self {
        BodyBudgetLayer { budget }
    }
}

impl<S> tower_layer::Layer<S> for BodyBudgetLayer {
    type Service = BodyBudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyBudgetService {
            inner,
            budget: self.budget.clone(),
        }
    }
}

/// A service whose request and reply bodies are counted.
#[derive(Clone)]
pub struct BodyBudgetService<S> {
    inner: S,
    budget: BodyBudget,
}

/// The reservation of a request's current message, shared by its request
/// body (which sets it) and its reply body (which keeps it until sent).
type Held = Arc<Mutex<Option<OwnedSemaphorePermit>>>;

impl<S, ResBody> tower_service::Service<http::Request<Body>> for BodyBudgetService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let held: Held = Arc::new(Mutex::new(None));
        let budget = self.budget.clone();
        let counted = held.clone();
        let streaming = CLIENT_STREAMING_PATHS.contains(&request.uri().path());
        let method = grpc_metrics::method_index(request.uri().path());
        // A ProduceStream's requests are counted one by one by the stream.
        let timer = (method != grpc_metrics::PRODUCE_STREAM).then(|| grpc_metrics::start(method));
        let request = request.map(move |body| {
            let mut counted = CountedBody::new(body, budget, counted);
            counted.streaming = streaming;
            Body::new(counted)
        });
        let reply = self.inner.call(request);
        Box::pin(async move {
            let mut reply = reply.await?;
            correct_decode_status(reply.headers_mut());
            let mut counted = timer.map(|timer| Counted {
                method,
                _timer: timer,
                status_seen: false,
            });
            // A trailers-only reply (an error) has its status in the headers.
            if let Some(counted) = &mut counted {
                counted.see(reply.headers());
            }
            let kept = reply.extensions_mut().remove::<HeldUntilSent>();
            Ok(reply.map(|body| {
                Body::new(ReplyBody {
                    inner: body,
                    _held: held,
                    _kept: kept,
                    counted,
                })
            }))
        })
    }
}

/// tonic's INTERNAL for an undecodable message, and its OUT_OF_RANGE for
/// one over a service's size limit, become INVALID_ARGUMENT (in the
/// headers of a trailers-only reply, or in the trailers).
fn correct_decode_status(headers: &mut http::HeaderMap) {
    let status = headers.get("grpc-status").map(|s| s.as_bytes().to_vec());
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decoded(m.as_bytes()))
        .unwrap_or_default();
    let bad_input = match status.as_deref() {
        Some(b"13") => message.starts_with(DECODE_ERROR_PREFIX),
        Some(b"11") => message.starts_with(TOO_LARGE_PREFIX),
        _ => false,
    };
    if bad_input {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

/// A `grpc-message` as sent (percent-encoded: spaces are `%20`) back to its bytes.
fn percent_decoded(encoded: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                encoded.get(i + 1).copied().and_then(hex),
                encoded.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(encoded[i]);
        i += 1;
    }
    out
}

/// A request being counted: done (its duration observed) when dropped,
/// with the status it was seen to end with, or CANCELLED if none was.
struct Counted {
    method: usize,
    _timer: carteiro_storage::metrics::RequestTimer,
    status_seen: bool,
}

impl Counted {
    /// Counts the status in `headers` (or trailers), if there is one.
    fn see(&mut self, headers: &http::HeaderMap) {
        if self.status_seen {
            return;
        }
        let Some(code) = headers.get("grpc-status") else {
            return;
        };
        self.status_seen = true;
        let code = std::str::from_utf8(code.as_bytes())
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(tonic::Code::Unknown as i32);
        grpc_metrics::count_status_number(self.method, code);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if !self.status_seen {
            grpc_metrics::count_status(self.method, tonic::Code::Cancelled);
        }
    }
}

/// A reply body that keeps the request's reservation and the handler's
/// [`HeldUntilSent`] until it is done, and counts the request as done
/// when dropped.
struct ReplyBody<B> {
    inner: B,
    _held: Held,
    _kept: Option<HeldUntilSent>,
    counted: Option<Counted>,
}

impl<B> HttpBody for ReplyBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                let mut trailers = frame.into_trailers().unwrap_or_default();
                correct_decode_status(&mut trailers);
                if let Some(counted) = &mut self.counted {
                    counted.see(&trailers);
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type Acquire =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>>;

/// A request body that reserves each message's bytes when its prefix arrives.
struct CountedBody {
    inner: Body,
    budget: BodyBudget,
    held: Held,
    /// Prefix bytes of the next message collected so far.
    prefix: [u8; GRPC_PREFIX_BYTES],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    /// A frame being looked through, and where, while waiting for room.
    pending: Option<(Frame<Bytes>, usize)>,
    waiting: Option<(Acquire, Pin<Box<tokio::time::Sleep>>, u64)>,
    /// A client stream: a message's reservation ends between messages.
    streaming: bool,
}

impl CountedBody {
    fn new(inner: Body, budget: BodyBudget, held: Held) -> Self {
        CountedBody {
            inner,
            budget,
            held,
            prefix: [0; GRPC_PREFIX_BYTES],
            prefix_len: 0,
            remaining: 0,
            pending: None,
            waiting: None,
            streaming: false,
        }
    }

    /// Between messages (the last one whole, the next not begun), the last
    /// message's reservation goes: tonic asks for more bytes only once it
    /// has decoded what it had.
    fn release_if_between_messages(&self) {
        if self.streaming
            && self.remaining == 0
            && self.prefix_len == 0
            && self.pending.is_none()
            && self.waiting.is_none()
        {
            *self.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    fn hold(&self, permit: OwnedSemaphorePermit) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
    }

    /// Walks `data` from `at`, reserving each message that starts in it.
    /// Returns `Ok(None)` when done with it, `Ok(Some(at))` when it must wait
    /// for room from `at` on.
    fn scan(&mut self, data: &[u8], mut at: usize) -> Result<Option<usize>, Status> {
        while at < data.len() {
            if self.remaining > 0 {
                let take = self.remaining.min((data.len() - at) as u64);
                self.remaining -= take;
                at += take as usize;
                continue;
            }
            let take = (GRPC_PREFIX_BYTES - self.prefix_len).min(data.len() - at);
            self.prefix[self.prefix_len..self.prefix_len + take]
                .copy_from_slice(&data[at..at + take]);
            self.prefix_len += take;
            at += take;
            if self.prefix_len < GRPC_PREFIX_BYTES {
                break;
            }
            self.prefix_len = 0;
            let len = u64::from(u32::from_be_bytes([
                self.prefix[1],
                self.prefix[2],
                self.prefix[3],
                self.prefix[4],
            ]));
            if len > GRPC_REQUEST_BYTES_MAX as u64 {
                grpc_metrics::refused(Limit::RequestBytes);
                return Err(Status::invalid_argument(format!(
                    "request message of {len} bytes exceeds the limit of {GRPC_REQUEST_BYTES_MAX} bytes"
                )));
            }
            self.remaining = len;
            // The previous message is whole by now: its reservation goes.
            *self.held.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let want = kib(len).min(self.budget.total_kib);
            match self.budget.kib.clone().try_acquire_many_owned(want) {
                Ok(permit) => self.hold(permit),
                Err(_) => {
                    let acquire = Box::pin(self.budget.kib.clone().acquire_many_owned(want));
                    let timeout = Box::pin(tokio::time::sleep(Duration::from_millis(
                        REQUEST_BYTES_WAIT_MS,
                    )));
                    self.waiting = Some((acquire, timeout, len));
                    return Ok(Some(at));
                }
            }
        }
        Ok(None)
    }
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        this.release_if_between_messages();
        loop {
            if let Some((acquire, timeout, len)) = this.waiting.as_mut() {
                match acquire.as_mut().poll(cx) {
                    Poll::Ready(Ok(permit)) => {
                        this.waiting = None;
                        this.hold(permit);
                    }
                    Poll::Ready(Err(_)) => {
                        this.waiting = None;
                        return Poll::Ready(Some(Err(Status::unavailable("shutting down"))));
                    }
                    Poll::Pending => {
                        if timeout.as_mut().poll(cx).is_ready() {
                            let message = format!(
                                "request bodies in flight: no room for a message of {len} bytes within {REQUEST_BYTES_WAIT_MS} ms (the broker's max_request_bytes_in_flight is in use); retry later"
                            );
                            this.waiting = None;
                            grpc_metrics::refused(Limit::RequestBytesInFlight);
                            return Poll::Ready(Some(Err(Status::resource_exhausted(message))));
                        }
                        return Poll::Pending;
                    }
                }
            }
            if let Some((frame, at)) = this.pending.take() {
                let data = frame.data_ref().cloned().unwrap_or_default();
                match this.scan(&data, at) {
                    Err(status) => return Poll::Ready(Some(Err(status))),
                    Ok(Some(at)) => {
                        this.pending = Some((frame, at));
                        continue;
                    }
                    Ok(None) => return Poll::Ready(Some(Ok(frame))),
                }
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if frame.is_data() {
                        this.pending = Some((frame, 0));
                        continue;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(budget_bytes: u64) -> (CountedBody, Held) {
        let held: Held = Arc::new(Mutex::new(None));
        let body = CountedBody::new(Body::empty(), BodyBudget::new(budget_bytes), held.clone());
        (body, held)
    }

    fn prefix(len: u32) -> Vec<u8> {
        let mut p = vec![0];
        p.extend_from_slice(&len.to_be_bytes());
        p
    }

    #[test]
    fn a_message_is_reserved_when_its_prefix_arrives_even_split_across_frames() {
        let (mut body, held) = counted(1 << 20);
        let message = [prefix(10_000), vec![7; 100]].concat();
        // The prefix arrives in two pieces.
        assert_eq!(body.scan(&message[..3], 0).expect("in a test"), None);
        assert!(held.lock().expect("lock").is_none());
        assert_eq!(body.scan(&message[3..], 0).expect("in a test"), None);
        assert_eq!(
            held.lock().expect("lock").as_ref().map(|p| p.num_permits()),
            Some(10)
        );
        assert_eq!(body.remaining, 10_000 - 100);
        assert_eq!(body.budget.kib.available_permits(), 1024 - 10);
    }

    #[test]
    fn the_next_message_replaces_the_previous_reservation() {
        let (mut body, held) = counted(1 << 20);
        let two = [prefix(3), vec![1; 3], prefix(5_000), vec![2; 10]].concat();
        assert_eq!(body.scan(&two, 0).expect("in a test"), None);
        assert_eq!(
            held.lock().expect("lock").as_ref().map(|p| p.num_permits()),
            Some(5)
        );
        assert_eq!(body.budget.kib.available_permits(), 1024 - 5);
    }

    #[test]
    fn a_whole_message_gives_its_reservation_back_when_more_is_asked_for() {
        let (mut body, held) = counted(1 << 20);
        body.streaming = true;
        let message = [prefix(4_000), vec![1; 2_000]].concat();
        assert_eq!(body.scan(&message, 0).expect("in a test"), None);
        // Half of it has come: still held.
        body.release_if_between_messages();
        assert!(held.lock().expect("lock").is_some());
        assert_eq!(body.scan(&[1; 2_000], 0).expect("in a test"), None);
        body.release_if_between_messages();
        assert!(held.lock().expect("lock").is_none());
        assert_eq!(body.budget.kib.available_permits(), 1024);
        // A unary request keeps it until its reply is sent.
        let (mut unary, held) = counted(1 << 20);
        assert_eq!(unary.scan(&message, 0).expect("in a test"), None);
        assert_eq!(unary.scan(&[1; 2_000], 0).expect("in a test"), None);
        unary.release_if_between_messages();
        assert!(held.lock().expect("lock").is_some());
    }

    #[test]
    fn an_oversized_message_is_refused_by_its_prefix() {
        let (mut body, _) = counted(1 << 30);
        let status = body
            .scan(&prefix(GRPC_REQUEST_BYTES_MAX as u32 + 1), 0)
            .expect_err("must fail");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains(&GRPC_REQUEST_BYTES_MAX.to_string())
        );
    }

    #[tokio::test]
    async fn with_the_budget_spent_a_message_waits_for_room() {
        let (mut body, _) = counted(64 * 1024);
        let taken = body
            .budget
            .kib
            .clone()
            .try_acquire_many_owned(60)
            .expect("in a test");
        assert_eq!(body.scan(&prefix(8 * 1024), 0).expect("in a test"), Some(5));
        assert!(body.waiting.is_some());
        drop(taken);
        let (acquire, _, _) = body.waiting.take().expect("in a test");
        assert_eq!(acquire.await.expect("in a test").num_permits(), 8);
    }

    #[test]
    fn undecodable_becomes_invalid_argument_and_nothing_else_changes() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("13"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "failed%20to%20decode%20Protobuf%20message:%20invalid%20wire%20type",
            ),
        );
        correct_decode_status(&mut headers);
        assert_eq!(headers["grpc-status"], "3");
        let mut other = http::HeaderMap::new();
        other.insert("grpc-status", http::HeaderValue::from_static("13"));
        other.insert(
            "grpc-message",
            http::HeaderValue::from_static("disk on fire"),
        );
        correct_decode_status(&mut other);
        assert_eq!(other["grpc-status"], "13");
        let mut large = http::HeaderMap::new();
        large.insert("grpc-status", http::HeaderValue::from_static("11"));
        large.insert(
            "grpc-message",
            http::HeaderValue::from_static(
                "Error,%20decoded%20message%20length%20too%20large:%20found%205000000%20bytes",
            ),
        );
        correct_decode_status(&mut large);
        assert_eq!(large["grpc-status"], "3");
    }
}
