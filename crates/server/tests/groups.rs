//! Consumer groups coordinated by the broker: partitions split among
//! members, taken over when a member dies, handed around while records keep
//! coming, and commits fenced by generation. Every wait is bounded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carteiro::proto::{self, groups_client::GroupsClient};
use carteiro_client::{
    Admin, CommitMode, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
    RebalanceEvent, TopicSettings,
};
use common::*;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::Code;

const SESSION_MS: u32 = 1_000;
const REBALANCE_MS: u32 = 3_000;
const DEADLINE: Duration = Duration::from_secs(60);

/// What a member consumed: (member, generation, partition, offset, value).
type Seen = (String, u32, u32, i64, String);

struct Member {
    task: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts a group member that polls, forwards what it reads, and commits
/// after every poll. Stopping it sends a leave; aborting it is a crash.
fn start_member(
    broker: &str,
    group: &str,
    name: &str,
    seen: mpsc::UnboundedSender<Seen>,
    owned: Arc<Mutex<BTreeMap<String, Vec<u32>>>>,
) -> Member {
    let config = ConsumerConfig {
        commit: CommitMode::Manual,
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        client_id: name.to_string(),
        ..ConsumerConfig::new(broker, Some(group))
    };
    let name = name.to_string();
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut consumer = Consumer::new(config).expect("consumer");
        let events = owned.clone();
        let me = name.clone();
        consumer.on_rebalance(move |event| {
            let mut owned = events.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                RebalanceEvent::Assigned { partitions, .. } => {
                    owned.insert(
                        me.clone(),
                        partitions.iter().map(|tp| tp.partition).collect(),
                    );
                }
                RebalanceEvent::Revoked(_) => {
                    owned.remove(&me);
                }
            }
        });
        consumer.subscribe(&["work"]).await.expect("subscribe");
        loop {
            if stopped.try_recv().is_ok() {
                consumer.close().await.expect("leave");
                return;
            }
            let records = match consumer.poll(Duration::from_millis(100)).await {
                Ok(records) => records,
                Err(e) => panic!("{name}: poll failed: {e}"),
            };
            let generation = consumer.generation().unwrap_or(0);
            for r in &records {
                let value =
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
                let _ = seen.send((name.clone(), generation, r.partition, r.offset, value));
            }
            if !records.is_empty() {
                // A commit may be fenced by a rebalance that just began; the rejoin follows.
                let _ = consumer.commit().await;
            }
        }
    });
    Member { task, stop }
}

async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the group is stable with `members` members that own all
/// `partitions` partitions, each exactly once; returns member → partitions.
async fn stable_with(
    admin: &mut Admin,
    members: usize,
    partitions: u32,
) -> BTreeMap<String, Vec<u32>> {
    wait_for(&format!("a stable group of {members}"), async || {
        let g = admin.describe_group("workers").await.ok()?;
        if g.state != "STABLE" || g.members.len() != members {
            return None;
        }
        let owned: BTreeMap<String, Vec<u32>> = g
            .members
            .iter()
            .map(|m| {
                (
                    m.client_id.clone(),
                    m.partitions.iter().map(|p| p.partition).collect(),
                )
            })
            .collect();
        let all: Vec<u32> = owned.values().flatten().copied().collect();
        let distinct: BTreeSet<u32> = all.iter().copied().collect();
        (all.len() == partitions as usize && distinct.len() == partitions as usize).then_some(owned)
    })
    .await
}

async fn produce(broker: &str, from: usize, to: usize) -> BTreeSet<String> {
    let producer = Producer::new(ProducerConfig::new(broker)).expect("producer");
    let mut deliveries = Vec::new();
    for i in from..to {
        deliveries.push(
            producer
                .send(
                    "work",
                    ProducerRecord::keyed(format!("k{}", i % 17), format!("r{i}")),
                )
                .await
                .expect("accepted"),
        );
    }
    for d in deliveries {
        d.await.expect("delivered");
    }
    producer.close().await.expect("close");
    (from..to).map(|i| format!("r{i}")).collect()
}

