//! Property tests of the fold (issue 2):
//! (a) any interleaving of customers that keeps each customer's own order gives the same report;
//! (b) folding disjoint customer groups separately and merging equals one fold (SPEC §7);
//! (c) no input line of any bytes makes decoding panic.
//!
//! The generated logs carry SPEC §8's material too: expiries at issue and renewal,
//! domain mismatches with and without a domain, revoked validations, and excluded
//! customers (by prefix and by id), folded with a configuration that excludes them.

mod common;

use keypulse::core::event::{TicketCategory, ValidationResult};
use keypulse::core::{decode, Aggregate, CoreConfig, PartitionState};
use proptest::prelude::*;
use serde_json::{json, Value};

use keypulse::core::event::EVENT_TYPES as TYPES;

/// One generated event: (type, minutes since start, license, variant, event id).
type Spec = (usize, u32, u8, u8, Option<u8>);

fn spec() -> impl Strategy<Value = Spec> {
    // validations are most of real traffic
    let ty = prop_oneof![6 => Just(2usize), 4 => 0usize..19];
    (
        ty,
        0u32..(50 * 24 * 60),
        0u8..3,
        0u8..12,
        proptest::option::weighted(0.2, 0u8..6),
    )
}

fn event_json(customer: usize, (ty, minute, lic, var, id): Spec) -> Value {
    let ts = chrono::DateTime::from_timestamp(1_790_000_000 + minute as i64 * 60, 0)
        .unwrap()
        .to_rfc3339();
    // Every fourth customer is a test account (excluded by prefix); `c4` by id.
    let c = if customer % 4 == 3 {
        format!("test-c{customer}")
    } else {
        format!("c{customer}")
    };
    let key = format!("K{customer}-{lic}");
    let mut v = json!({"type": TYPES[ty], "ts": ts, "customer_id": c});
    let o = v.as_object_mut().unwrap();
    if let Some(id) = id {
        o.insert("event_id".into(), json!(format!("e{id}")));
    }
    let plan = ["starter", "pro", "business"][var as usize % 3];
    match TYPES[ty] {
        "license.issued" | "subscription.changed" => {
            o.insert("license_key".into(), json!(key));
            o.insert("plan".into(), json!(plan));
            o.insert("domain_limit".into(), json!(var % 6));
            o.insert("mrr_cents".into(), json!(100 * var as u64));
            if var % 4 != 0 {
                o.insert("email".into(), json!(format!("{key}@x.example")));
            }
            if TYPES[ty] == "license.issued" && var % 3 != 1 {
                o.insert("expires_at".into(), json!(expiry(minute, var)));
            }
        }
        "license.renewed" => {
            o.insert("license_key".into(), json!(key));
            if var % 2 == 0 {
                o.insert("expires_at".into(), json!(expiry(minute, var)));
            }
        }
        "license.validated" => {
            let result = ValidationResult::ALL[var as usize % 6].as_str();
            o.insert("license_key".into(), json!(key));
            o.insert("result".into(), json!(result));
            if var % 3 == 0 {
                o.insert(
                    "country".into(),
                    json!(["DE", "US", "BR"][var as usize % 3]),
                );
            }
            if result == "invalid_format" && var % 2 == 0 {
                o.remove("customer_id");
            }
            if result == "domain_mismatch" {
                // Mostly a domain; sometimes none, null or empty (a mismatch, no domain).
                match minute % 8 {
                    0 => {}
                    1 => {
                        o.insert("domain".into(), Value::Null);
                    }
                    2 => {
                        o.insert("domain".into(), json!(""));
                    }
                    m => {
                        o.insert(
                            "domain".into(),
                            json!(format!("m{}.example", m + var as u32 % 3)),
                        );
                    }
                }
            }
        }
        "domain.added" | "domain.removed" | "license.activated" => {
            o.insert("license_key".into(), json!(key));
            o.insert("domain".into(), json!(format!("d{}", var % 4)));
        }
        "api_key.created" | "api_key.deleted" => {
            o.insert("api_key_id".into(), json!(format!("a{}", var % 2)));
        }
        "support.ticket_opened" => {
            o.insert("ticket_id".into(), json!(format!("t{}", var % 3)));
            o.insert(
                "category".into(),
                json!(TicketCategory::ALL[var as usize % 4].as_str()),
            );
        }
        "support.ticket_closed" => {
            o.insert("ticket_id".into(), json!(format!("t{}", var % 3)));
        }
        "feature.access_denied" => {
            o.insert("license_key".into(), json!(key));
            o.insert("feature".into(), json!("sso"));
        }
        "plan.downgrade_inquiry"
        | "payment.failed"
        | "payment.succeeded"
        | "team.member_invited" => {}
        _ => {
            o.insert("license_key".into(), json!(key));
        }
    }
    v
}

