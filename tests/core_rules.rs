//! Unit-level checks of each metric and signal of SPEC §1–§5, on tiny hand-written logs.
//! Each test folds a few JSON lines and asserts on the report.

use keypulse::core::{CoreConfig, Report};
use keypulse::replay::Replay;
use serde_json::{json, Value};

fn fold(lines: &[Value]) -> (Report, Replay) {
    fold_with(lines, &CoreConfig::default())
}

fn fold_with(lines: &[Value], cfg: &CoreConfig) -> (Report, Replay) {
    let mut r = Replay::new();
    for l in lines {
        r.feed_line(l.to_string().as_bytes(), cfg);
    }
    (r.report(cfg), r)
}

fn issued(ts: &str, c: &str, k: &str, mrr: u64) -> Value {
    json!({"type":"license.issued","ts":ts,"customer_id":c,"license_key":k,"plan":"starter","domain_limit":5,"mrr_cents":mrr,"email":format!("{k}@x.example")})
}

fn validated(ts: &str, c: &str, k: &str, result: &str) -> Value {
    json!({"type":"license.validated","ts":ts,"customer_id":c,"license_key":k,"result":result})
}

fn ev(ty: &str, ts: &str, c: &str) -> Value {
    json!({"type":ty,"ts":ts,"customer_id":c})
}

fn with_id(mut v: Value, id: &str) -> Value {
    v["event_id"] = json!(id);
    v
}

#[test]
fn duplicates_inside_the_horizon_are_ignored_and_outside_applied() {
    let (r, _) = fold(&[
        with_id(validated("2026-10-01T10:00:00Z", "c", "k", "valid"), "e1"),
        with_id(validated("2026-10-01T10:00:00Z", "c", "k", "valid"), "e1"), // same id: duplicate
        validated("2026-10-01T11:00:00Z", "c", "k", "valid"),                // clock 11:00
        with_id(validated("2026-10-01T10:00:00Z", "c", "k", "valid"), "e1"), // 10:00 >= 11:00-1h: duplicate
        validated("2026-10-01T11:00:01Z", "c", "k", "valid"),                // clock 11:00:01
        with_id(validated("2026-10-01T10:00:00Z", "c", "k", "valid"), "e1"), // forgotten: applied
        with_id(validated("2026-10-01T10:00:00Z", "c2", "k", "valid"), "e1"), // other customer: applied
    ]);
    assert_eq!((r.events.applied, r.events.duplicates), (5, 2));
    assert_eq!(r.validations.today.total, 5);
}

#[test]
fn rejected_events_do_not_move_the_clock_or_remember_ids() {
    let (r, _) = fold(&[
        validated("2026-10-01T10:00:00Z", "c", "k", "valid"),
        json!({"type":"license.validated","ts":"2026-10-09T10:00:00Z","customer_id":"c","license_key":"k","result":"maybe","event_id":"x"}),
        with_id(validated("2026-10-01T10:30:00Z", "c", "k", "valid"), "x"),
    ]);
    assert_eq!(
        (r.events.applied, r.events.rejected, r.events.duplicates),
        (2, 1, 0)
    );
    assert_eq!(r.dav.today, 1);
}

#[test]
fn late_events_land_on_their_own_day() {
    let (r, _) = fold(&[
        validated("2026-10-10T10:00:00Z", "c", "k", "valid"),
        validated("2026-10-08T10:00:00Z", "c", "k", "rate_limited"),
        validated("2026-09-01T10:00:00Z", "c", "k", "valid"), // older than 35 days: no window
    ]);
    let day = |d: &str| {
        r.validations
            .series
            .iter()
            .find(|s| s.day == d)
            .unwrap()
            .clone()
    };
    assert_eq!(day("2026-10-08").total, 1);
    assert_eq!(day("2026-10-08").by_type["rate_limited"], 1);
    assert_eq!(day("2026-10-10").total, 1);
    assert_eq!(r.dav.series.iter().map(|d| d.count).sum::<u64>(), 2);
    assert_eq!(r.events.applied, 3);
}