async fn setup(partitions: u32) -> (tempfile::TempDir, Broker, Admin) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path(), &[]);
    let mut admin = Admin::connect(&broker.address).expect("admin");
    let settings = TopicSettings {
        segment_bytes: Some(256 * 1024),
        ..TopicSettings::default()
    };
    admin
        .create_topic("work", partitions, &settings)
        .await
        .expect("create");
    (dir, broker, admin)
}

/// Collects what members report until `want` is covered.
async fn consumed_all(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    log: &mut Vec<Seen>,
    want: &BTreeSet<String>,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let have: BTreeSet<&String> = log.iter().map(|s| &s.4).collect();
        if want.iter().all(|v| have.contains(v)) {
            return;
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(seen)) => log.push(seen),
            _ => panic!(
                "only {} of {} records consumed",
                want.iter().filter(|v| have.contains(v)).count(),
                want.len()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_members_split_six_partitions_each_owned_once() {
    let (_dir, broker, mut admin) = setup(6).await;
    let owned = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, _rx) = mpsc::unbounded_channel();
    let members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|n| start_member(&broker.address, "workers", n, tx.clone(), owned.clone()))
        .collect();
    let split = stable_with(&mut admin, 3, 6).await;
    assert!(
        split.values().all(|p| p.len() == 2),
        "range gives each of 3 members 2 of 6: {split:?}"
    );
    // logctl shows the same picture.
    let out = std::process::Command::new(logctl_binary())
        .args([
            "groups",
            "describe",
            "workers",
            "--output",
            "json",
            "--broker",
            &broker.address,
        ])
        .output()
        .expect("logctl");
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(described["state"], "STABLE");
    assert_eq!(described["members"].as_array().map(Vec::len), Some(3));
    let listed: usize = described["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["partitions"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(listed, 6);
    for m in members {
        let _ = m.stop.send(());
        m.task.await.expect("member");
    }
    let after = admin.describe_group("workers").await.expect("describe");
    assert_eq!(
        (after.state.as_str(), after.members.len()),
        ("EMPTY", 0),
        "every member left"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_member_s_partitions_move_and_nothing_is_skipped() {
    let (_dir, broker, mut admin) = setup(6).await;
    let first = produce(&broker.address, 0, 600).await;
    let owned = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut members: BTreeMap<&str, Member> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            (
                *n,
                start_member(&broker.address, "workers", n, tx.clone(), owned.clone()),
            )
        })
        .collect();
    stable_with(&mut admin, 3, 6).await;
    let mut log = Vec::new();
    consumed_all(&mut rx, &mut log, &first).await;

    // Kill "b" without a leave: no more heartbeats.
    let killed_at = Instant::now();
    if let Some(b) = members.remove("b") {
        b.task.abort();
    }
    let split = stable_with(&mut admin, 2, 6).await;
    assert!(!split.contains_key("b"));
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_millis(u64::from(SESSION_MS + REBALANCE_MS) + 5_000),
        "took {took:?}"
    );

    let second = produce(&broker.address, 600, 1200).await;
    consumed_all(&mut rx, &mut log, &second).await;
    // At least once: nothing produced was skipped, before or after the kill.
    let seen: BTreeSet<&String> = log.iter().map(|s| &s.4).collect();
    assert!(first.iter().chain(&second).all(|v| seen.contains(v)));
    for (_, m) in members {
        let _ = m.stop.send(());
        m.task.await.expect("member");
    }
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn records_keep_flowing_in_order_while_members_join_and_leave() {
    let (_dir, broker, mut admin) = setup(6).await;
    let owned = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let address = broker.address.clone();
    let producing = tokio::spawn(async move {
        let mut all = BTreeSet::new();
        for round in 0..8 {
            all.extend(produce(&address, round * 150, (round + 1) * 150).await);
        }
        all
    });
    let mut log = Vec::new();
    let a = start_member(&broker.address, "workers", "a", tx.clone(), owned.clone());
    stable_with(&mut admin, 1, 6).await;
    let b = start_member(&broker.address, "workers", "b", tx.clone(), owned.clone());
    stable_with(&mut admin, 2, 6).await;
    let c = start_member(&broker.address, "workers", "c", tx.clone(), owned.clone());
    stable_with(&mut admin, 3, 6).await;
    let _ = b.stop.send(()); // leaves
    b.task.await.expect("b");
    stable_with(&mut admin, 2, 6).await;
    c.task.abort(); // crashes
    stable_with(&mut admin, 1, 6).await;
    let all = producing.await.expect("producer");
    consumed_all(&mut rx, &mut log, &all).await;
    let _ = a.stop.send(());
    a.task.await.expect("a");

    // Each member, within each generation, read each partition in offset order.
    let mut last: BTreeMap<(String, u32, u32), i64> = BTreeMap::new();
    for (member, generation, partition, offset, _) in &log {
        if let Some(previous) = last.insert((member.clone(), *generation, *partition), *offset) {
            assert!(
                offset > &previous,
                "{member} gen {generation} p{partition}: {offset} after {previous}"
            );
        }
    }
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn commits_from_stale_or_departed_members_are_rejected() {
    let (_dir, broker, _admin) = setup(2).await;
    let channel = tonic::transport::Endpoint::from_shared(broker.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut groups = GroupsClient::new(channel.clone());
    let mut client = carteiro::proto::broker_client::BrokerClient::new(channel);
    let join = |member_id: &str| proto::JoinGroupRequest {
        group: "workers".into(),
        member_id: member_id.into(),
        topics: vec!["work".into()],
        session_timeout_ms: 60_000,
        rebalance_timeout_ms: 1_000,
        client_id: "raw".into(),
        ..Default::default()
    };
    let commit = |member_id: &str, generation: u32, partition: u32| proto::CommitOffsetsRequest {
        group: "workers".into(),
        commits: vec![proto::OffsetCommit {
            topic: "work".into(),
            partition,
            offset: 1,
            metadata: String::new(),
        }],
        member_id: member_id.into(),
        generation,
    };
    let a = groups
        .join_group(join(""))
        .await
        .expect("join")
        .into_inner();
    assert_eq!((a.generation, a.assignment.len()), (1, 2));
    client
        .commit_offsets(commit(&a.member_id, 1, 0))
        .await
        .expect("the owner commits");

    // A rejoins: generation 2. Its generation-1 commit is now stale.
    let a2 = groups
        .join_group(join(&a.member_id))
        .await
        .expect("rejoin")
        .into_inner();
    assert_eq!(a2.generation, 2);
    let stale = client
        .commit_offsets(commit(&a.member_id, 1, 0))
        .await
        .expect_err("stale");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert!(
        stale.message().contains("generation 1 is stale")
            && stale.message().contains("generation 2"),
        "{stale:?}"
    );

    // B joins; A never rejoins, so after the rebalance timeout A is out.
    let b = groups
        .join_group(join(""))
        .await
        .expect("join")
        .into_inner();
    assert_eq!((b.generation, b.member_count), (3, 1));
    let departed = client
        .commit_offsets(commit(&a.member_id, 2, 0))
        .await
        .expect_err("departed");
    assert_eq!(departed.code(), Code::FailedPrecondition);
    assert!(departed.message().contains("not in group"), "{departed:?}");
    let anonymous = client
        .commit_offsets(commit("", 0, 0))
        .await
        .expect_err("group is active");
    assert!(
        anonymous.message().contains("active members"),
        "{anonymous:?}"
    );
    client
        .commit_offsets(commit(&b.member_id, 3, 1))
        .await
        .expect("B owns both now");

    // Heartbeats tell each what to do.
    let beat = |member_id: &str, generation| proto::HeartbeatRequest {
        group: "workers".into(),
        member_id: member_id.into(),
        generation,
    };
    let status = groups
        .heartbeat(beat(&b.member_id, 3))
        .await
        .expect("heartbeat")
        .into_inner()
        .status();
    assert_eq!(status, proto::HeartbeatStatus::Ok);
    let status = groups
        .heartbeat(beat(&a.member_id, 2))
        .await
        .expect("heartbeat")
        .into_inner()
        .status();
    assert_eq!(status, proto::HeartbeatStatus::UnknownMember);

    // Once B leaves, the group is empty and plain commits work again.
    groups
        .leave_group(proto::LeaveGroupRequest {
            group: "workers".into(),
            member_id: b.member_id.clone(),
        })
        .await
        .expect("leave");
    client
        .commit_offsets(commit("", 0, 0))
        .await
        .expect("an empty group takes plain commits");
    let bad = groups
        .join_group(proto::JoinGroupRequest {
            session_timeout_ms: 10,
            ..join("")
        })
        .await
        .expect_err("bad timeout");
    assert!(
        bad.message().contains("session_timeout_ms") && bad.message().contains("1000"),
        "{bad:?}"
    );
    let long = groups
        .join_group(proto::JoinGroupRequest {
            member_id: "m".repeat(300),
            ..join("")
        })
        .await
        .expect_err("long id");
    assert!(
        long.message().contains("member_id") && long.message().contains("255"),
        "{long:?}"
    );
    // Only the coordinator names members: a made-up id cannot join, so no
    // client takes over another's partitions by guessing its id.
    let first = groups
        .join_group(join(""))
        .await
        .expect("join")
        .into_inner();
    let spoofed = groups
        .join_group(join(&format!("{}x", first.member_id)))
        .await
        .expect_err("an id the coordinator never gave");
    assert_eq!(
        spoofed.code(),
        tonic::Code::FailedPrecondition,
        "{spoofed:?}"
    );
    assert!(
        spoofed.message().contains("join with an empty member id"),
        "{spoofed:?}"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_broker_restart_members_rejoin_and_resume_from_their_commits() {
    let (dir, broker, _admin) = setup(1).await;
    let address = broker.address.clone();
    let before = produce(&address, 0, 100).await;
    let owned = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let member = start_member(&address, "workers", "a", tx, owned);
    let mut log = Vec::new();
    consumed_all(&mut rx, &mut log, &before).await;
    // The member commits after every poll; wait until the commit of offset 100 is stored.
    let mut admin = Admin::connect(&address).expect("admin");
    wait_for("the last commit", async || {
        let g = admin.describe_group("workers").await.ok()?;
        (g.partitions.first().map(|p| p.committed_offset) == Some(100)).then_some(())
    })
    .await;
    broker.stop();
    let broker = Broker::start_on(&address, dir.path(), &[]);
    let after = produce(&address, 100, 150).await;
    let seen_before = log.len();
    consumed_all(&mut rx, &mut log, &after).await;
    let resumed: Vec<i64> = log[seen_before..].iter().map(|s| s.3).collect();
    assert_eq!(
        resumed.first(),
        Some(&100),
        "resumes exactly at the committed offset"
    );
    // Membership was soft state: the member joins the restarted broker's coordinator...
    let mut admin = Admin::connect(&address).expect("admin");
    wait_for("the member to rejoin", async || {
        let g = admin.describe_group("workers").await.ok()?;
        (g.state == "STABLE" && g.members.len() == 1).then_some(())
    })
    .await;
    // ...and goes on consuming and committing as a member of the new generation.
    let later = produce(&address, 150, 160).await;
    consumed_all(&mut rx, &mut log, &later).await;
    wait_for("the commit of the new generation", async || {
        let g = admin.describe_group("workers").await.ok()?;
        (g.partitions.first().map(|p| p.committed_offset) == Some(160)).then_some(())
    })
    .await;
    let _ = member.stop.send(());
    member.task.await.expect("member");
    broker.stop();
}
