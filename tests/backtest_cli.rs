//! `keypulse backtest` as a user runs it (SPEC §8.7), checked against two plain
//! `keypulse replay` runs: its `added` and `removed` are the difference of their
//! `notifications`, its counts are theirs; identical configurations change nothing; the
//! text summary names the counts; errors are clear and exit non-zero.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use keypulse::core::NotificationKind;

fn keypulse() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keypulse"));
    // The comparison is between the files: no override from the caller's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYPULSE_") {
            c.env_remove(k);
        }
    }
    c
}

fn ok(out: Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn log() -> PathBuf {
    common::fixtures_dir().join("small.events.jsonl")
}

/// Writes `text` as a config file in `dir`.
fn config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A lower upgrade threshold and a shorter churn cooldown: earlier upgrades and more churn
/// warnings add notifications, and the upgrades' cooldowns block some that the defaults
/// decide later.
const CANDIDATE: &str = "\
[core.notify]
upgrade_min_triggers = 1
churn_cooldown_days = 2

[core.upgrade]
rate_limited_more_than = 4
";

/// `keypulse replay [--config C] FILE`, parsed.
fn replay(config: Option<&Path>) -> Value {
    let mut c = keypulse();
    if let Some(p) = config {
        c.arg("--config").arg(p);
    }
    let out = c.args(["replay", "--compact"]).arg(log()).output().unwrap();
    serde_json::from_slice(&ok(out, "replay")).unwrap()
}

fn backtest(config: &Path, baseline: Option<&Path>, format: &str) -> Output {
    let mut c = keypulse();
    c.arg("--config").arg(config).arg("backtest").arg(log());
    if let Some(b) = baseline {
        c.arg("--baseline").arg(b);
    }
    c.args(["--format", format]).output().unwrap()
}

fn identity(n: &Value) -> (String, String, Value, String) {
    (
        n["kind"].as_str().unwrap().to_string(),
        n["customer_id"].as_str().unwrap().to_string(),
        n["license_key"].clone(),
        n["at"].as_str().unwrap().to_string(),
    )
}

/// The notifications of `a` that `b` has not, in `a`'s order.
fn only_in(a: &Value, b: &Value) -> Vec<Value> {
    let b: HashSet<_> = b["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(identity)
        .collect();
    a["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| !b.contains(&identity(n)))
        .cloned()
        .collect()
}

/// Checks one side of the backtest against a replay's report.
fn assert_side(name: &str, side: &Value, report: &Value) {
    let notes = report["notifications"].as_array().unwrap();
    assert_eq!(side["notifications"], notes.len(), "{name}.notifications");
    let mut by_kind: BTreeMap<String, u64> = NotificationKind::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), 0))
        .collect();
    for n in notes {
        *by_kind
            .get_mut(n["kind"].as_str().unwrap())
            .expect("a kind outside NotificationKind::ALL") += 1;
    }
    let got: BTreeMap<String, u64> = serde_json::from_value(side["by_kind"].clone()).unwrap();
    assert_eq!(got, by_kind, "{name}.by_kind");
    assert_eq!(
        side["churn_risk"],
        report["health"]["churn_risk"].as_array().unwrap().len(),
        "{name}.churn_risk"
    );
    assert_eq!(
        side["upgrade_pipeline"],
        report["upgrade_pipeline"].as_array().unwrap().len(),
        "{name}.upgrade_pipeline"
    );
}

fn parse(out: Output) -> Value {
    serde_json::from_slice(&ok(out, "backtest")).unwrap()
}

#[test]
fn added_and_removed_are_the_difference_of_two_replays() {
    let dir = tempfile::tempdir().unwrap();
    let cand = config(dir.path(), "candidate.toml", CANDIDATE);
    let base_report = replay(None);
    let cand_report = replay(Some(&cand));
    let bt = parse(backtest(&cand, None, "json"));

    let added = only_in(&cand_report, &base_report);
    let removed = only_in(&base_report, &cand_report);
    assert!(!added.is_empty(), "the candidate should add notifications");
    assert!(
        !removed.is_empty(),
        "the candidate should remove notifications"
    );
    assert!(
        added
            .iter()
            .any(|n| n["kind"] == "churn_warning" && n["license_key"].is_null()),
        "a churn warning (no license) among the added"
    );
    assert_eq!(bt["added"], Value::from(added), "added");
    assert_eq!(bt["removed"], Value::from(removed), "removed");
    assert_side("baseline", &bt["baseline"], &base_report);
    assert_side("candidate", &bt["candidate"], &cand_report);
    assert_ne!(bt["baseline"]["by_kind"], bt["candidate"]["by_kind"]);
    let keys: Vec<&str> = bt.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
}

#[test]
fn an_explicit_baseline_is_compared_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let base = config(dir.path(), "base.toml", CANDIDATE);
    let cand = config(
        dir.path(),
        "cand.toml",
        "[core.health]\nchurn_risk_below = 75\n[core.notify]\nupgrade_cooldown_days = 10\n",
    );
    let base_report = replay(Some(&base));
    let cand_report = replay(Some(&cand));
    let bt = parse(backtest(&cand, Some(&base), "json"));
    assert_eq!(
        bt["added"],
        Value::from(only_in(&cand_report, &base_report))
    );
    assert_eq!(
        bt["removed"],
        Value::from(only_in(&base_report, &cand_report))
    );
    assert_side("baseline", &bt["baseline"], &base_report);
    assert_side("candidate", &bt["candidate"], &cand_report);
    assert!(
        bt["candidate"]["churn_risk"].as_u64() > bt["baseline"]["churn_risk"].as_u64(),
        "a higher churn_risk_below lists more customers"
    );
}

