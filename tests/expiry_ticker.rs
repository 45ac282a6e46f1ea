//! Expiry reminders live on the wall clock (SPEC §8.5): through the service's own ticker
//! (`keypulse run`, default `--clock wall`, real Kafka from `scripts/test`), a customer
//! that never validated and one silent for 40 days both get their `expiring_soon`; and an
//! excluded test account is counted (report and `/metrics`) and reminded of nothing.

mod common;

use std::time::Duration;

use common::kafka::*;
use serde_json::{json, Value};

const DAY: i64 = 86_400;

fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn instant(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

#[test]
fn the_wall_clock_ticker_reminds_quiet_customers_of_their_expiry() {
    let Some(brokers) = brokers("the_wall_clock_ticker_reminds_quiet_customers") else {
        return;
    };
    let now = chrono::Utc::now().timestamp();
    // Expiries a few days ahead: inside the 7-day notice of a midnight already passed.
    let never_expiry = now + 3 * DAY + 3_600;
    let silent_expiry = now + 2 * DAY;
    let issued = |c: &str, at: i64, expires: i64| {
        json!({"type":"license.issued","ts":ts(at),"customer_id":c,"license_key":format!("{c}-K"),
               "plan":"starter","domain_limit":3,"mrr_cents":2900,"email":format!("o@{c}.example"),
               "expires_at":ts(expires)})
    };
    let events: Vec<Value> = vec![
        issued("never", now - 20 * DAY, never_expiry),
        issued("silent", now - 60 * DAY, silent_expiry),
        json!({"type":"license.validated","ts":ts(now - 40 * DAY),"customer_id":"silent",
               "license_key":"silent-K","result":"valid"}),
        // An expiry that went by before the customer's last event: never reminded (the
        // event's arrival ran those midnights after the expiry; the ticks come later).
        issued("gone", now - 30 * DAY, now - 25 * DAY),
        json!({"type":"license.validated","ts":ts(now - 20 * DAY),"customer_id":"gone",
               "license_key":"gone-K","result":"valid"}),
        // An excluded test account with an expiry due: counted, never reminded.
        issued("test-1", now - 20 * DAY, never_expiry),
    ];
    let text: Vec<String> = events.iter().map(Value::to_string).collect();
    let lines: Vec<&[u8]> = text.iter().map(|l| l.as_bytes()).collect();
    let topic = unique("expiry-ticker");
    create_topic(&brokers, &topic, 3);
    produce(&brokers, &topic, &lines);
    let config = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-g"),
        &format!("{topic}.dlq"),
        "[core.exclude]\ncustomer_prefixes = [\"test-\"]\n",
    );
    let mut inst = Instance::start_with("wall clock", &config, &["--clock", "wall", "--dry-run"]);
    inst.wait_ready(Duration::from_secs(180));
    let reminders = wait_for(
        "both expiry reminders in the report",
        Duration::from_secs(60),
        || {
            let (status, report) = inst.get("/api/v1/report");
            if status != 200 {
                return None;
            }
            let list: Vec<Value> = report["notifications"]
                .as_array()?
                .iter()
                .filter(|n| n["kind"] == "expiring_soon")
                .cloned()
                .collect();
            (list.len() >= 2).then_some(list)
        },
    );
    let mut customers: Vec<&str> = reminders
        .iter()
        .map(|n| n["customer_id"].as_str().unwrap())
        .collect();
    customers.sort();
    assert_eq!(customers, ["never", "silent"], "{reminders:?}");
    for n in &reminders {
        let c = n["customer_id"].as_str().unwrap();
        let expiry = if c == "never" {
            never_expiry
        } else {
            silent_expiry
        };
        let at = instant(n["at"].as_str().unwrap());
        assert_eq!(at % DAY, 0, "decided at a midnight: {n}");
        assert!(at < expiry && expiry <= at + 7 * DAY, "{n}");
        assert!(at <= now + 60, "a midnight the ticker passed: {n}");
        // The first such midnight after the customer's last event.
        assert!(
            at - DAY < expiry - 7 * DAY,
            "the first midnight within the notice: {n}"
        );
        assert_eq!(n["to"], format!("o@{c}.example"));
        assert_eq!(n["reasons"], json!(["expiring_soon"]));
    }
    let (_, report) = inst.get("/api/v1/report");
    assert_eq!(report["events"]["excluded"], 1);
    assert_eq!(report["events"]["applied"], 5);
    let (_, metrics) = inst.get_text("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "keypulse_events_excluded_total 1"),
        "{metrics}"
    );
    inst.stop(Duration::from_secs(10));
}
