//! SPEC §8.1–§8.6 through the fold, rule by rule, at their edges: tiny hand-written logs
//! replayed as `keypulse replay` does, asserting on the report document and on the
//! decisions (with the figures their emails name). Expiry reminders are also driven
//! through the wall-clock ticks (`PartitionState::advance_to`).

mod common;

use keypulse::core::time::{parse_rfc3339, Micros};
use keypulse::core::{decode, CoreConfig, Notification, PartitionState};
use keypulse::replay::Replay;
use serde_json::{json, Value};

fn fold_with(lines: &[Value], cfg: &CoreConfig) -> (Value, Replay) {
    let mut r = Replay::new();
    for l in lines {
        r.feed_line(l.to_string().as_bytes(), cfg);
    }
    (serde_json::to_value(r.report(cfg)).unwrap(), r)
}

fn fold(lines: &[Value]) -> (Value, Replay) {
    fold_with(lines, &CoreConfig::default())
}

fn t(s: &str) -> Micros {
    parse_rfc3339(s).unwrap()
}

fn issued(ts: &str, c: &str, k: &str, mrr: u64) -> Value {
    json!({"type":"license.issued","ts":ts,"customer_id":c,"license_key":k,"plan":"starter",
           "domain_limit":5,"mrr_cents":mrr,"email":format!("{k}@x.example")})
}

fn issued_expiring(ts: &str, c: &str, k: &str, expires_at: &str) -> Value {
    let mut v = issued(ts, c, k, 2900);
    v["expires_at"] = json!(expires_at);
    v
}

fn changed(ts: &str, c: &str, k: &str, mrr: u64) -> Value {
    json!({"type":"subscription.changed","ts":ts,"customer_id":c,"license_key":k,"plan":"starter",
           "domain_limit":5,"mrr_cents":mrr})
}

fn lic(ty: &str, ts: &str, c: &str, k: &str) -> Value {
    json!({"type":ty,"ts":ts,"customer_id":c,"license_key":k})
}

fn validated(ts: &str, c: &str, k: &str, result: &str) -> Value {
    json!({"type":"license.validated","ts":ts,"customer_id":c,"license_key":k,"result":result})
}

fn mismatch(ts: &str, c: &str, k: &str, domain: Option<&str>) -> Value {
    let mut v = validated(ts, c, k, "domain_mismatch");
    if let Some(d) = domain {
        v["domain"] = json!(d);
    }
    v
}

fn ev(ty: &str, ts: &str, c: &str) -> Value {
    json!({"type":ty,"ts":ts,"customer_id":c})
}

/// The decisions of one kind, as (customer, license, at).
fn decided(r: &Replay, kind: &str) -> Vec<(String, Option<String>, String)> {
    r.decisions
        .iter()
        .filter(|n| n.kind.as_str() == kind)
        .map(|n| {
            (
                n.customer_id.clone(),
                n.license_key.clone(),
                keypulse::core::time::format_rfc3339(n.at),
            )
        })
        .collect()
}

/// The first decision of a kind.
fn the_one<'a>(r: &'a Replay, kind: &str) -> &'a Notification {
    r.decisions
        .iter()
        .find(|n| n.kind.as_str() == kind)
        .unwrap_or_else(|| panic!("no {kind} decided"))
}

fn facts(n: &Notification) -> Value {
    serde_json::to_value(&n.facts).unwrap()
}

fn excluding(ids: &[&str], prefixes: &[&str]) -> CoreConfig {
    let mut cfg = CoreConfig::default();
    cfg.exclude.customer_ids = ids.iter().map(|s| s.to_string()).collect();
    cfg.exclude.customer_prefixes = prefixes.iter().map(|s| s.to_string()).collect();
    cfg
}

// ---------------------------------------------------------------- §8.1 exclusions

