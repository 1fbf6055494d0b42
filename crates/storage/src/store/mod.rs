//! The topic store: creates, opens, lists and deletes topics, each a set of
//! partition logs in `<data-dir>/<topic>-<partition>/` (each holding a
//! `partition.meta` marker that names its topic), with the topic list
//! persisted atomically in `topics.meta`. A background thread flushes logs
//! with an interval policy and applies retention. Producer ids for
//! idempotent producers are allocated here, unique across restarts
//! (`producer-ids.meta`).
//!
//! Startup never deletes what it cannot prove it created (a directory whose
//! marker names it, or a temporary file of ours), and a missing or damaged `topics.meta` is rebuilt
//! from the markers or refused, never read as "no topics".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::data_dir::partition_dir;
use crate::data_dir::{
    self, deleted_dir, empty_but_marker, io_err, read_marker, read_topic_list, write_topic_list,
};
use crate::error::StoreError;
use crate::log::{Log, LogOptions};
use crate::medium::Medium;
use crate::metadata::{PARTITION_MARKER_TMP_FILE, PartitionMarker, TopicRecord};
use crate::producers::PRODUCER_ID_BLOCK;
use crate::producers::ids::{self, PRODUCER_IDS_FILE, ProducerIds};

mod maintenance;
mod partitions;
mod topic;

use partitions::{Opening, open_partitions, open_topic};
use topic::check_topic_config;
pub use topic::{PARTITIONS_MAX, TOPIC_NAME_MAX_CHARS, Topic, TopicConfig, validate_topic_name};

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

/// The topic store. See the module documentation.
pub struct Store {
    dir: PathBuf,
    options: StoreOptions,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises create, growth and delete, which rewrite the metadata file.
    admin: Mutex<()>,
    maintenance: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    /// Entries of the data directory that are not ours, found at open.
    unknown: Vec<PathBuf>,
    /// The producer id allocator; held while a new block is written.
    producer_ids: Mutex<ProducerIds>,
    _lock: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: takes its lock, reads
    /// the topic list (rebuilding a missing or damaged one from the
    /// partition markers), finishes deletions a crash interrupted, opens
    /// (and if needed recovers) every partition, and removes the partition
    /// directories of ours that no topic owns. Anything else in `dir` is
    /// left alone and reported ([`unknown_entries`](Self::unknown_entries)).
    pub fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let medium = options.log.medium.clone();
        medium
            .create_dir_all(&dir)
            .map_err(io_err("creating", &dir))?;
        let lock = medium.lock_dir(&dir).map_err(io_err("locking", &dir))?;
        let layout = data_dir::scan(medium.as_ref(), &dir)?;
        let ids_end = match ids::read(medium.as_ref(), &dir)? {
            None => Some(0),
            Some(Ok(end)) => Some(end),
            Some(Err(reason)) if options.log.repair => {
                tracing::error!(file = %dir.join(PRODUCER_IDS_FILE).display(), %reason, "repair: ignoring a damaged producer id file; ids restart past the largest any partition holds, plus a block");
                None
            }
            Some(Err(reason)) => {
                return Err(StoreError::CorruptMetadata {
                    path: dir.join(PRODUCER_IDS_FILE),
                    reason: format!(
                        "{reason}; the producer ids handed out are unknown, so none can be handed out safely (open with repair to restart past the largest id any partition holds)"
                    ),
                });
            }
        };
        let mut records = read_topic_list(medium.as_ref(), &dir, &layout)?;
        // A deletion renames the partition directories to `.deleted` first:
        // finding one means the topic was being deleted; finish it.
        let (deleting, live): (Vec<TopicRecord>, Vec<TopicRecord>) =
            records.drain(..).partition(|r| {
                layout
                    .deleted
                    .iter()
                    .any(|(_, m)| m.topic.name == r.name && m.topic.created_ms == r.created_ms)
            });
        if !deleting.is_empty() {
            let names: Vec<&str> = deleting.iter().map(|r| r.name.as_str()).collect();
            tracing::warn!(topics = ?names, "finishing topic deletions a crash interrupted");
            write_topic_list(medium.as_ref(), &dir, &live)?;
        }
        let mut topics = BTreeMap::new();
        for record in live {
            let topic = open_topic(&dir, &options, record, Opening::Existing)?;
            topics.insert(topic.name.clone(), Arc::new(topic));
        }
        let ids_repaired = ids_end.is_none();
        let ids_end = ids_end.unwrap_or_else(|| {
            let largest = topics
                .values()
                .flat_map(|t: &Arc<Topic>| t.partitions.iter())
                .filter_map(|log| log.max_producer_id())
                .max();
            largest.map_or(0, |id| {
                id.saturating_add(1).saturating_add(PRODUCER_ID_BLOCK)
            })
        });
        if ids_repaired {
            // Written now, so that the next open without repair finds it whole.
            let path = dir.join(PRODUCER_IDS_FILE);
            medium
                .write_file_atomic(&path, &ids::encode(ids_end))
                .map_err(io_err("writing", &path))?;
        }
        let producer_ids = Mutex::new(ProducerIds::starting_at(&dir, ids_end));
        let mut store = Store {
            dir,
            options,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            maintenance: Mutex::new(None),
            unknown: Vec::new(),
            producer_ids,
            _lock: lock,
        };
        store.unknown = store.remove_leftovers(layout)?;
        let store = Arc::new(store);
        if let Some(interval) = store.options.maintenance_interval_ms {
            store.start_maintenance(Duration::from_millis(interval.max(1)));
        }
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The clock every log of the store uses.
    pub fn clock(&self) -> &dyn crate::clock::Clock {
        self.options.log.clock.as_ref()
    }

