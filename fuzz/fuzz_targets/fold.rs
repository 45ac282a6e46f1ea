//! Fuzz target `fold`: a structured sequence of events (and live-mode midnight ticks)
//! folded into a `PartitionState`, then reported.
//!
//! The input is built with `arbitrary` from a small alphabet (5 customers and none, 4
//! licenses each, a few plans, domains, countries and event ids, timestamps over four
//! months with exact midnights), so that nearly every event reaches the fold instead of
//! dying in the decoder; a few are made invalid on purpose. Checked on every input:
//! no panic; the report's invariants (SPEC §3, §8): counts add up to what was fed,
//! ratios are null or in 0..=1, `licenses.by_status` sums to `licenses.total`, the health
//! bands sum to `health.customers`, `mrr.current = month_ago + movements.net`, and every
//! list is in the spec's order. And the project's key property (SPEC §7): the customers
//! split in two, folded apart and merged (as aggregates, and as states) give the same
//! report as one fold.
#![no_main]

use arbitrary::Arbitrary;
use keypulse_core::event::{TicketCategory, ValidationResult, EVENT_TYPES};
use keypulse_core::report::ChurnRiskEntry;
use keypulse_core::{decode, CoreConfig, PartitionState, Report};
use libfuzzer_sys::fuzz_target;

/// 2026-01-01T00:00:00Z, in seconds.
const BASE: i64 = 1_767_225_600;
const DAY: i64 = 86_400;
const MICROS: i64 = 1_000_000;
const MAX_STEPS: usize = 400;

const PLANS: [&str; 3] = ["starter", "pro", "business"];
const COUNTRIES: [&str; 4] = ["DE", "US", "BR", "JP"];

#[derive(Debug, Arbitrary)]
struct Knobs {
    window_days: u8,
    dedup: u8,
    near_limit: u8,
    churn_risk_below: u8,
    min_domains: u8,
    min_triggers: u8,
    cooldown: u8,
    expiry_notice: u8,
    exclude_test: bool,
    /// Which customers go to the left state in the split check (bit i: customer i).
    split: u8,
    /// Days after the watermark at which the report is taken.
    as_of_after: u8,
}

