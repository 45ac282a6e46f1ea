//! Choosing and merging the group's per-partition aggregates (SPEC §8.8).
//!
//! Owns the rule that makes a group answer from the members' per-partition answers.
//! Guarantees:
//! - each partition is counted at most once. Answers of a partition that has not caught up
//!   (restoring, rebuilding) are never used. Among the others — during a hand-off the old
//!   and the new owner may both answer — the one with the **higher folded offset** is
//!   taken (it has seen more of the partition), and on equal offsets the one of the
//!   **smallest member id** (bytewise). The choice depends only on the answers, never on
//!   which arrived first;
//! - every partition of the input topics that no usable answer covers is listed as
//!   missing, and the answer is complete only when none is.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::core::time::Micros;
use crate::core::Aggregate;

/// One member's answer for one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionAnswer {
    /// Input topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to fold.
    pub offset: i64,
    /// The newest event `ts` folded (none before any event).
    pub watermark: Option<Micros>,
    /// Whether the partition has caught up on that member.
    pub caught_up: bool,
    /// Its aggregate at the asked `as_of`.
    pub aggregate: Aggregate,
}

/// A partition of an input topic, as answers list it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionId {
    /// Input topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

/// The chosen answers and what is missing.
#[derive(Debug, Default)]
pub struct Choice {
    /// Per partition: the member whose answer was taken, and the answer.
    pub chosen: BTreeMap<(String, i32), (String, PartitionAnswer)>,
    /// Partitions with no usable answer.
    pub missing: Vec<PartitionId>,
}

/// Chooses one answer per partition (see the module's rule); `all` is every partition of
/// the input topics (answers of partitions beyond it are still taken).
pub fn choose(all: &BTreeSet<(String, i32)>, answers: Vec<(String, PartitionAnswer)>) -> Choice {
    let mut chosen: BTreeMap<(String, i32), (String, PartitionAnswer)> = BTreeMap::new();
    for (member, a) in answers {
        if !a.caught_up {
            continue;
        }
        let key = (a.topic.clone(), a.partition);
        let better = match chosen.get(&key) {
            None => true,
            Some((m, b)) => a.offset > b.offset || (a.offset == b.offset && member < *m),
        };
        if better {
            chosen.insert(key, (member, a));
        }
    }
    let missing = all
        .iter()
        .filter(|k| !chosen.contains_key(*k))
        .map(|(t, p)| PartitionId {
            topic: t.clone(),
            partition: *p,
        })
        .collect();
    Choice { chosen, missing }
}

impl Choice {
    /// The newest watermark of the chosen answers.
    pub fn watermark(&self) -> Option<Micros> {
        self.chosen.values().filter_map(|(_, a)| a.watermark).max()
    }

    /// The merge of the chosen aggregates at `as_of`.
    pub fn merged(self, as_of: Option<Micros>) -> Aggregate {
        let mut agg = Aggregate {
            as_of,
            ..Default::default()
        };
        for (_, (_, a)) in self.chosen {
            agg.merge(a.aggregate);
        }
        agg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(p: i32, offset: i64, caught_up: bool, applied: u64, wm: i64) -> PartitionAnswer {
        PartitionAnswer {
            topic: "t".into(),
            partition: p,
            offset,
            watermark: Some(wm),
            caught_up,
            aggregate: Aggregate {
                applied,
                ..Default::default()
            },
        }
    }

    fn all(n: i32) -> BTreeSet<(String, i32)> {
        (0..n).map(|p| ("t".to_string(), p)).collect()
    }

    #[test]
    fn a_partition_answered_twice_in_a_hand_off_counts_once_whatever_the_order() {
        let answers = vec![
            ("b".to_string(), answer(0, 10, true, 5, 100)),
            ("a".to_string(), answer(0, 12, true, 7, 120)),
            ("c".to_string(), answer(1, 3, true, 1, 50)),
            ("a".to_string(), answer(1, 3, true, 1, 50)),
            ("d".to_string(), answer(1, 99, false, 1000, 50)),
        ];
        let mut reversed = answers.clone();
        reversed.reverse();
        for list in [answers, reversed] {
            let c = choose(&all(2), list);
            assert!(c.missing.is_empty());
            assert_eq!(c.chosen[&("t".into(), 0)].0, "a", "the higher offset wins");
            assert_eq!(
                c.chosen[&("t".into(), 1)].0,
                "a",
                "equal offsets: smallest id"
            );
            assert_eq!(c.watermark(), Some(120));
            assert_eq!(c.merged(Some(120)).applied, 8);
        }
    }

    #[test]
    fn unheld_and_restoring_partitions_are_missing() {
        let c = choose(
            &all(3),
            vec![
                ("a".into(), answer(0, 1, true, 1, 1)),
                ("b".into(), answer(1, 1, false, 1, 1)),
            ],
        );
        let missing: Vec<i32> = c.missing.iter().map(|m| m.partition).collect();
        assert_eq!(missing, [1, 2]);
    }

    #[test]
    fn members_at_different_watermarks_merge_at_one_as_of() {
        let c = choose(
            &all(2),
            vec![
                ("a".into(), answer(0, 1, true, 2, 1_000)),
                ("b".into(), answer(1, 1, true, 3, 9_000)),
            ],
        );
        assert_eq!(c.watermark(), Some(9_000));
        let agg = c.merged(Some(9_000));
        assert_eq!(agg.as_of, Some(9_000));
        assert_eq!(agg.applied, 5);
    }
}
