//! Where the log's bytes live: a [`Medium`] holds files and directories.
//!
//! [`OsMedium`] is the real file system; the simulated medium
//! ([`crate::simulated::SimulatedMedium`]) keeps a live and a durable image
//! of every file so that crash tests can lose what was not synced, and can
//! run out of space. The durability contract of each call is the same for
//! both.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use crate::region::Growth;
use crate::region::{Backing, Region, RegionWriter, new_region};
use crate::sealed_files::{SealedFileId, SealedFiles};

/// A file system as the log uses it.
///
/// Every call that says "durable" has made its effect survive a power loss
/// by the time it returns.
pub trait Medium: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents; durable.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Removes `dir` and everything in it (not durable until the parent's
    /// [`sync_dir`](Self::sync_dir)).
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Renames the file or directory `from` to `to` (not durable until the
    /// parent's [`sync_dir`](Self::sync_dir)).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// The names of the entries of `dir`, sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// True if `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// Makes creations, renames and removals of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates (or replaces) an empty file at `path` that will grow as
    /// `growth` says, with its first allocation step reserved; durable,
    /// entry included. On an error, nothing is left at `path`.
    #[doc(hidden)]
    fn create_region(
        &self,
        path: &Path,
        growth: Growth,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)>;
    /// Opens the existing file at `path`, whose bytes become published
    /// content; with `growth`, the writer may append to it (reserving blocks
    /// only when it writes), else it is read-only.
    #[doc(hidden)]
    fn open_region(
        &self,
        path: &Path,
        growth: Option<Growth>,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)>;
    /// Cuts the file at `path` to `len` bytes; durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// The whole file, or `None` if it does not exist. For small files only:
    /// metadata, checkpoints, markers.
    fn read_file(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the file at `path` with `bytes` atomically: a temporary file,
    /// synced, renamed over it, and the directory synced; durable. On an
    /// error the old file is unchanged and no temporary file is left.
    fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Removes the file at `path` (not durable until [`sync_dir`](Self::sync_dir)).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the directory `dir` itself for the life of
    /// the returned guard, so two processes never open one data directory
    /// (no file inside it can be deleted to steal the lock).
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>>;
}

/// A region, as a [`Medium`] hands it out. Opaque outside the crate.
pub struct RegionHandle(pub(crate) Region);
/// The write side of a region. Opaque outside the crate.
pub struct RegionWriterHandle(pub(crate) RegionWriter);

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsMedium;

/// A file as a region's backing: writable and open while it is written,
/// then sealed, when it holds no descriptor of its own and reads go through
/// the process-wide cache of sealed files.
struct FileBacking {
    path: PathBuf,
    state: RwLock<FileState>,
}

enum FileState {
    Writable(Arc<File>),
    Sealed(SealedFileId),
}

impl FileBacking {
    fn writable(path: &Path, file: File) -> Self {
        FileBacking {
            path: path.to_path_buf(),
            state: RwLock::new(FileState::Writable(Arc::new(file))),
        }
    }

    /// A sealed file, already open for the reads that follow (recovery
    /// reads it whole), kept in the cache like any other.
    fn sealed(path: &Path, file: File) -> Self {
        let id = SealedFiles::global().insert(Arc::new(file));
        FileBacking {
            path: path.to_path_buf(),
            state: RwLock::new(FileState::Sealed(id)),
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, FileState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The descriptor to read with.
    fn file(&self) -> io::Result<Arc<File>> {
        match &*self.state() {
            FileState::Writable(file) => Ok(file.clone()),
            FileState::Sealed(id) => SealedFiles::global().get(*id, &self.path),
        }
    }

    /// The descriptor to write with; sealed files are never written.
    fn writable_file(&self) -> io::Result<Arc<File>> {
        match &*self.state() {
            FileState::Writable(file) => Ok(file.clone()),
            FileState::Sealed(_) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is sealed: nothing writes it again", self.path.display()),
            )),
        }
    }

    /// The error for a file that ends before `end`, which the log wrote.
    fn cut_short(&self, file: &File, end: usize) -> io::Error {
        let len = file.metadata().map_or(0, |m| m.len());
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the file is {len} bytes, shorter than the {end} the log wrote: cut from outside?"
            ),
        )
    }
}

impl Drop for FileBacking {
    fn drop(&mut self) {
        if let FileState::Sealed(id) = &*self.state() {
            SealedFiles::global().remove(*id);
        }
    }
}