#[test]
fn licenses_created_on_the_fly_count_but_not_in_activation() {
    let (r, _) = fold(&[
        json!({"type":"license.activated","ts":"2026-10-01T10:00:00Z","customer_id":"c","license_key":"k","domain":"a"}),
        validated("2026-10-01T11:00:00Z", "c", "k", "valid"),
    ]);
    assert_eq!(r.licenses.total, 1);
    assert_eq!(r.licenses.active, 1);
    assert_eq!(r.activation.issued, 0);
    assert_eq!(r.activation.rate, None);
    assert!(r.domain_utilization.is_empty()); // limit 0
    assert_eq!(r.ttfv.median_seconds, None);
    assert_eq!(r.health.customers, 1);
}

#[test]
fn the_same_key_under_another_customer_is_another_license() {
    let (r, _) = fold(&[
        issued("2026-10-01T00:00:00Z", "c1", "k", 100),
        issued("2026-10-01T00:00:00Z", "c2", "k", 100),
    ]);
    assert_eq!(r.licenses.total, 2);
    assert_eq!(r.mrr.current_cents, 200);
}

#[test]
fn reissue_updates_plan_price_email_and_keeps_first_issue_time() {
    let mut second = issued("2026-10-05T00:00:00Z", "c", "k", 500);
    second["plan"] = json!("business");
    second.as_object_mut().unwrap().remove("email");
    let (r, replay) = fold(&[
        issued("2026-10-01T00:00:00Z", "c", "k", 100),
        ev("payment.failed", "2026-10-01T01:00:00Z", "c"),
        json!({"type":"license.revoked","ts":"2026-10-02T00:00:00Z","customer_id":"c","license_key":"k"}),
        second,
        validated("2026-10-09T00:00:00Z", "c", "k", "expired"), // no email any more: no renewal
    ]);
    assert_eq!(r.licenses.active, 1);
    assert_eq!(r.mrr.current_cents, 500);
    assert_eq!(
        r.activation.by_plan.keys().collect::<Vec<_>>(),
        vec!["business"]
    );
    assert_eq!(r.activation.cohort_7d, 1); // issued 10-01, 8 days before as_of
    assert!(replay
        .decisions
        .iter()
        .all(|n| n.kind.as_str() != "renewal"));
}

#[test]
fn status_changes_book_mrr_on_their_day() {
    let (r, _) = fold(&[
        issued("2026-09-01T00:00:00Z", "c", "k", 1000),
        json!({"type":"subscription.changed","ts":"2026-09-02T00:00:00Z","customer_id":"c","license_key":"k","plan":"pro","domain_limit":5,"mrr_cents":3000}),
        json!({"type":"license.expired","ts":"2026-09-20T00:00:00Z","customer_id":"c","license_key":"k"}),
        json!({"type":"subscription.changed","ts":"2026-09-21T00:00:00Z","customer_id":"c","license_key":"k","plan":"pro","domain_limit":5,"mrr_cents":4000}),
        json!({"type":"license.renewed","ts":"2026-10-15T00:00:00Z","customer_id":"c","license_key":"k"}),
        ev("payment.succeeded", "2026-10-21T00:00:00Z", "c"),
    ]);
    // today 10-21; month ago = through 09-21: +1000 +2000 -3000 (+0 change while expired)
    assert_eq!(r.mrr.month_ago_cents, 0);
    assert_eq!(r.mrr.current_cents, 4000);
    assert_eq!(r.mrr.mom_change, None);
}

#[test]
fn renewal_cooldown_is_seven_days_and_blocks_late_events() {
    let (_, replay) = fold(&[
        issued("2026-10-01T00:00:00Z", "c", "k", 100),
        validated("2026-10-10T00:00:00Z", "c", "k", "expired"),
        validated("2026-10-16T23:59:59Z", "c", "k", "expired"), // inside
        validated("2026-10-09T00:00:00Z", "c", "k", "expired"), // late, before the last one
        validated("2026-10-17T00:00:00Z", "c", "k", "expired"), // exactly 7 days later
    ]);
    let renewals: Vec<_> = replay
        .decisions
        .iter()
        .filter(|n| n.kind.as_str() == "renewal")
        .map(|n| n.at)
        .collect();
    assert_eq!(renewals.len(), 2);
    assert_eq!(
        keypulse::core::time::format_rfc3339(renewals[1]),
        "2026-10-17T00:00:00Z"
    );
}

