//! What one durable append costs on this machine's disk, by write path:
//! `pwrite` + `fdatasync` or one `pwritev2(RWF_DSYNC)`, into blocks that
//! are only reserved (`fallocate`, unwritten extents) or already written
//! (zeros, synced), and two threads syncing one file at once. Each case
//! appends 3,000 records of 2,200 bytes one at a time and prints
//! percentiles in µs. Used to choose the durable write path (issue #16,
//! docs/performance.md).
//!
//! With STALL_SECONDS, it then counts the disk's slow syncs: 200-byte
//! appends, each synced, for that many seconds flat out and again paced at
//! 1,000 a second. If slow syncs per second stay the same at both rates,
//! they are the disk's own stalls in time, not a cost of each sync, and no
//! grouping of syncs takes them away (docs/performance.md).
//!
//! `cargo run --release -p carteiro-storage --example sync_probe -- FILE [STALL_SECONDS]`
//! (FILE is created, 64 MiB, and removed; put it on the disk to measure).

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::io::ReadWriteFlags;

/// Appends timed per case.
const APPENDS: usize = 3_000;
/// Bytes of each append.
const APPEND_BYTES: usize = 2_200;
/// Bytes reserved or written ahead.
const FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes of each append while counting stalls: about one durable record.
const STALL_APPEND_BYTES: usize = 200;
/// Syncs a second of the paced stall count.
const STALL_PACED_PER_SECOND: u32 = 1_000;
/// Sync durations counted as slow, in milliseconds.
const SLOW_SYNC_MS: [f64; 3] = [1.0, 2.5, 5.0];

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
                    std::thread::sleep(Duration::from_micros(50));
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

/// Appends and syncs for `seconds`, flat out or paced, and prints how many
/// syncs a second took longer than each of [`SLOW_SYNC_MS`].
fn count_stalls(path: &str, seconds: u64, paced_per_second: Option<u32>) -> std::io::Result<()> {
    let file = prepared(path, true)?;
    let record = vec![7u8; STALL_APPEND_BYTES];
    let interval = paced_per_second.map(|rate| Duration::from_secs(1) / rate);
    let (started, mut at, mut syncs) = (Instant::now(), 0u64, 0u64);
    let mut slow = [0u64; SLOW_SYNC_MS.len()];
    while started.elapsed() < Duration::from_secs(seconds)
        && at + (STALL_APPEND_BYTES as u64) <= FILE_BYTES
    {
        if let Some(interval) = interval {
            let due = started + interval * u32::try_from(syncs).unwrap_or(u32::MAX);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let began = Instant::now();
        file.write_all_at(&record, at)?;
        file.sync_data()?;
        let millis = began.elapsed().as_secs_f64() * 1e3;
        for (count, limit) in slow.iter_mut().zip(SLOW_SYNC_MS) {
            *count += u64::from(millis > limit);
        }
        at += STALL_APPEND_BYTES as u64;
        syncs += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let pace = paced_per_second.map_or("flat out".to_string(), |rate| format!("paced {rate}/s"));
    let per_second: Vec<String> = slow
        .iter()
        .zip(SLOW_SYNC_MS)
        .map(|(count, limit)| format!(">{limit} ms {:.2}/s", *count as f64 / elapsed))
        .collect();
    println!(
        "stalls, {pace:<14} {:>6.0} syncs/s  {}",
        syncs as f64 / elapsed,
        per_second.join("  ")
    );
    Ok(())
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: sync_probe FILE [STALL_SECONDS] (FILE is created, 64 MiB, then removed)");
        std::process::exit(2);
    };
    let stall_seconds = match args.next().map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(seconds)) => Some(seconds),
        Some(Err(_)) => {
            eprintln!("STALL_SECONDS must be a whole number of seconds");
            std::process::exit(2);
        }
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
    if let Some(seconds) = stall_seconds {
        count_stalls(&path, seconds, None)?;
        count_stalls(&path, seconds, Some(STALL_PACED_PER_SECOND))?;
    }
    std::fs::remove_file(&path)
}
