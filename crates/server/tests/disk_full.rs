//! A disk that fills up, on a real file system: a small ext4 image mounted
//! over a loop device (or, where loop devices are missing, a small tmpfs),
//! filled to the last byte by another file. The broker refuses what does
//! not fit with RESOURCE_EXHAUSTED, deletes a topic at 0 bytes free, takes
//! produces again once there is room (no restart), and starts on a full
//! disk after a SIGKILL with every acknowledged record.
//!
//! Mounting needs root (CAP_SYS_ADMIN), as CI and the project's machines
//! have; elsewhere this test fails saying so.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use carteiro::proto;
use common::*;

/// Size of the file system, in MiB.
const FILE_SYSTEM_MIB: u64 = 96;

/// A small file system mounted for the life of the value.
struct SmallFileSystem {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl SmallFileSystem {
    fn mount() -> SmallFileSystem {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mkdir");
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(FILE_SYSTEM_MIB << 20))
            .expect("image");
        let (image, mount_str) = (image.to_string_lossy(), mount.to_string_lossy());
        // No blocks reserved for root: the broker may run as root.
        let ext4 = run("mkfs.ext4", &["-q", "-F", "-m", "0", &image])
            .and_then(|()| run("mount", &["-o", "loop", &image, &mount_str]));
        if let Err(ext4) = ext4 {
            let size = format!("size={FILE_SYSTEM_MIB}m");
            if let Err(tmpfs) = run("mount", &["-t", "tmpfs", "-o", &size, "tmpfs", &mount_str]) {
                panic!(
                    "this test mounts a small file system and needs root (CAP_SYS_ADMIN): \
                     ext4 over a loop device: {ext4}; tmpfs: {tmpfs}"
                );
            }
        }
        SmallFileSystem { _dir: dir, mount }
    }
}

impl Drop for SmallFileSystem {
    fn drop(&mut self) {
        let _ = run("umount", &["-l", &self.mount.to_string_lossy()]);
    }
}

/// Writes `path` until the file system has no byte left; returns its size.
fn fill(path: &Path) -> u64 {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("filler");
    let mut written = 0u64;
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0x5au8; chunk];
        while file.write_all(&bytes).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = file.sync_all();
    written
}

async fn produce(
    client: &mut carteiro::proto::broker_client::BrokerClient<tonic::transport::Channel>,
    topic: &str,
    tag: &str,
) -> Result<Vec<String>, tonic::Status> {
    let values: Vec<String> = (0..100)
        .map(|i| format!("{tag}-{i:03}-{}", "x".repeat(400)))
        .collect();
    produce_values(client, topic, &values).await?;
    Ok(values)
}

async fn create(broker: &Broker, name: &str, segment_bytes: u64) -> Result<(), tonic::Status> {
    broker
        .admin()
        .await
        .create_topic(proto::CreateTopicRequest {
            name: name.into(),
            partitions: 1,
            config: Some(small_topic(segment_bytes)),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_what_does_not_fit_and_loses_nothing_acknowledged() {
    let fs = SmallFileSystem::mount();
    let data = fs.mount.join("data");
    let broker = Broker::start(&data, &[]);
    create(&broker, "scratch", 8 << 20)
        .await
        .expect("create scratch");
    create(&broker, "events", 2 << 20)
        .await
        .expect("create events");
    let mut client = broker.broker().await;
    let mut acked = Vec::new();
    acked.extend(
        produce(&mut client, "events", "before")
            .await
            .expect("room"),
    );

    // Another program fills the disk to the last byte.
    let filled = fill(&fs.mount.join("filler"));
    assert!(filled > 0);
    let mut refused = None;
    for round in 0..200 {
        match produce(&mut client, "events", &format!("full{round}")).await {
            Ok(values) => acked.extend(values),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("the disk filled before 200 batches");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("No space left"),
        "{}",
        refused.message()
    );

    // Creating a topic fails the same way and leaves nothing behind.
    let status = create(&broker, "fresh", 2 << 20)
        .await
        .expect_err("no room");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(!data.join("fresh-0").exists());

    // Deleting a topic works at 0 bytes free, and the space it frees lets
    // the same partition take produces again, with no restart.
    broker
        .admin()
        .await
        .delete_topic(proto::DeleteTopicRequest {
            name: "scratch".into(),
        })
        .await
        .expect("delete at 0 bytes free");
    acked.extend(
        produce(&mut client, "events", "freed")
            .await
            .expect("room again"),
    );
    assert_eq!(
        record_values(&fetch_all(&mut client, "events", 0, 0).await),
        acked
    );

    // Full again, then killed: the broker starts on a full disk.
    fill(&fs.mount.join("filler-2"));
    broker.kill();
    let broker = Broker::start(&data, &[]);
    let mut client = broker.broker().await;
    assert_eq!(
        record_values(&fetch_all(&mut client, "events", 0, 0).await),
        acked,
        "every acknowledged record after a restart on a full disk"
    );
    std::fs::remove_file(fs.mount.join("filler")).expect("free space");
    acked.extend(produce(&mut client, "events", "after").await.expect("room"));
    create(&broker, "fresh", 2 << 20)
        .await
        .expect("create once there is room");
    assert_eq!(
        record_values(&fetch_all(&mut client, "events", 0, 0).await),
        acked
    );
    broker.stop();
}
