//! Never lose, hide or refuse good data, tried against the real broker as
//! an outside operator would: directories beside the data, a lost topic
//! list, bits flipped in acknowledged data and in committed offsets, a
//! missing newest segment, damage found while serving, a segment cut short
//! from outside, a second broker on the same directory, and the disk space
//! a new topic takes. Each case checks that every acknowledged record is
//! served or that the broker refuses, naming the file and the byte.

mod common;

use std::path::Path;

use carteiro::proto;
use carteiro_storage::TAIL_BATCH_BYTES_MAX;
use common::*;

async fn produce_batches(broker: &Broker, topic: &str, batches: usize, records: usize) {
    let mut client = broker.broker().await;
    for b in 0..batches {
        let values: Vec<String> = (0..records).map(|r| format!("b{b}-r{r}")).collect();
        produce_values(&mut client, topic, &values)
            .await
            .expect("produce");
    }
}

async fn commit(broker: &Broker, group: &str, partition: u32, offset: i64) {
    broker
        .broker()
        .await
        .commit_offsets(proto::CommitOffsetsRequest {
            group: group.into(),
            commits: vec![proto::OffsetCommit {
                topic: "events".into(),
                partition,
                offset,
                metadata: String::new(),
            }],
            ..Default::default()
        })
        .await
        .expect("commit");
}