#[test]
fn churn_signals_need_an_active_license_and_share_one_cooldown() {
    let (_, replay) = fold(&[
        ev("payment.failed", "2026-10-01T00:00:00Z", "c"), // no license: nothing
        issued("2026-10-01T01:00:00Z", "c", "k", 100),
        json!({"type":"api_key.deleted","ts":"2026-10-02T00:00:00Z","customer_id":"c","api_key_id":"a"}),
        ev("plan.downgrade_inquiry", "2026-10-05T00:00:00Z", "c"), // cooldown
        json!({"type":"support.ticket_opened","ts":"2026-10-09T00:00:00Z","customer_id":"c","ticket_id":"t","category":"cancellation"}),
        json!({"type":"support.ticket_opened","ts":"2026-10-20T00:00:00Z","customer_id":"c","ticket_id":"t2","category":"billing"}),
    ]);
    let churn: Vec<_> = replay
        .decisions
        .iter()
        .filter(|n| n.kind.as_str() == "churn_warning")
        .map(|n| n.reasons[0].clone())
        .collect();
    assert_eq!(churn, vec!["api_key_deletion", "cancellation_ticket"]);
    assert!(replay
        .decisions
        .iter()
        .all(|n| n.to == "customer-success@example.com" && n.license_key.is_none()));
}

/// A license issued 2026-09-01, validated twice a day from 09-01 to 09-14, then silent.
fn two_validations_a_day_until_sept_14() -> Vec<Value> {
    let mut lines = vec![issued("2026-09-01T00:00:00Z", "c", "k", 100)];
    for d in 1..=14 {
        for hour in [12, 13] {
            lines.push(validated(
                &format!("2026-09-{d:02}T{hour}:00:00Z"),
                "c",
                "k",
                "valid",
            ));
        }
    }
    lines
}

#[test]
fn a_jump_over_many_midnights_runs_each_daily_check_in_order() {
    let mut lines = two_validations_a_day_until_sept_14();
    // silence, then one event far later: the decline fires at the first midnight it holds
    lines.push(ev("payment.succeeded", "2027-03-01T00:00:00Z", "c"));
    let (_, replay) = fold(&lines);
    let churn: Vec<_> = replay
        .decisions
        .iter()
        .filter(|n| n.kind.as_str() == "churn_warning")
        .collect();
    assert_eq!(churn.len(), 1);
    // 7 days before 09-19 (09-12..09-18) hold 6, the 7 before 14 → 6 ≤ 7
    assert_eq!(
        keypulse::core::time::format_rfc3339(churn[0].at),
        "2026-09-19T00:00:00Z"
    );
    assert_eq!(churn[0].reasons, vec!["validation_decline"]);
}

#[test]
fn an_event_at_midnight_runs_that_midnight_first() {
    let mut lines = two_validations_a_day_until_sept_14();
    lines.push(ev("payment.succeeded", "2026-09-19T00:00:00Z", "c"));
    let (_, replay) = fold(&lines);
    assert_eq!(
        replay
            .decisions
            .iter()
            .filter(|n| n.kind.as_str() == "churn_warning")
            .count(),
        1
    );
    lines.pop();
    lines.push(ev("payment.succeeded", "2026-09-18T23:59:59Z", "c"));
    let (_, replay) = fold(&lines);
    assert_eq!(
        replay
            .decisions
            .iter()
            .filter(|n| n.kind.as_str() == "churn_warning")
            .count(),
        0
    );
}

#[test]
fn invalid_format_without_customer_counts_only_in_totals_and_countries() {
    let (r, _) = fold(&[
        json!({"type":"license.validated","ts":"2026-10-01T10:00:00Z","license_key":"???","result":"invalid_format","country":"BR"}),
        json!({"type":"license.validated","ts":"2026-10-01T10:00:00Z","license_key":"???","result":"invalid_format","event_id":"z"}),
        json!({"type":"license.validated","ts":"2026-10-01T10:10:00Z","license_key":"???","result":"invalid_format","event_id":"z"}),
    ]);
    assert_eq!(r.licenses.total, 0);
    assert_eq!((r.events.applied, r.events.duplicates), (2, 1));
    assert_eq!(r.validations.today.failed, 2);
    assert_eq!(r.validations.today.by_type["invalid_format"], 2);
    assert_eq!(r.dav.today, 0);
    assert_eq!(r.countries["BR"], 1);
    assert_eq!(r.health.customers, 0);
}

