//! A differential test of SPEC §8: a naive model written from the spec's text (no windows
//! pruned, every mismatch kept, every midnight walked one by one, MRR summed from scratch)
//! against `keypulse replay`, on random logs with late events, events exactly at
//! midnight and with offsets, duplicates, excluded customers, expiries, renewals, plan
//! changes, revoked validations and mismatches with and without domains.
//!
//! It compares what §8 defines: `events`, `mrr` (current, month ago, movements),
//! `sharing_suspects` and the `key_sharing`, `revoked_use` and `expiring_soon` decisions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, FixedOffset, Utc};
use keypulse::core::time::format_rfc3339;
use keypulse::core::CoreConfig;
use keypulse::replay::Replay;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;
const CUSTOMERS: [&str; 9] = ["c0", "c1", "c2", "c3", "c4", "c5", "test-1", "qa", "qa2"];

fn config() -> CoreConfig {
    let mut cfg = CoreConfig::default();
    cfg.exclude.customer_ids = vec!["qa".into()];
    cfg.exclude.customer_prefixes = vec!["test-".into()];
    cfg
}

fn iso(secs: i64, offset_hours: i32) -> String {
    let t = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
    t.with_timezone(&FixedOffset::east_opt(offset_hours * 3600).unwrap())
        .to_rfc3339()
}

/// A random log: mostly in time order (steps up to `step` seconds, and with probability
/// `jumps` a gap of up to 3 days), some late, some on a midnight, some with an offset.
fn generate(seed: u64, n: usize, domains: u32, step: i64, jumps: f64) -> Vec<Value> {
    let mut rnd = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t: i64 = 1_790_000_000;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        t += if !rnd.random_bool(jumps) {
            rnd.random_range(0..=step)
        } else {
            rnd.random_range(0..=3 * 86_400)
        };
        let mut ts = t;
        if rnd.random_bool(0.08) {
            ts -= rnd.random_range(0..=40 * 86_400);
        }
        if rnd.random_bool(0.05) {
            ts -= ts.rem_euclid(86_400);
        }
        let c = CUSTOMERS[rnd.random_range(0..CUSTOMERS.len())];
        let key = format!("K{}", rnd.random_range(0..3));
        let offset = if rnd.random_bool(0.1) { 1 } else { 0 };
        let mut e = json!({"ts": iso(ts, offset), "customer_id": c});
        if rnd.random_bool(0.1) {
            e["event_id"] = json!(format!("e{}", rnd.random_range(0..6)));
        }
        let expiry = |rnd: &mut rand::rngs::StdRng| {
            let mut x = ts + rnd.random_range(-5 * 86_400..=20 * 86_400);
            if rnd.random_bool(0.4) {
                x -= x.rem_euclid(86_400);
            }
            iso(x, 0)
        };
        let r: f64 = rnd.random();
        if r < 0.12 {
            let mrr = [0, 0, 500, 1000, 2900][rnd.random_range(0..5)];
            e["type"] = json!("license.issued");
            e["license_key"] = json!(key);
            e["plan"] = json!(if rnd.random_bool(0.5) { "a" } else { "b" });
            e["domain_limit"] = json!(3);
            e["mrr_cents"] = json!(mrr);
            if rnd.random_bool(0.7) {
                e["email"] = json!(format!("{key}@x.example"));
            }
            if rnd.random_bool(0.6) {
                e["expires_at"] = json!(expiry(&mut rnd));
            }
        } else if r < 0.17 {
            e["type"] = json!("license.renewed");
            e["license_key"] = json!(key);
            if rnd.random_bool(0.5) {
                e["expires_at"] = json!(expiry(&mut rnd));
            }
        } else if r < 0.22 {
            let ty = [
                "license.expired",
                "license.revoked",
                "subscription.canceled",
            ];
            e["type"] = json!(ty[rnd.random_range(0..3)]);
            e["license_key"] = json!(key);
        } else if r < 0.28 {
            e["type"] = json!("subscription.changed");
            e["license_key"] = json!(key);
            e["plan"] = json!("b");
            e["domain_limit"] = json!(5);
            e["mrr_cents"] = json!([0, 700, 1500, 5000][rnd.random_range(0..4)]);
        } else if r < 0.33 {
            let ty = ["payment.failed", "payment.succeeded"];
            e["type"] = json!(ty[rnd.random_range(0..2)]);
        } else {
            let results = [
                "valid",
                "domain_mismatch",
                "domain_mismatch",
                "domain_mismatch",
                "revoked",
                "expired",
                "invalid_format",
            ];
            let res = results[rnd.random_range(0..results.len())];
            e["type"] = json!("license.validated");
            e["license_key"] = json!(key);
            e["result"] = json!(res);
            if res == "domain_mismatch" {
                let d: f64 = rnd.random();
                if d < 0.8 {
                    e["domain"] = json!(format!("d{}.example", rnd.random_range(0..domains)));
                } else if d < 0.9 {
                    e["domain"] = json!("");
                }
            }
            if res == "invalid_format" && rnd.random_bool(0.5) {
                e.as_object_mut().unwrap().remove("customer_id");
            }
        }
        out.push(e);
    }
    out
}

