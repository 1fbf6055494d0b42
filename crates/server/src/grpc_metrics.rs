//! The gRPC edge's figures for `/metrics`: per method, requests (in flight
//! and done), their durations and their status codes; connections open;
//! and what each limit refused. Fixed arrays of atomics in one
//! process-wide value, indexed by the method's place in [`METHODS`] and by
//! the status code, so counting takes no lock; the collector reads
//! [`snapshot`] when scraped.
//!
//! A unary request counts from the moment the body-budget layer sees it
//! until its reply (trailers included) has been handed to the connection;
//! its status is the one in its trailers, as the client gets it (a reply
//! dropped before its trailers, the client gone, counts CANCELLED). Each
//! request of a ProduceStream counts on its own, from being read to its
//! reply being queued on the stream, with its reply's code.

use carteiro_storage::metrics::{
    ApiSnapshot, Counters, EdgeSnapshot, Gauge, GaugeHold, RequestCounters, RequestTimer,
};
use tonic::Code;

/// The methods counted, by path, and their `api` label; anything else
/// (health checks, reflection, unknown paths) counts as `other`.
pub const METHODS: [(&str, &str); 18] = [
    ("/carteiro.v1.Broker/Produce", "Produce"),
    ("/carteiro.v1.Broker/ProduceStream", "ProduceStream"),
    ("/carteiro.v1.Broker/Fetch", "Fetch"),
    ("/carteiro.v1.Broker/ListOffsets", "ListOffsets"),
    ("/carteiro.v1.Broker/CommitOffsets", "CommitOffsets"),
    ("/carteiro.v1.Broker/FetchOffsets", "FetchOffsets"),
    ("/carteiro.v1.Broker/InitProducerId", "InitProducerId"),
    ("/carteiro.v1.Admin/CreateTopic", "CreateTopic"),
    ("/carteiro.v1.Admin/DeleteTopic", "DeleteTopic"),
    ("/carteiro.v1.Admin/ListTopics", "ListTopics"),
    ("/carteiro.v1.Admin/DescribeTopic", "DescribeTopic"),
    ("/carteiro.v1.Admin/CreatePartitions", "CreatePartitions"),
    ("/carteiro.v1.Admin/ListGroups", "ListGroups"),
    ("/carteiro.v1.Admin/DescribeGroup", "DescribeGroup"),
    ("/carteiro.v1.Groups/JoinGroup", "JoinGroup"),
    ("/carteiro.v1.Groups/Heartbeat", "Heartbeat"),
    ("/carteiro.v1.Groups/LeaveGroup", "LeaveGroup"),
    ("", "other"),
];

/// The place of ProduceStream in [`METHODS`]: its requests are counted
/// one by one by the stream, not by the layer.
pub const PRODUCE_STREAM: usize = 1;
/// The place of `other` in [`METHODS`].
const OTHER: usize = METHODS.len() - 1;

/// The gRPC status codes, by number (0 is OK, never counted as an error).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The limits of the gRPC edge that refuse something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A connection over `--max-connections`, closed at accept.
    Connections = 0,
    /// `--max-requests-in-flight`.
    RequestsInFlight = 1,
    /// `--max-buffered-bytes`: produce bytes being appended.
    ProduceBytes = 2,
    /// `--max-fetches-in-flight`.
    FetchesInFlight = 3,
    /// `--max-fetches-per-connection`.
    FetchesPerConnection = 4,
    /// `--max-request-bytes-in-flight`: no room within the wait.
    RequestBytesInFlight = 5,
    /// A request message over `GRPC_REQUEST_BYTES_MAX`.
    RequestBytes = 6,
}

/// Names of [`Limit`]s in the `limit` label: the flag (or constant) that
/// sets each.
pub const LIMIT_NAMES: [&str; 7] = [
    "max_connections",
    "max_requests_in_flight",
    "max_buffered_bytes",
    "max_fetches_in_flight",
    "max_fetches_per_connection",
    "max_request_bytes_in_flight",
    "grpc_request_bytes_max",
];

/// The edge's counters; see the module documentation.
struct GrpcMetrics {
    methods: [RequestCounters<{ CODE_NAMES.len() }>; METHODS.len()],
    connections: Gauge,
    refused: Counters<{ LIMIT_NAMES.len() }>,
}

static GRPC: GrpcMetrics = GrpcMetrics {
    methods: [const { RequestCounters::new() }; METHODS.len()],
    connections: Gauge::new(),
    refused: Counters::new(),
};

/// The place in [`METHODS`] of the method at `path`.
pub fn method_index(path: &str) -> usize {
    METHODS[..OTHER]
        .iter()
        .position(|(p, _)| *p == path)
        .unwrap_or(OTHER)
}

/// A request of the method at `method` begins; it is done when the
/// returned timer is dropped.
pub fn start(method: usize) -> RequestTimer {
    GRPC.methods[method.min(OTHER)].start()
}

/// Counts the status a request of `method` ended with (OK is not an error).
pub fn count_status(method: usize, code: Code) {
    count_status_number(method, code as i32);
}

/// As [`count_status`], from the number a `grpc-status` carries (an
/// unknown number counts as UNKNOWN).
pub fn count_status_number(method: usize, code: i32) {
    if code == 0 {
        return;
    }
    let index = usize::try_from(code)
        .ok()
        .filter(|&i| i < CODE_NAMES.len())
        .unwrap_or(Code::Unknown as usize);
    GRPC.methods[method.min(OTHER)].error(index);
}

/// A connection is open until the returned hold is dropped.
pub fn connection_open() -> GaugeHold {
    GRPC.connections.hold()
}

/// Counts something a limit refused.
pub fn refused(limit: Limit) {
    GRPC.refused.add(limit as usize);
}

/// The gRPC edge's figures now.
pub fn snapshot() -> EdgeSnapshot {
    let apis = METHODS
        .iter()
        .zip(&GRPC.methods)
        .map(|((_, name), counters)| {
            let requests = counters.snapshot();
            let errors = requests
                .errors
                .iter()
                .zip(CODE_NAMES)
                .filter(|(n, _)| **n > 0)
                .map(|(n, code)| (code.to_string(), *n))
                .collect();
            ApiSnapshot {
                api: name.to_string(),
                requests,
                errors,
            }
        })
        .collect();
    EdgeSnapshot {
        edge: "grpc",
        apis,
        open_connections: GRPC.connections.get(),
        refused: LIMIT_NAMES
            .iter()
            .copied()
            .zip(GRPC.refused.snapshot())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_codes_map_to_the_fixed_tables() {
        assert_eq!(method_index("/carteiro.v1.Broker/Produce"), 0);
        assert_eq!(
            method_index("/carteiro.v1.Broker/ProduceStream"),
            PRODUCE_STREAM
        );
        assert_eq!(METHODS[PRODUCE_STREAM].1, "ProduceStream");
        assert_eq!(method_index("/grpc.health.v1.Health/Check"), OTHER);
        assert_eq!(method_index(""), OTHER);
        assert_eq!(
            CODE_NAMES[Code::ResourceExhausted as usize],
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(
            CODE_NAMES[Code::Unauthenticated as usize],
            "UNAUTHENTICATED"
        );
        assert_eq!(
            LIMIT_NAMES[Limit::RequestBytes as usize],
            "grpc_request_bytes_max"
        );
    }
}
