//! Tests of the upgrade watch: the licenses it checks fire exactly as SPEC §5's walk over
//! every license of the customer would, on generated logs and configurations (with late
//! events, restores and merges), and an event checks O(1) licenses however many its
//! customer has.

use std::cell::Cell;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::super::test_fold::{apply_json, in_report_order};
use super::super::PartitionState;
use crate::codes::Status;
use crate::config::CoreConfig;
use crate::event::decode;
use crate::signals::{cooldown_allows, Notification};
use crate::time::{day_of, Micros, DAY};

thread_local! {
    /// Set while a test folds with the literal walk as its reference.
    static REFERENCE: Cell<bool> = const { Cell::new(false) };
    /// Licenses checked by the watch (not the reference) on this thread.
    static CHECKS: Cell<u64> = const { Cell::new(0) };
}

pub(super) fn reference_on() -> bool {
    REFERENCE.with(Cell::get)
}

pub(super) fn count_check() {
    CHECKS.with(|c| c.set(c.get() + 1));
}

impl PartitionState {
    /// SPEC §5 read literally: every active license of the customer, with an email, with
    /// enough triggers and outside its cooldown, fires.
    pub(super) fn check_every_license(
        &mut self,
        ci: u32,
        at: Micros,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let end_day = day_of(self.customers[ci as usize].clock);
        let cooldown = cfg.notify.upgrade_cooldown_days as i64 * DAY;
        for li in self.customers[ci as usize].licenses.clone() {
            let l = &self.licenses[li as usize];
            if l.status != Status::Active || l.email.is_none() {
                continue;
            }
            let triggers = self.triggers(li, end_day, cfg);
            if triggers.len() < cfg.notify.upgrade_min_triggers
                || !cooldown_allows(l.cooldowns().upgrade, at, cooldown)
            {
                continue;
            }
            self.fire_upgrade(ci, li, triggers, at, end_day, cfg, out);
        }
    }
}

/// One generated event: (kind, hours from the start, minutes back (a late event), customer,
/// license, variant).
type Spec = (u8, u16, u16, u8, u8, u8);

fn event(start: i64, spec: Spec) -> Value {
    event_of(
        start,
        spec,
        &format!("c{}", spec.3),
        &format!("k{}", spec.4),
    )
}

/// The event of `spec` for customer `c` and license `key`.
fn event_of(start: i64, (kind, hours, back, _, _, var): Spec, c: &str, key: &str) -> Value {
    let ts = start + hours as i64 * 3600 - back as i64 * 60;
    let ts = chrono::DateTime::from_timestamp(ts, 0)
        .unwrap()
        .to_rfc3339();
    let domain = format!("d{}.example", var % 4);
    let results = [
        "valid",
        "rate_limited",
        "expired",
        "domain_mismatch",
        "revoked",
    ];
    let mut v = json!({"ts": ts, "customer_id": c});
    let o = v.as_object_mut().unwrap();
    let mut put = |k: &str, x: Value| {
        o.insert(k.into(), x);
    };
    let ty = match kind {
        0 | 1 => {
            put("license_key", json!(key));
            put("plan", json!("pro"));
            put("domain_limit", json!(var % 4));
            put("mrr_cents", json!(100));
            if var % 5 != 0 {
                put("email", json!(format!("{key}@x.example")));
            }
            ["license.issued", "subscription.changed"][kind as usize]
        }
        2 | 3 => {
            put("license_key", json!(key));
            put("domain", json!(domain));
            ["domain.added", "license.activated"][kind as usize - 2]
        }
        4 => {
            put("license_key", json!(key));
            put("domain", json!(domain));
            "domain.removed"
        }
        5..=8 => {
            put("license_key", json!(key));
            put("result", json!(results[var as usize % results.len()]));
            "license.validated"
        }
        9 => {
            put("license_key", json!("?"));
            put("result", json!("invalid_format"));
            "license.validated"
        }
        10 | 11 => "team.member_invited",
        12 => {
            put("license_key", json!(key));
            put("feature", json!("sso"));
            "feature.access_denied"
        }
        13 => {
            put("license_key", json!(key));
            [
                "license.renewed",
                "license.expired",
                "license.revoked",
                "subscription.canceled",
            ][var as usize % 4]
        }
        _ => "payment.failed",
    };
    put("type", json!(ty));
    v
}

