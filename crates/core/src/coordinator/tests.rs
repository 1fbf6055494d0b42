use std::collections::BTreeMap;

use carteiro_storage::{LogConfig, StoreOptions, TopicConfig};

use super::*;
use crate::assignment::Strategy;

fn coordinator() -> (tempfile::TempDir, Arc<Coordinator>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions {
        maintenance_interval_ms: None,
        ..Default::default()
    };
    let store = Store::open(dir.path(), options).expect("store");
    let config = TopicConfig {
        partitions: 2,
        log: LogConfig {
            segment_bytes: 1 << 20,
            max_batch_bytes: 64 * 1024,
            ..Default::default()
        },
    };
    store.create_topic("orders", config).expect("topic");
    (dir, Arc::new(Coordinator::new(store)))
}

fn assigned(group: &str) -> JoinRequest {
    JoinRequest {
        group: group.into(),
        member_id: None,
        client_id: "test".into(),
        session_timeout_ms: GROUP_TIMEOUT_MS_MIN,
        rebalance_timeout_ms: GROUP_TIMEOUT_MS_MIN,
        subscription: Subscription::Assigned {
            topics: vec!["orders".into()],
            strategy: Strategy::Range,
        },
    }
}

fn classic(group: &str, client: &str, protocols: &[(&str, &str)]) -> JoinRequest {
    JoinRequest {
        client_id: client.into(),
        subscription: Subscription::Classic {
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|(name, meta)| (name.to_string(), Bytes::from(meta.to_string())))
                .collect(),
        },
        rebalance_timeout_ms: 5_000,
        session_timeout_ms: 10_000,
        ..assigned(group)
    }
}

/// Waits (bounded) until `member`'s heartbeat says the group rebalances.
async fn until_rebalancing(coordinator: &Coordinator, group: &str, member: &Joined) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while coordinator.heartbeat(group, &member.member_id, member.generation)
            != HeartbeatStatus::Rebalance
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "a rebalance started");
}

/// `a` joins alone; then `b` joins, `a` hears of the rebalance from its
/// heartbeat and joins again, as clients do: both end in one generation.
async fn join_two(
    coordinator: &Arc<Coordinator>,
    a: JoinRequest,
    b: JoinRequest,
) -> (Joined, Joined) {
    let group = a.group.clone();
    let first = coordinator.join(a.clone()).await.expect("a joins");
    let second = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move { coordinator.join(b).await })
    };
    until_rebalancing(coordinator, &group, &first).await;
    let again = coordinator
        .join(JoinRequest {
            member_id: Some(first.member_id.clone()),
            ..a
        })
        .await
        .expect("a joins again");
    (again, second.await.expect("task").expect("b joins"))
}

#[tokio::test]
async fn a_group_is_forgotten_when_its_last_member_leaves_or_expires() {
    let (_dir, coordinator) = coordinator();
    // As many join and leave cycles as the outside try ran: nothing stays.
    for cycle in 0..20_000 {
        let group = format!("g{cycle}");
        let joined = coordinator.join(assigned(&group)).await.expect("join");
        assert_eq!(coordinator.group_count(), 1);
        coordinator.leave(&group, &joined.member_id).expect("leave");
        assert_eq!(coordinator.group_count(), 0, "cycle {cycle}");
    }
    // A member that stops heartbeating expires, and its group goes with it.
    coordinator.join(assigned("quiet")).await.expect("join");
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(u64::from(GROUP_TIMEOUT_MS_MIN) + 1)).await;
    coordinator.expire();
    assert_eq!(coordinator.group_count(), 0);
    assert!(coordinator.group_names().is_empty());
}