#[test]
fn upgrade_needs_two_triggers_and_respects_its_cooldown() {
    let mut lines = vec![issued("2026-10-01T00:00:00Z", "c", "k", 100)];
    for d in ["a", "b", "c", "d"] {
        lines.push(json!({"type":"domain.added","ts":"2026-10-01T01:00:00Z","customer_id":"c","license_key":"k","domain":d}));
    }
    for i in 0..4 {
        lines.push(json!({"type":"feature.access_denied","ts":format!("2026-10-02T0{i}:00:00Z"),"customer_id":"c","license_key":"k","feature":"sso"}));
    }
    for i in 0..3 {
        lines.push(ev(
            "team.member_invited",
            &format!("2026-10-20T0{i}:00:00Z"),
            "c",
        ));
    }
    lines.push(ev("team.member_invited", "2026-11-02T00:00:00Z", "c"));
    let (r, replay) = fold(&lines);
    let ups: Vec<_> = replay
        .decisions
        .iter()
        .filter(|n| n.kind.as_str() == "upgrade")
        .collect();
    assert_eq!(ups.len(), 2, "{ups:?}");
    assert_eq!(
        ups[0].reasons,
        vec!["domain_limit_approaching", "feature_interest"]
    );
    assert_eq!(
        keypulse::core::time::format_rfc3339(ups[0].at),
        "2026-10-02T03:00:00Z"
    );
    assert_eq!(
        keypulse::core::time::format_rfc3339(ups[1].at),
        "2026-11-02T00:00:00Z"
    );
    assert_eq!(
        ups[1].reasons,
        vec!["domain_limit_approaching", "team_growth"]
    );
    assert_eq!(r.upgrade_pipeline.len(), 1);
}

#[test]
fn domains_are_a_set() {
    let add = |d: &str| json!({"type":"domain.added","ts":"2026-10-01T01:00:00Z","customer_id":"c","license_key":"k","domain":d});
    let (r, _) = fold(&[
        issued("2026-10-01T00:00:00Z", "c", "k", 100),
        add("a"),
        add("a"),
        json!({"type":"license.activated","ts":"2026-10-01T02:00:00Z","customer_id":"c","license_key":"k","domain":"a"}),
        json!({"type":"domain.removed","ts":"2026-10-01T03:00:00Z","customer_id":"c","license_key":"k","domain":"zzz"}),
        add("b"),
    ]);
    let u = &r.domain_utilization["starter"];
    assert_eq!(u.mean, Some(0.4));
    assert_eq!((u.near_limit, u.at_limit, u.over_provisioned), (0, 0, 0));
}

#[test]
fn thresholds_come_from_the_config() {
    let mut cfg = CoreConfig::default();
    cfg.health.churn_risk_below = 101;
    let (r, _) = fold_with(&[issued("2026-10-01T00:00:00Z", "c", "k", 100)], &cfg);
    assert_eq!(r.health.churn_risk.len(), 1);
    let (r, _) = fold(&[issued("2026-10-01T00:00:00Z", "c", "k", 100)]);
    assert!(r.health.churn_risk.is_empty());
}

#[test]
fn an_empty_log_has_no_as_of_and_zero_counts() {
    let (r, _) = fold(&[]);
    assert_eq!(r.as_of, None);
    assert_eq!(r.licenses.total, 0);
    assert_eq!(r.dav.series.len(), 0);
    assert_eq!(r.dav.trend, "unknown");
}

