//! Helpers shared by the integration tests: fixture paths and report comparison.
#![allow(dead_code)]

pub mod kafka;
pub mod load;
pub mod smtp;
pub mod toxiproxy;

use std::path::PathBuf;

use serde_json::Value;

/// The acceptance fixtures: `$KEYPULSE_FIXTURES`, or `../shared/fixtures` beside the repo.
pub fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("KEYPULSE_FIXTURES") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

/// The names of the fixtures (`NAME.events.jsonl` with `NAME.report.json`).
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".events.jsonl")
                .map(String::from)
        })
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no fixtures found in {:?}",
        fixtures_dir()
    );
    names
}

pub fn fixture_events(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(format!("{name}.events.jsonl"))).expect("events file")
}

/// The report of a fixture under the whole spec (SPEC §8 included): `v2/NAME.report.json`
/// where there is one, else the parent folder's. The parent folder's logs carry no excluded
/// account, so their v2 reports hold with the default configuration too.
pub fn fixture_report(name: &str) -> Value {
    let v2 = fixtures_dir().join(format!("v2/{name}.report.json"));
    if v2.exists() {
        return read_report(&v2);
    }
    fixture_report_v1(name)
}

/// The report of a fixture as computed before SPEC §8 (the parent folder's).
pub fn fixture_report_v1(name: &str) -> Value {
    read_report(&fixtures_dir().join(format!("{name}.report.json")))
}

fn read_report(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("report file");
    serde_json::from_str(&text).expect("report json")
}

fn as_instant(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_micros())
}

/// Compares `actual` with `expected` field by field: numbers within 1e-4, timestamps as
/// instants, extra fields in `actual` allowed. Returns every difference found.
pub fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", expected, actual, &mut out);
    out
}

fn walk(path: &str, e: &Value, a: &Value, out: &mut Vec<String>) {
    match (e, a) {
        (Value::Object(em), Value::Object(am)) => {
            for (k, ev) in em {
                match am.get(k) {
                    Some(av) => walk(&format!("{path}.{k}"), ev, av, out),
                    None => out.push(format!("{path}.{k}: missing (expected {ev})")),
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            if ea.len() != aa.len() {
                out.push(format!(
                    "{path}: length {} != expected {}",
                    aa.len(),
                    ea.len()
                ));
            }
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                walk(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        (Value::Number(en), Value::Number(an)) => {
            let (x, y) = (
                en.as_f64().unwrap_or(f64::NAN),
                an.as_f64().unwrap_or(f64::NAN),
            );
            if (x - y).abs() > 1e-4 {
                out.push(format!("{path}: {an} != expected {en}"));
            }
        }
        (Value::String(es), Value::String(as_)) => {
            let same = es == as_
                || matches!((as_instant(es), as_instant(as_)), (Some(x), Some(y)) if x == y);
            if !same {
                out.push(format!("{path}: {as_:?} != expected {es:?}"));
            }
        }
        _ => {
            if e != a {
                out.push(format!("{path}: {a} != expected {e}"));
            }
        }
    }
}

/// Asserts no difference, listing the first ones.
pub fn assert_same_report(name: &str, expected: &Value, actual: &Value) {
    let d = diff(expected, actual);
    assert!(
        d.is_empty(),
        "{name}: {} differences:\n{}",
        d.len(),
        d.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The folder of the fixtures with SPEC §8 (`v2/`), computed with its `keypulse.toml`.
pub fn v2_dir() -> PathBuf {
    fixtures_dir().join("v2")
}

/// The report of a log replayed under `cfg`.
pub fn replay_file(events: &std::path::Path, cfg: &keypulse::core::CoreConfig) -> Value {
    let bytes = std::fs::read(events).unwrap_or_else(|e| panic!("{}: {e}", events.display()));
    let mut replay = keypulse::replay::Replay::new();
    replay.feed_reader(&bytes[..], cfg, |_| {}).unwrap();
    serde_json::to_value(replay.report(cfg)).unwrap()
}

pub fn v2_config() -> keypulse::core::CoreConfig {
    keypulse::config::Config::load(Some(&v2_dir().join("keypulse.toml")))
        .expect("v2/keypulse.toml")
        .core
}

/// The v2 fixture names (`NAME.report.json` in v2/).
pub fn v2_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(v2_dir())
        .expect("v2 fixtures folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".report.json")
                .map(String::from)
        })
        .collect();
    names.sort();
    names
}

/// A v2 fixture's events: beside its report, or the parent folder's log.
pub fn v2_events(name: &str) -> PathBuf {
    let own = v2_dir().join(format!("{name}.events.jsonl"));
    if own.exists() {
        own
    } else {
        fixtures_dir().join(format!("{name}.events.jsonl"))
    }
}
