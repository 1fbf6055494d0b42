//! A medium for crash tests: every file has a live image (what the process
//! sees) and a durable image (what a power loss leaves). Only syncs move
//! bytes from one to the other, and only a directory sync makes a new,
//! renamed or removed file entry durable (directory renames and directory
//! creations are durable at once here).
//!
//! A sync budget makes the power fail at a chosen sync point: that sync and
//! every later one fail, and [`SimulatedMedium::after_power_loss`] gives the
//! medium a machine would find on reboot. A space limit makes writes that
//! would grow the files past it fail as a full disk does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::medium::{Medium, RegionHandle, RegionWriterHandle};
use crate::region::{Backing, Growth, new_region};

/// An in-memory medium that loses unsynced bytes on a simulated power loss.
#[derive(Debug, Clone, Default)]
pub struct SimulatedMedium {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    files: HashMap<u64, SimFile>,
    live: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    next_id: u64,
    syncs: u64,
    budget: Option<u64>,
    powered_off: bool,
    space_limit: Option<u64>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("files", &self.live.keys().collect::<Vec<_>>())
            .field("syncs", &self.syncs)
            .field("powered_off", &self.powered_off)
            .finish()
    }
}

#[derive(Default, Clone)]
struct SimFile {
    live: Vec<u8>,
    durable: Vec<u8>,
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss")
}

fn disk_full(needed: u64, used: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!("no space left on device (simulated: {needed} more bytes, {used} of {limit} used)"),
    )
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl State {
    /// Counts a sync point; fails from the one past the budget on.
    fn sync_point(&mut self) -> io::Result<()> {
        if self.powered_off {
            return Err(power_loss());
        }
        if let Some(budget) = self.budget
            && self.syncs >= budget
        {
            self.powered_off = true;
            return Err(power_loss());
        }
        self.syncs += 1;
        Ok(())
    }

    fn check_power(&self) -> io::Result<()> {
        if self.powered_off {
            Err(power_loss())
        } else {
            Ok(())
        }
    }

    /// Bytes held by the files that have a name.
    fn used(&self) -> u64 {
        let ids: BTreeSet<u64> = self.live.values().copied().collect();
        ids.iter()
            .filter_map(|id| self.files.get(id))
            .map(|f| f.live.len() as u64)
            .sum()
    }

    /// Fails as a full disk would if `more` bytes do not fit.
    fn check_space(&self, more: u64) -> io::Result<()> {
        if let Some(limit) = self.space_limit {
            let used = self.used();
            if more > 0 && used + more > limit {
                return Err(disk_full(more, used, limit));
            }
        }
        Ok(())
    }

    fn new_file(&mut self, path: &Path, file: SimFile) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.files.insert(id, file);
        self.live.insert(path.to_path_buf(), id);
        id
    }

    fn file(&mut self, path: &Path) -> io::Result<(u64, &mut SimFile)> {
        let id = *self.live.get(path).ok_or_else(|| not_found(path))?;
        let file = self.files.get_mut(&id).ok_or_else(|| not_found(path))?;
        Ok((id, file))
    }

    fn sync_dir(&mut self, dir: &Path) {
        self.durable.retain(|path, _| path.parent() != Some(dir));
        for (path, id) in &self.live {
            if path.parent() == Some(dir) {
                self.durable.insert(path.clone(), *id);
            }
        }
    }

    /// Grows the file `id` to at least `len` bytes of zeros, if space allows.
    fn grow(&mut self, id: u64, len: usize) -> io::Result<()> {
        let current = self.files.get(&id).map_or(0, |f| f.live.len());
        if len > current {
            self.check_space((len - current) as u64)?;
            if let Some(file) = self.files.get_mut(&id) {
                file.live.resize(len, 0);
            }
        }
        Ok(())
    }
}

struct SimBacking {
    state: Arc<Mutex<State>>,
    id: u64,
}

impl Backing for SimBacking {
    fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.check_power()?;
        state.grow(self.id, offset + data.len())?;
        if let Some(file) = state.files.get_mut(&self.id) {
            file.live[offset..offset + data.len()].copy_from_slice(data);
        }
        Ok(())
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let state = lock(&self.state);
        let live = state.files.get(&self.id).map_or(&[][..], |f| &f.live[..]);
        let end = offset + buf.len();
        if end > live.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file is {} bytes, shorter than the {end} the log wrote: cut from outside?",
                    live.len()
                ),
            ));
        }
        buf.copy_from_slice(&live[offset..end]);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        if let Some(file) = state.files.get_mut(&self.id) {
            file.durable.clone_from(&file.live);
        }
        Ok(())
    }

    fn allocate(&self, len: usize) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.check_power()?;
        state.grow(self.id, len)
    }

    fn trim(&self, len: usize) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        if let Some(file) = state.files.get_mut(&self.id) {
            file.live.truncate(len);
            file.durable.clone_from(&file.live);
        }
        Ok(())
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock leaves the state usable.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True if `path` lies strictly inside `dir`.
fn inside(path: &Path, dir: &Path) -> bool {
    path != dir && path.starts_with(dir)
}

impl SimulatedMedium {
    /// An empty medium with power that never fails and no space limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `syncs` more sync points succeed; the next one loses power.
    pub fn fail_after_syncs(&self, syncs: u64) {
        let mut state = lock(&self.state);
        state.budget = Some(state.syncs + syncs);
    }

    /// Sync points passed so far (creations, syncs, trims, atomic writes, directory syncs).
    pub fn syncs(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// True once the power has failed.
    pub fn is_powered_off(&self) -> bool {
        lock(&self.state).powered_off
    }

    /// Cuts the power now: nothing more becomes durable.
    pub fn power_off(&self) {
        lock(&self.state).powered_off = true;
    }

    /// Limits the bytes all named files may hold together; `None` lifts it.
    /// Writes, allocations and file creations past it fail with
    /// [`io::ErrorKind::StorageFull`].
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        lock(&self.state).space_limit = bytes;
    }

