//! The Carteiro client library: [`Producer`], [`Consumer`] and [`Admin`],
//! speaking only the gRPC contract in `proto/`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), carteiro_client::ClientError> {
//! use carteiro_client::*;
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:7099"))?;
//! let delivery = producer.send("orders", ProducerRecord::keyed("user-1", "hello")).await?;
//! println!("landed at offset {}", delivery.await?.offset);
//! producer.close().await?;
//!
//! let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:7099", Some("billing")))?;
//! consumer.subscribe(&["orders"]).await?;
//! for record in consumer.poll(std::time::Duration::from_secs(1)).await? {
//!     println!("{}:{} {:?}", record.partition, record.offset, record.value);
//! }
//! consumer.commit().await?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`producer`], [`consumer`], [`admin`], [`record`] (the record
//! types), [`error`], and [`connection`] (the channel every client shares,
//! which reconnects by itself after a broker restart).

pub mod admin;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod producer;
pub mod record;

pub use admin::{Admin, Flush, ResetTo, TopicSettings};
pub use consumer::{
    CommitMode, Consumer, ConsumerConfig, OffsetReset, RebalanceEvent, Seek, Strategy,
};
pub use error::ClientError;
pub use producer::{Acks, Compression, Delivery, Producer, ProducerConfig};
pub use record::{ConsumerRecord, ProducerRecord, RecordMetadata, TopicPartition};