fn config(
    (min, cooldown, invites, ratio, rate, denied, window): (u32, u32, u32, u8, u32, u32, u32),
) -> CoreConfig {
    let mut cfg = CoreConfig::default();
    cfg.notify.upgrade_min_triggers = min;
    cfg.notify.upgrade_cooldown_days = cooldown;
    cfg.upgrade.invites_at_least = invites;
    cfg.upgrade.domain_ratio = [0.0, 0.5, 0.8, 1.0][ratio as usize];
    cfg.upgrade.rate_limited_more_than = rate;
    cfg.upgrade.feature_denied_more_than = denied;
    cfg.upgrade.window_days = window;
    cfg
}

fn config_strategy() -> impl Strategy<Value = CoreConfig> {
    (
        0u32..4,
        prop_oneof![Just(0u32), Just(1), Just(3), Just(30)],
        0u32..4,
        0u8..4,
        0u32..3,
        0u32..2,
        prop_oneof![Just(1u32), Just(3), Just(30)],
    )
        .prop_map(config)
}

fn log_strategy() -> impl Strategy<Value = Vec<Spec>> {
    let spec = (
        0u8..15,
        0u16..(60 * 24),
        prop_oneof![8 => Just(0u16), 1 => 0u16..(5 * 24 * 60)],
        0u8..3,
        0u8..5,
        0u8..20,
    );
    proptest::collection::vec(spec, 1..160).prop_map(|mut v| {
        v.sort_by_key(|s| s.1);
        v
    })
}

/// Folds `lines` into `s`, returning the decisions.
fn fold(s: &mut PartitionState, lines: &[Value], cfg: &CoreConfig) -> Vec<Notification> {
    let mut out = Vec::new();
    for l in lines {
        apply_json(s, l, cfg, &mut out);
    }
    out
}

