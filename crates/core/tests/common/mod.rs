//! Helpers for the core's tests.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use carteiro::record::{NewRecord, RecordBatchBuilder};
use carteiro_core::topics::TopicSettings;
use carteiro_core::{Broker, BrokerOptions};

/// A core over the data directory `dir`.
pub fn open(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(&BrokerOptions {
        data_dir: dir.to_path_buf(),
        repair: false,
        retention_check_interval_ms: 60_000,
        fetch_bytes_in_flight_max: carteiro_core::fetch::FETCH_BYTES_IN_FLIGHT_MAX_DEFAULT,
        producer_id_expiration_ms: carteiro_storage::PRODUCER_ID_EXPIRATION_MS_DEFAULT,
    })
    .expect("opens")
}

/// Topic settings with 1 MiB segments.
pub fn settings() -> TopicSettings {
    TopicSettings {
        segment_bytes: Some(1 << 20),
        ..TopicSettings::default()
    }
}

/// A batch of records with these keys and the value `v`.
pub fn keyed_batch(keys: &[&str]) -> Bytes {
    let mut builder = RecordBatchBuilder::new();
    for key in keys {
        builder
            .append(&NewRecord {
                timestamp: 1_700_000_000_000,
                key: Some(key.as_bytes()),
                value: Some(b"v"),
                headers: &[],
            })
            .expect("fits");
    }
    Bytes::from(builder.build().expect("non-empty"))
}