#[test]
fn identical_configurations_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cand = config(dir.path(), "same.toml", CANDIDATE);
    let bt = parse(backtest(&cand, Some(&cand), "json"));
    assert_eq!(bt["added"], Value::Array(vec![]));
    assert_eq!(bt["removed"], Value::Array(vec![]));
    assert_eq!(bt["baseline"], bt["candidate"]);
    assert!(bt["baseline"]["notifications"].as_u64().unwrap() > 0);
    // the defaults written out are the defaults
    let empty = config(dir.path(), "empty.toml", "");
    let bt = parse(backtest(&empty, None, "json"));
    assert_eq!(bt["added"], Value::Array(vec![]));
    assert_eq!(bt["removed"], Value::Array(vec![]));
    assert_eq!(bt["baseline"], bt["candidate"]);
}

#[test]
fn by_kind_lists_every_kind_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    // No upgrade can fire: more triggers than there are.
    let cand = config(
        dir.path(),
        "noup.toml",
        "[core.notify]\nupgrade_min_triggers = 5\n",
    );
    let bt = parse(backtest(&cand, None, "json"));
    for side in ["baseline", "candidate"] {
        let by_kind = bt[side]["by_kind"].as_object().unwrap();
        assert_eq!(by_kind.len(), NotificationKind::ALL.len(), "{side}");
        for kind in NotificationKind::ALL {
            assert!(by_kind.contains_key(kind.as_str()), "{side}: {kind:?}");
        }
        for kind in ["upgrade", "renewal", "churn_warning"] {
            assert!(by_kind.contains_key(kind), "{side}: {kind}");
        }
    }
    assert_eq!(bt["candidate"]["by_kind"]["upgrade"], 0);
    assert!(bt["baseline"]["by_kind"]["upgrade"].as_u64().unwrap() > 0);
    assert!(bt["added"].as_array().unwrap().is_empty());
    assert!(bt["removed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["kind"] == "upgrade"));
}

#[test]
fn text_format_names_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cand = config(dir.path(), "candidate.toml", CANDIDATE);
    let bt = parse(backtest(&cand, None, "json"));
    let text = String::from_utf8(ok(backtest(&cand, None, "text"), "text")).unwrap();
    for kind in NotificationKind::ALL {
        let (b, c) = (
            &bt["baseline"]["by_kind"][kind.as_str()],
            &bt["candidate"]["by_kind"][kind.as_str()],
        );
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(kind.as_str()))
            .unwrap_or_else(|| panic!("no line for {kind:?} in\n{text}"));
        assert!(
            line.contains(&format!("{b} → {c}")),
            "{kind:?}: {line:?} (expected {b} → {c})"
        );
    }
    let added = bt["added"].as_array().unwrap();
    let removed = bt["removed"].as_array().unwrap();
    assert!(text.contains(&format!("added: {}", added.len())), "{text}");
    assert!(
        text.contains(&format!("removed: {}", removed.len())),
        "{text}"
    );
    // the first added and removed notifications are listed
    for n in [&added[0], &removed[0]] {
        let at = n["at"].as_str().unwrap();
        assert!(
            text.lines().any(|l| l.contains(at)
                && l.contains(n["customer_id"].as_str().unwrap())
                && l.contains(n["kind"].as_str().unwrap())),
            "{n} not listed in\n{text}"
        );
    }
    assert!(text.lines().count() < 40, "a short summary:\n{text}");
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cand = config(dir.path(), "candidate.toml", CANDIDATE);
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).to_string();

    // a missing log
    let out = keypulse()
        .arg("--config")
        .arg(&cand)
        .args(["backtest", "/nonexistent/events.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot open /nonexistent/events.jsonl"),
        "{}",
        stderr(&out)
    );

    // no candidate
    let out = keypulse().arg("backtest").arg(log()).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));

    // a bad key in the candidate, with a secret beside it that must not be echoed
    let bad = config(
        dir.path(),
        "bad.toml",
        "[email.smtp]\npassword = \"hunter2-secret\"\n",
    );
    let out = backtest(&bad, None, "json");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("email.smtp") && e.contains("password"), "{e}");
    assert!(!e.contains("hunter2-secret"), "{e}");

    // a bad value in the baseline, named with its key and the file
    let bad_base = config(
        dir.path(),
        "bad_base.toml",
        "[core.notify]\nupgrade_min_triggers = \"two\"\n",
    );
    let out = backtest(&cand, Some(&bad_base), "json");
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("baseline") && e.contains("core.notify.upgrade_min_triggers"),
        "{e}"
    );
    // a missing baseline file
    let out = backtest(&cand, Some(&dir.path().join("nope.toml")), "json");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope.toml"), "{}", stderr(&out));
    // nothing on stdout for a failed run
    assert!(out.stdout.is_empty());
}