#[tokio::test]
async fn an_assigned_member_gets_every_partition_of_its_topics() {
    let (_dir, coordinator) = coordinator();
    let joined = coordinator.join(assigned("billing")).await.expect("join");
    assert_eq!(joined.generation, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(
        joined.outcome,
        JoinOutcome::Assigned(vec![("orders".into(), 0), ("orders".into(), 1)])
    );
    coordinator
        .check_commit("billing", &joined.member_id, 1, [("orders", 1)])
        .expect("the owner commits");
}

/// Two classic members join together: one leads, gets both members'
/// metadata for the protocol both support (the leader's first choice),
/// and its sync hands each member the assignment it chose.
#[tokio::test]
async fn a_classic_generation_elects_a_leader_relays_metadata_and_hands_out_its_assignments() {
    let (_dir, coordinator) = coordinator();
    let a = classic(
        "kafka",
        "a",
        &[("cooperative", "a-coop"), ("range", "a-range")],
    );
    let b = classic(
        "kafka",
        "b",
        &[("range", "b-range"), ("roundrobin", "b-rr")],
    );
    let (ja, jb) = join_two(&coordinator, a, b).await;
    assert_eq!(ja.generation, jb.generation);
    assert_eq!(ja.member_count, 2);
    assert_eq!(ja.leader, jb.leader);
    let (leader, follower) = if ja.leader == ja.member_id {
        (ja, jb)
    } else {
        (jb, ja)
    };
    let JoinOutcome::Classic { protocol, members } = &leader.outcome else {
        panic!("a classic outcome: {:?}", leader.outcome);
    };
    assert_eq!(protocol, "range", "the one protocol both support");
    let metadata: BTreeMap<&str, &[u8]> = members
        .iter()
        .map(|(id, m)| (id.as_str(), &m[..]))
        .collect();
    assert_eq!(metadata.len(), 2);
    assert!(metadata.values().all(|m| m.ends_with(b"-range")));
    assert_eq!(
        follower.outcome,
        JoinOutcome::Classic {
            protocol: "range".into(),
            members: Vec::new()
        },
        "only the leader sees the members"
    );
    // The follower's sync waits for the leader's.
    let follower_sync = {
        let coordinator = coordinator.clone();
        let request = SyncRequest {
            group: "kafka".into(),
            member_id: follower.member_id.clone(),
            generation: follower.generation,
            assignments: vec![(follower.member_id.clone(), Bytes::from_static(b"ignored"))],
        };
        tokio::spawn(async move { coordinator.sync(request).await })
    };
    assert_eq!(
        coordinator.heartbeat("kafka", &follower.member_id, follower.generation),
        HeartbeatStatus::Ok,
        "awaiting the sync is no rebalance"
    );
    let mine = coordinator
        .sync(SyncRequest {
            group: "kafka".into(),
            member_id: leader.member_id.clone(),
            generation: leader.generation,
            assignments: vec![
                (
                    leader.member_id.clone(),
                    Bytes::from_static(b"for the leader"),
                ),
                (
                    follower.member_id.clone(),
                    Bytes::from_static(b"for the follower"),
                ),
            ],
        })
        .await
        .expect("leader syncs");
    assert_eq!(&mine[..], b"for the leader");
    let theirs = follower_sync.await.expect("task").expect("follower syncs");
    assert_eq!(&theirs[..], b"for the follower");
    let described = coordinator.describe("kafka").expect("described");
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.protocol.as_deref(), Some("range"));
    // A commit from a member of the generation is accepted (the broker
    // cannot see the opaque assignment, so it checks membership only).
    coordinator
        .check_commit(
            "kafka",
            &follower.member_id,
            follower.generation,
            [("orders", 0)],
        )
        .expect("member of the generation");
    let stale = coordinator
        .check_commit("kafka", &follower.member_id, follower.generation + 1, [])
        .expect_err("stale generation");
    assert!(matches!(
        stale,
        BrokerError::Fenced {
            reason: FenceReason::StaleGeneration,
            ..
        }
    ));
}

#[tokio::test]
async fn members_of_another_kind_or_with_no_common_protocol_are_refused() {
    let (_dir, coordinator) = coordinator();
    let first = coordinator
        .join(classic("mixed", "a", &[("range", "m")]))
        .await
        .expect("first member");
    let other_kind = coordinator.join(assigned("mixed")).await.expect_err("kind");
    assert!(
        matches!(other_kind, BrokerError::InconsistentGroupProtocol { .. }),
        "{other_kind}"
    );
    let disjoint = coordinator
        .join(classic("mixed", "b", &[("roundrobin", "m")]))
        .await
        .expect_err("no protocol in common");
    assert!(
        matches!(disjoint, BrokerError::InconsistentGroupProtocol { .. }),
        "{disjoint}"
    );
    // A sync from a generation that is no longer current is refused.
    let stale = coordinator
        .sync(SyncRequest {
            group: "mixed".into(),
            member_id: first.member_id.clone(),
            generation: first.generation + 5,
            assignments: Vec::new(),
        })
        .await
        .expect_err("stale");
    assert!(matches!(
        stale,
        BrokerError::Fenced {
            reason: FenceReason::StaleGeneration,
            ..
        }
    ));
    let unknown = coordinator
        .sync(SyncRequest {
            group: "mixed".into(),
            member_id: "nobody".into(),
            generation: first.generation,
            assignments: Vec::new(),
        })
        .await
        .expect_err("unknown member");
    assert!(matches!(
        unknown,
        BrokerError::Fenced {
            reason: FenceReason::UnknownMember,
            ..
        }
    ));
}

#[tokio::test]
async fn a_new_member_starts_a_rebalance_that_ends_a_pending_sync() {
    let (_dir, coordinator) = coordinator();
    let first = coordinator
        .join(classic("grow", "a", &[("range", "a")]))
        .await
        .expect("first member");
    // The first member leads alone; before it syncs, another member joins.
    let second = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            coordinator
                .join(classic("grow", "b", &[("range", "b")]))
                .await
        })
    };
    // The leader learns of the rebalance from its heartbeat, and its sync.
    until_rebalancing(&coordinator, "grow", &first).await;
    let sync = coordinator
        .sync(SyncRequest {
            group: "grow".into(),
            member_id: first.member_id.clone(),
            generation: first.generation,
            assignments: Vec::new(),
        })
        .await
        .expect_err("rebalancing");
    assert!(
        matches!(sync, BrokerError::RebalanceInProgress { .. }),
        "{sync}"
    );
    // It joins again, and the new generation forms with both.
    let again = coordinator
        .join(JoinRequest {
            member_id: Some(first.member_id.clone()),
            ..classic("grow", "a", &[("range", "a")])
        })
        .await
        .expect("rejoin");
    let second = second.await.expect("task").expect("second joins");
    assert_eq!(again.generation, second.generation);
    assert_eq!(again.member_count, 2);
}