fn reference(lines: &[Value], cfg: &CoreConfig) -> Vec<Notification> {
    REFERENCE.with(|r| r.set(true));
    let out = fold(&mut PartitionState::new(), lines, cfg);
    REFERENCE.with(|r| r.set(false));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_watch_fires_exactly_as_the_walk_over_every_license(
        specs in log_strategy(),
        cfg in config_strategy(),
        cut in 0usize..160,
    ) {
        let start = 1_790_000_000;
        let lines: Vec<Value> = specs.iter().map(|s| event(start, *s)).collect();
        let expected = in_report_order(reference(&lines, &cfg));

        let plain = in_report_order(fold(&mut PartitionState::new(), &lines, &cfg));
        prop_assert_eq!(&plain, &expected, "straight fold");

        // Restored from its bytes at a cut, then folded on.
        let (before, after) = lines.split_at(cut.min(lines.len()));
        let mut s = PartitionState::new();
        let mut got = fold(&mut s, before, &cfg);
        let mut s = PartitionState::from_bytes(&s.to_bytes().unwrap()).unwrap();
        got.extend(fold(&mut s, after, &cfg));
        prop_assert_eq!(&in_report_order(got), &expected, "restored at line {}", cut);

        // Each customer folded alone up to the cut, merged, then folded on.
        let mut merged = PartitionState::new();
        let mut got = Vec::new();
        for cust in ["c0", "c1", "c2"] {
            let mine: Vec<Value> = before
                .iter()
                .filter(|l| l["customer_id"] == cust)
                .cloned()
                .collect();
            let mut part = PartitionState::new();
            got.extend(fold(&mut part, &mine, &cfg));
            merged.merge(part);
        }
        got.extend(fold(&mut merged, after, &cfg));
        prop_assert_eq!(&in_report_order(got), &expected, "merged at line {}", cut);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A state written before the watch lists every license with a trigger of its own as
    /// `upgrade_candidates`: a superset of what a watch would hold, under a configuration
    /// whose `upgrade_min_triggers` is 2 or more, `domain_ratio` above 0 and trigger window
    /// no longer than the one the state was folded with (the defaults, here).
    #[test]
    fn a_state_written_before_the_watch_folds_on_as_the_walk(
        specs in log_strategy(),
        min in 2u32..4,
        cooldown in prop_oneof![Just(0u32), Just(1), Just(30)],
        invites in 1u32..4,
    ) {
        let mut cfg = CoreConfig::default();
        cfg.notify.upgrade_min_triggers = min;
        cfg.notify.upgrade_cooldown_days = cooldown;
        cfg.upgrade.invites_at_least = invites;
        for (name, bytes) in GOLDEN {
            let state = PartitionState::from_bytes(bytes).unwrap();
            let start = state.watermark().unwrap() / 1_000_000 + 3600;
            let ids: Vec<(String, Vec<String>)> = state
                .customers
                .iter()
                .filter(|c| !c.licenses.is_empty())
                .map(|c| {
                    let keys = c.licenses.iter().map(|&li| state.licenses[li as usize].key().to_string());
                    (c.id.to_string(), keys.collect())
                })
                .collect();
            let lines: Vec<Value> = specs
                .iter()
                .map(|s| {
                    let (c, keys) = &ids[s.3 as usize % ids.len()];
                    event_of(start, *s, c, &keys[s.4 as usize % keys.len()])
                })
                .collect();
            REFERENCE.with(|r| r.set(true));
            let expected = in_report_order(fold(&mut PartitionState::from_bytes(bytes).unwrap(), &lines, &cfg));
            REFERENCE.with(|r| r.set(false));
            let got = in_report_order(fold(&mut PartitionState::from_bytes(bytes).unwrap(), &lines, &cfg));
            prop_assert_eq!(got, expected, "{}", name);
        }
    }
}

/// The golden states of format version 1, written before the upgrade watch (`tests/golden.rs`).
const GOLDEN: [(&str, &[u8]); 3] = [
    (
        "edge",
        include_bytes!("../../../tests/golden/v1/edge.state"),
    ),
    (
        "edge2",
        include_bytes!("../../../tests/golden/v1/edge2.state"),
    ),
    (
        "mixed",
        include_bytes!("../../../tests/golden/v1/mixed.state"),
    ),
];

/// One customer with `n` licenses, each on its own domain with a limit of one (so each has
/// `domain_limit_approaching` and lacks one trigger), then validations spread over them,
/// an invite that turns `team_growth` on, and more validations. Returns the decisions and
/// the licenses checked.
fn many_licenses(n: u32, validations: u32) -> (usize, u64) {
    let cfg = CoreConfig {
        upgrade: crate::config::UpgradeConfig {
            invites_at_least: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut s = PartitionState::new();
    let mut out = Vec::new();
    let t0 = "2026-10-01T00:00:00Z";
    let mut apply = |line: String| {
        let e = decode(line.as_bytes()).unwrap();
        s.apply(&e, &cfg, &mut out);
    };
    for i in 0..n {
        apply(format!(
            r#"{{"type":"license.issued","ts":"{t0}","customer_id":"c","license_key":"k{i}","plan":"pro","domain_limit":1,"mrr_cents":0,"email":"k{i}@x.example"}}"#
        ));
        apply(format!(
            r#"{{"type":"license.activated","ts":"{t0}","customer_id":"c","license_key":"k{i}","domain":"d{i}.example"}}"#
        ));
    }
    let before = CHECKS.with(Cell::get);
    let validate = |apply: &mut dyn FnMut(String), v: u32| {
        let k = v % n;
        apply(format!(
            r#"{{"type":"license.validated","ts":"2026-10-02T00:00:00Z","customer_id":"c","license_key":"k{k}","result":"valid"}}"#
        ));
    };
    for v in 0..validations {
        validate(&mut apply, v);
    }
    apply(r#"{"type":"team.member_invited","ts":"2026-10-03T00:00:00Z","customer_id":"c"}"#.into());
    for v in 0..validations {
        validate(&mut apply, v);
    }
    (out.len(), CHECKS.with(Cell::get) - before)
}

#[test]
fn an_event_checks_its_own_license_however_many_its_customer_has() {
    for n in [10, 1_000] {
        let (fired, checks) = many_licenses(n, 5_000);
        // Every license fires once, at the invite that turns `team_growth` on.
        assert_eq!(fired, n as usize, "n = {n}");
        // Each validation checks its own license; the invite checks the team watch once.
        assert_eq!(checks, 2 * 5_000 + n as u64, "n = {n}");
    }
}
