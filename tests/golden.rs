//! The state codec across versions: golden bytes of every format version load into the
//! same report, and every fixture's state survives its bytes and its records.
//!
//! `tests/golden/v{N}/{fixture}.state` is the state of a SPEC §8 acceptance fixture
//! (`../shared/fixtures/v2/`: its own log or the parent folder's) folded whole under
//! `v2/keypulse.toml`,
//! as `PartitionState::to_bytes` of format version N wrote it, and
//! `tests/golden/v{N}/{fixture}.report.json` the report that state gave at its watermark.
//! Every later version must read every one of them into that same report, so a change of
//! the format bumps `FORMAT_VERSION` and keeps a reader for the old one. Write the current
//! version's files (once per format version, then commit them; never rewrite an older
//! version's) with:
//!
//! ```text
//! KEYPULSE_WRITE_GOLDEN=1 cargo test --test golden
//! ```

mod common;

use std::path::{Path, PathBuf};

use keypulse::core::state::FORMAT_VERSION;
use keypulse::core::{CoreConfig, PartitionState};
use keypulse::replay::Replay;
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn folded(name: &str, cfg: &CoreConfig) -> PartitionState {
    let events = std::fs::read(common::v2_events(name)).unwrap();
    let mut replay = Replay::new();
    replay.feed_reader(&events[..], cfg, |_| {}).unwrap();
    replay.into_state()
}

fn report_of(state: &PartitionState, cfg: &CoreConfig) -> Value {
    serde_json::to_value(state.report(state.watermark(), cfg)).unwrap()
}

/// The format versions that have golden files, with their files' stems.
fn golden_versions() -> Vec<(u32, Vec<PathBuf>)> {
    let Ok(dirs) = std::fs::read_dir(golden_dir()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in dirs.flatten() {
        let name = d.file_name().to_string_lossy().to_string();
        let Some(v) = name.strip_prefix('v').and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let mut states: Vec<PathBuf> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|f| f.path())
            .filter(|p| p.extension().is_some_and(|e| e == "state"))
            .collect();
        states.sort();
        out.push((v, states));
    }
    out.sort();
    out
}

fn write_golden(cfg: &CoreConfig) {
    let dir = golden_dir().join(format!("v{FORMAT_VERSION}"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in common::v2_names() {
        let state = folded(&name, cfg);
        std::fs::write(dir.join(format!("{name}.state")), state.to_bytes().unwrap()).unwrap();
        let report = serde_json::to_string_pretty(&report_of(&state, cfg)).unwrap();
        std::fs::write(dir.join(format!("{name}.report.json")), report + "\n").unwrap();
    }
    eprintln!("wrote the golden states of format version {FORMAT_VERSION} to {dir:?}");
}

#[test]
fn every_golden_state_loads_into_its_report() {
    let cfg = common::v2_config();
    if std::env::var_os("KEYPULSE_WRITE_GOLDEN").is_some() {
        write_golden(&cfg);
    }
    let versions = golden_versions();
    if versions.is_empty() {
        eprintln!("no golden states yet under {:?}", golden_dir());
        return;
    }
    // Once golden files exist, the version this code writes must have its own.
    assert!(
        versions
            .iter()
            .any(|(v, files)| *v == FORMAT_VERSION && !files.is_empty()),
        "format version {FORMAT_VERSION} has no golden states: write them (see this file's header)"
    );
    for (v, files) in versions {
        for state_file in files {
            let what = format!("v{v}/{}", state_file.display());
            let bytes = std::fs::read(&state_file).unwrap();
            let state = PartitionState::from_bytes(&bytes)
                .unwrap_or_else(|e| panic!("{what}: does not load: {e}"));
            let expected: Value = serde_json::from_slice(
                &std::fs::read(state_file.with_extension("report.json")).unwrap(),
            )
            .unwrap();
            common::assert_same_report(&what, &expected, &report_of(&state, &cfg));
        }
    }
}

#[test]
fn every_fixture_state_survives_its_bytes_and_its_records() {
    let cfg = common::v2_config();
    for name in common::v2_names() {
        let state = folded(&name, &cfg);
        let expected = report_of(&state, &cfg);
        let restored = PartitionState::from_bytes(&state.to_bytes().unwrap()).unwrap();
        common::assert_same_report(&name, &expected, &report_of(&restored, &cfg));

        let customers: Vec<Vec<u8>> = state
            .customer_ids()
            .map(|id| state.customer_record(id).unwrap().unwrap())
            .collect();
        let partition = state.partition_record().unwrap();
        let rebuilt =
            PartitionState::from_records(&partition, customers.iter().map(|c| &c[..])).unwrap();
        common::assert_same_report(&name, &expected, &report_of(&rebuilt, &cfg));
        assert_eq!(rebuilt.sizes(), state.sizes(), "{name}");
    }
}