#[derive(Default)]
struct ModelLicense {
    active: bool,
    mrr: i128,
    email: Option<String>,
    expires: Option<i64>,
    /// Every recorded mismatch: (day, domain).
    mismatches: Vec<(i64, Option<String>)>,
    key_sharing_at: Option<i64>,
    revoked_use_at: Option<i64>,
    reminded: Option<i64>,
}

#[derive(Default)]
struct ModelCustomer {
    clock: Option<i64>,
    seen: HashMap<String, i64>,
    ever_paid: bool,
    payment_failed: bool,
    keys: Vec<String>,
}

/// (kind, customer, license, at, reasons, to)
type Decision = (String, String, String, String, Vec<String>, String);

#[derive(Default)]
struct Model {
    counts: BTreeMap<&'static str, u64>,
    customers: HashMap<String, ModelCustomer>,
    licenses: HashMap<(String, String), ModelLicense>,
    mrr_by_day: BTreeMap<i64, i128>,
    movements: Vec<(i64, &'static str, i128)>,
    decisions: Vec<Decision>,
    watermark: Option<i64>,
}

fn allowed(last: Option<i64>, at: i64, days: i64) -> bool {
    last.is_none_or(|l| l <= at - days * DAY)
}

impl Model {
    fn customer_mrr(&self, c: &str) -> i128 {
        self.customers[c]
            .keys
            .iter()
            .map(|k| &self.licenses[&(c.to_string(), k.clone())])
            .filter(|l| l.active)
            .map(|l| l.mrr)
            .sum()
    }

    fn license(&mut self, c: &str, k: &str) -> &mut ModelLicense {
        let id = (c.to_string(), k.to_string());
        if !self.licenses.contains_key(&id) {
            self.customers.get_mut(c).unwrap().keys.push(k.to_string());
            self.licenses.insert(
                id.clone(),
                ModelLicense {
                    active: true,
                    ..Default::default()
                },
            );
        }
        self.licenses.get_mut(&id).unwrap()
    }

    /// The daily check's expiry part, one midnight at a time.
    fn midnights(&mut self, c: &str, first: i64, last: i64, run_ts: i64) {
        let keys = self.customers[c].keys.clone();
        for d in first..=last {
            let m = d * DAY;
            for k in &keys {
                let l = self.licenses.get_mut(&(c.to_string(), k.clone())).unwrap();
                let (Some(e), Some(email)) = (l.expires, l.email.clone()) else {
                    continue;
                };
                if !l.active || e <= run_ts || !(m < e && e <= m + 7 * DAY) || l.reminded == Some(e)
                {
                    continue;
                }
                l.reminded = Some(e);
                self.decisions.push((
                    "expiring_soon".into(),
                    c.into(),
                    k.clone(),
                    format_rfc3339(m),
                    vec!["expiring_soon".into()],
                    email,
                ));
            }
        }
    }