#[test]
fn excluded_events_are_counted_and_change_nothing_else() {
    let cfg = excluding(&["qa"], &["test-"]);
    let real = vec![
        issued("2026-10-01T10:00:00Z", "c1", "K1", 2900),
        validated("2026-10-02T10:00:00Z", "c1", "K1", "valid"),
    ];
    let mut with_test = real.clone();
    with_test.insert(1, issued("2026-10-01T11:00:00Z", "test-1", "T1", 9900));
    with_test.push(validated("2026-10-02T11:00:00Z", "test-1", "T1", "revoked"));
    with_test.push(ev("payment.failed", "2026-10-02T09:00:00Z", "qa"));
    with_test.push(ev("payment.failed", "2026-10-02T09:00:00Z", "qa2")); // not listed
    let (a, ra) = fold_with(&with_test, &cfg);
    let (b, _) = fold_with(
        &[
            real.clone(),
            vec![ev("payment.failed", "2026-10-02T09:00:00Z", "qa2")],
        ]
        .concat(),
        &cfg,
    );
    assert_eq!(a["events"]["excluded"], 3);
    assert_eq!(b["events"]["excluded"], 0);
    let mut a_wo = a.clone();
    a_wo["events"]["excluded"] = json!(0);
    assert_eq!(a_wo, b, "an excluded event changes nothing but the count");
    assert_eq!(a["licenses"]["total"], 1);
    assert!(ra.decisions.iter().all(|n| n.customer_id != "test-1"));
    assert!(!ra
        .states()
        .iter()
        .flat_map(|s| s.customer_ids())
        .any(|c| c == "test-1" || c == "qa"));
}

#[test]
fn an_excluded_line_that_is_malformed_is_rejected_first() {
    let cfg = excluding(&[], &["test-"]);
    let mut bad = issued("2026-10-03T10:00:00Z", "test-8", "T2", 2900);
    bad["domain_limit"] = json!("3");
    let (r, _) = fold_with(
        &[bad, json!({"type":"payment.failed","customer_id":"test-8"})],
        &cfg,
    );
    assert_eq!(r["events"]["rejected"], 2);
    assert_eq!(r["events"]["excluded"], 0);
    assert_eq!(r["events"]["applied"], 0);
}

#[test]
fn a_repeated_event_id_of_an_excluded_customer_is_excluded_not_a_duplicate() {
    let cfg = excluding(&[], &["test-"]);
    let mut e = ev("payment.failed", "2026-10-16T11:00:00Z", "test-9");
    e["event_id"] = json!("dup-x");
    let (r, _) = fold_with(&[e.clone(), e], &cfg);
    assert_eq!(r["events"]["excluded"], 2);
    assert_eq!(r["events"]["duplicates"], 0);
    assert_eq!(r["events"]["applied"], 0);
    assert_eq!(r["as_of"], Value::Null);
}

#[test]
fn an_excluded_event_newer_than_every_other_does_not_move_as_of() {
    let cfg = excluding(&["qa"], &[]);
    let (r, replay) = fold_with(
        &[
            validated("2026-11-05T11:00:00Z", "c", "k", "valid"),
            validated("2026-11-09T12:00:00Z", "qa", "k", "valid"),
        ],
        &cfg,
    );
    assert_eq!(r["as_of"], "2026-11-05T11:00:00Z");
    assert_eq!(replay.watermark(), Some(t("2026-11-05T11:00:00Z")));
    assert_eq!(r["dav"]["today"], 1);
}

#[test]
fn an_excluded_invalid_format_is_not_counted_but_one_without_customer_is() {
    let cfg = excluding(&[], &["test-"]);
    let (r, _) = fold_with(
        &[
            json!({"type":"license.validated","ts":"2026-10-16T10:00:00Z","customer_id":"test-7","license_key":"??","result":"invalid_format","country":"FR"}),
            json!({"type":"license.validated","ts":"2026-10-16T10:00:00Z","license_key":"??","result":"invalid_format","country":"DE"}),
        ],
        &cfg,
    );
    assert_eq!(r["events"]["excluded"], 1);
    assert_eq!(r["events"]["applied"], 1);
    assert_eq!(r["validations"]["today"]["total"], 1);
    assert_eq!(r["countries"], json!({"DE": 1}));
}

