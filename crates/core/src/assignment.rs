//! Partition assignment: a pure function from the members' subscriptions
//! and the topics' partition counts to each member's partitions, with the
//! two strategies the coordinator offers (range and round robin). Every
//! partition of a subscribed topic gets exactly one owner.

use std::collections::BTreeMap;

/// How partitions are split among members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Per topic, consecutive ranges in member-id order.
    Range,
    /// All partitions dealt in turn.
    RoundRobin,
}

/// Splits the partitions of `topics` (name → partition count) among the
/// members of `subscriptions` (member id → topics) by `strategy`. Every
/// partition of a topic someone subscribes to gets exactly one owner.
pub fn assign(
    strategy: Strategy,
    subscriptions: &BTreeMap<String, Vec<String>>,
    topics: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<(String, u32)>> {
    let subscribers = |topic: &str| -> Vec<&String> {
        subscriptions
            .iter()
            .filter(|(_, t)| t.iter().any(|t| t == topic))
            .map(|(id, _)| id)
            .collect()
    };
    let mut out: BTreeMap<String, Vec<(String, u32)>> = BTreeMap::new();
    match strategy {
        Strategy::Range => {
            for (topic, &partitions) in topics {
                let members = subscribers(topic);
                if members.is_empty() {
                    continue;
                }
                let (share, extra) = (
                    partitions / members.len() as u32,
                    partitions % members.len() as u32,
                );
                let mut next = 0;
                for (i, member) in members.iter().enumerate() {
                    let count = share + u32::from((i as u32) < extra);
                    out.entry((*member).clone())
                        .or_default()
                        .extend((next..next + count).map(|p| (topic.clone(), p)));
                    next += count;
                }
            }
        }
        Strategy::RoundRobin => {
            let ids: Vec<&String> = subscriptions.keys().collect();
            let mut turn: usize = 0;
            for (topic, &partitions) in topics {
                if subscribers(topic).is_empty() {
                    continue;
                }
                for partition in 0..partitions {
                    // The next member in turn that subscribes to this topic.
                    loop {
                        let id = ids[turn % ids.len()];
                        turn += 1;
                        if subscriptions[id].iter().any(|t| t == topic) {
                            out.entry(id.clone())
                                .or_default()
                                .push((topic.clone(), partition));
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(m, t)| (m.to_string(), t.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn owners(assignment: &BTreeMap<String, Vec<(String, u32)>>) -> BTreeMap<(String, u32), usize> {
        let mut owners = BTreeMap::new();
        for partitions in assignment.values() {
            for tp in partitions {
                *owners.entry(tp.clone()).or_insert(0) += 1;
            }
        }
        owners
    }

    #[test]
    fn range_gives_consecutive_ranges_per_topic() {
        let members = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let topics = BTreeMap::from([("t".to_string(), 7)]);
        let got = assign(Strategy::Range, &members, &topics);
        let parts = |m: &str| got[m].iter().map(|(_, p)| *p).collect::<Vec<_>>();
        assert_eq!(
            (parts("a"), parts("b"), parts("c")),
            (vec![0, 1, 2], vec![3, 4], vec![5, 6])
        );
    }

    #[test]
    fn round_robin_deals_partitions_in_turn_to_subscribers_only() {
        let members = subs(&[("a", &["x", "y"]), ("b", &["x"]), ("c", &["x", "y"])]);
        let topics = BTreeMap::from([("x".to_string(), 3), ("y".to_string(), 3)]);
        let got = assign(Strategy::RoundRobin, &members, &topics);
        assert!(
            got["b"].iter().all(|(t, _)| t == "x"),
            "b only subscribes to x: {got:?}"
        );
        assert_eq!(owners(&got).len(), 6);
        // With the same subscriptions, members differ by at most one partition.
        let same = subs(&[("a", &["x", "y"]), ("b", &["x", "y"]), ("c", &["x", "y"])]);
        let got = assign(Strategy::RoundRobin, &same, &topics);
        assert!(got.values().all(|p| p.len() == 2), "{got:?}");
        let a = vec![("x".to_string(), 0), ("y".to_string(), 0)];
        assert_eq!(got["a"], a, "dealt in turn across topics");
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for strategy in [Strategy::Range, Strategy::RoundRobin] {
            for n in 1..6 {
                let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
                let members: BTreeMap<String, Vec<String>> = names
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        (
                            m.clone(),
                            if i % 2 == 0 {
                                vec!["a".into(), "b".into()]
                            } else {
                                vec!["b".into()]
                            },
                        )
                    })
                    .collect();
                let topics = BTreeMap::from([
                    ("a".to_string(), 5),
                    ("b".to_string(), 6),
                    ("unsubscribed".to_string(), 2),
                ]);
                let owners = owners(&assign(strategy, &members, &topics));
                assert_eq!(
                    owners.len(),
                    11,
                    "{strategy:?} with {n}: every subscribed partition assigned"
                );
                assert!(
                    owners.values().all(|&c| c == 1),
                    "{strategy:?} with {n}: one owner each"
                );
            }
        }
    }
}