    fn apply(&mut self, e: &Value) {
        let cid = e.get("customer_id").and_then(Value::as_str);
        if let Some(c) = cid {
            if c == "qa" || c.starts_with("test-") {
                *self.counts.entry("excluded").or_default() += 1;
                return;
            }
        }
        let c = cid.unwrap_or("").to_string();
        let ts = keypulse::core::time::parse_rfc3339(e["ts"].as_str().unwrap()).unwrap();
        let cust = self.customers.entry(c.clone()).or_default();
        if let Some(id) = e.get("event_id").and_then(Value::as_str) {
            if let (Some(seen), Some(clock)) = (cust.seen.get(id), cust.clock) {
                if *seen >= clock - HOUR {
                    *self.counts.entry("duplicates").or_default() += 1;
                    return;
                }
            }
        }
        let day = ts.div_euclid(DAY);
        if let Some(clock) = cust.clock {
            if day > clock.div_euclid(DAY) {
                self.midnights(&c, clock.div_euclid(DAY) + 1, day, ts);
            }
        }
        let cust = self.customers.get_mut(&c).unwrap();
        cust.clock = Some(cust.clock.map_or(ts, |k| k.max(ts)));
        if let Some(id) = e.get("event_id").and_then(Value::as_str) {
            cust.seen.insert(id.to_string(), ts);
        }
        let clock = cust.clock.unwrap();
        self.watermark = Some(self.watermark.map_or(clock, |w| w.max(clock)));
        *self.counts.entry("applied").or_default() += 1;
        let floor = clock.div_euclid(DAY) - 34;
        let m0 = self.customer_mrr(&c);
        let key = e.get("license_key").and_then(Value::as_str).unwrap_or("");
        let payment_failed = self.customers[&c].payment_failed;
        match e["type"].as_str().unwrap() {
            "license.issued" => {
                let l = self.license(&c, key);
                l.email = e.get("email").and_then(Value::as_str).map(String::from);
                l.expires = e
                    .get("expires_at")
                    .and_then(Value::as_str)
                    .and_then(keypulse::core::time::parse_rfc3339);
                l.mrr = e["mrr_cents"].as_i64().unwrap() as i128;
                l.active = true;
            }
            "license.renewed" => {
                let l = self.license(&c, key);
                if let Some(x) = e.get("expires_at").and_then(Value::as_str) {
                    l.expires = keypulse::core::time::parse_rfc3339(x);
                }
                l.active = true;
            }
            "license.expired" | "license.revoked" | "subscription.canceled" => {
                self.license(&c, key).active = false;
            }
            "subscription.changed" => {
                self.license(&c, key).mrr = e["mrr_cents"].as_i64().unwrap() as i128;
            }
            "payment.failed" => self.customers.get_mut(&c).unwrap().payment_failed = true,
            "payment.succeeded" => self.customers.get_mut(&c).unwrap().payment_failed = false,
            "license.validated" => match e["result"].as_str().unwrap() {
                "invalid_format" => {}
                "revoked" => {
                    let l = self.license(&c, key);
                    if allowed(l.revoked_use_at, ts, 30) {
                        l.revoked_use_at = Some(ts);
                        let mut reasons = vec!["revoked".to_string()];
                        if payment_failed {
                            reasons.push("payment_failed".into());
                        }
                        let d = (
                            "revoked_use".into(),
                            c.clone(),
                            key.into(),
                            format_rfc3339(ts),
                        );
                        self.decisions.push((
                            d.0,
                            d.1,
                            d.2,
                            d.3,
                            reasons,
                            "customer-success@example.com".into(),
                        ));
                    }
                }
                "domain_mismatch" => {
                    let domain = e
                        .get("domain")
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                        .map(String::from);
                    let l = self.license(&c, key);
                    if day >= floor {
                        l.mismatches.push((day, domain.clone()));
                    }
                    if domain.is_some() && l.active {
                        let to = clock.div_euclid(DAY);
                        let distinct: BTreeSet<&String> = l
                            .mismatches
                            .iter()
                            .filter(|(d, _)| (to - 29..=to).contains(d))
                            .filter_map(|(_, s)| s.as_ref())
                            .collect();
                        if distinct.len().min(64) >= 3 && allowed(l.key_sharing_at, ts, 30) {
                            l.key_sharing_at = Some(ts);
                            self.decisions.push((
                                "key_sharing".into(),
                                c.clone(),
                                key.into(),
                                format_rfc3339(ts),
                                vec!["domain_mismatch".into()],
                                "customer-success@example.com".into(),
                            ));
                        }
                    }
                }
                _ => {
                    self.license(&c, key);
                }
            },
            _ => {}
        }
        let m1 = self.customer_mrr(&c);
        if m1 != m0 {
            *self.mrr_by_day.entry(day).or_default() += m1 - m0;
            let ever = self.customers[&c].ever_paid;
            let (kind, amount) = match (m0 > 0, m1 > 0) {
                (false, _) if ever => ("reactivation", m1),
                (false, _) => ("new", m1),
                (true, false) => ("churn", m0),
                (true, true) if m1 > m0 => ("expansion", m1 - m0),
                _ => ("contraction", m0 - m1),
            };
            self.movements.push((day, kind, amount));
        }
        if m1 > 0 {
            self.customers.get_mut(&c).unwrap().ever_paid = true;
        }
    }