#[test]
fn an_excluded_event_does_not_shadow_a_later_duplicate_check() {
    // The id of an excluded event is remembered nowhere: the same id of a real customer
    // applies, and is then a duplicate as usual.
    let cfg = excluding(&[], &["test-"]);
    let mut x = ev("payment.failed", "2026-10-16T11:00:00Z", "test-1");
    x["event_id"] = json!("e1");
    let mut y = ev("payment.failed", "2026-10-16T11:00:00Z", "c1");
    y["event_id"] = json!("e1");
    let (r, _) = fold_with(&[x, y.clone(), y], &cfg);
    assert_eq!(
        (
            &r["events"]["excluded"],
            &r["events"]["applied"],
            &r["events"]["duplicates"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
}

// ---------------------------------------------------------------- §8.2 movements

fn movements(r: &Value) -> &Value {
    &r["mrr"]["movements"]
}

fn assert_identity(r: &Value) {
    let cur = r["mrr"]["current_cents"].as_i64().unwrap();
    let ago = r["mrr"]["month_ago_cents"].as_i64().unwrap();
    let net = movements(r)["net_cents"].as_i64().unwrap();
    assert_eq!(cur, ago + net, "current = month_ago + net: {}", r["mrr"]);
}

#[test]
fn each_movement_kind_and_a_late_change_before_the_window() {
    let (r, _) = fold(&[
        issued("2026-09-20T10:00:00Z", "a", "K0", 1000), // new, before the window
        issued("2026-10-10T10:00:00Z", "a", "K1", 2900), // expansion 2900
        changed("2026-10-14T10:00:00Z", "a", "K1", 900), // contraction 2000
        lic("subscription.canceled", "2026-10-15T10:00:00Z", "a", "K1"), // contraction 900
        lic("license.expired", "2026-10-17T10:00:00Z", "a", "K0"), // churn 1000
        lic("license.renewed", "2026-10-21T09:00:00Z", "a", "K0"), // reactivation 1000
        issued("2026-10-20T10:00:00Z", "b", "B1", 0),    // no movement (0 → 0)
        changed("2026-10-22T10:00:00Z", "b", "B1", 2900), // new 2900
        issued("2026-09-25T10:00:00Z", "b", "B0", 500),  // late: expansion on 09-25
        validated("2026-11-05T11:00:00Z", "z", "Z", "valid"), // today 11-05
    ]);
    let m = movements(&r);
    assert_eq!(m["new_cents"], 2900);
    assert_eq!(m["expansion_cents"], 2900);
    assert_eq!(m["contraction_cents"], 2900);
    assert_eq!(m["churn_cents"], 1000);
    assert_eq!(m["reactivation_cents"], 1000);
    assert_eq!(m["net_cents"], 2900 + 2900 + 1000 - 2900 - 1000);
    assert_eq!(
        m["counts"],
        json!({"new": 1, "expansion": 1, "contraction": 2, "churn": 1, "reactivation": 1})
    );
    assert_eq!(r["mrr"]["month_ago_cents"], 1000 + 500);
    assert_identity(&r);
}

#[test]
fn movements_are_per_customer_not_per_license() {
    let (r, _) = fold(&[
        issued("2026-10-01T10:00:00Z", "a", "K1", 1000), // new
        issued("2026-10-02T10:00:00Z", "a", "K2", 1000), // expansion, not new
        lic("subscription.canceled", "2026-10-03T10:00:00Z", "a", "K1"), // contraction, not churn
        issued("2026-10-01T10:00:00Z", "b", "K1", 1000), // another customer: new
    ]);
    assert_eq!(
        movements(&r)["counts"],
        json!({"new": 2, "expansion": 1, "contraction": 1, "churn": 0, "reactivation": 0})
    );
    assert_identity(&r);
}

#[test]
fn the_ever_above_zero_mark_outlives_the_last_license() {
    let (r, _) = fold(&[
        issued("2026-10-01T10:00:00Z", "a", "K1", 1000),
        lic("subscription.canceled", "2026-10-02T10:00:00Z", "a", "K1"), // churn
        issued("2026-10-03T10:00:00Z", "a", "K2", 700),                  // reactivation
        issued("2026-10-03T10:00:00Z", "b", "K1", 0),
        lic("subscription.canceled", "2026-10-04T10:00:00Z", "b", "K1"),
        issued("2026-10-05T10:00:00Z", "b", "K2", 700), // never above 0 before: new
    ]);
    let m = movements(&r);
    assert_eq!(m["counts"]["reactivation"], 1);
    assert_eq!(m["reactivation_cents"], 700);
    assert_eq!(m["counts"]["new"], 2);
    assert_eq!(m["new_cents"], 1700);
    assert_identity(&r);
}

#[test]
fn changes_that_leave_mrr_alone_are_no_movement() {
    let (r, _) = fold(&[
        issued("2026-10-01T10:00:00Z", "a", "K1", 1000),
        issued("2026-10-02T10:00:00Z", "a", "K1", 1000), // re-issue, same price
        lic("subscription.canceled", "2026-10-03T10:00:00Z", "a", "K2"), // on the fly, 0
        lic("license.revoked", "2026-10-04T10:00:00Z", "a", "K1"),
        changed("2026-10-05T10:00:00Z", "a", "K1", 5000), // inactive: books nothing
    ]);
    let m = movements(&r);
    assert_eq!(m["counts"]["new"], 1);
    assert_eq!(m["counts"]["churn"], 1);
    assert_eq!(m["counts"]["expansion"], 0);
    assert_eq!(m["net_cents"], 0);
    assert_identity(&r);
}

// ---------------------------------------------------------------- §8.3 key sharing

#[test]
fn a_mismatch_without_a_domain_counts_but_neither_adds_a_domain_nor_decides() {
    // Three domains while revoked (no decision: not active), then active again.
    let mut lines = vec![
        issued("2026-10-01T10:00:00Z", "s", "S", 9900),
        lic("license.revoked", "2026-10-02T10:00:00Z", "s", "S"),
        mismatch("2026-10-03T10:00:00Z", "s", "S", Some("x1")),
        mismatch("2026-10-03T11:00:00Z", "s", "S", Some("x2")),
        mismatch("2026-10-03T12:00:00Z", "s", "S", Some("x3")),
        lic("license.renewed", "2026-10-04T10:00:00Z", "s", "S"),
        mismatch("2026-10-05T10:00:00Z", "s", "S", None),
        mismatch("2026-10-05T11:00:00Z", "s", "S", Some("")),
        json!({"type":"license.validated","ts":"2026-10-05T12:00:00Z","customer_id":"s","license_key":"S","result":"domain_mismatch","domain":null}),
    ];
    let (r, replay) = fold(&lines);
    assert!(decided(&replay, "key_sharing").is_empty());
    assert_eq!(
        r["sharing_suspects"],
        json!([{"license_key":"S","customer_id":"s","domains":3,"mismatches":6}])
    );
    // The next mismatch with a domain (a known one) decides it.
    lines.push(mismatch("2026-10-06T10:00:00Z", "s", "S", Some("x1")));
    let (_, replay) = fold(&lines);
    assert_eq!(
        decided(&replay, "key_sharing"),
        [("s".into(), Some("S".into()), "2026-10-06T10:00:00Z".into())]
    );
    let n = the_one(&replay, "key_sharing");
    assert_eq!(n.to, "customer-success@example.com");
    assert_eq!(n.reasons, ["domain_mismatch"]);
    let f = facts(n);
    let f = f.as_object().unwrap().values().next().unwrap();
    assert_eq!(f["domains"], json!(["x1", "x2", "x3"]));
    assert_eq!(f["distinct_domains"], 3);
    assert_eq!(f["mismatches"], 7);
}

#[test]
fn a_revoked_license_being_shared_is_no_suspect_but_a_revoked_use() {
    let (r, replay) = fold(&[
        issued("2026-10-01T10:00:00Z", "s2", "S2", 2900),
        lic("license.revoked", "2026-10-05T10:00:00Z", "s2", "S2"),
        mismatch("2026-10-20T10:00:00Z", "s2", "S2", Some("y1")),
        mismatch("2026-10-21T10:00:00Z", "s2", "S2", Some("y2")),
        mismatch("2026-10-22T10:00:00Z", "s2", "S2", Some("y3")),
        mismatch("2026-10-23T10:00:00Z", "s2", "S2", Some("y4")),
        validated("2026-10-25T10:00:00Z", "s2", "S2", "revoked"),
    ]);
    assert!(decided(&replay, "key_sharing").is_empty());
    assert_eq!(r["sharing_suspects"], json!([]));
    assert_eq!(
        decided(&replay, "revoked_use"),
        [(
            "s2".into(),
            Some("S2".into()),
            "2026-10-25T10:00:00Z".into()
        )]
    );
}

#[test]
fn key_sharing_window_ends_on_the_clock_day_and_late_events_count() {
    let (r, replay) = fold(&[
        issued("2026-09-01T10:00:00Z", "s3", "S3", 2900),
        mismatch("2026-10-28T10:00:00Z", "s3", "S3", Some("z1")),
        mismatch("2026-10-29T10:00:00Z", "s3", "S3", Some("z2")),
        // Late, 28 days before the clock day: inside its window, so a third domain.
        mismatch("2026-10-01T10:00:00Z", "s3", "S3", Some("z3")),
        // Late, 31 days before: outside the window.
        mismatch("2026-09-28T10:00:00Z", "s3", "S3", Some("z4")),
    ]);
    assert_eq!(
        decided(&replay, "key_sharing"),
        [(
            "s3".into(),
            Some("S3".into()),
            "2026-10-01T10:00:00Z".into()
        )]
    );
    // The report's window ends on its today (10-29): 09-30..10-29.
    assert_eq!(r["sharing_suspects"][0]["domains"], 3);
    assert_eq!(r["sharing_suspects"][0]["mismatches"], 3);
}

#[test]
fn key_sharing_every_event_is_checked_and_the_cooldown_spaces_them() {
    let mut lines = vec![issued("2026-09-01T10:00:00Z", "s", "S", 2900)];
    for (i, d) in ["a", "b", "c", "d"].iter().enumerate() {
        lines.push(mismatch(
            &format!("2026-09-0{}T10:00:00Z", i + 2),
            "s",
            "S",
            Some(d),
        ));
    }
    // 30 days after the first decision (09-04): allowed again, the window still holds 3.
    lines.push(mismatch("2026-10-03T10:00:00Z", "s", "S", Some("a")));
    lines.push(mismatch("2026-10-04T09:00:00Z", "s", "S", Some("e")));
    lines.push(mismatch("2026-10-04T10:00:00Z", "s", "S", Some("f")));
    let (_, replay) = fold(&lines);
    let at: Vec<String> = decided(&replay, "key_sharing")
        .into_iter()
        .map(|d| d.2)
        .collect();
    assert_eq!(at, ["2026-09-04T10:00:00Z", "2026-10-04T10:00:00Z"]);
}

#[test]
fn sharing_suspects_are_sorted_and_capped_at_64_domains() {
    let mut lines = vec![
        issued("2026-10-01T10:00:00Z", "c", "A", 100),
        issued("2026-10-01T10:00:00Z", "c", "B", 100),
        issued("2026-10-01T10:00:00Z", "c", "C", 100),
        issued("2026-10-01T10:00:00Z", "d", "A", 100),
    ];
    for i in 0..70 {
        lines.push(mismatch(
            "2026-10-10T10:00:00Z",
            "c",
            "A",
            Some(&format!("a{i}")),
        ));
    }
    for (k, n) in [("B", 3), ("C", 3)] {
        for i in 0..n {
            lines.push(mismatch(
                "2026-10-10T10:00:00Z",
                "c",
                k,
                Some(&format!("x{i}")),
            ));
        }
    }
    lines.push(mismatch("2026-10-10T10:00:00Z", "c", "C", None));
    for i in 0..3 {
        lines.push(mismatch(
            "2026-10-10T10:00:00Z",
            "d",
            "A",
            Some(&format!("x{i}")),
        ));
    }
    let (r, _) = fold(&lines);
    let list: Vec<(String, String, u64, u64)> = r["sharing_suspects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["license_key"].as_str().unwrap().into(),
                s["customer_id"].as_str().unwrap().into(),
                s["domains"].as_u64().unwrap(),
                s["mismatches"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        list,
        [
            ("A".into(), "c".into(), 64, 70),
            ("C".into(), "c".into(), 3, 4),
            ("A".into(), "d".into(), 3, 3),
            ("B".into(), "c".into(), 3, 3),
        ]
    );
    // The threshold is a setting.
    let mut cfg = CoreConfig::default();
    cfg.sharing.min_domains = 64;
    let (r, _) = fold_with(&lines, &cfg);
    assert_eq!(r["sharing_suspects"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------- §8.4 revoked use

#[test]
fn revoked_use_names_the_payment_state_and_has_a_30_day_cooldown() {
    let (_, replay) = fold(&[
        issued("2026-10-01T10:00:00Z", "a", "K", 2900),
        ev("payment.failed", "2026-10-24T08:00:00Z", "a"),
        validated("2026-10-25T08:00:00Z", "a", "K", "revoked"),
        validated("2026-10-26T08:00:00Z", "a", "K", "revoked"), // inside the cooldown
        ev("payment.succeeded", "2026-11-20T08:00:00Z", "a"),
        validated("2026-11-24T08:00:00Z", "a", "K", "revoked"), // 30 days after
        // on the fly, no email, another customer with the same key
        validated("2026-10-25T08:00:00Z", "b", "K", "revoked"),
    ]);
    let list: Vec<(String, String, Vec<String>)> = replay
        .decisions
        .iter()
        .filter(|n| n.kind.as_str() == "revoked_use")
        .map(|n| {
            (
                n.customer_id.clone(),
                keypulse::core::time::format_rfc3339(n.at),
                n.reasons.clone(),
            )
        })
        .collect();
    assert_eq!(
        list,
        [
            (
                "a".into(),
                "2026-10-25T08:00:00Z".into(),
                vec!["revoked".into(), "payment_failed".into()]
            ),
            (
                "a".into(),
                "2026-11-24T08:00:00Z".into(),
                vec!["revoked".into()]
            ),
            (
                "b".into(),
                "2026-10-25T08:00:00Z".into(),
                vec!["revoked".into()]
            ),
        ]
    );
    let first = the_one(&replay, "revoked_use");
    assert_eq!(first.to, "customer-success@example.com");
    assert!(facts(first).to_string().contains("\"payment_failed\":true"));
}

// ---------------------------------------------------------------- §8.5 expiry reminders

#[test]
fn an_expiry_exactly_n_days_after_a_midnight_is_reminded_at_that_midnight() {
    let (_, replay) = fold(&[
        issued_expiring(
            "2026-10-01T10:00:00Z",
            "e",
            "E",
            "2026-10-30T00:00:00+00:00",
        ),
        validated("2026-10-22T12:00:00Z", "e", "E", "valid"),
        // exactly on the midnight, with an offset
        validated("2026-10-23T01:00:00+01:00", "e", "E", "valid"),
        validated("2026-10-24T02:00:00Z", "e", "E", "valid"),
    ]);
    assert_eq!(
        decided(&replay, "expiring_soon"),
        [("e".into(), Some("E".into()), "2026-10-23T00:00:00Z".into())]
    );
    let n = the_one(&replay, "expiring_soon");
    assert_eq!(n.to, "E@x.example");
    assert_eq!(n.reasons, ["expiring_soon"]);
    assert!(facts(n).to_string().contains("2026-10-30T00:00:00Z"));
}

#[test]
fn a_reissue_without_expires_at_clears_the_expiry() {
    let (_, replay) = fold(&[
        issued_expiring("2026-10-01T10:00:00Z", "e", "E", "2026-10-25T00:00:00Z"),
        issued("2026-10-10T10:00:00Z", "e", "E", 2900),
        validated("2026-10-24T12:00:00Z", "e", "E", "valid"),
    ]);
    assert!(decided(&replay, "expiring_soon").is_empty());
}

#[test]
fn a_renewal_without_expires_at_keeps_it_and_one_with_sets_a_new_one() {
    let (_, replay) = fold(&[
        issued_expiring("2026-10-01T10:00:00Z", "e", "E", "2026-10-20T12:00:00Z"),
        lic("license.renewed", "2026-10-05T10:00:00Z", "e", "E"),
        ev("payment.succeeded", "2026-10-14T10:00:00Z", "e"), // passes 10-14: reminded
        validated("2026-10-15T10:00:00Z", "e", "E", "valid"), // same expiry: not again
        json!({"type":"license.renewed","ts":"2026-10-16T10:00:00Z","customer_id":"e","license_key":"E","expires_at":"2026-11-16T12:00:00Z"}),
        validated("2026-11-10T10:00:00Z", "e", "E", "valid"), // new expiry: reminded 11-10
    ]);
    let at: Vec<String> = decided(&replay, "expiring_soon")
        .into_iter()
        .map(|d| d.2)
        .collect();
    assert_eq!(at, ["2026-10-14T00:00:00Z", "2026-11-10T00:00:00Z"]);
}

#[test]
fn an_expiry_gone_by_while_quiet_is_not_reminded() {
    let (_, replay) = fold(&[
        issued_expiring("2026-10-01T10:00:00Z", "e", "E", "2026-10-20T00:00:00Z"),
        validated("2026-10-10T10:00:00Z", "e", "E", "valid"),
        validated("2026-10-22T10:00:00Z", "e", "E", "valid"),
    ]);
    assert!(decided(&replay, "expiring_soon").is_empty());
    // An event at the expiry instant itself: not after it, so gone by too.
    let (_, replay) = fold(&[
        issued_expiring("2026-10-01T10:00:00Z", "e", "E", "2026-10-20T00:00:00Z"),
        validated("2026-10-20T00:00:00Z", "e", "E", "valid"),
    ]);
    assert!(decided(&replay, "expiring_soon").is_empty());
    // One microsecond before: reminded at the first midnight within 7 days.
    let (_, replay) = fold(&[
        issued_expiring("2026-10-01T10:00:00Z", "e", "E", "2026-10-20T00:00:00Z"),
        validated("2026-10-19T23:59:59.999999Z", "e", "E", "valid"),
    ]);
    assert_eq!(
        decided(&replay, "expiring_soon"),
        [("e".into(), Some("E".into()), "2026-10-13T00:00:00Z".into())]
    );
}

#[test]
fn only_active_licenses_with_an_email_are_reminded() {
    let mut no_email = issued_expiring("2026-10-01T10:00:00Z", "e", "E1", "2026-10-10T12:00:00Z");
    no_email.as_object_mut().unwrap().remove("email");
    let (_, replay) = fold(&[
        no_email,
        issued_expiring("2026-10-01T10:00:00Z", "e", "E2", "2026-10-10T12:00:00Z"),
        lic("subscription.canceled", "2026-10-02T10:00:00Z", "e", "E2"),
        issued_expiring("2026-10-01T10:00:00Z", "e", "E3", "2026-10-10T12:00:00Z"),
        ev("team.member_invited", "2026-10-09T10:00:00Z", "e"),
    ]);
    assert_eq!(
        decided(&replay, "expiring_soon"),
        [("e".into(), Some("E3".into()), "2026-10-04T00:00:00Z".into())]
    );
}

#[test]
fn the_notice_is_a_setting() {
    let lines = [
        issued_expiring("2026-10-01T10:00:00Z", "e", "E", "2026-10-20T12:00:00Z"),
        ev("payment.succeeded", "2026-10-19T10:00:00Z", "e"), // 10-19: E > M + 1 day
        ev("payment.succeeded", "2026-10-20T10:00:00Z", "e"), // 10-20: reminded
    ];
    let mut cfg = CoreConfig::default();
    cfg.notify.expiry_notice_days = 1;
    let (_, replay) = fold_with(&lines, &cfg);
    assert_eq!(
        decided(&replay, "expiring_soon"),
        [("e".into(), Some("E".into()), "2026-10-20T00:00:00Z".into())]
    );
    cfg.notify.expiry_notice_days = 0;
    let (_, replay) = fold_with(&lines, &cfg);
    assert!(decided(&replay, "expiring_soon").is_empty());
}

// ------------------------------------------------ §8.5 through the wall-clock ticks

fn apply_all(state: &mut PartitionState, lines: &[Value], cfg: &CoreConfig) -> Vec<Notification> {
    let mut out = Vec::new();
    for l in lines {
        let text = l.to_string();
        let ev = decode(text.as_bytes()).unwrap();
        state.apply(&ev, cfg, &mut out);
    }
    out
}

fn kinds_at(out: &[Notification], kind: &str) -> Vec<(String, String)> {
    out.iter()
        .filter(|n| n.kind.as_str() == kind)
        .map(|n| {
            (
                n.customer_id.clone(),
                keypulse::core::time::format_rfc3339(n.at),
            )
        })
        .collect()
}

#[test]
fn ticks_remind_a_customer_that_never_validated() {
    let cfg = CoreConfig::default();
    let mut state = PartitionState::new();
    apply_all(
        &mut state,
        &[issued_expiring(
            "2026-10-01T10:00:00Z",
            "n",
            "N",
            "2026-10-20T12:00:00Z",
        )],
        &cfg,
    );
    let mut out = Vec::new();
    // Hourly ticks from the issue on, as the service's ticker does.
    let mut now = t("2026-10-01T11:00:00Z");
    while now < t("2026-10-25T00:00:00Z") {
        state.advance_to(now, &cfg, &mut out);
        now += 3_600_000_000;
    }
    assert_eq!(
        kinds_at(&out, "expiring_soon"),
        [("n".into(), "2026-10-14T00:00:00Z".into())]
    );
}

#[test]
fn ticks_remind_a_customer_silent_for_40_days() {
    let cfg = CoreConfig::default();
    let silent = || {
        let mut state = PartitionState::new();
        apply_all(
            &mut state,
            &[
                issued_expiring("2026-09-01T10:00:00Z", "q", "Q", "2026-10-15T00:00:00Z"),
                validated("2026-09-04T10:00:00Z", "q", "Q", "valid"),
            ],
            &cfg,
        );
        state
    };
    // A tick a day, just after each midnight.
    let mut state = silent();
    let mut out = Vec::new();
    let mut now = t("2026-09-05T00:00:01Z");
    while now < t("2026-10-15T00:00:00Z") {
        state.advance_to(now, &cfg, &mut out);
        now += 86_400_000_000;
    }
    let want = [("q".to_string(), "2026-10-08T00:00:00Z".to_string())];
    assert_eq!(kinds_at(&out, "expiring_soon"), want);
    // One jump over the same midnights decides the same.
    let mut state = silent();
    let mut out = Vec::new();
    state.advance_to(t("2026-10-14T00:00:01Z"), &cfg, &mut out);
    assert_eq!(kinds_at(&out, "expiring_soon"), want);
}

#[test]
fn a_jump_of_years_over_midnights_reminds_at_the_right_one() {
    let cfg = CoreConfig::default();
    let mut state = PartitionState::new();
    let mut lines = vec![];
    for i in 0..200 {
        lines.push(issued_expiring(
            "2026-10-01T10:00:00Z",
            &format!("c{i}"),
            "K",
            "2031-06-15T08:00:00Z",
        ));
        lines.push(validated(
            "2026-10-02T10:00:00Z",
            &format!("c{i}"),
            "K",
            "valid",
        ));
    }
    apply_all(&mut state, &lines, &cfg);
    let mut out = Vec::new();
    state.advance_to(t("2036-01-01T00:00:00Z"), &cfg, &mut out);
    let reminders = kinds_at(&out, "expiring_soon");
    assert_eq!(reminders.len(), 200);
    assert!(reminders.iter().all(|(_, at)| at == "2031-06-09T00:00:00Z"));
    // Not again at the next tick: same expiry.
    let mut again = Vec::new();
    state.advance_to(t("2036-01-02T00:00:00Z"), &cfg, &mut again);
    assert!(kinds_at(&again, "expiring_soon").is_empty());
}

// ------------------------------------------------ §8 state survives a restore

#[test]
fn a_state_restored_midway_continues_to_the_same_report_and_decisions() {
    // edge2 walks through every §8 case; cut it everywhere, so that cooldowns, reminders,
    // mismatch records and the "ever above 0" marks are each in flight at some cut.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/v2/edge2.events.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cfg = keypulse::config::Config::load(Some(std::path::Path::new(
        &path.replace("edge2.events.jsonl", "keypulse.toml"),
    )))
    .unwrap()
    .core;
    for cut in 1..lines.len() {
        let mut whole = PartitionState::new();
        let mut whole_out = Vec::new();
        let mut first = PartitionState::new();
        let mut first_out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let Ok(ev) = decode(l.as_bytes()) else {
                continue;
            };
            whole.apply(&ev, &cfg, &mut whole_out);
            if i < cut {
                first.apply(&ev, &cfg, &mut first_out);
            }
        }
        let mut restored = PartitionState::from_bytes(&first.to_bytes().unwrap()).unwrap();
        for l in &lines[cut..] {
            if let Ok(ev) = decode(l.as_bytes()) {
                restored.apply(&ev, &cfg, &mut first_out);
            }
        }
        let keys = |v: &[Notification]| v.iter().map(|n| n.idempotency_key()).collect::<Vec<_>>();
        assert_eq!(keys(&first_out), keys(&whole_out), "cut at {cut}");
        let wm = whole.watermark();
        common::assert_same_report(
            &format!("cut at {cut}"),
            &serde_json::to_value(whole.report(wm, &cfg)).unwrap(),
            &serde_json::to_value(restored.report(wm, &cfg)).unwrap(),
        );
    }
}

#[test]
fn the_customer_view_names_each_licenses_mismatches_and_reminded_expiry() {
    // k1 is shared from three foreign domains (one of them twice) and then reminded of its
    // expiry at a midnight its customer's clock passes; k2 has neither.
    let lines = [
        issued_expiring("2026-03-01T10:00:00Z", "c1", "k1", "2026-03-10T12:00:00Z"),
        issued("2026-03-01T10:00:00Z", "c1", "k2", 900),
        mismatch("2026-03-02T10:00:00Z", "c1", "k1", Some("a.example")),
        mismatch("2026-03-02T11:00:00Z", "c1", "k1", Some("b.example")),
        mismatch("2026-03-03T10:00:00Z", "c1", "k1", Some("a.example")),
        mismatch("2026-03-04T10:00:00Z", "c1", "k1", Some("c.example")),
        validated("2026-03-05T10:00:00Z", "c1", "k2", "valid"),
    ];
    let cfg = CoreConfig::default();
    let (report, r) = fold_with(&lines, &cfg);
    let as_of = t(report["as_of"].as_str().unwrap());
    let view = serde_json::to_value(
        r.states()
            .iter()
            .find_map(|s| s.customer_view("c1", as_of, &cfg))
            .unwrap(),
    )
    .unwrap();
    let lic = |k: &str| {
        view["licenses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["license_key"] == k)
            .unwrap()
            .clone()
    };
    let suspect = &report["sharing_suspects"][0];
    assert_eq!(suspect["license_key"], "k1");
    assert_eq!(lic("k1")["mismatched_domains"], suspect["domains"]);
    assert_eq!(lic("k1")["mismatches"], suspect["mismatches"]);
    assert_eq!(lic("k1")["mismatched_domains"], 3);
    assert_eq!(lic("k1")["mismatches"], 4);
    let reminded: Vec<&Value> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "expiring_soon" && n["license_key"] == "k1")
        .collect();
    assert_eq!(reminded.len(), 1, "{report:#}");
    assert_eq!(
        t(lic("k1")["reminded_expiry"].as_str().unwrap()),
        t("2026-03-10T12:00:00Z")
    );
    assert_eq!(lic("k2")["mismatched_domains"], 0);
    assert_eq!(lic("k2")["mismatches"], 0);
    assert_eq!(lic("k2")["reminded_expiry"], Value::Null);
}
