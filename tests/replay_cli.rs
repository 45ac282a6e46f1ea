//! `keypulse replay` as a user runs it: the report on stdout, the rejection summary on
//! stderr, exit codes, and clear errors for I/O and configuration problems.

mod common;

use std::process::{Command, Stdio};

fn keypulse() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keypulse"))
}

/// The configuration of the v2 fixtures (SPEC §8: it excludes test and QA accounts).
fn v2_config() -> std::path::PathBuf {
    common::fixtures_dir().join("v2/keypulse.toml")
}

/// `keypulse --config v2/keypulse.toml replay PATH`, which must succeed.
fn replay_v2(path: &std::path::Path) -> std::process::Output {
    let out = keypulse()
        .arg("--config")
        .arg(v2_config())
        .arg("replay")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn v2_report(name: &str) -> serde_json::Value {
    let path = common::fixtures_dir().join(format!("v2/{name}.report.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn replay_prints_the_report_and_summarises_rejections() {
    let out = replay_v2(&common::fixtures_dir().join("edge.events.jsonl"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    common::assert_same_report("edge (cli)", &v2_report("edge"), &report);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rejected lines: 4"), "{stderr}");
    // the edge log's unknown result is on line 85 and its array on line 88
    assert!(
        stderr.contains("unknown_result") && stderr.contains("85"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not_object") && stderr.contains("88"),
        "{stderr}"
    );
}

#[test]
fn replay_reads_stdin() {
    let bytes = common::fixture_events("small");
    let mut child = keypulse()
        .arg("--config")
        .arg(v2_config())
        .args(["replay", "-", "--compact"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &bytes));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "--compact prints one line"
    );
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    common::assert_same_report("small (stdin)", &v2_report("small"), &report);
}

#[test]
fn replay_with_config_excludes_accounts_and_reports_spec8() {
    let path = common::fixtures_dir().join("v2/edge2.events.jsonl");
    let with = replay_v2(&path);
    let report: serde_json::Value = serde_json::from_slice(&with.stdout).unwrap();
    common::assert_same_report("edge2 (cli)", &v2_report("edge2"), &report);
    // Without the configuration nothing is excluded: the test accounts count.
    let without = keypulse().arg("replay").arg(&path).output().unwrap();
    assert!(without.status.success());
    let plain: serde_json::Value = serde_json::from_slice(&without.stdout).unwrap();
    assert_eq!(plain["events"]["excluded"], 0);
    assert_eq!(
        plain["events"]["applied"].as_u64().unwrap(),
        report["events"]["applied"].as_u64().unwrap() + 7 - 1,
        "7 excluded events apply, one of them as a duplicate"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = keypulse()
        .args(["replay", "/nonexistent/events.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open /nonexistent/events.jsonl"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("keypulse.toml");
    std::fs::write(&cfg, "[core.upgrade]\nwindow_days = -3\n").unwrap();
    let events = common::fixtures_dir().join("edge.events.jsonl");
    let out = keypulse()
        .arg("--config")
        .arg(&cfg)
        .arg("replay")
        .arg(&events)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("core.upgrade.window_days"), "{stderr}");
    let out = keypulse()
        .env("KEYPULSE__CORE__HEALTH__CHURN_RISK_BELOW", "101")
        .arg("replay")
        .arg(&events)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // with the line at 101, every scored customer is at risk
    assert_eq!(
        report["health"]["churn_risk"].as_array().unwrap().len() as u64,
        report["health"]["customers"].as_u64().unwrap()
    );
}