/// An expiry a few days before or after the event (whole days, or mid-day).
fn expiry(minute: u32, var: u8) -> String {
    let secs = 1_790_000_000 + minute as i64 * 60 + (var as i64 * 2 - 5) * 86_400;
    let secs = if var.is_multiple_of(2) {
        secs - secs % 86_400
    } else {
        secs
    };
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339()
}

/// The configuration of the property tests: the defaults, plus exclusions, and a
/// lower sharing threshold so that `key_sharing` fires in short logs.
fn config() -> CoreConfig {
    let mut cfg = CoreConfig::default();
    cfg.exclude.customer_prefixes = vec!["test-".into()];
    cfg.exclude.customer_ids = vec!["c4".into()];
    cfg.sharing.min_domains = 2;
    cfg
}

/// Per-customer logs: mostly in time order, with some events left late.
fn customer_logs() -> impl Strategy<Value = Vec<Vec<Value>>> {
    proptest::collection::vec(proptest::collection::vec(spec(), 0..60), 1..6).prop_map(
        |per_customer| {
            per_customer
                .into_iter()
                .enumerate()
                .map(|(c, mut specs)| {
                    // sort most of them by time, leaving every fifth where it fell
                    let mut sorted: Vec<Spec> = specs
                        .iter()
                        .copied()
                        .enumerate()
                        .filter(|(i, _)| i % 5 != 0)
                        .map(|(_, s)| s)
                        .collect();
                    sorted.sort_by_key(|s| s.1);
                    let late: Vec<Spec> = specs
                        .drain(..)
                        .enumerate()
                        .filter(|(i, _)| i % 5 == 0)
                        .map(|(_, s)| s)
                        .collect();
                    let mut all = sorted;
                    for (i, s) in late.into_iter().enumerate() {
                        let at = (i * 7) % (all.len() + 1);
                        all.insert(at, s);
                    }
                    all.into_iter().map(|s| event_json(c, s)).collect()
                })
                .collect()
        },
    )
}

fn fold(lines: &[Value], cfg: &CoreConfig) -> PartitionState {
    let mut state = PartitionState::new();
    let mut out = Vec::new();
    for l in lines {
        let text = l.to_string();
        match decode(text.as_bytes()) {
            Ok(e) => {
                state.apply(&e, cfg, &mut out);
            }
            Err(_) => state.record_rejected(),
        }
    }
    state
}

/// Customers without an id (invalid_format) share one group, which must stay in one
/// partition: route it with customer 0, as a Kafka key of "" routes it to one partition.
fn interleave(logs: &[Vec<Value>], picks: &[usize]) -> Vec<Value> {
    let mut cursors = vec![0usize; logs.len()];
    let mut out = Vec::new();
    let mut p = 0;
    let total: usize = logs.iter().map(Vec::len).sum();
    while out.len() < total {
        let live: Vec<usize> = (0..logs.len())
            .filter(|&c| cursors[c] < logs[c].len())
            .collect();
        let c = live[picks.get(p).copied().unwrap_or(0) % live.len()];
        p += 1;
        out.push(logs[c][cursors[c]].clone());
        cursors[c] += 1;
    }
    out
}

fn anonymous_first(logs: &[Vec<Value>]) -> Vec<Vec<Value>> {
    // Events without a customer form their own group in arrival order; keep them all in
    // group 0 so that their relative order is the same in every interleaving.
    let mut anon = Vec::new();
    let mut rest: Vec<Vec<Value>> = Vec::new();
    for log in logs {
        let (a, r): (Vec<Value>, Vec<Value>) = log
            .iter()
            .cloned()
            .partition(|v| v.get("customer_id").is_none());
        anon.extend(a);
        rest.push(r);
    }
    rest.insert(0, anon);
    rest
}

