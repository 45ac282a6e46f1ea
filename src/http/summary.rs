//! The dashboard's bounded summary of a report (`GET /api/v1/summary?top=N`).
//!
//! Owns [`summary`]: every figure the dashboard shows, computed here from the snapshot's
//! report (counts by kind, by day and by trigger, totals, rates, the TTFV median), and
//! every list cut to its first `top` items (or, for open-ended maps such as countries and
//! plans, the `top` largest with the rest summed or counted).
//!
//! Guarantees: the answer's size depends on `top` (at most [`MAX_TOP`]) and on nothing
//! else (the series are the report's fixed 14 days); the figures are the report's own or
//! follow from it, so the dashboard agrees with `/api/v1/report`. Cost: one pass over the
//! report's lists per request.
//!
//! Reuse: [`top_of_map`] and [`head`] cut any map or list the same way (SPEC §8 panels).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::core::signals::NotificationKind;
use crate::core::time::{day_of, format_day, format_rfc3339};
use crate::core::Report;

/// Items in each list when `top` is not given.
pub const DEFAULT_TOP: usize = 10;
/// The largest `top` accepted.
pub const MAX_TOP: usize = 100;
/// Countries in the map's counts (more than there are ISO alpha-2 codes).
const MAX_COUNTRIES: usize = 300;
/// Days in the per-day series (the report's own series length).
const SERIES_DAYS: i32 = 14;

/// The query string of `/api/v1/summary`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// Items per list (default [`DEFAULT_TOP`], at most [`MAX_TOP`]).
    pub top: Option<usize>,
    /// `group` (default) or `local` (SPEC §8.8).
    pub scope: Option<super::group::Scope>,
}

/// The first `n` items of `list`, with the list's length: `{"total", "items"}`.
pub fn head<T: Serialize>(list: &[T], n: usize) -> Value {
    json!({ "total": list.len(), "items": &list[..n.min(list.len())] })
}

/// The `n` largest entries of `map` by `size` (ties by key), as an object, with how many
/// entries were left out: `({...}, omitted)`.
pub fn top_of_map<V: Serialize>(
    map: &BTreeMap<String, V>,
    n: usize,
    size: impl Fn(&V) -> u64,
) -> (Value, usize) {
    let mut entries: Vec<(&String, &V)> = map.iter().collect();
    entries.sort_by(|a, b| size(b.1).cmp(&size(a.1)).then(a.0.cmp(b.0)));
    let omitted = entries.len().saturating_sub(n);
    let kept: Map<String, Value> = entries
        .into_iter()
        .take(n)
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    (Value::Object(kept), omitted)
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| (num as f64 / den as f64 * 1e4).round() / 1e4)
}

