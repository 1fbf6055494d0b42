//! What one durable append costs on this machine's disk, by write path:
//! `pwrite` + `fdatasync` or one `pwritev2(RWF_DSYNC)`, into blocks that
//! are only reserved (`fallocate`, unwritten extents) or already written
//! (zeros, synced), and two threads syncing one file at once. Each case
//! appends 3,000 records of 2,200 bytes one at a time and prints
//! percentiles in µs. Used to choose the durable write path (issue #16,
//! docs/performance.md).
//!
//! `cargo run --release -p carteiro-storage --example sync_probe -- FILE`
//! (FILE is created, 64 MiB, and removed; put it on the disk to measure).

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustix::io::ReadWriteFlags;

/// Appends timed per case.
const APPENDS: usize = 3_000;
/// Bytes of each append.
const APPEND_BYTES: usize = 2_200;
/// Bytes reserved or written ahead.
const FILE_BYTES: u64 = 64 * 1024 * 1024;

fn prepared(path: &str, zeroed: bool) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    if zeroed {
        let zeros = vec![0u8; 1 << 20];
        for at in (0..FILE_BYTES).step_by(zeros.len()) {
            file.write_all_at(&zeros, at)?;
        }
    } else {
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, FILE_BYTES)?;
    }
    file.sync_all()?;
    Ok(file)
}

fn report(case: &str, mut micros: Vec<f64>) {
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() as f64 * q) as usize).min(micros.len() - 1)];
    println!(
        "{case:<36} p50 {:>5.0}  p90 {:>5.0}  p99 {:>5.0}  p99.9 {:>5.0} µs",
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999)
    );
}

fn one_thread(path: &str, zeroed: bool, dsync: bool) -> std::io::Result<Vec<f64>> {
    let file = prepared(path, zeroed)?;
    let record = vec![7u8; APPEND_BYTES];
    let mut micros = Vec::with_capacity(APPENDS);
    for n in 0..APPENDS {
        let at = (n * APPEND_BYTES) as u64;
        let started = Instant::now();
        if dsync {
            rustix::io::pwritev2(&file, &[IoSlice::new(&record)], at, ReadWriteFlags::DSYNC)?;
        } else {
            file.write_all_at(&record, at)?;
            file.sync_data()?;
        }
        micros.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(micros)
}

/// Two threads append (under a lock, as a log's writer) and each syncs
/// its own append right away: do their syncs overlap?
fn two_threads(path: &str) -> std::io::Result<Vec<f64>> {
    let file = Arc::new(prepared(path, true)?);
    let end = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (file, end) = (file.clone(), end.clone());
            std::thread::spawn(move || -> std::io::Result<Vec<f64>> {
                let record = vec![7u8; APPEND_BYTES];
                let mut micros = Vec::with_capacity(APPENDS);
                for _ in 0..APPENDS {
                    let started = Instant::now();
                    {
                        let mut end = end.lock().unwrap_or_else(|p| p.into_inner());
                        file.write_all_at(&record, *end)?;
                        *end += APPEND_BYTES as u64;
                    }
                    file.sync_data()?;
                    micros.push(started.elapsed().as_secs_f64() * 1e6);
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
                Ok(micros)
            })
        })
        .collect();
    let mut all = Vec::new();
    for thread in threads {
        match thread.join() {
            Ok(micros) => all.extend(micros?),
            Err(_) => return Err(std::io::Error::other("probe thread panicked")),
        }
    }
    Ok(all)
}

fn main() -> std::io::Result<()> {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: sync_probe FILE (created, 64 MiB, then removed)");
        std::process::exit(2);
    };
    report(
        "reserved, pwrite + fdatasync",
        one_thread(&path, false, false)?,
    );
    report(
        "written, pwrite + fdatasync",
        one_thread(&path, true, false)?,
    );
    report(
        "reserved, pwritev2 RWF_DSYNC",
        one_thread(&path, false, true)?,
    );
    report(
        "written, pwritev2 RWF_DSYNC",
        one_thread(&path, true, true)?,
    );
    report("written, 2 threads each syncing", two_threads(&path)?);
    std::fs::remove_file(&path)
}
