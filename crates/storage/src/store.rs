//! The topic store: creates, opens, lists and deletes topics, each a set of
//! partition logs in `<data-dir>/<topic>-<partition>/`, with the topic list
//! persisted atomically in `topics.meta`. A background thread flushes logs
//! with an interval policy and applies retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::LogConfig;
use crate::error::StoreError;
use crate::log::{Log, LogOptions};
use crate::metadata::{self, METADATA_FILE, TopicRecord};

/// Longest topic name, in characters (Kafka's limit).
pub const TOPIC_NAME_MAX_CHARS: usize = 249;
/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 1024;
/// Default period of the background flush and retention thread, in ms.
pub const MAINTENANCE_INTERVAL_MS_DEFAULT: u64 = 50;
/// Default period between two retention passes, in ms (Kafka's 5 minutes).
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 5 * 60 * 1000;

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Medium, clock and repair, passed to every log.
    pub log: LogOptions,
    /// Period of the background thread that flushes interval-policy logs,
    /// writes due recovery checkpoints and applies retention, in ms; `None`
    /// runs no thread (logs then write their checkpoints as they sync; call
    /// [`Store::run_maintenance`] yourself for the rest).
    pub maintenance_interval_ms: Option<u64>,
    /// Period between two retention passes, in ms.
    pub retention_check_interval_ms: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            log: LogOptions::default(),
            maintenance_interval_ms: Some(MAINTENANCE_INTERVAL_MS_DEFAULT),
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}

/// A topic's partition count and the config of each of its logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Number of partitions, 1 to [`PARTITIONS_MAX`].
    pub partitions: u32,
    /// Config of every partition log.
    pub log: LogConfig,
}

/// A topic: its name, config and partition logs.
#[derive(Debug)]
pub struct Topic {
    name: String,
    config: TopicConfig,
    created_ms: i64,
    partitions: Vec<Arc<Log>>,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its config.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// When it was created, in ms since the Unix epoch.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Its partition logs, by partition number.
    pub fn partitions(&self) -> &[Arc<Log>] {
        &self.partitions
    }

    /// One partition's log.
    pub fn partition(&self, partition: u32) -> Result<&Arc<Log>, StoreError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| StoreError::UnknownPartition {
                topic: self.name.clone(),
                partition,
                count: self.partitions.len() as u32,
            })
    }
}

