//! Tests of the expiry index (`expiring.rs`): a customer with many licenses is reminded
//! exactly as a walk over all its licenses reminds it, on generated logs with renewals,
//! status changes, late events, wall-clock ticks, restores and merges.

use std::cell::Cell;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::super::expiring::EXPIRY_SCAN;
use super::super::test_fold::{apply_json, in_report_order};
use super::super::PartitionState;
use crate::config::CoreConfig;
use crate::signals::Notification;
use crate::time::HOUR;

thread_local! {
    /// Set while a test folds with the walk over every license as its reference.
    static WALK_ONLY: Cell<bool> = const { Cell::new(false) };
}

pub(super) fn walk_only() -> bool {
    WALK_ONLY.with(Cell::get)
}

const START: i64 = 1_790_000_000;

/// One step: (kind, hours from the start, a late event's hours back, customer, license,
/// variant); kind 15 is a wall-clock tick at that hour instead of an event.
type Step = (u8, u16, u8, u8, u8, u8);

fn event((kind, hours, back, cust, lic, var): Step) -> Value {
    let at = |h: i64| {
        chrono::DateTime::from_timestamp(START + h * 3600, 0)
            .unwrap()
            .to_rfc3339()
    };
    let ts = at(hours as i64 - back as i64);
    let key = format!("k{lic}");
    // Expiries from two days before the start to 19 days after, at any hour.
    let expires = at((var % 64) as i64 * 8 - 48);
    let mut v = json!({"ts": ts, "customer_id": format!("c{cust}")});
    let o = v.as_object_mut().unwrap();
    let ty = match kind {
        0..=3 => {
            o.insert("license_key".into(), json!(key));
            o.insert("plan".into(), json!("pro"));
            o.insert("domain_limit".into(), json!(1));
            o.insert("mrr_cents".into(), json!(100));
            if var % 7 != 0 {
                o.insert("email".into(), json!(format!("{key}@x.example")));
            }
            if var % 5 != 0 {
                o.insert("expires_at".into(), json!(expires));
            }
            "license.issued"
        }
        4 | 5 => {
            o.insert("license_key".into(), json!(key));
            if var % 3 != 0 {
                o.insert("expires_at".into(), json!(expires));
            }
            "license.renewed"
        }
        6 | 7 => {
            o.insert("license_key".into(), json!(key));
            [
                "license.expired",
                "license.revoked",
                "subscription.canceled",
            ][var as usize % 3]
        }
        8..=12 => {
            o.insert("license_key".into(), json!(key));
            o.insert("result".into(), json!("valid"));
            "license.validated"
        }
        _ => "payment.succeeded",
    };
    o.insert("type".into(), json!(ty));
    v
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (
        0u8..16,
        0u16..(24 * 24),
        prop_oneof![6 => Just(0u8), 1 => 0u8..72],
        0u8..2,
        0u8..(EXPIRY_SCAN as u8 + 4),
        0u8..255,
    );
    proptest::collection::vec(step, 1..300).prop_map(|mut v| {
        v.sort_by_key(|s| s.1);
        v
    })
}

/// Runs `steps` on `s`, returning the decisions.
fn run(s: &mut PartitionState, steps: &[Step], cfg: &CoreConfig) -> Vec<Notification> {
    let mut out = Vec::new();
    for step in steps {
        if step.0 == 15 {
            s.advance_to(
                (START + step.1 as i64 * 3600) * 1_000_000 + HOUR,
                cfg,
                &mut out,
            );
            continue;
        }
        apply_json(s, &event(*step), cfg, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_index_reminds_exactly_as_the_walk_over_every_license(
        steps in steps(),
        notice in prop_oneof![Just(0u32), Just(1), Just(7), Just(30)],
        cut in 0usize..300,
    ) {
        let mut cfg = CoreConfig::default();
        cfg.notify.expiry_notice_days = notice;
        WALK_ONLY.with(|w| w.set(true));
        let expected = in_report_order(run(&mut PartitionState::new(), &steps, &cfg));
        WALK_ONLY.with(|w| w.set(false));
        let reminded = expected.iter().filter(|n| n.contains("expiring_soon")).count();

        let got = in_report_order(run(&mut PartitionState::new(), &steps, &cfg));
        prop_assert_eq!(&got, &expected, "straight run ({} reminders)", reminded);

        let (before, after) = steps.split_at(cut.min(steps.len()));
        let mut s = PartitionState::new();
        let mut got = run(&mut s, before, &cfg);
        let mut s = PartitionState::from_bytes(&s.to_bytes().unwrap()).unwrap();
        got.extend(run(&mut s, after, &cfg));
        prop_assert_eq!(&in_report_order(got), &expected, "restored at step {}", cut);

        let mut merged = PartitionState::new();
        let mut got = Vec::new();
        for cust in 0..2 {
            // A tick reaches every customer: each part gets them all.
            let mine: Vec<Step> = before.iter().filter(|s| s.3 == cust || s.0 == 15).copied().collect();
            let mut part = PartitionState::new();
            got.extend(run(&mut part, &mine, &cfg));
            merged.merge(part);
        }
        got.extend(run(&mut merged, after, &cfg));
        prop_assert_eq!(&in_report_order(got), &expected, "merged at step {}", cut);
    }
}

/// Licenses of one customer (more than the index's threshold), all expiring at once; one
/// of them is revoked when its notice window opens, then renewed without a new expiry
/// before it expires: the next midnight reminds it, as the walk would.
#[test]
fn a_license_back_to_active_is_reminded_at_the_next_midnight() {
    let cfg = CoreConfig::default();
    let n = EXPIRY_SCAN as u8 + 3;
    // The start is at 14:13 UTC, so midnights fall at hours 9.8, 33.8 and 57.8. Kind 0
    // with var 29: issued with an email, expiring at hour 184, so its 7-day window opens
    // between the first two midnights; 6 with var 1: revoked; 4 with var 0: renewed
    // without an expiry; 8: a validation.
    let mut steps: Vec<Step> = (0..n).map(|lic| (0, 0, 0, 0, lic, 29)).collect();
    steps.push((6, 12, 0, 0, 0, 1)); // revoke k0, past the first midnight (no window yet)
    steps.push((8, 36, 0, 0, 1, 0)); // the second midnight: the others are reminded
    steps.push((4, 40, 0, 0, 0, 0)); // renew k0, no new expiry
    steps.push((8, 60, 0, 0, 1, 0)); // the third midnight: k0 is reminded
    let reminded_k0 = |v: &[Notification]| {
        v.iter()
            .filter(|x| x.license_key.as_deref() == Some("k0"))
            .filter(|x| x.kind == crate::signals::NotificationKind::ExpiringSoon)
            .count()
    };
    WALK_ONLY.with(|w| w.set(true));
    let walk = run(&mut PartitionState::new(), &steps, &cfg);
    WALK_ONLY.with(|w| w.set(false));
    let indexed = run(&mut PartitionState::new(), &steps, &cfg);
    assert_eq!(reminded_k0(&walk), 1, "the walk reminds k0 once");
    assert_eq!(reminded_k0(&indexed), 1, "the index reminds k0 once");
    assert_eq!(in_report_order(walk), in_report_order(indexed));
}
