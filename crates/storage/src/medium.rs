//! Where the log's bytes live: a [`Medium`] holds files and directories.
//!
//! [`OsMedium`] is the real file system with memory maps; the simulated
//! medium ([`crate::simulated::SimulatedMedium`]) keeps a live and a durable
//! image of every file so that crash tests can lose what was not synced.
//! The durability contract of each call is the same for both.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use memmap2::MmapOptions;

use crate::region::{Backing, Memory, Region, RegionWriter, new_region};

/// A file system as the log uses it.
///
/// Every call that says "durable" has made its effect survive a power loss
/// by the time it returns.
pub trait Medium: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents; durable.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes `dir` and everything in it.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes creations, renames and removals of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates (or replaces) the file at `path`, `capacity` zero bytes with
    /// real blocks behind them, and maps it; durable, entry included.
    #[doc(hidden)]
    fn create_region(
        &self,
        path: &Path,
        capacity: usize,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)>;
    /// Maps the existing file at `path`, whose bytes become published
    /// content; if `capacity` exceeds its length, the file grows to it first
    /// with real zero blocks (durable).
    #[doc(hidden)]
    fn open_region(
        &self,
        path: &Path,
        capacity: Option<usize>,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)>;
    /// Cuts the file at `path` to `len` bytes; durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// The whole file, or `None` if it does not exist.
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the file at `path` with `bytes` atomically: a temporary file,
    /// synced, renamed over it, and the directory synced; durable.
    fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Removes the file at `path` (not durable until [`sync_dir`](Self::sync_dir)).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `dir` for the life of the returned guard,
    /// so two processes never open one data directory.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>>;
}

/// A mapped region, as a [`Medium`] hands it out. Opaque outside the crate.
pub struct RegionHandle(pub(crate) Region);
/// The write side of a mapped region. Opaque outside the crate.
pub struct RegionWriterHandle(pub(crate) RegionWriter);

/// The real file system, with files memory-mapped.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsMedium;

struct FileBacking {
    file: File,
}

impl Backing for FileBacking {
    fn sync(&self, _memory: &Memory, _start: usize, _bytes: &[u8]) -> io::Result<()> {
        // The map's msync already wrote the pages; nothing more to do.
        Ok(())
    }

    fn trim(&self, len: usize) -> io::Result<()> {
        self.file.set_len(len as u64)?;
        self.file.sync_all()
    }

    fn write_at(&self, offset: usize, data: &[u8]) -> Option<io::Result<()>> {
        use std::os::unix::fs::FileExt;
        Some(self.file.write_all_at(data, offset as u64))
    }
}

/// The directory holding `path`; `.` for a bare relative name.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Gives `file` real blocks up to `len` bytes, so that writes through a map
/// can never meet a full disk (which would be a SIGBUS, not an error).
fn allocate(file: &File, len: u64) -> io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
            // File systems without fallocate: write the zeros ourselves.
            let current = file.metadata()?.len();
            let mut writer = io::BufWriter::new(file);
            let zeros = [0u8; 64 * 1024];
            let mut at = current;
            while at < len {
                let n = (len - at).min(zeros.len() as u64) as usize;
                writer.write_all(&zeros[..n])?;
                at += n as u64;
            }
            writer.flush()
        }
        Err(e) => Err(e.into()),
    }
}

fn map(file: File, len: usize) -> io::Result<(RegionHandle, RegionWriterHandle)> {
    map_with_content(file, len, len)
}

fn map_with_content(
    file: File,
    capacity: usize,
    content: usize,
) -> io::Result<(RegionHandle, RegionWriterHandle)> {
    if capacity == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "cannot map an empty file",
        ));
    }
    let map = MmapOptions::new().len(capacity).map_raw(&file)?;
    let (region, writer) = new_region(Memory::Map(map), content, Box::new(FileBacking { file }));
    Ok((RegionHandle(region), RegionWriterHandle(writer)))
}

impl Medium for OsMedium {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        self.sync_dir(parent(dir))
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_region(
        &self,
        path: &Path,
        capacity: usize,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        allocate(&file, capacity as u64)?;
        file.sync_all()?;
        self.sync_dir(parent(path))?;
        map_with_content(file, capacity, 0)
    }

    fn open_region(
        &self,
        path: &Path,
        capacity: Option<usize>,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file larger than memory"))?;
        match capacity {
            Some(capacity) if capacity > len => {
                allocate(&file, capacity as u64)?;
                file.sync_all()?;
                map_with_content(file, capacity, len)
            }
            _ => map(file, len),
        }
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        self.sync_dir(parent(path))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        let path: PathBuf = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another process", dir.display()),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