#[test]
fn state_survives_serialization() {
    let lines: Vec<Value> = String::from_utf8(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/edge.events.jsonl"
        ))
        .unwrap_or_default(),
    )
    .unwrap()
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect();
    let cfg = CoreConfig::default();
    let (half, rest) = lines.split_at(lines.len() / 2);
    let (_, mut a) = fold(half);
    let a = a.state_mut();
    let bytes = a.to_bytes().unwrap();
    let mut restored = keypulse::core::PartitionState::from_bytes(&bytes).unwrap();
    let mut out = Vec::new();
    for l in rest {
        let text = l.to_string();
        if let Ok(e) = keypulse::core::decode(text.as_bytes()) {
            restored.apply(&e, &cfg, &mut out);
            a.apply(&e, &cfg, &mut Vec::new());
        }
    }
    let wm = a.watermark();
    assert_eq!(
        serde_json::to_value(restored.report(wm, &cfg)).unwrap(),
        serde_json::to_value(a.report(wm, &cfg)).unwrap()
    );
}

#[test]
fn extreme_timestamps_and_values_fold_and_report_without_panicking() {
    let mut big = issued("0001-01-01T00:00:00Z", "c", "k", u64::MAX);
    big["domain_limit"] = json!(u64::MAX);
    let (r, _) = fold(&[
        big,
        issued("9999-12-31T23:59:59.999999Z", "c", "k2", u64::MAX),
        validated("0001-01-01T00:00:00+23:59", "c", "k", "valid"),
        validated("9999-12-31T23:59:59Z", "c", "k2", "expired"),
        ev("payment.failed", "1970-01-01T00:00:00Z", "c"),
        json!({"type":"license.validated","ts":"9999-12-31T23:59:59Z","license_key":"x","result":"invalid_format"}),
    ]);
    assert_eq!(r.events.applied, 6);
    assert_eq!(r.mrr.current_cents, 2 * u64::MAX as i128);
    assert_eq!(r.licenses.total, 2);
}

/// Issue 13: a license with 10 k registered domains (past every tier of the domain set)
/// still counts each exactly once, in utilization and in its upgrade triggers, and
/// removals bring it back down through the tiers.
#[test]
fn ten_thousand_domains_count_exactly_in_utilization_and_triggers() {
    let add = |ty: &str, d: u32| json!({"type":ty,"ts":"2026-10-01T01:00:00Z","customer_id":"c","license_key":"k","domain":format!("site-{d}.example")});
    let mut lines = vec![
        json!({"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"c","license_key":"k","plan":"starter","domain_limit":10_000,"mrr_cents":100,"email":"k@x.example"}),
    ];
    for d in 0..10_000 {
        lines.push(add("domain.added", d));
    }
    for d in (0..10_000).step_by(3) {
        lines.push(add("license.activated", d)); // already registered: no change
    }
    for i in 0..4 {
        lines.push(json!({"type":"feature.access_denied","ts":format!("2026-10-02T0{i}:00:00Z"),"customer_id":"c","license_key":"k","feature":"sso"}));
    }
    let (r, replay) = fold(&lines);
    let u = &r.domain_utilization["starter"];
    assert_eq!(u.mean, Some(1.0));
    assert_eq!((u.licenses, u.at_limit), (1, 1));
    assert_eq!(r.upgrade_pipeline.len(), 1);
    assert!(r.upgrade_pipeline[0]
        .triggers
        .contains(&"domain_limit_approaching".to_string()));
    let ups: Vec<_> = replay
        .decisions
        .iter()
        .filter(|n| n.kind.as_str() == "upgrade")
        .collect();
    assert_eq!(ups.len(), 1);
    assert_eq!(
        ups[0].reasons,
        vec!["domain_limit_approaching", "feature_interest"]
    );

    // remove 7,000 of them (and some never added): 3,000 / 10,000 left
    for d in 3_000..10_000 {
        lines.push(add("domain.removed", d));
    }
    for d in 20_000..20_100 {
        lines.push(add("domain.removed", d));
    }
    let (r, _) = fold(&lines);
    let u = &r.domain_utilization["starter"];
    assert_eq!(u.mean, Some(0.3));
    assert_eq!((u.near_limit, u.at_limit), (0, 0));
    assert!(r
        .upgrade_pipeline
        .iter()
        .all(|e| !e.triggers.contains(&"domain_limit_approaching".to_string())));

    // and all the way down to none, then one re-added
    for d in 0..3_000 {
        lines.push(add("domain.removed", d));
    }
    lines.push(add("domain.added", 5));
    let (r, _) = fold(&lines);
    assert_eq!(r.domain_utilization["starter"].mean, Some(0.0001));
}