/// The summary of `r` with lists cut to `top` items.
pub fn summary(r: &Report, top: usize) -> Value {
    let (activation_by_plan, activation_plans_omitted) =
        top_of_map(&r.activation.by_plan, top, |p| p.issued);
    let (utilization, utilization_plans_omitted) =
        top_of_map(&r.domain_utilization, top, |u| u.licenses);

    // Countries: the largest `top`, the rest summed.
    let mut countries: Vec<(&String, &u64)> = r.countries.iter().collect();
    countries.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let other: u64 = countries.iter().skip(top).map(|(_, n)| **n).sum();
    let country_top: Vec<Value> = countries
        .iter()
        .take(top)
        .map(|(c, n)| json!({ "country": c, "count": n }))
        .collect();

    let countries_all: BTreeMap<&String, &u64> =
        countries.iter().take(MAX_COUNTRIES).copied().collect();

    // Validations: per-day failure rates and the 14-day totals.
    let (mut total, mut failed) = (0u64, 0u64);
    let series: Vec<Value> = r
        .validations
        .series
        .iter()
        .map(|d| {
            total += d.total;
            failed += d.failed;
            let mut v = json!(d);
            v["failure_rate"] = json!(ratio(d.failed, d.total));
            v
        })
        .collect();

    // Upgrade pipeline: licenses by trigger, and those with two or more.
    let mut by_trigger: BTreeMap<&str, u64> = BTreeMap::new();
    let mut multi = 0u64;
    for e in &r.upgrade_pipeline {
        for t in &e.triggers {
            *by_trigger.entry(t.as_str()).or_default() += 1;
        }
        multi += (e.triggers.len() >= 2) as u64;
    }

    // Notifications: by kind, by day (the 14 days up to as_of), the latest first.
    let mut by_kind: BTreeMap<&str, u64> = NotificationKind::ALL
        .iter()
        .map(|k| (k.as_str(), 0))
        .collect();
    let last_day = r
        .as_of
        .or_else(|| r.notifications.last().map(|n| n.at))
        .map(day_of);
    let mut by_day: Vec<BTreeMap<&str, u64>> = vec![by_kind.clone(); SERIES_DAYS as usize];
    for n in &r.notifications {
        let kind = n.kind.as_str();
        *by_kind.entry(kind).or_default() += 1;
        if let Some(last) = last_day {
            let back = last - day_of(n.at);
            if (0..SERIES_DAYS).contains(&back) {
                *by_day[(SERIES_DAYS - 1 - back) as usize]
                    .entry(kind)
                    .or_default() += 1;
            }
        }
    }
    let by_day: Vec<Value> = match last_day {
        Some(last) => by_day
            .into_iter()
            .enumerate()
            .map(|(i, counts)| {
                let day = last - (SERIES_DAYS - 1 - i as i32);
                json!({ "day": format_day(day), "by_kind": counts })
            })
            .collect(),
        None => Vec::new(),
    };
    let latest: Vec<_> = r.notifications.iter().rev().take(top).collect();

    json!({
        "as_of": r.as_of.map(format_rfc3339),
        "top": top,
        "events": r.events,
        "licenses": r.licenses,
        "activation": {
            "issued": r.activation.issued,
            "activated": r.activation.activated,
            "rate": r.activation.rate,
            "cohort_7d": r.activation.cohort_7d,
            "activated_within_7d": r.activation.activated_within_7d,
            "rate_7d": r.activation.rate_7d,
            "by_plan": activation_by_plan,
            "plans_omitted": activation_plans_omitted,
        },
        "dav": r.dav,
        "at_risk_licenses": r.at_risk_licenses,
        "validations": {
            "today": r.validations.today,
            "series": series,
            "last_14d": { "total": total, "failed": failed, "failure_rate": ratio(failed, total) },
        },
        "domain_utilization": utilization,
        "domain_utilization_plans_omitted": utilization_plans_omitted,
        "ttfv": r.ttfv,
        "mrr": r.mrr,
        "countries": {
            "top": country_top,
            // Every country's count, for the map: at most one entry per code the events
            // carry (ISO alpha-2), so bounded whatever the report's size.
            "all": countries_all,
            "other": other,
            "distinct": r.countries.len(),
        },
        "health": {
            "customers": r.health.customers,
            "bands": r.health.bands,
            "churn_risk": head(&r.health.churn_risk, top),
        },
        "upgrade_pipeline": {
            "by_trigger": by_trigger,
            "multi_trigger": multi,
            "licenses": head(&r.upgrade_pipeline, top),
        },
        "sharing_suspects": head(&r.sharing_suspects, top),
        "expiring_licenses": head(&r.expiring_licenses, top),
        "notifications": {
            "total": r.notifications.len(),
            "by_kind": by_kind,
            "by_day": by_day,
            "latest": latest,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::CoreConfig;
    use crate::replay::Replay;

    fn report() -> Report {
        let events = crate::sim::Simulator::history(crate::sim::SimConfig {
            customers: 150,
            seed: 5,
            ..crate::sim::SimConfig::default()
        });
        let cfg = CoreConfig::default();
        let mut replay = Replay::new();
        for e in &events {
            replay.feed_line(e.value.as_bytes(), &cfg);
        }
        replay.report(&cfg)
    }

    #[test]
    fn lists_are_cut_and_figures_add_up() {
        let r = report();
        assert!(r.health.churn_risk.len() > 3 && r.upgrade_pipeline.len() > 3);
        assert!(r.notifications.len() > 3);
        let s = summary(&r, 3);
        assert_eq!(
            s["health"]["churn_risk"]["items"].as_array().unwrap().len(),
            3
        );
        assert_eq!(
            s["health"]["churn_risk"]["total"],
            r.health.churn_risk.len()
        );
        assert_eq!(
            s["health"]["churn_risk"]["items"][0]["customer_id"],
            r.health.churn_risk[0].customer_id
        );
        assert_eq!(
            s["upgrade_pipeline"]["licenses"]["items"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(s["notifications"]["latest"].as_array().unwrap().len(), 3);
        assert_eq!(
            s["notifications"]["latest"][0]["at"],
            json!(r.notifications.last().unwrap())
                .get("at")
                .cloned()
                .unwrap()
        );
        let kinds: u64 = s["notifications"]["by_kind"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(kinds as usize, r.notifications.len());
        assert_eq!(s["notifications"]["by_day"].as_array().unwrap().len(), 14);
        assert!(s["countries"]["top"].as_array().unwrap().len() <= 3);
        let shown: u64 = s["countries"]["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum();
        let all: u64 = r.countries.values().sum();
        assert_eq!(shown + s["countries"]["other"].as_u64().unwrap(), all);
        assert_eq!(s["ttfv"]["median_seconds"], json!(r.ttfv.median_seconds));
        let total = s["validations"]["last_14d"]["total"].as_u64().unwrap();
        let sum: u64 = r.validations.series.iter().map(|d| d.total).sum();
        assert_eq!(total, sum);
        assert_eq!(s["mrr"]["movements"], json!(r.mrr.movements));
        assert_eq!(s["sharing_suspects"]["total"], r.sharing_suspects.len());
        assert_eq!(s["expiring_licenses"]["total"], r.expiring_licenses.len());
        let all: u64 = s["countries"]["all"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(all, r.countries.values().sum::<u64>());
        // The whole answer is small whatever the report's size.
        assert!(serde_json::to_vec(&summary(&r, MAX_TOP)).unwrap().len() < 256 * 1024);
    }
}