    /// Bytes all named files hold together.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.state).used()
    }

    /// The medium as a machine finds it after the power fails: only durable
    /// entries, each with only its durable bytes.
    pub fn after_power_loss(&self) -> SimulatedMedium {
        let state = lock(&self.state);
        let mut fresh = State {
            dirs: state.dirs.clone(),
            ..State::default()
        };
        for (path, id) in &state.durable {
            if let Some(file) = state.files.get(id) {
                let bytes = file.durable.clone();
                let new_id = fresh.new_file(
                    path,
                    SimFile {
                        live: bytes.clone(),
                        durable: bytes,
                    },
                );
                fresh.durable.insert(path.clone(), new_id);
            }
        }
        SimulatedMedium {
            state: Arc::new(Mutex::new(fresh)),
        }
    }

    /// Overwrites bytes of a file's live and durable images, as a failing disk would.
    pub fn corrupt(&self, path: &Path, at: usize, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        let (_, file) = state.file(path)?;
        let end = at + bytes.len();
        if end > file.live.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "corruption past the end of the file",
            ));
        }
        file.live[at..end].copy_from_slice(bytes);
        file.durable.clone_from(&file.live);
        Ok(())
    }

    fn region(
        &self,
        id: u64,
        content: usize,
        file_len: usize,
        growth: Growth,
    ) -> (RegionHandle, RegionWriterHandle) {
        let backing = SimBacking {
            state: self.state.clone(),
            id,
        };
        let (region, writer) = new_region(Box::new(backing), content, file_len, growth);
        (RegionHandle(region), RegionWriterHandle(writer))
    }
}

impl Medium for SimulatedMedium {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.check_power()?;
        state.live.retain(|path, _| !path.starts_with(dir));
        state.durable.retain(|path, _| !path.starts_with(dir));
        state.dirs.retain(|path| !path.starts_with(dir));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.check_power()?;
        if let Some(id) = state.live.remove(from) {
            state.live.insert(to.to_path_buf(), id);
            return Ok(());
        }
        if !state.dirs.contains(from) && !state.live.keys().any(|p| inside(p, from)) {
            return Err(not_found(from));
        }
        let moved = |path: &Path| to.join(path.strip_prefix(from).unwrap_or(path));
        let state = &mut *state;
        for map in [&mut state.live, &mut state.durable] {
            let inner: Vec<(PathBuf, u64)> = map
                .iter()
                .filter(|(p, _)| inside(p, from))
                .map(|(p, id)| (p.clone(), *id))
                .collect();
            for (path, id) in inner {
                map.remove(&path);
                map.insert(moved(&path), id);
            }
        }
        let dirs: Vec<PathBuf> = state
            .dirs
            .iter()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for dir in dirs {
            state.dirs.remove(&dir);
            state.dirs.insert(moved(&dir));
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        let mut names: Vec<String> = state
            .live
            .keys()
            .chain(state.dirs.iter())
            .filter_map(|path| {
                let rest = path.strip_prefix(dir).ok()?;
                let first = rest.components().next()?;
                first.as_os_str().to_str().map(str::to_string)
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn is_dir(&self, path: &Path) -> bool {
        let state = lock(&self.state);
        state.dirs.contains(path) || state.live.keys().any(|p| inside(p, path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        state.sync_dir(dir);
        Ok(())
    }

    fn create_region(
        &self,
        path: &Path,
        growth: Growth,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        let first_step = growth.allocate_step.min(growth.capacity);
        // A truncating open frees the old file's bytes first; on a failure
        // the real medium removes the file it could not fill.
        if let Some(old) = state.live.get(path).copied()
            && let Some(file) = state.files.get_mut(&old)
        {
            file.live.clear();
        }
        if let Err(e) = state.check_space(first_step as u64) {
            state.live.remove(path);
            return Err(e);
        }
        let zeros = vec![0; first_step];
        let id = state.new_file(
            path,
            SimFile {
                live: zeros.clone(),
                durable: zeros,
            },
        );
        state.durable.insert(path.to_path_buf(), id);
        Ok(self.region(id, 0, first_step, growth))
    }

    fn open_region(
        &self,
        path: &Path,
        growth: Option<Growth>,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let mut state = lock(&self.state);
        state.check_power()?;
        let (id, file) = state.file(path)?;
        let len = file.live.len();
        let growth = growth.unwrap_or(Growth {
            capacity: len,
            allocate_step: 0,
        });
        Ok(self.region(id, len, len, growth))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        let (id, file) = state.file(path)?;
        let len = len as usize;
        if len <= file.live.len() {
            file.live.truncate(len);
        } else {
            state.grow(id, len)?;
        }
        if let Some(file) = state.files.get_mut(&id) {
            file.durable.clone_from(&file.live);
        }
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let mut state = lock(&self.state);
        state.check_power()?;
        match state.file(path) {
            Ok((_, file)) => Ok(Some(file.live.clone())),
            Err(_) => Ok(None),
        }
    }

    fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        // The temporary file needs its space before the old one is released.
        state.check_space(bytes.len() as u64)?;
        let id = state.new_file(
            path,
            SimFile {
                live: bytes.to_vec(),
                durable: bytes.to_vec(),
            },
        );
        state.durable.insert(path.to_path_buf(), id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.check_power()?;
        state.live.remove(path);
        Ok(())
    }

    fn lock_dir(&self, _dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        Ok(Box::new(()))
    }
}