fn report_json(state: &PartitionState, cfg: &CoreConfig) -> Value {
    serde_json::to_value(state.report(state.watermark(), cfg)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_gives_the_same_report(logs in customer_logs(), picks in proptest::collection::vec(0usize..64, 0..400)) {
        let cfg = config();
        let groups = anonymous_first(&logs);
        let sequential: Vec<Value> = groups.concat();
        let mixed = interleave(&groups, &picks);
        let a = report_json(&fold(&sequential, &cfg), &cfg);
        let b = report_json(&fold(&mixed, &cfg), &cfg);
        let d = common::diff(&a, &b);
        prop_assert!(d.is_empty(), "{:?}", d);
    }

    #[test]
    fn disjoint_groups_fold_apart_and_merge_to_one_fold(logs in customer_logs(), split in 1usize..5) {
        let cfg = config();
        let groups = anonymous_first(&logs);
        let whole = fold(&groups.concat(), &cfg);
        let as_of = whole.watermark();
        let split = split.min(groups.len());
        let left = fold(&groups[..split].concat(), &cfg);
        let right = fold(&groups[split..].concat(), &cfg);
        // merged aggregates, as instances combine their reports
        let mut agg: Aggregate = left.aggregate(as_of, &cfg);
        agg.merge(right.aggregate(as_of, &cfg));
        let merged_report = serde_json::to_value(agg.finish(&cfg)).unwrap();
        let expected = serde_json::to_value(whole.report(as_of, &cfg)).unwrap();
        let d = common::diff(&expected, &merged_report);
        prop_assert!(d.is_empty(), "aggregate merge: {:?}", d);
        // merged states, as a partition hand-off would
        let mut state = left;
        state.merge(right);
        let d = common::diff(&expected, &serde_json::to_value(state.report(as_of, &cfg)).unwrap());
        prop_assert!(d.is_empty(), "state merge: {:?}", d);
    }

    #[test]
    fn excluded_customers_change_nothing_but_their_count(logs in customer_logs()) {
        let cfg = config();
        let all = anonymous_first(&logs).concat();
        let excluded = |v: &Value| {
            decode(v.to_string().as_bytes()).is_ok()
                && cfg.exclude.excludes(v.get("customer_id").and_then(Value::as_str))
        };
        let kept: Vec<Value> = all.iter().filter(|v| !excluded(v)).cloned().collect();
        let n = (all.len() - kept.len()) as u64;
        let mut a = report_json(&fold(&all, &cfg), &cfg);
        let b = report_json(&fold(&kept, &cfg), &cfg);
        prop_assert_eq!(a["events"]["excluded"].as_u64(), Some(n));
        prop_assert_eq!(b["events"]["excluded"].as_u64(), Some(0));
        a["events"]["excluded"] = json!(0);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn mrr_movements_explain_the_month_over_month_change(logs in customer_logs()) {
        let cfg = config();
        let state = fold(&anonymous_first(&logs).concat(), &cfg);
        let r = report_json(&state, &cfg);
        let mrr = &r["mrr"];
        let m = &mrr["movements"];
        let cents = |k: &str| m[format!("{k}_cents")].as_i64().unwrap();
        prop_assert_eq!(
            mrr["current_cents"].as_i64().unwrap(),
            mrr["month_ago_cents"].as_i64().unwrap() + m["net_cents"].as_i64().unwrap()
        );
        prop_assert_eq!(
            m["net_cents"].as_i64().unwrap(),
            cents("new") + cents("expansion") + cents("reactivation") - cents("contraction") - cents("churn")
        );
        for k in ["new", "expansion", "contraction", "churn", "reactivation"] {
            prop_assert!(cents(k) >= 0);
            prop_assert_eq!(cents(k) == 0, m["counts"][k].as_u64() == Some(0), "{}", k);
        }
    }

    #[test]
    fn decoding_never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decoding_never_panics_on_mangled_events(customer in 0usize..3, s in spec(), cut in 0usize..400, junk in "[\\PC]{0,8}") {
        let mut text = event_json(customer, s).to_string();
        let at = cut.min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(at, &junk);
        let _ = decode(text.as_bytes());
        let _ = decode(&text.as_bytes()[..at]);
    }
}

/// The generators reach what the properties are about: across a fixed sample of logs,
/// every kind of notification of §8 (and the renewal and churn kinds), every movement and
/// exclusions occur. (`upgrade` needs two triggers at once, which logs this short reach
/// too rarely to assert on.)
#[test]
fn the_generated_logs_exercise_spec8() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config as RunnerConfig, TestRng, TestRunner};
    let cfg = config();
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    let (mut excluded, mut suspects, mut expiring) = (0, 0, 0);
    let mut movements = std::collections::BTreeMap::<String, u64>::new();
    for _ in 0..64 {
        let logs = customer_logs().new_tree(&mut runner).unwrap().current();
        let state = fold(&anonymous_first(&logs).concat(), &cfg);
        for n in state.notifications() {
            *kinds.entry(n.kind.as_str().to_string()).or_default() += 1;
        }
        let r = report_json(&state, &cfg);
        excluded += r["events"]["excluded"].as_u64().unwrap();
        suspects += r["sharing_suspects"].as_array().unwrap().len();
        expiring += r["expiring_licenses"].as_array().unwrap().len();
        for (k, v) in r["mrr"]["movements"]["counts"].as_object().unwrap() {
            *movements.entry(k.clone()).or_default() += v.as_u64().unwrap();
        }
    }
    for k in [
        "renewal",
        "churn_warning",
        "key_sharing",
        "revoked_use",
        "expiring_soon",
    ] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 0, "{k}: {kinds:?}");
    }
    assert!(excluded > 0);
    assert!(suspects > 0);
    // The merge property above compares whole reports, the dashboard's list included.
    assert!(expiring > 0);
    assert!(movements.values().all(|n| *n > 0), "{movements:?}");
}
