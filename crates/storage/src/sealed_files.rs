//! Descriptors of sealed (read-only) files, opened when read and kept in a
//! process-wide cache of at most [`SEALED_FILES_OPEN_MAX`], the least
//! recently read closed first.
//!
//! A partition's active segment keeps its three files open to write them;
//! every other segment holds no descriptor of its own. Without this a
//! topic with small segments ran out of descriptors after a few hundred
//! rolls (three files per segment, for the life of the segment).
//!
//! Invariant: the cache never holds more than [`SEALED_FILES_OPEN_MAX`]
//! entries, and a file whose owner is dropped (a deleted segment) leaves
//! the cache at once, so its blocks are freed when the last read of it ends.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Most descriptors of sealed files open at once, process-wide (a read of
/// one more closes the least recently read). A process allowed few open
/// files keeps fewer: a quarter of its soft `RLIMIT_NOFILE`, so sockets and
/// active segments keep the rest.
pub const SEALED_FILES_OPEN_MAX: usize = 256;
/// Fewest sealed descriptors kept, whatever the limit.
const SEALED_FILES_OPEN_MIN: usize = 4;

/// Identifies one sealed file for the life of its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SealedFileId(u64);

#[derive(Default)]
struct Cache {
    /// Open files and when each was last read.
    open: HashMap<SealedFileId, (Arc<File>, u64)>,
    /// The same files by last read, oldest first.
    by_use: BTreeMap<u64, SealedFileId>,
    clock: u64,
}

impl Cache {
    fn touch(&mut self, id: SealedFileId) -> Option<Arc<File>> {
        self.clock += 1;
        let now = self.clock;
        let (file, used) = self.open.get_mut(&id)?;
        self.by_use.remove(used);
        *used = now;
        self.by_use.insert(now, id);
        Some(file.clone())
    }

    fn insert(&mut self, id: SealedFileId, file: Arc<File>, limit: usize) -> Arc<File> {
        // Another reader may have opened it meanwhile: keep theirs.
        if let Some(existing) = self.touch(id) {
            return existing;
        }
        while self.open.len() >= limit.max(1) {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.open.remove(&oldest);
        }
        self.clock += 1;
        self.open.insert(id, (file.clone(), self.clock));
        self.by_use.insert(self.clock, id);
        file
    }

    fn remove(&mut self, id: SealedFileId) {
        if let Some((_, used)) = self.open.remove(&id) {
            self.by_use.remove(&used);
        }
    }
}

/// A bounded cache of open sealed files.
pub(crate) struct SealedFiles {
    cache: Mutex<Cache>,
    limit: usize,
    next_id: AtomicU64,
}

impl SealedFiles {
    fn new(limit: usize) -> Self {
        SealedFiles {
            cache: Mutex::new(Cache::default()),
            limit,
            next_id: AtomicU64::new(0),
        }
    }

    /// The cache every sealed file of this process shares.
    pub(crate) fn global() -> &'static SealedFiles {
        static GLOBAL: std::sync::OnceLock<SealedFiles> = std::sync::OnceLock::new();
        GLOBAL.get_or_init(|| {
            let allowed = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
            let limit = (allowed / 4).clamp(SEALED_FILES_OPEN_MIN, SEALED_FILES_OPEN_MAX);
            SealedFiles::new(limit)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `file`, already open, under a new id for the file's owner.
    pub(crate) fn insert(&self, file: Arc<File>) -> SealedFileId {
        let id = SealedFileId(self.next_id.fetch_add(1, Ordering::Relaxed));
        self.lock().insert(id, file, self.limit);
        id
    }

    /// The open file of `id`, opening `path` read-only if it is not cached.
    /// The open happens outside the lock, so a slow disk stalls only this read.
    pub(crate) fn get(&self, id: SealedFileId, path: &Path) -> io::Result<Arc<File>> {
        if let Some(file) = self.lock().touch(id) {
            return Ok(file);
        }
        let file = Arc::new(File::open(path)?);
        Ok(self.lock().insert(id, file, self.limit))
    }

    /// Forgets `id`: its owner is gone.
    pub(crate) fn remove(&self, id: SealedFileId) {
        self.lock().remove(id);
    }

    /// Descriptors open now.
    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.lock().open.len()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn files(n: usize) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
        let dir = tempfile::tempdir().expect("in a test");
        let paths = (0..n)
            .map(|i| {
                let path = dir.path().join(format!("{i}.log"));
                File::create(&path)
                    .expect("in a test")
                    .write_all(format!("file {i}").as_bytes())
                    .expect("in a test");
                path
            })
            .collect();
        (dir, paths)
    }

    #[test]
    fn never_more_than_the_limit_open_and_the_least_recent_goes_first() {
        let (_dir, paths) = files(5);
        let cache = SealedFiles::new(3);
        let ids: Vec<SealedFileId> = paths
            .iter()
            .map(|path| {
                let id = cache.insert(Arc::new(File::open(path).expect("in a test")));
                assert!(cache.open_count() <= 3);
                id
            })
            .collect();
        assert_eq!(cache.open_count(), 3);
        // 2, 3 and 4 are open; reading 2 makes 3 the oldest, and reading 0
        // opens it again from its path, closing 3.
        let two = cache.get(ids[2], &paths[2]).expect("in a test");
        cache.get(ids[0], &paths[0]).expect("in a test");
        let open: Vec<SealedFileId> = cache.lock().open.keys().copied().collect();
        assert!(open.contains(&ids[2]) && open.contains(&ids[4]) && open.contains(&ids[0]));
        assert!(!open.contains(&ids[3]));
        // A reader keeps its descriptor even after eviction.
        let mut text = String::new();
        use std::io::Read;
        (&*two).read_to_string(&mut text).expect("in a test");
        assert_eq!(text, "file 2");
    }

    #[test]
    fn a_removed_file_leaves_the_cache() {
        let (_dir, paths) = files(2);
        let cache = SealedFiles::new(8);
        let a = cache.insert(Arc::new(File::open(&paths[0]).expect("in a test")));
        let b = cache.insert(Arc::new(File::open(&paths[1]).expect("in a test")));
        assert_eq!(cache.open_count(), 2);
        cache.remove(a);
        assert_eq!(cache.open_count(), 1);
        assert!(cache.lock().by_use.values().all(|id| *id == b));
    }

    #[test]
    fn a_missing_file_is_an_error_not_an_entry() {
        let (_dir, paths) = files(1);
        let cache = SealedFiles::new(8);
        let id = cache.insert(Arc::new(File::open(&paths[0]).expect("in a test")));
        cache.remove(id);
        let err = cache
            .get(id, Path::new("/nonexistent/0.log"))
            .expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(cache.open_count(), 0);
    }
}