/// Checks a topic name: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| {
        Err(StoreError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("must be 1 to 249 characters, got 0".into());
    }
    if name.chars().count() > TOPIC_NAME_MAX_CHARS {
        return invalid(format!(
            "must be 1 to {TOPIC_NAME_MAX_CHARS} characters, got {}",
            name.chars().count()
        ));
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not topic names".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "character {c:?} is not allowed: use a-z, A-Z, 0-9, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The directory of one partition.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The topic store. See the module documentation.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises create and delete, which rewrite the metadata file.
    admin: Mutex<()>,
    maintenance: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    _lock: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: takes its lock, reads
    /// the topic list, opens (and if needed recovers) every partition, and
    /// removes partition directories that no topic owns (left by a create or
    /// delete that a crash interrupted).
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let medium = options.log.medium.clone();
        medium
            .create_dir_all(&dir)
            .map_err(io_err("creating", &dir))?;
        let lock = medium.lock_dir(&dir).map_err(io_err("locking", &dir))?;
        let meta_path = dir.join(METADATA_FILE);
        let records = match medium
            .read_file(&meta_path)
            .map_err(io_err("reading", &meta_path))?
        {
            None => Vec::new(),
            Some(bytes) => {
                metadata::decode(&bytes).map_err(|reason| StoreError::CorruptMetadata {
                    path: meta_path.clone(),
                    reason,
                })?
            }
        };
        let mut topics = BTreeMap::new();
        for record in records {
            let topic = open_topic(&dir, &options, record)?;
            topics.insert(topic.name.clone(), Arc::new(topic));
        }
        let store = Arc::new(Store {
            dir,
            options,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            maintenance: Mutex::new(None),
            _lock: lock,
        });
        store.remove_orphan_dirs()?;
        if let Some(interval) = store.options.maintenance_interval_ms {
            store.start_maintenance(Duration::from_millis(interval.max(1)));
        }
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn remove_orphan_dirs(&self) -> Result<(), StoreError> {
        let medium = &self.options.log.medium;
        let names = medium
            .list_dir(&self.dir)
            .map_err(io_err("listing", &self.dir))?;
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        for name in names {
            let Some((topic, partition)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(partition) = partition.parse::<u32>() else {
                continue;
            };
            if validate_topic_name(topic).is_err() {
                continue;
            }
            let owned = topics
                .get(topic)
                .is_some_and(|t| partition < t.config.partitions);
            if !owned {
                let path = self.dir.join(&name);
                tracing::warn!(dir = %path.display(), "removing partition directory that no topic owns");
                medium
                    .remove_dir_all(&path)
                    .map_err(io_err("removing", &path))?;
            }
        }
        Ok(())
    }

    fn write_metadata(&self, topics: &BTreeMap<String, Arc<Topic>>) -> Result<(), StoreError> {
        let records: Vec<TopicRecord> = topics
            .values()
            .map(|t| TopicRecord {
                name: t.name.clone(),
                partitions: t.config.partitions,
                config: t.config.log.clone(),
                created_ms: t.created_ms,
            })
            .collect();
        let path = self.dir.join(METADATA_FILE);
        let bytes = metadata::encode(&records).map_err(|reason| StoreError::CorruptMetadata {
            path: path.clone(),
            reason,
        })?;
        self.options
            .log
            .medium
            .write_file_atomic(&path, &bytes)
            .map_err(io_err("writing", &path))
    }

    /// Creates a topic and its partition logs; durable when it returns.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>, StoreError> {
        validate_topic_name(name)?;
        if config.partitions == 0 || config.partitions > PARTITIONS_MAX {
            return Err(StoreError::InvalidPartitionCount {
                partitions: config.partitions,
                max: PARTITIONS_MAX,
            });
        }
        config.log.validate()?;
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
        {
            return Err(StoreError::TopicExists {
                name: name.to_string(),
            });
        }
        let medium = &self.options.log.medium;
        // A crash during an earlier create or delete may have left directories behind.
        for partition in 0..config.partitions {
            let path = partition_dir(&self.dir, name, partition);
            medium
                .remove_dir_all(&path)
                .map_err(io_err("removing", &path))?;
        }
        let record = TopicRecord {
            name: name.to_string(),
            partitions: config.partitions,
            config: config.log.clone(),
            created_ms: self.options.log.clock.now_ms(),
        };
        let topic = Arc::new(open_topic(&self.dir, &self.options, record)?);
        let mut next = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        next.insert(name.to_string(), topic.clone());
        if let Err(e) = self.write_metadata(&next) {
            for (partition, log) in topic.partitions.iter().enumerate() {
                let _ = log.close();
                let _ = medium.remove_dir_all(&partition_dir(&self.dir, name, partition as u32));
            }
            return Err(e);
        }
        *self.topics.write().unwrap_or_else(|p| p.into_inner()) = next;
        tracing::info!(
            topic = name,
            partitions = config.partitions,
            "created topic"
        );
        Ok(topic)
    }

    /// Deletes a topic and all its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(topic) = next.remove(name) else {
            return Err(StoreError::UnknownTopic {
                name: name.to_string(),
            });
        };
        // The topic is gone once the metadata says so; its directories follow.
        self.write_metadata(&next)?;
        *self.topics.write().unwrap_or_else(|p| p.into_inner()) = next;
        let medium = &self.options.log.medium;
        for (partition, log) in topic.partitions.iter().enumerate() {
            if let Err(e) = log.close() {
                tracing::warn!(topic = name, partition, error = %e, "closing deleted partition");
            }
            let path = partition_dir(&self.dir, name, partition as u32);
            medium
                .remove_dir_all(&path)
                .map_err(io_err("removing", &path))?;
        }
        medium
            .sync_dir(&self.dir)
            .map_err(io_err("syncing", &self.dir))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// One topic.
    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, StoreError> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTopic {
                name: name.to_string(),
            })
    }

    /// One partition's log.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Log>, StoreError> {
        self.topic(topic)?.partition(partition).cloned()
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// One maintenance pass: flushes interval-policy logs that are due,
    /// writes the recovery checkpoints syncs found due and, with
    /// `retention`, applies retention to every log.
    pub fn run_maintenance(&self, retention: bool) {
        for topic in self.topics() {
            for log in topic.partitions() {
                if let Err(e) = log.flush_if_due() {
                    tracing::warn!(dir = %log.dir().display(), error = %e, "interval flush failed");
                }
                log.write_due_checkpoint();
                if retention {
                    log.apply_retention();
                }
            }
        }
    }

    fn start_maintenance(self: &Arc<Self>, interval: Duration) {
        let (stop, stopped) = mpsc::channel::<()>();
        let store: Weak<Store> = Arc::downgrade(self);
        let retention_every =
            Duration::from_millis(self.options.retention_check_interval_ms.max(1));
        let spawned = std::thread::Builder::new()
            .name("carteiro-maintenance".into())
            .spawn(move || {
                let mut since_retention = Duration::ZERO;
                loop {
                    match stopped.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let Some(store) = store.upgrade() else { return };
                    since_retention += interval;
                    let retention = since_retention >= retention_every;
                    if retention {
                        since_retention = Duration::ZERO;
                    }
                    store.run_maintenance(retention);
                }
            });
        match spawned {
            Ok(handle) => {
                *self.maintenance.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, handle))
            }
            Err(e) => tracing::error!(error = %e, "could not start the maintenance thread"),
        }
    }

    /// Stops the maintenance thread and closes every log cleanly. Returns the
    /// first error; every log is attempted.
    pub fn close(&self) -> Result<(), StoreError> {
        if let Some((stop, handle)) = self
            .maintenance
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            drop(stop);
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        let mut first_error = None;
        for topic in self.topics() {
            for (partition, log) in topic.partitions().iter().enumerate() {
                if let Err(e) = log.close() {
                    tracing::error!(topic = topic.name(), partition, error = %e, "closing partition");
                    first_error.get_or_insert(StoreError::Io {
                        op: "closing",
                        path: log.dir().to_path_buf(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing store on drop");
        }
    }
}

fn open_topic(
    dir: &Path,
    options: &StoreOptions,
    record: TopicRecord,
) -> Result<Topic, StoreError> {
    let mut partitions = Vec::with_capacity(record.partitions as usize);
    for partition in 0..record.partitions {
        let log = Log::open(
            partition_dir(dir, &record.name, partition),
            record.config.clone(),
            &options.log,
        )
        .map_err(|source| StoreError::Open {
            topic: record.name.clone(),
            partition,
            source,
        })?;
        if options.maintenance_interval_ms.is_some() {
            log.defer_checkpoints();
        }
        partitions.push(Arc::new(log));
    }
    Ok(Topic {
        name: record.name,
        config: TopicConfig {
            partitions: record.partitions,
            log: record.config,
        },
        created_ms: record.created_ms,
        partitions,
    })
}
