//! SPEC §8.8's merge where it is hard, without a broker: a fixture split by customer over
//! 3 partitions whose watermarks differ, their aggregates sent as JSON (as the internal
//! endpoint does) and merged at the group's one `as_of`, with a partition answered twice
//! (an old owner lagging behind during a hand-off, and a restoring owner) — the group
//! report equals the fixture replayed whole, whatever order the answers arrive in.

mod common;

use std::collections::BTreeSet;

use common::kafka::{key_of, lines};
use keypulse::core::{decode, CoreConfig, PartitionState};
use keypulse::group::merge::{choose, PartitionAnswer};

const PARTITIONS: usize = 3;

fn fold(lines: &[&[u8]], cfg: &CoreConfig) -> PartitionState {
    let mut state = PartitionState::new();
    let mut out = Vec::new();
    for l in lines {
        match decode(l) {
            Ok(e) => {
                state.apply(&e, cfg, &mut out);
            }
            Err(_) => state.record_rejected(),
        }
    }
    state
}

fn partition_of(key: &str) -> usize {
    key.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) as usize
        % PARTITIONS
}

/// What a member sends: the aggregate through JSON, as on the wire.
fn answer(
    p: usize,
    state: &PartitionState,
    offset: usize,
    as_of: Option<i64>,
    cfg: &CoreConfig,
    caught_up: bool,
) -> PartitionAnswer {
    let a = PartitionAnswer {
        topic: "t".into(),
        partition: p as i32,
        offset: offset as i64,
        watermark: state.watermark(),
        caught_up,
        aggregate: state.aggregate(as_of, cfg),
    };
    serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap()
}

#[test]
fn partitions_at_different_watermarks_and_a_hand_off_merge_to_the_whole_report() {
    let cfg = CoreConfig::default();
    for name in ["noisy", "small", "edge"] {
        let path = common::fixtures_dir().join(format!("{name}.events.jsonl"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let all = lines(&bytes);
        let mut parts: Vec<Vec<&[u8]>> = vec![Vec::new(); PARTITIONS];
        for l in &all {
            parts[partition_of(&key_of(l))].push(l);
        }
        let states: Vec<PartitionState> = parts.iter().map(|p| fold(p, &cfg)).collect();
        let marks: BTreeSet<Option<i64>> = states.iter().map(|s| s.watermark()).collect();
        assert!(
            marks.len() > 1,
            "{name}: the partitions' watermarks should differ"
        );
        // The group's as_of: the newest watermark any member announced.
        let as_of = states.iter().filter_map(|s| s.watermark()).max();
        // Partition 0 is being handed over: its old owner lags (half its events), and its
        // new owner is still restoring; both answer besides the up-to-date one.
        let half = parts[0].len() / 2;
        let lagging = fold(&parts[0][..half], &cfg);
        let mut answers = vec![
            (
                "old-owner".to_string(),
                answer(0, &lagging, half, as_of, &cfg, true),
            ),
            (
                "restoring".to_string(),
                answer(0, &lagging, parts[0].len() + 5, as_of, &cfg, false),
            ),
        ];
        for (p, s) in states.iter().enumerate() {
            answers.push((
                format!("member-{p}"),
                answer(p, s, parts[p].len(), as_of, &cfg, true),
            ));
        }
        let expected = common::replay_file(&path, &cfg);
        let all_parts = (0..PARTITIONS as i32)
            .map(|p| ("t".to_string(), p))
            .collect();
        for order in [false, true] {
            let mut list = answers.clone();
            if order {
                list.reverse();
            }
            let c = choose(&all_parts, list);
            assert!(c.missing.is_empty());
            assert_eq!(c.chosen[&("t".to_string(), 0)].0, "member-0", "{name}");
            let report = serde_json::to_value(c.merged(as_of).finish(&cfg)).unwrap();
            common::assert_same_report(&format!("{name}, group merge"), &expected, &report);
        }
        // Without the member of partition 2 the answer says so and is short of exactly it.
        let c = choose(
            &all_parts,
            answers
                .iter()
                .filter(|(m, _)| m != "member-2")
                .cloned()
                .collect(),
        );
        assert_eq!(c.missing.len(), 1);
        assert_eq!(c.missing[0].partition, 2);
    }
}
