//! The broker core: one per process, shared by every edge. It holds the
//! topic store, the committed offsets and the group coordinator, and knows
//! when the broker is shutting down.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use carteiro_storage::error::quoted;
use carteiro_storage::{LogOptions, Store, StoreOptions};
use tokio::sync::watch;

use crate::committed::{CommittedOffsets, OffsetsOptions};
use crate::coordinator::{Coordinator, SESSION_CHECK_INTERVAL_MS};
use crate::error::BrokerError;

/// Prefix of internal topics, which clients may not create, delete, produce to or commit.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";

/// How the core is opened.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Open damaged logs by cutting them at the damage (and giving up
    /// damaged committed offsets), instead of refusing to start.
    pub repair: bool,
    /// Period between two retention passes, in ms.
    pub retention_check_interval_ms: u64,
    /// Most bytes of fetch replies being gathered at once.
    pub fetch_bytes_in_flight_max: u64,
    /// An idempotent producer that appends nothing to a partition for this
    /// long is forgotten there, in ms (Kafka's `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: u64,
}

/// The broker core. See the module documentation.
pub struct Broker {
    pub(crate) store: Arc<Store>,
    pub(crate) offsets: CommittedOffsets,
    pub(crate) coordinator: Coordinator,
    /// Round-robin position per topic for records without key or partition.
    pub(crate) spread: Mutex<HashMap<String, u32>>,
    /// The budget of fetch reply bytes being gathered, in KiB.
    pub(crate) fetch_budget: crate::fetch::FetchBudget,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("dir", &self.store.dir())
            .finish()
    }
}

impl Broker {
    /// Opens the store in the data directory (recovering every partition),
    /// replays the committed offsets, and starts with no groups. Blocking.
    pub fn open(options: &BrokerOptions) -> Result<Arc<Broker>, BrokerError> {
        let store_options = StoreOptions {
            log: LogOptions {
                repair: options.repair,
                producer_id_expiration_ms: options.producer_id_expiration_ms,
                ..LogOptions::default()
            },
            retention_check_interval_ms: options.retention_check_interval_ms,
            ..StoreOptions::default()
        };
        // Storage logs each repair, naming the file and the offsets given up.
        let store = Store::open(&options.data_dir, store_options)?;
        let offsets = CommittedOffsets::open(
            &store,
            OffsetsOptions {
                repair: options.repair,
                ..OffsetsOptions::default()
            },
        )?;
        Ok(Arc::new(Broker {
            coordinator: Coordinator::new(store.clone()),
            store,
            offsets,
            spread: Mutex::new(HashMap::new()),
            fetch_budget: crate::fetch::FetchBudget::new(options.fetch_bytes_in_flight_max),
            shutdown: watch::channel(false).0,
        }))
    }

    /// The topic store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The group coordinator.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.store.clock().now_ms()
    }

    /// Begins shutting down: new work is refused, long polls and joins end,
    /// and every log is flushed in the background, so that appends waiting
    /// for an interval flush are acknowledged now. Needs a tokio runtime.
    pub fn shut_down(&self) {
        if self.shutdown.send_replace(true) {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush_all());
    }

    /// Changes to `true` when the broker begins shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Refuses new work once shutdown has begun.
    pub fn check_running(&self) -> Result<(), BrokerError> {
        if *self.shutdown.borrow() {
            Err(BrokerError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Refuses internal topics in a client request.
    pub fn check_user_topic(&self, field: &'static str, topic: &str) -> Result<(), BrokerError> {
        if topic.starts_with(INTERNAL_TOPIC_PREFIX) {
            let message = format!(
                "{}: topic names starting with {INTERNAL_TOPIC_PREFIX:?} are reserved for the broker",
                quoted(topic)
            );
            return Err(BrokerError::invalid(field, message));
        }
        Ok(())
    }

    /// Expires group members' sessions and ends overdue rebalances, every
    /// [`SESSION_CHECK_INTERVAL_MS`], until the broker shuts down.
    pub async fn run_group_expiry(&self) {
        let mut shutdown = self.shutdown_signal();
        let mut tick = tokio::time::interval(Duration::from_millis(SESSION_CHECK_INTERVAL_MS));
        loop {
            tokio::select! {
                _ = tick.tick() => self.coordinator.expire(),
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Closes every log cleanly. Blocking; call once the edges have stopped.
    pub fn close(&self) -> Result<(), BrokerError> {
        self.store.close().map_err(BrokerError::from)
    }
}