impl Backing for FileBacking {
    fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.writable_file()?.write_all_at(data, offset as u64)
    }

    fn write_parts_at(&self, offset: usize, parts: &[&[u8]]) -> io::Result<()> {
        let file = self.writable_file()?;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut done = 0usize;
        while done < total {
            // The parts not yet wholly written, the first cut where the last
            // write stopped.
            let mut skip = done;
            let mut slices = Vec::with_capacity(parts.len());
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices.push(io::IoSlice::new(&part[skip..]));
                skip = 0;
            }
            let written = rustix::io::pwritev(&*file, &slices, (offset + done) as u64)?;
            if written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("{} took no bytes", self.path.display()),
                ));
            }
            done += written;
        }
        Ok(())
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = self.file()?;
        file.read_exact_at(buf, offset as u64).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.cut_short(&file, offset + buf.len())
            } else {
                e
            }
        })
    }

    fn read_append(&self, offset: usize, len: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let file = self.file()?;
        let start = buf.len();
        buf.reserve_exact(len);
        if buf.capacity() - start != len {
            // A read fills all the spare capacity it is given: into a larger
            // buffer (a pooled one, for a short tail read) it would copy up
            // to a MiB past what was asked, from the file's allocated tail.
            // Zero just the asked part instead.
            buf.resize(start + len, 0);
            return self.read_at(offset, &mut buf[start..]);
        }
        // Exactly the asked bytes are spare: read into them with no pass to
        // zero them first.
        while buf.len() < start + len {
            let at = (offset + buf.len() - start) as u64;
            let read = rustix::io::pread(&*file, rustix::buffer::spare_capacity(buf), at)?;
            if read == 0 {
                return Err(self.cut_short(&file, offset + len));
            }
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        self.file()?.sync_data()
    }

    fn allocate(&self, len: usize) -> io::Result<()> {
        allocate(&*self.writable_file()?, len as u64)
    }

    fn trim(&self, len: usize) -> io::Result<()> {
        let file = self.writable_file()?;
        file.set_len(len as u64)?;
        file.sync_all()
    }

    fn seal(&self) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if let FileState::Writable(file) = &*state {
            // The just-sealed segment is what tail readers read next: keep
            // its descriptor in the cache rather than reopening it.
            let id = SealedFiles::global().insert(file.clone());
            *state = FileState::Sealed(id);
        }
    }
}

/// The directory holding `path`; `.` for a bare relative name.
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Gives `file` real blocks up to `len` bytes, growing its length.
fn allocate(file: &File, len: u64) -> io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        // File systems without fallocate: each pwrite grows the file instead.
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
        Err(e) => Err(e.into()),
    }
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

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
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

    fn is_dir(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_region(
        &self,
        path: &Path,
        growth: Growth,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let created = (|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?;
            let first_step = growth.allocate_step.min(growth.capacity);
            if first_step > 0 {
                allocate(&file, first_step as u64)?;
            }
            file.sync_all()?;
            self.sync_dir(parent(path))?;
            Ok(file)
        })();
        match created {
            Ok(file) => {
                let (region, writer) = new_region(
                    Box::new(FileBacking::writable(path, file)),
                    0,
                    growth.allocate_step.min(growth.capacity),
                    growth,
                );
                Ok((RegionHandle(region), RegionWriterHandle(writer)))
            }
            Err(e) => {
                // Leave no half-made file behind, least of all one holding blocks.
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    fn open_region(
        &self,
        path: &Path,
        growth: Option<Growth>,
    ) -> io::Result<(RegionHandle, RegionWriterHandle)> {
        let file = OpenOptions::new()
            .read(true)
            .write(growth.is_some())
            .open(path)?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file larger than memory"))?;
        let (backing, growth) = match growth {
            Some(growth) => (FileBacking::writable(path, file), growth),
            None => (
                FileBacking::sealed(path, file),
                Growth {
                    capacity: len,
                    allocate_step: 0,
                },
            ),
        };
        let (region, writer) = new_region(Box::new(backing), len, len, growth);
        Ok((RegionHandle(region), RegionWriterHandle(writer)))
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
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.sync_dir(parent(path))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        // flock on the directory's own descriptor: the lock lives as long as
        // the directory does, and deleting a file cannot release it.
        let handle = File::open(dir)?;
        match handle.try_lock() {
            Ok(()) => Ok(Box::new(handle)),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is locked by another process (another broker uses this data directory)",
                    dir.display()
                ),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