#[tokio::test]
async fn a_made_up_member_id_is_refused_and_generated_ids_cannot_be_guessed() {
    let (_dir, coordinator) = coordinator();
    let first = coordinator.join(assigned("ids")).await.expect("join");
    let spoofed = coordinator
        .join(JoinRequest {
            member_id: Some("test-00000000000000000001".into()),
            ..assigned("ids")
        })
        .await
        .expect_err("an id the coordinator never gave");
    assert!(
        matches!(
            spoofed,
            BrokerError::Fenced {
                reason: FenceReason::UnknownMember,
                ..
            }
        ),
        "{spoofed}"
    );
    assert_eq!(coordinator.describe("ids").expect("group").members.len(), 1);
    // Consecutive ids share their client id and nothing a client could
    // derive: their random parts differ in most of their 32 hex digits.
    let ids: Vec<String> = (0..2).map(|_| coordinator.new_member_id("test")).collect();
    let random = |id: &str| id.trim_start_matches("test-").replace('-', "");
    let (a, b) = (random(&ids[0]), random(&ids[1]));
    assert_eq!(a.len(), 32, "{}", ids[0]);
    let differing = a.chars().zip(b.chars()).filter(|(x, y)| x != y).count();
    assert!(differing > 16, "{} and {} look related", ids[0], ids[1]);
    assert!(first.member_id.starts_with("test-"));
}

#[tokio::test]
async fn subscriptions_are_validated_and_bounded() {
    let (_dir, coordinator) = coordinator();
    let refused = |request: JoinRequest| {
        let coordinator = coordinator.clone();
        async move {
            coordinator
                .join(request)
                .await
                .expect_err("refused")
                .to_string()
        }
    };
    // Topic names follow the topic rules: no bytes parked under made-up names.
    let mut bad_name = assigned("g");
    bad_name.subscription = Subscription::Assigned {
        topics: vec!["orders".into(), "x".repeat(300)],
        strategy: Strategy::Range,
    };
    let err = refused(bad_name).await;
    assert!(err.contains("topics") && err.contains("249"), "{err}");
    let mut slash = assigned("g");
    slash.subscription = Subscription::Assigned {
        topics: vec!["../etc".into()],
        strategy: Strategy::Range,
    };
    assert!(refused(slash).await.contains("topics"));
    // Classic metadata is bounded in all, not per protocol.
    let half = "m".repeat(CLASSIC_BYTES_MAX / 2 + 1);
    let err = refused(classic(
        "c",
        "a",
        &[("range", &half), ("roundrobin", &half)],
    ))
    .await;
    assert!(
        err.contains("protocols.metadata") && err.contains(&CLASSIC_BYTES_MAX.to_string()),
        "{err}"
    );
    let long_name = "p".repeat(PROTOCOL_NAME_MAX_BYTES + 1);
    let err = refused(classic("c", "a", &[(&long_name, "m")])).await;
    assert!(err.contains("protocols.name"), "{err}");
    // Nothing refused was kept.
    assert_eq!(coordinator.group_count(), 0);
}

#[tokio::test]
async fn a_member_id_given_out_before_the_first_join_lets_that_join_in_once() {
    let (_dir, coordinator) = coordinator();
    let id = coordinator
        .reserve_member_id("kip394", "rdkafka", 10_000)
        .expect("reserved");
    assert!(id.starts_with("rdkafka-"), "{id}");
    let join = JoinRequest {
        member_id: Some(id.clone()),
        ..classic("kip394", "rdkafka", &[("range", "m")])
    };
    let joined = coordinator.join(join.clone()).await.expect("joins with it");
    assert_eq!(joined.member_id, id);
    // For another group, or made up, an id is still refused.
    let elsewhere = coordinator
        .reserve_member_id("kip394", "rdkafka", 10_000)
        .expect("reserved");
    let wrong_group = JoinRequest {
        member_id: Some(elsewhere),
        ..classic("other", "rdkafka", &[("range", "m")])
    };
    let refused = coordinator
        .join(wrong_group)
        .await
        .expect_err("not its group");
    assert!(matches!(
        refused,
        BrokerError::Fenced {
            reason: FenceReason::UnknownMember,
            ..
        }
    ));
    let refused = coordinator
        .reserve_member_id("kip394", "rdkafka", 10)
        .expect_err("session timeout below the minimum");
    assert!(
        refused.to_string().contains("session_timeout_ms"),
        "{refused}"
    );
}