#[derive(Debug, Arbitrary)]
struct Ev {
    ty: u8,
    customer: u8,
    license: u8,
    var: u8,
    /// Day since `BASE` (mod 120).
    day: u8,
    /// Second within the day; `None` is the exact midnight.
    second: Option<u16>,
    id: Option<u8>,
    domain: u8,
    /// 1 in 16 is made invalid (a rejected event).
    hostile: u8,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Event(Ev),
    /// A live-mode daily check at `BASE + day days (+ seconds)`.
    Tick {
        day: u8,
        second: u16,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    knobs: Knobs,
    steps: Vec<Step>,
}

fn config(k: &Knobs) -> CoreConfig {
    let mut c = CoreConfig {
        window_days: 35 + u32::from(k.window_days % 26),
        dedup_horizon_secs: [0, 60, 3_600, 86_400][usize::from(k.dedup % 4)],
        near_limit_ratio: [0.0, 0.5, 0.8, 1.0][usize::from(k.near_limit % 4)],
        ..CoreConfig::default()
    };
    c.health.churn_risk_below = u32::from(k.churn_risk_below % 102);
    c.sharing.min_domains = 1 + u32::from(k.min_domains % 4);
    c.notify.upgrade_min_triggers = 1 + u32::from(k.min_triggers % 4);
    let cd = u32::from(k.cooldown % 31);
    c.notify.upgrade_cooldown_days = cd;
    c.notify.renewal_cooldown_days = cd;
    c.notify.churn_cooldown_days = cd;
    c.notify.key_sharing_cooldown_days = cd;
    c.notify.revoked_use_cooldown_days = cd;
    c.notify.expiry_notice_days = u32::from(k.expiry_notice % 11);
    if k.exclude_test {
        c.exclude.customer_prefixes = vec!["test-".into()];
        c.exclude.customer_ids = vec!["c2".into()];
    }
    c
}

fn ts(day: u8, second: Option<u16>) -> i64 {
    BASE + i64::from(day % 120) * DAY + second.map_or(0, |s| i64::from(s) % DAY)
}

fn rfc3339(t: i64) -> String {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let days = t.div_euclid(DAY);
    let secs = t.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The customer index of an event (4 = no customer, only for `invalid_format`).
fn customer_of(e: &Ev) -> u8 {
    e.customer % 5
}

/// One JSON line from the alphabet; all values are plain ASCII, so no escaping is needed.
fn line(e: &Ev) -> String {
    let ty = EVENT_TYPES[usize::from(e.ty) % EVENT_TYPES.len()];
    let c = customer_of(e);
    let cid = if c == 3 {
        "test-c3".to_string()
    } else {
        format!("c{c}")
    };
    let key = format!("K{}-{}", c % 4, e.license % 4);
    let var = e.var;
    let mut f = vec![
        format!("\"type\":\"{ty}\""),
        format!("\"ts\":\"{}\"", rfc3339(ts(e.day, e.second))),
    ];
    let result = ValidationResult::ALL[usize::from(var) % ValidationResult::ALL.len()].as_str();
    let anonymous = c == 4 && ty == "license.validated" && result == "invalid_format";
    if !anonymous {
        f.push(format!("\"customer_id\":\"{cid}\""));
    }
    if let Some(id) = e.id {
        f.push(format!("\"event_id\":\"e{}\"", id % 8));
    }
    let domain = format!("d{}.example", e.domain % 6);
    let expiry = rfc3339(ts(e.day.wrapping_add(var % 40), Some(u16::from(var) * 97)));
    match ty {
        "license.issued" | "subscription.changed" => {
            f.push(format!("\"license_key\":\"{key}\""));
            f.push(format!("\"plan\":\"{}\"", PLANS[usize::from(var) % 3]));
            f.push(format!("\"domain_limit\":{}", var % 6));
            f.push(format!("\"mrr_cents\":{}", 100 * u64::from(var % 7)));
            if var % 4 != 0 {
                f.push(format!("\"email\":\"{key}@x.example\""));
            }
            if ty == "license.issued" && var % 3 != 1 {
                f.push(format!("\"expires_at\":\"{expiry}\""));
            }
        }
        "license.renewed" => {
            f.push(format!("\"license_key\":\"{key}\""));
            if var % 2 == 0 {
                f.push(format!("\"expires_at\":\"{expiry}\""));
            }
        }
        "license.validated" => {
            f.push(format!("\"license_key\":\"{key}\""));
            f.push(format!("\"result\":\"{result}\""));
            if var % 3 == 0 {
                f.push(format!(
                    "\"country\":\"{}\"",
                    COUNTRIES[usize::from(e.domain) % 4]
                ));
            }
            match e.domain % 8 {
                0 => {}
                1 => f.push("\"domain\":null".into()),
                2 => f.push("\"domain\":\"\"".into()),
                _ => f.push(format!("\"domain\":\"{domain}\"")),
            }
        }
        "domain.added" | "domain.removed" | "license.activated" => {
            f.push(format!("\"license_key\":\"{key}\""));
            f.push(format!("\"domain\":\"{domain}\""));
        }
        "api_key.created" | "api_key.deleted" => {
            f.push(format!("\"api_key_id\":\"a{}\"", var % 2));
        }
        "support.ticket_opened" => {
            f.push(format!("\"ticket_id\":\"t{}\"", var % 3));
            f.push(format!(
                "\"category\":\"{}\"",
                TicketCategory::ALL[usize::from(var) % 4].as_str()
            ));
        }
        "support.ticket_closed" => f.push(format!("\"ticket_id\":\"t{}\"", var % 3)),
        "payment.failed" | "payment.succeeded" => {
            f.push(format!("\"amount_cents\":{}", 100 * u64::from(var % 5)));
        }
        "team.member_invited" => f.push(format!("\"email\":\"u{}@x.example\"", var % 5)),
        "feature.access_denied" => {
            f.push(format!("\"license_key\":\"{key}\""));
            f.push(format!("\"feature\":\"f{}\"", var % 3));
        }
        _ => f.push(format!("\"license_key\":\"{key}\"")),
    }
    match e.hostile % 16 {
        0 => f.push("\"mrr_cents\":-1".into()),
        1 => f[1] = "\"ts\":\"2026-13-01T00:00:00Z\"".into(),
        _ => {}
    }
    format!("{{{}}}", f.join(","))
}

/// Folds the steps whose customer `keep` accepts (ticks go to every state).
fn fold(
    steps: &[Step],
    lines: &[Option<String>],
    cfg: &CoreConfig,
    keep: impl Fn(u8) -> bool,
) -> (PartitionState, u64) {
    let mut state = PartitionState::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for (step, l) in steps.iter().zip(lines) {
        match (step, l) {
            (Step::Event(e), Some(l)) => {
                if !keep(customer_of(e)) {
                    continue;
                }
                fed += 1;
                match decode(l.as_bytes()) {
                    Ok(ev) => {
                        state.apply(&ev, cfg, &mut out);
                    }
                    Err(_) => state.record_rejected(),
                }
            }
            (Step::Tick { day, second }, _) => {
                state.advance_to(ts(*day, Some(*second)) * MICROS, cfg, &mut out);
            }
            _ => {}
        }
        out.clear();
    }
    (state, fed)
}

fn ratio_ok(r: Option<f64>) -> bool {
    r.is_none_or(|v| (0.0..=1.0).contains(&v))
}

fn check_invariants(r: &Report, fed: u64) {
    let e = &r.events;
    assert_eq!(
        e.applied + e.rejected + e.duplicates + e.excluded,
        fed,
        "{e:?}"
    );
    let a = &r.activation;
    assert!(ratio_ok(a.rate) && ratio_ok(a.rate_7d), "{a:?}");
    for p in a.by_plan.values() {
        assert!(ratio_ok(p.rate) && ratio_ok(p.rate_7d), "{p:?}");
    }
    assert!(ratio_ok(r.validations.today.failure_rate));
    for u in r.domain_utilization.values() {
        // Utilization may exceed 1 (more domains than the limit); it is never negative.
        assert!(u.mean.is_none_or(|m| m >= 0.0), "{u:?}");
    }
    assert_eq!(r.licenses.by_status.values().sum::<u64>(), r.licenses.total);
    assert!(r.licenses.active <= r.licenses.total);
    assert_eq!(r.health.bands.values().sum::<u64>(), r.health.customers);
    let m = &r.mrr;
    assert_eq!(
        m.current_cents,
        m.month_ago_cents + m.movements.net_cents,
        "{m:?}"
    );
    let sorted = |ok: bool, what: &str| assert!(ok, "{what} out of order");
    let key = |c: &ChurnRiskEntry| (c.score, c.customer_id.clone());
    sorted(
        r.health
            .churn_risk
            .windows(2)
            .all(|w| key(&w[0]) <= key(&w[1])),
        "churn_risk",
    );
    sorted(
        r.upgrade_pipeline.windows(2).all(|w| {
            let k = |u: &keypulse_core::report::UpgradeEntry| {
                (
                    std::cmp::Reverse(u.triggers.len()),
                    u.license_key.clone(),
                    u.customer_id.clone(),
                )
            };
            k(&w[0]) <= k(&w[1])
        }),
        "upgrade_pipeline",
    );
    sorted(
        r.notifications.windows(2).all(|w| {
            let k = |n: &keypulse_core::report::NotificationEntry| {
                (
                    n.at,
                    n.customer_id.clone(),
                    n.kind.as_str(),
                    n.license_key.clone(),
                )
            };
            // `None < Some(_)`: a null license key sorts first, as SPEC §3 says.
            k(&w[0]) <= k(&w[1])
        }),
        "notifications",
    );
    sorted(
        r.sharing_suspects.windows(2).all(|w| {
            let k = |s: &keypulse_core::report::SharingSuspect| {
                (
                    std::cmp::Reverse(s.domains),
                    std::cmp::Reverse(s.mismatches),
                    s.license_key.clone(),
                    s.customer_id.clone(),
                )
            };
            k(&w[0]) <= k(&w[1])
        }),
        "sharing_suspects",
    );
}

fuzz_target!(|input: Input| {
    let cfg = config(&input.knobs);
    assert_eq!(
        cfg.validate(),
        Ok(()),
        "the target's configurations are valid"
    );
    let steps = &input.steps[..input.steps.len().min(MAX_STEPS)];
    let lines: Vec<Option<String>> = steps
        .iter()
        .map(|s| match s {
            Step::Event(e) => Some(line(e)),
            Step::Tick { .. } => None,
        })
        .collect();
    let (whole, fed) = fold(steps, &lines, &cfg, |_| true);
    // The report is taken at or after the latest daily check, as the live service's wall
    // clock is: a report at an `as_of` before a check already run is not a historical
    // report (per-day figures before the partition's window are gone), and
    // `mrr.current = month_ago + net` does not hold there (issue 13: `?as_of=` in the past).
    let last_tick = steps
        .iter()
        .filter_map(|s| match s {
            Step::Tick { day, second } => Some(ts(*day, Some(*second)) * MICROS),
            Step::Event(_) => None,
        })
        .max();
    let as_of = whole
        .watermark()
        .max(last_tick)
        .map(|w| w + i64::from(input.knobs.as_of_after % 40) * DAY * MICROS);
    let report = whole.report(as_of, &cfg);
    check_invariants(&report, fed);

    // Split by customer: the no-customer group (4) always goes left, as one partition
    // holds it.
    let split = input.knobs.split | 0x10;
    let left_of = |c: u8| split & (1 << c) != 0;
    let (left, fed_l) = fold(steps, &lines, &cfg, left_of);
    let (right, fed_r) = fold(steps, &lines, &cfg, |c| !left_of(c));
    assert_eq!(fed_l + fed_r, fed);
    let mut agg = left.aggregate(as_of, &cfg);
    agg.merge(right.aggregate(as_of, &cfg));
    assert_eq!(
        agg.finish(&cfg),
        report,
        "aggregate merge differs from one fold"
    );
    let mut merged = left;
    merged.merge(right);
    assert_eq!(
        merged.report(as_of, &cfg),
        report,
        "state merge differs from one fold"
    );
});