async fn committed(broker: &Broker, group: &str) -> Vec<(u32, i64)> {
    let reply = broker
        .broker()
        .await
        .fetch_offsets(proto::FetchOffsetsRequest {
            group: group.into(),
            partitions: Vec::new(),
        })
        .await
        .expect("fetch offsets")
        .into_inner();
    reply
        .offsets
        .iter()
        .map(|c| (c.partition, c.offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn directories_the_broker_does_not_own_survive_restarts_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["photos-2023", "backup-1"] {
        std::fs::create_dir_all(dir.path().join(name)).expect("mkdir");
        std::fs::write(dir.path().join(name).join("IMG_0001.jpg"), name).expect("write");
    }
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(64 * 1024)).await;
    produce_batches(&broker, "events", 3, 10).await;
    broker.kill();
    let broker = Broker::start(dir.path(), &[]);
    broker.stop();
    let _broker = Broker::start(dir.path(), &[]);
    for name in ["photos-2023", "backup-1"] {
        let kept = std::fs::read_to_string(dir.path().join(name).join("IMG_0001.jpg"));
        assert_eq!(kept.expect("still there"), name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_topic_list_is_rebuilt_and_every_record_and_commit_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 3, small_topic(64 * 1024)).await;
    produce_batches(&broker, "events", 30, 10).await;
    commit(&broker, "billing", 0, 120).await;
    let mut client = broker.broker().await;
    let before = fetch_all(&mut client, "events", 0, 0).await;
    assert_eq!(before.len(), 300);
    broker.stop();
    std::fs::remove_file(dir.path().join("topics.meta")).expect("lose topics.meta");
    let broker = Broker::start(dir.path(), &[]);
    let mut client = broker.broker().await;
    assert_eq!(
        record_values(&fetch_all(&mut client, "events", 0, 0).await),
        record_values(&before)
    );
    assert_eq!(committed(&broker, "billing").await, vec![(0, 120)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_bit_in_synced_data_refuses_to_start_naming_the_byte_and_repair_reports_what_it_gives_up()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(1 << 20)).await;
    // 40 batches of 1 record, each acknowledged as durable.
    produce_batches(&broker, "events", 40, 1).await;
    let raw = raw_bytes(&mut broker.broker().await, "events", 0).await;
    broker.kill();
    // A bit of the batch 20 records before the end flips on the disk.
    let positions = batch_positions(&raw);
    let damaged = 20;
    let segment = segment_file(dir.path(), "events", 0, 0);
    let at = 32 + positions[damaged] as u64;
    flip_bit(&segment, at + 40);
    let before = std::fs::read(&segment).expect("read");
    let stderr = start_fails(dir.path(), &[]);
    assert!(
        stderr.contains("events-0/00000000000000000000.log")
            && stderr.contains(&format!("byte {at}"))
            && stderr.contains("a valid batch follows"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&segment).expect("read"),
        before,
        "refusing changes nothing"
    );
    // The operator chooses repair: the records before the damage are served,
    // the log goes on from there, and the given-up offsets are named.
    let broker = Broker::start(dir.path(), &["--repair"]);
    let mut client = broker.broker().await;
    let kept = fetch_all(&mut client, "events", 0, 0).await;
    assert_eq!(kept.len(), damaged);
    assert_eq!(record_values(&kept)[19], "b19-r0");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_newest_segment_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(4096)).await;
    produce_batches(&broker, "events", 40, 4).await;
    let description = broker
        .admin()
        .await
        .describe_topic(proto::DescribeTopicRequest {
            name: "events".into(),
        })
        .await
        .expect("describe")
        .into_inner();
    broker.kill();
    let mut segments: Vec<_> = std::fs::read_dir(dir.path().join("events-0"))
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".log"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?} {description:?}");
    let newest = segments.last().expect("a segment");
    std::fs::remove_file(dir.path().join("events-0").join(newest)).expect("lose it");
    let stderr = start_fails(dir.path(), &[]);
    assert!(stderr.contains(&format!("{newest} is missing")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_commit_refuses_to_start_naming_the_byte_and_repair_gives_up_only_its_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 3, small_topic(64 * 1024)).await;
    for partition in 0..3 {
        commit(&broker, "billing", partition, 10 + i64::from(partition)).await;
    }
    broker.stop();
    // Three commit batches follow the segment header; damage the second's body.
    let segment = segment_file(dir.path(), "__consumer_offsets", 0, 0);
    let bytes = std::fs::read(&segment).expect("read");
    let positions = batch_positions(&bytes[32..]);
    let at = 32 + positions[1] as u64;
    flip_bit(&segment, at + 70);
    let stderr = start_fails(dir.path(), &[]);
    assert!(
        stderr.contains("__consumer_offsets-0/00000000000000000000.log")
            && stderr.contains(&format!("byte {at}")),
        "{stderr}"
    );
    let broker = Broker::start(dir.path(), &["--repair"]);
    assert_eq!(
        committed(&broker, "billing").await,
        vec![(0, 10), (2, 12)],
        "only the damaged batch's commit is given up"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_serves_the_records_before_damage_and_names_the_damaged_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(1 << 20)).await;
    create_topic(&broker, "other", 1, small_topic(1 << 20)).await;
    produce_batches(&broker, "events", 3, 10).await;
    // A reader at the tail is served from the broker's copy of what it
    // appended; a batch too large for that copy sends reads to the file,
    // where the damage will be.
    let mut client = broker.broker().await;
    produce_values(
        &mut client,
        "events",
        &["x".repeat(TAIL_BATCH_BYTES_MAX + 1)],
    )
    .await
    .expect("produce");
    produce_batches(&broker, "other", 1, 5).await;
    let raw = raw_bytes(&mut client, "events", 0).await;
    let positions = batch_positions(&raw);
    // Bit rot in the second batch while the broker runs.
    let at = 32 + positions[1] as u64;
    flip_bit(&segment_file(dir.path(), "events", 0, 0), at + 50);
    let reply = client
        .fetch(fetch_one("events", 0, 0))
        .await
        .expect("fetch")
        .into_inner();
    let part = &reply.partitions[0];
    assert!(part.error.is_none(), "{:?}", part.error);
    assert_eq!(part.next_offset, 10, "the intact first batch is served");
    let served: usize = part.record_batches.iter().map(|c| c.len()).sum();
    assert_eq!(served, positions[1]);
    for format in [proto::FetchFormat::RawBatches, proto::FetchFormat::Decoded] {
        let reply = client
            .fetch(proto::FetchRequest {
                format: format as i32,
                ..fetch_one("events", 0, 10)
            })
            .await
            .expect("fetch")
            .into_inner();
        let error = reply.partitions[0]
            .error
            .as_ref()
            .expect("the damage is reported");
        assert_eq!(error.code, tonic::Code::DataLoss as i32);
        for needle in [
            "\"events\"",
            "partition 0",
            "offset 10",
            "events-0/00000000000000000000.log",
            &format!("byte {at}"),
        ] {
            assert!(
                error.message.contains(needle),
                "{needle}: {}",
                error.message
            );
        }
    }
    let decoded = client
        .fetch(proto::FetchRequest {
            format: proto::FetchFormat::Decoded as i32,
            ..fetch_one("events", 0, 0)
        })
        .await
        .expect("fetch")
        .into_inner();
    assert_eq!(decoded.partitions[0].records.len(), 10);
    assert_eq!(fetch_all(&mut client, "other", 0, 0).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_cut_short_from_outside_is_an_error_on_its_partition_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(4096)).await;
    create_topic(&broker, "other", 1, small_topic(1 << 20)).await;
    produce_batches(&broker, "events", 40, 4).await;
    let mut client = broker.broker().await;
    // Read everything once so the sealed segments are in use, then cut one.
    assert_eq!(fetch_all(&mut client, "events", 0, 0).await.len(), 160);
    let first = segment_file(dir.path(), "events", 0, 0);
    let len = std::fs::metadata(&first).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .and_then(|f| f.set_len(len / 3))
        .expect("cut from outside");
    let mut reported = None;
    for offset in 0..8 {
        let reply = client
            .fetch(fetch_one("events", 0, offset))
            .await
            .expect("the broker answers")
            .into_inner();
        if let Some(error) = reply.partitions[0].error.clone() {
            reported = Some(error);
            break;
        }
    }
    let error = reported.expect("a fetch of the cut part fails");
    assert_eq!(error.code, tonic::Code::DataLoss as i32);
    assert!(
        error.message.contains("cut from outside"),
        "{}",
        error.message
    );
    // The broker is alive and serves everything else.
    produce_batches(&broker, "other", 2, 3).await;
    assert_eq!(fetch_all(&mut client, "other", 0, 0).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_broker_cannot_share_the_data_directory_even_after_files_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Broker::start(dir.path(), &[]);
    create_topic(&first, "events", 1, small_topic(64 * 1024)).await;
    // A lock file, if any, is no longer what holds the lock.
    let _ = std::fs::remove_file(dir.path().join(".lock"));
    let stderr = start_fails(dir.path(), &[]);
    assert!(stderr.contains("locked by another process"), "{stderr}");
    produce_batches(&first, "events", 1, 3).await;
}

/// Bytes a directory tree takes on disk (blocks allocated), as `du` counts.
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).expect("stat");
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("list") {
            total += disk_usage(&entry.expect("entry").path());
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_three_partition_topic_takes_under_200_mib_before_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    // Default config: 1 GiB segments.
    create_topic(&broker, "orders", 3, proto::TopicConfig::default()).await;
    let topic_usage = |dir: &Path| -> u64 {
        (0..3)
            .map(|p| disk_usage(&dir.join(format!("orders-{p}"))))
            .sum()
    };
    let limit = 200 * 1024 * 1024;
    let fresh = topic_usage(dir.path());
    assert!(fresh < limit, "{fresh} bytes");
    produce_batches(&broker, "orders", 10, 10).await;
    broker.kill();
    let broker = Broker::start(dir.path(), &[]);
    let restarted = topic_usage(dir.path());
    assert!(restarted < limit, "{restarted} bytes after a restart");
    assert!(disk_usage(dir.path()) < limit, "the whole data directory");
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_port_opens_only_after_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    create_topic(&broker, "events", 1, small_topic(1 << 20)).await;
    produce_batches(&broker, "events", 10, 1).await;
    let raw = raw_bytes(&mut broker.broker().await, "events", 0).await;
    broker.kill();
    // Damage that recovery refuses: the broker exits without serving.
    let segment = segment_file(dir.path(), "events", 0, 0);
    flip_bit(&segment, 32 + batch_positions(&raw)[3] as u64 + 40);
    let port = common::free_port();
    let address = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(broker_binary())
        .args([
            "--listen",
            &address,
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn carteiro");
    // While it recovers, and after it gives up, nothing listens: a client is
    // refused at once instead of hanging on a port that does not answer.
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut attempts = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the broker neither served nor exited"
        );
        let connected = std::net::TcpStream::connect(&address);
        assert!(
            connected.is_err(),
            "the port opened before recovery finished"
        );
        attempts += 1;
    };
    assert!(!status.success());
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "after {attempts} attempts"
    );
}