    /// Entries of the data directory that are not Carteiro's (or not
    /// provably), found when the store opened: left alone, and reported.
    pub fn unknown_entries(&self) -> &[PathBuf] {
        &self.unknown
    }

    fn medium(&self) -> &dyn Medium {
        self.options.log.medium.as_ref()
    }

    /// True if `marker` names a partition of a topic that exists now.
    fn claims(&self, marker: &PartitionMarker) -> bool {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&marker.topic.name)
            .is_some_and(|t| {
                t.created_ms == marker.topic.created_ms && marker.partition < t.config.partitions
            })
    }

    /// Removes what is provably ours and owned by no topic: partition
    /// directories left by an interrupted create or delete, `.deleted`
    /// directories, temporary files. Returns the unknown entries, each
    /// reported once and left alone. `layout` is the scan the store opened with.
    fn remove_leftovers(&self, layout: data_dir::Layout) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = false;
        let unclaimed = layout.partitions.iter().filter(|(_, m)| !self.claims(m));
        // Every `.deleted` directory goes: its topic's deletion is finished.
        for (path, marker) in unclaimed.chain(&layout.deleted) {
            tracing::warn!(
                dir = %path.display(), topic = %marker.topic.name, partition = marker.partition,
                created_ms = marker.topic.created_ms,
                "removing a partition directory no topic owns (an interrupted create or delete)"
            );
            self.medium()
                .remove_dir_all(path)
                .map_err(io_err("removing", path))?;
            removed = true;
        }
        for path in &layout.leftovers {
            self.medium()
                .remove_file(path)
                .map_err(io_err("removing", path))?;
            removed = true;
        }
        if removed {
            self.medium()
                .sync_dir(&self.dir)
                .map_err(io_err("syncing", &self.dir))?;
        }
        let claimed = |path: &PathBuf| {
            let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
            topics.values().any(|t| {
                (0..t.config.partitions).any(|p| partition_dir(&self.dir, &t.name, p) == *path)
            })
        };
        let unknown: Vec<PathBuf> = layout.unknown.into_iter().filter(|p| !claimed(p)).collect();
        for path in &unknown {
            tracing::warn!(entry = %path.display(), "not Carteiro's: leaving it alone");
        }
        Ok(unknown)
    }

    /// Makes `topic` the store's topic `name`: durable in `topics.meta`
    /// first, then in the map readers see. On an error nothing changed.
    /// The caller holds the admin lock.
    fn publish(&self, name: &str, topic: &Arc<Topic>) -> Result<(), StoreError> {
        let mut next = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        next.insert(name.to_string(), topic.clone());
        self.write_metadata(&next)?;
        *self.topics.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    fn write_metadata(&self, topics: &BTreeMap<String, Arc<Topic>>) -> Result<(), StoreError> {
        let records: Vec<TopicRecord> = topics.values().map(|t| t.record()).collect();
        write_topic_list(self.medium(), &self.dir, &records)
    }

    /// Creates a topic and its partition logs; durable when it returns. On
    /// an error (a full disk, say) nothing of it is left behind. A
    /// directory in the way that is not a leftover of ours is an error, and
    /// left alone.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>, StoreError> {
        check_topic_config(name, &config)?;
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.check_name_free(name)?;
        for partition in 0..config.partitions {
            self.clear_the_way(&partition_dir(&self.dir, name, partition))?;
        }
        let record = TopicRecord {
            name: name.to_string(),
            partitions: config.partitions,
            config: config.log.clone(),
            created_ms: self.options.log.clock.now_ms(),
        };
        let undo = |topic: Option<&Topic>| {
            if let Some(topic) = topic {
                for log in &topic.partitions {
                    let _ = log.close();
                }
            }
            for partition in 0..config.partitions {
                let _ = self
                    .medium()
                    .remove_dir_all(&partition_dir(&self.dir, name, partition));
            }
            let _ = self.medium().sync_dir(&self.dir);
        };
        let topic = match open_topic(&self.dir, &self.options, record, Opening::New) {
            Ok(topic) => Arc::new(topic),
            Err(e) => {
                undo(None);
                return Err(e);
            }
        };
        if let Err(e) = self.publish(name, &topic) {
            undo(Some(&topic));
            return Err(e);
        }
        tracing::info!(
            topic = name,
            partitions = config.partitions,
            "created topic"
        );
        Ok(topic)
    }

    /// Grows topic `name` to `count` partitions; durable when it returns.
    /// The partitions it has keep their logs (the same [`Log`]s, not
    /// reopened) and data; the new ones start empty. The returned topic
    /// replaces the old one in the store.
    ///
    /// Crash safe as [`create_topic`](Self::create_topic) is: the new
    /// partition directories are made (each with its marker, then its log)
    /// before `topics.meta` is rewritten with the new count, the one step
    /// that makes the growth durable. A crash before it leaves directories
    /// that no topic claims, removed at the next open (the topic keeps its
    /// old count); on an error (a full disk) they are removed at once.
    pub fn add_partitions(&self, name: &str, count: u32) -> Result<Arc<Topic>, StoreError> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.topic(name)?;
        old.check_increase(count)?;
        let current = old.config.partitions;
        for partition in current..count {
            self.clear_the_way(&partition_dir(&self.dir, name, partition))?;
        }
        let record = TopicRecord {
            partitions: count,
            ..old.record()
        };
        let undo = |added: &[Arc<Log>]| {
            for log in added {
                let _ = log.close();
            }
            for partition in current..count {
                let _ = self
                    .medium()
                    .remove_dir_all(&partition_dir(&self.dir, name, partition));
            }
            let _ = self.medium().sync_dir(&self.dir);
        };
        let added = match open_partitions(
            &self.dir,
            &self.options,
            &record,
            current..count,
            Opening::Added,
        ) {
            Ok(added) => added,
            Err(e) => {
                undo(&[]);
                return Err(e);
            }
        };
        let topic = Arc::new(Topic {
            name: old.name.clone(),
            config: TopicConfig {
                partitions: count,
                log: old.config.log.clone(),
            },
            created_ms: old.created_ms,
            partitions: old
                .partitions
                .iter()
                .cloned()
                .chain(added.iter().cloned())
                .collect(),
        });
        if let Err(e) = self.publish(name, &topic) {
            undo(&added);
            return Err(e);
        }
        tracing::info!(topic = name, from = current, to = count, "added partitions");
        Ok(topic)
    }

    /// Makes sure nothing stands at `path` for a new partition: a leftover
    /// of ours (a marker no live topic claims) is removed; an empty
    /// directory (or one holding only the temporary file of a marker write
    /// a crash cut short) is taken as it is, nothing in it to lose;
    /// anything else is an error, and left alone.
    fn clear_the_way(&self, path: &Path) -> Result<(), StoreError> {
        if !self.medium().is_dir(path) {
            return match self.medium().read_file(path) {
                Ok(None) => Ok(()),
                _ => Err(StoreError::DirectoryInUse {
                    path: path.to_path_buf(),
                    reason: "a file of that name is in the way".into(),
                }),
            };
        }
        let names = self
            .medium()
            .list_dir(path)
            .map_err(io_err("listing", path))?;
        if names.iter().all(|n| *n == PARTITION_MARKER_TMP_FILE) {
            tracing::warn!(dir = %path.display(), "taking an empty directory for a new partition (a creation a crash cut short?)");
            return Ok(());
        }
        match read_marker(self.medium(), path)? {
            Some(Ok(marker)) if !self.claims(&marker) => {
                tracing::warn!(dir = %path.display(), "removing a leftover partition directory before creating the topic");
                self.medium()
                    .remove_dir_all(path)
                    .map_err(io_err("removing", path))
            }
            Some(Ok(marker)) => Err(StoreError::DirectoryInUse {
                path: path.to_path_buf(),
                reason: format!("it belongs to topic {:?}", marker.topic.name),
            }),
            Some(Err(reason)) => Err(StoreError::DirectoryInUse {
                path: path.to_path_buf(),
                reason: format!("its partition marker is damaged ({reason})"),
            }),
            None => Err(StoreError::DirectoryInUse {
                path: path.to_path_buf(),
                reason: "it is not a Carteiro partition directory".into(),
            }),
        }
    }

    /// Deletes a topic and all its data. Works on a full disk: the
    /// partition directories are renamed aside (`.deleted`, which marks the
    /// deletion durably) and emptied before `topics.meta` is rewritten, so
    /// the rewrite finds the space they held; a crash anywhere is finished
    /// at the next open.
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
        let medium = self.medium();
        for (partition, log) in topic.partitions.iter().enumerate() {
            // Best-effort: a full disk may refuse the clean-shutdown marker.
            if let Err(e) = log.close() {
                tracing::warn!(topic = name, partition, error = %e, "closing deleted partition");
            }
        }
        let mut aside = Vec::with_capacity(topic.partitions.len());
        for partition in 0..topic.config.partitions {
            let from = partition_dir(&self.dir, name, partition);
            let to = deleted_dir(&self.dir, name, partition);
            medium
                .remove_dir_all(&to)
                .map_err(io_err("removing", &to))?;
            medium
                .rename(&from, &to)
                .map_err(io_err("renaming", &from))?;
            aside.push(to);
        }
        medium
            .sync_dir(&self.dir)
            .map_err(io_err("syncing", &self.dir))?;
        // The topic is as good as gone: take it out of the list readers see.
        *self.topics.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        for dir in &aside {
            empty_but_marker(medium, dir)?;
        }
        self.write_metadata(&next)?;
        for dir in &aside {
            medium
                .remove_dir_all(dir)
                .map_err(io_err("removing", dir))?;
        }
        medium
            .sync_dir(&self.dir)
            .map_err(io_err("syncing", &self.dir))?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// A new producer id for an idempotent producer (Kafka's
    /// InitProducerId): never one handed out before in this data
    /// directory, across restarts and crashes. Ids start at 0 and stay
    /// below `i64::MAX` ([`StoreError::ProducerIdsExhausted`] after that).
    /// Thread safe. Every [`PRODUCER_ID_BLOCK`]th call writes and syncs
    /// `producer-ids.meta` before it returns; if that fails (a full disk),
    /// no id is handed out.
    pub fn allocate_producer_id(&self) -> Result<i64, StoreError> {
        self.producer_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allocate(self.medium())
    }

    /// Checks what [`create_topic`](Self::create_topic) would check (the
    /// name, the partition count, the log config, a name not taken) and
    /// creates nothing: a client's `validate_only`.
    pub fn check_new_topic(&self, name: &str, config: &TopicConfig) -> Result<(), StoreError> {
        check_topic_config(name, config)?;
        self.check_name_free(name)
    }

    fn check_name_free(&self, name: &str) -> Result<(), StoreError> {
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
