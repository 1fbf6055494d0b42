//! A medium for crash tests: every file has a live image (what the process
//! sees) and a durable image (what a power loss leaves). Only syncs move
//! bytes from one to the other, and only a directory sync makes a new,
//! renamed or removed entry durable.
//!
//! A sync budget makes the power fail at a chosen sync point: that sync and
//! every later one fail, and [`SimulatedMedium::after_power_loss`] gives the
//! medium a machine would find on reboot.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::medium::{Medium, RegionHandle, RegionWriterHandle};
use crate::region::{Backing, Memory, Region, new_region};

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
    next_id: u64,
    syncs: u64,
    budget: Option<u64>,
    powered_off: bool,
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

#[derive(Default)]
struct SimFile {
    /// The bytes of the region most recently mapped, if any; else `bytes`.
    region: Option<Region>,
    bytes: Vec<u8>,
    len: usize,
    durable: Vec<u8>,
}

impl SimFile {
    fn live_content(&self) -> Vec<u8> {
        let mut out = match &self.region {
            Some(region) => region
                .read(0, region.published().min(self.len))
                .unwrap_or(&[])
                .to_vec(),
            None => self.bytes[..self.bytes.len().min(self.len)].to_vec(),
        };
        out.resize(self.len, 0);
        out
    }
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss")
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
}

struct SimBacking {
    state: Arc<Mutex<State>>,
    id: u64,
}

impl Backing for SimBacking {
    fn sync(&self, _memory: &Memory, start: usize, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        if let Some(file) = state.files.get_mut(&self.id) {
            let end = start + bytes.len();
            if file.durable.len() < end {
                file.durable.resize(end, 0);
            }
            file.durable[start..end].copy_from_slice(bytes);
        }
        Ok(())
    }

    fn trim(&self, len: usize) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        if let Some(file) = state.files.get_mut(&self.id) {
            file.len = len;
            file.durable.resize(len, 0);
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

impl SimulatedMedium {
    /// An empty medium with power that never fails.
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

    /// The medium as a machine finds it after the power fails: only durable
    /// entries, each with only its durable bytes.
    pub fn after_power_loss(&self) -> SimulatedMedium {
        let state = lock(&self.state);
        let mut fresh = State::default();
        for (path, id) in &state.durable {
            if let Some(file) = state.files.get(id) {
                let bytes = file.durable.clone();
                let len = bytes.len();
                let new_id = fresh.new_file(
                    path,
                    SimFile {
                        region: None,
                        bytes: bytes.clone(),
                        len,
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
        let mut content = file.live_content();
        let end = at + bytes.len();
        if end > content.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "corruption past the end of the file",
            ));
        }
        content[at..end].copy_from_slice(bytes);
        file.durable = content.clone();
        file.len = content.len();
        file.bytes = content;
        file.region = None;
        Ok(())
    }

    fn map_file(
        &self,
        state: &mut State,
        id: u64,
        content: Vec<u8>,
        capacity: usize,
    ) -> (RegionHandle, RegionWriterHandle) {
        let len = content.len();
        let mut buf = content;
        buf.resize(capacity.max(len), 0);
        let backing = SimBacking {
            state: self.state.clone(),
            id,
        };
        let (region, writer) =
            new_region(Memory::Heap(buf.into_boxed_slice()), len, Box::new(backing));
        if let Some(file) = state.files.get_mut(&id) {
            file.region = Some(region.clone());
            file.bytes = Vec::new();
            file.len = capacity.max(len);
        }
        (RegionHandle(region), RegionWriterHandle(writer))
    }
}

impl Medium for SimulatedMedium {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        // Directories are implied by the paths of their files.
        lock(&self.state).sync_point()
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.check_power()?;
        state.live.retain(|path, _| !path.starts_with(dir));
        state.durable.retain(|path, _| !path.starts_with(dir));
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        let mut names: Vec<String> = state
            .live
            .keys()
            .filter_map(|path| {
                let rest = path.strip_prefix(dir).ok()?;
                let first = rest.components().next()?;
                first.as_os_str().to_str().map(str::to_string)
            })
            .collect();
        names.dedup();
        Ok(names)
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
        capacity: usize,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        let id = state.new_file(
            path,
            SimFile {
                durable: vec![0; capacity],
                len: capacity,
                ..SimFile::default()
            },
        );
        state.durable.insert(path.to_path_buf(), id);
        Ok(self.map_file(&mut state, id, Vec::new(), capacity))
    }

    fn open_region(
        &self,
        path: &Path,
        capacity: Option<usize>,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let mut state = lock(&self.state);
        state.check_power()?;
        let (id, file) = state.file(path)?;
        let content = file.live_content();
        let len = content.len();
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "cannot map an empty file",
            ));
        }
        let capacity = capacity.unwrap_or(len).max(len);
        if capacity > len {
            state.sync_point()?;
            if let Some(file) = state.files.get_mut(&id) {
                file.durable.resize(capacity, 0);
            }
        }
        Ok(self.map_file(&mut state, id, content, capacity))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        let (_, file) = state.file(path)?;
        let mut content = file.live_content();
        content.resize(len as usize, 0);
        file.durable.resize(len as usize, 0);
        file.len = content.len();
        file.bytes = content;
        file.region = None;
        Ok(())
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let mut state = lock(&self.state);
        state.check_power()?;
        match state.file(path) {
            Ok((_, file)) => Ok(Some(file.live_content())),
            Err(_) => Ok(None),
        }
    }

    fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.sync_point()?;
        let id = state.new_file(
            path,
            SimFile {
                region: None,
                bytes: bytes.to_vec(),
                len: bytes.len(),
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
