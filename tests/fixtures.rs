//! Every acceptance fixture replays to its report, every field (SPEC §3, §8, fixtures/README).
//!
//! - v2 (`fixtures/v2/*.report.json`): the whole spec, §8 included, replayed with
//!   `v2/keypulse.toml`; the events are `v2/NAME.events.jsonl`, or the parent folder's
//!   log of the same name (v2/README.md).
//! - v1 (`fixtures/*.report.json`): computed before §8, with the default configuration.
//!   Every field §8 did not change still holds; `notifications` holds for the kinds of §5
//!   (§8 only adds kinds).

mod common;

use std::path::Path;

use keypulse::core::CoreConfig;
use serde_json::Value;

use common::{replay_file, v2_config, v2_dir, v2_events, v2_names};

/// The kinds of notification §8 adds; v1 reports predate them.
const SPEC8_KINDS: [&str; 3] = ["key_sharing", "revoked_use", "expiring_soon"];

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("report json")
}

#[test]
fn every_v2_fixture_replays_to_its_report() {
    let names = v2_names();
    for expected in ["edge", "edge2", "mixed", "noisy", "small"] {
        assert!(
            names.iter().any(|n| n == expected),
            "v2 fixture {expected} missing"
        );
    }
    let cfg = v2_config();
    let mut failures = Vec::new();
    for name in &names {
        let expected = read_json(&v2_dir().join(format!("{name}.report.json")));
        let actual = replay_file(&v2_events(name), &cfg);
        let d = common::diff(&expected, &actual);
        if !d.is_empty() {
            failures.push(format!(
                "v2/{name}: {} differences:\n{}",
                d.len(),
                d.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A v1 report with only what §8 did not change: the §5 kinds of notification.
fn without_spec8(mut report: Value) -> Value {
    if let Some(list) = report["notifications"].as_array_mut() {
        list.retain(|n| !SPEC8_KINDS.contains(&n["kind"].as_str().unwrap_or_default()));
    }
    report
}

#[test]
fn every_v1_fixture_still_holds_where_spec8_changed_nothing() {
    let cfg = CoreConfig::default();
    for name in common::fixture_names() {
        let expected = common::fixture_report_v1(&name);
        let actual = replay_file(
            &common::fixtures_dir().join(format!("{name}.events.jsonl")),
            &cfg,
        );
        common::assert_same_report(&format!("v1/{name}"), &expected, &without_spec8(actual));
    }
}

#[test]
fn the_comparison_can_fail() {
    // The comparison itself must notice a changed count, ratio, timestamp or list.
    let expected = read_json(&v2_dir().join("edge2.report.json"));
    type Change = (&'static str, fn(&mut Value));
    let changes: [Change; 9] = [
        ("applied", |r| {
            r["events"]["applied"] = serde_json::json!(71)
        }),
        ("excluded", |r| {
            r["events"]["excluded"] = serde_json::json!(6)
        }),
        ("mom_change", |r| {
            r["mrr"]["mom_change"] = serde_json::json!(0.1525)
        }),
        ("net", |r| {
            r["mrr"]["movements"]["net_cents"] = serde_json::json!(4801)
        }),
        ("counts", |r| {
            r["mrr"]["movements"]["counts"]["reactivation"] = serde_json::json!(0)
        }),
        ("notification", |r| {
            r["notifications"].as_array_mut().unwrap().pop();
        }),
        ("kind", |r| {
            r["notifications"][0]["kind"] = serde_json::json!("upgrade")
        }),
        ("suspects", |r| {
            r["sharing_suspects"][0]["domains"] = serde_json::json!(3)
        }),
        ("as_of", |r| {
            r["as_of"] = serde_json::json!("2026-11-05T11:00:01Z")
        }),
    ];
    for (what, change) in changes {
        let mut changed = expected.clone();
        change(&mut changed);
        assert!(!common::diff(&expected, &changed).is_empty(), "{what}");
    }
    let mut missing = expected.clone();
    missing["mrr"].as_object_mut().unwrap().remove("movements");
    assert!(!common::diff(&expected, &missing).is_empty());
    let mut same = expected.clone();
    same["as_of"] = serde_json::json!("2026-11-05T12:00:00+01:00");
    assert!(common::diff(&expected, &same).is_empty());
    // Filtering the §8 kinds out of a v1 comparison leaves the §5 kinds compared.
    let filtered = without_spec8(expected.clone());
    let kinds: Vec<&str> = filtered["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["churn_warning"]);
}

/// The parallel replay (decoding in parallel, folding in customer shards, merged at the
/// end) gives what one thread gives: the same report to the last field, the same
/// rejection summary (line numbers included) and the same decisions in the same order.
/// Every fixture but `edge` is more than one batch, so it takes the sharded path.
#[test]
fn sharded_replays_equal_one_thread() {
    let cfg = v2_config();
    let mut sharded = 0;
    for name in v2_names() {
        let bytes = std::fs::read(v2_events(&name)).expect("events");
        let fold = |threads: usize| {
            let mut r = keypulse::replay::Replay::new();
            r.feed_reader_on(&bytes[..], &cfg, threads, |_| {}).unwrap();
            let report = serde_json::to_value(r.report(&cfg)).unwrap();
            let sizes = r.sizes();
            (report, r.rejections, r.decisions, sizes)
        };
        let one = fold(1);
        for threads in [2, 3] {
            let many = fold(threads);
            common::assert_same_report(&format!("{name} on {threads} threads"), &one.0, &many.0);
            assert_eq!(one.1, many.1, "{name}: rejections on {threads} threads");
            assert_eq!(one.2, many.2, "{name}: decisions on {threads} threads");
            assert_eq!(
                one.3, many.3,
                "{name}: customers and licenses on {threads} threads"
            );
        }
        if bytes.iter().filter(|b| **b == b'\n').count() > keypulse::replay::BATCH_LINES {
            sharded += 1;
            assert!(!one.2.is_empty(), "{name}: a log with decisions");
        }
    }
    assert!(
        sharded >= 3,
        "only {sharded} fixtures take the sharded path"
    );
}
