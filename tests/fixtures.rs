//! Every acceptance fixture replays to its report, every field (SPEC §3, fixtures/README).

mod common;

use keypulse::core::CoreConfig;
use keypulse::replay::Replay;

fn replay_fixture(name: &str) -> serde_json::Value {
    let cfg = CoreConfig::default();
    let mut replay = Replay::new();
    replay
        .feed_reader(&common::fixture_events(name)[..], &cfg, |_| {})
        .unwrap();
    serde_json::to_value(replay.report(&cfg)).unwrap()
}

#[test]
fn every_fixture_replays_to_its_report() {
    for name in common::fixture_names() {
        let actual = replay_fixture(&name);
        common::assert_same_report(&name, &common::fixture_report(&name), &actual);
    }
}

#[test]
fn the_comparison_can_fail() {
    // The comparison itself must notice a changed count, ratio, timestamp or list.
    let expected = common::fixture_report("edge");
    let mut changed = expected.clone();
    changed["events"]["applied"] = serde_json::json!(89);
    assert!(!common::diff(&expected, &changed).is_empty());
    let mut changed = expected.clone();
    changed["mrr"]["mom_change"] = serde_json::json!(0.1925);
    assert!(!common::diff(&expected, &changed).is_empty());
    let mut changed = expected.clone();
    changed["notifications"].as_array_mut().unwrap().pop();
    assert!(!common::diff(&expected, &changed).is_empty());
    let mut changed = expected.clone();
    changed["as_of"] = serde_json::json!("2026-11-07T10:00:01Z");
    assert!(!common::diff(&expected, &changed).is_empty());
    let mut same = expected.clone();
    same["as_of"] = serde_json::json!("2026-11-07T11:00:00+01:00");
    assert!(common::diff(&expected, &same).is_empty());
}