    fn expected(&self) -> Value {
        let counts = |k| self.counts.get(k).copied().unwrap_or(0);
        let mut r = json!({"events": {"applied": counts("applied"), "duplicates": counts("duplicates"),
                                      "excluded": counts("excluded")}});
        let Some(w) = self.watermark else {
            return r;
        };
        let today = w.div_euclid(DAY);
        let ago = today - 30;
        let kinds = ["new", "expansion", "contraction", "churn", "reactivation"];
        let mut cents: BTreeMap<&str, i128> = kinds.iter().map(|k| (*k, 0)).collect();
        let mut n: BTreeMap<&str, u64> = kinds.iter().map(|k| (*k, 0)).collect();
        for (d, k, a) in &self.movements {
            if *d > ago {
                *cents.get_mut(k).unwrap() += a;
                *n.get_mut(k).unwrap() += 1;
            }
        }
        let net = cents["new"] + cents["expansion"] + cents["reactivation"]
            - cents["contraction"]
            - cents["churn"];
        let mut movements = json!({"net_cents": net as i64, "counts": n});
        for k in kinds {
            movements[format!("{k}_cents")] = json!(cents[k] as i64);
        }
        r["mrr"] = json!({
            "current_cents": self.mrr_by_day.values().sum::<i128>() as i64,
            "month_ago_cents": self.mrr_by_day.range(..=ago).map(|(_, v)| v).sum::<i128>() as i64,
            "movements": movements,
        });
        let mut suspects: Vec<(i64, i64, String, String)> = Vec::new();
        for ((c, k), l) in &self.licenses {
            if !l.active {
                continue;
            }
            let window = |d: &i64| (today - 29..=today).contains(d);
            let domains: BTreeSet<&String> = l
                .mismatches
                .iter()
                .filter(|(d, _)| window(d))
                .filter_map(|(_, s)| s.as_ref())
                .collect();
            let domains = domains.len().min(64) as i64;
            if domains >= 3 {
                let m = l.mismatches.iter().filter(|(d, _)| window(d)).count() as i64;
                suspects.push((-domains, -m, k.clone(), c.clone()));
            }
        }
        suspects.sort();
        r["sharing_suspects"] = suspects
            .into_iter()
            .map(|(d, m, k, c)| json!({"license_key": k, "customer_id": c, "domains": -d, "mismatches": -m}))
            .collect();
        r
    }
}

/// The differences between the model and the fold, on one log.
fn differences(lines: &[Value]) -> Vec<String> {
    differences_between(lines, lines)
}

/// The differences between the model of one log and the fold of another.
fn differences_between(model_lines: &[Value], fold_lines: &[Value]) -> Vec<String> {
    let cfg = config();
    let mut replay = Replay::new();
    for l in fold_lines {
        replay.feed_line(l.to_string().as_bytes(), &cfg);
    }
    let mut model = Model::default();
    for l in model_lines {
        model.apply(l);
    }
    let report = serde_json::to_value(replay.report(&cfg)).unwrap();
    let expected = model.expected();
    let mut out = Vec::new();
    for (k, v) in expected.as_object().unwrap() {
        let got = match k.as_str() {
            "events" => {
                json!({"applied": report["events"]["applied"], "duplicates": report["events"]["duplicates"],
                               "excluded": report["events"]["excluded"]})
            }
            "mrr" => json!({"current_cents": report["mrr"]["current_cents"],
                            "month_ago_cents": report["mrr"]["month_ago_cents"],
                            "movements": report["mrr"]["movements"]}),
            _ => report[k].clone(),
        };
        if &got != v {
            out.push(format!("{k}: fold {got} != model {v}"));
        }
    }
    let spec8 = ["key_sharing", "revoked_use", "expiring_soon"];
    let mut mine: Vec<Decision> = replay
        .decisions
        .iter()
        .filter(|n| spec8.contains(&n.kind.as_str()))
        .map(|n| {
            (
                n.kind.as_str().to_string(),
                n.customer_id.clone(),
                n.license_key.clone().unwrap_or_default(),
                format_rfc3339(n.at),
                n.reasons.clone(),
                n.to.clone(),
            )
        })
        .collect();
    let mut theirs = model.decisions.clone();
    mine.sort();
    theirs.sort();
    if mine != theirs {
        let only_fold: Vec<_> = mine
            .iter()
            .filter(|d| !theirs.contains(d))
            .take(5)
            .collect();
        let only_model: Vec<_> = theirs
            .iter()
            .filter(|d| !mine.contains(d))
            .take(5)
            .collect();
        out.push(format!(
            "decisions: only the fold {only_fold:?}; only the model {only_model:?}"
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Sparse logs: customers go quiet, expiries pass unseen, late events cross windows.
    #[test]
    fn the_fold_agrees_with_the_naive_model(seed in any::<u64>()) {
        let d = differences(&generate(seed, 1_200, 9, 4 * 3600, 0.1));
        prop_assert!(d.is_empty(), "{}", d.join("\n"));
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Dense logs over many domains: more than 64 mismatched domains in a window.
    #[test]
    fn the_fold_agrees_with_the_naive_model_past_64_domains(seed in any::<u64>()) {
        let d = differences(&generate(seed, 14_000, 150, 10, 0.0002));
        prop_assert!(d.is_empty(), "{}", d.join("\n"));
    }
}

#[test]
fn the_model_reaches_every_part_of_spec8() {
    // The generated logs exercise what is compared, and the comparison can fail.
    let lines = generate(7, 14_000, 150, 10, 0.0002);
    let cfg = config();
    let mut replay = Replay::new();
    for l in &lines {
        replay.feed_line(l.to_string().as_bytes(), &cfg);
    }
    let r = serde_json::to_value(replay.report(&cfg)).unwrap();
    let kinds: BTreeSet<&str> = replay.decisions.iter().map(|n| n.kind.as_str()).collect();
    for k in ["key_sharing", "revoked_use", "expiring_soon"] {
        assert!(kinds.contains(k), "{kinds:?}");
    }
    assert!(r["events"]["excluded"].as_u64().unwrap() > 0);
    assert!(r["events"]["duplicates"].as_u64().unwrap() > 0);
    assert_eq!(
        r["sharing_suspects"][0]["domains"], 64,
        "{}",
        r["sharing_suspects"]
    );
    for k in ["expansion", "contraction", "churn", "reactivation"] {
        assert!(
            r["mrr"]["movements"]["counts"][k].as_u64().unwrap() > 0,
            "{k}"
        );
    }
    assert!(differences(&lines).is_empty());
    // The comparison notices a change: a revoked validation moved to a customer without
    // one, an event of a kept customer moved to an excluded one.
    let at = |pred: &dyn Fn(&Value) -> bool| lines.iter().rposition(pred).unwrap();
    let edits: [(usize, &str, Value); 2] = [
        (
            at(&|e| e["result"] == "revoked" && e["customer_id"] == "c0"),
            "customer_id",
            json!("c9"),
        ),
        (
            at(&|e| e["customer_id"] == "qa2"),
            "customer_id",
            json!("qa"),
        ),
    ];
    for (i, field, value) in edits {
        let mut changed = lines.clone();
        changed[i][field] = value;
        assert!(
            !differences_between(&lines, &changed).is_empty(),
            "{field} at line {i}"
        );
    }
}
