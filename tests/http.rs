//! The HTTP side of `keypulse run`: `/metrics` passes `promtool check metrics` and carries
//! no customer id, license key, email or domain; the API endpoints; bad configurations
//! fail with a clear error, not a panic. Hostile clients (slowloris, no or wrong token,
//! paging and bad queries) are in `http/hardening.rs`.

mod common;
#[path = "http/hardening.rs"]
mod hardening;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kafka::*;
use serde_json::Value;

/// Every customer id, license key, email and domain in a fixture.
fn identifiers(events: &[u8]) -> HashSet<String> {
    let mut out = HashSet::new();
    for line in lines(events) {
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        for k in ["customer_id", "license_key", "email", "domain"] {
            if let Some(s) = m.get(k).and_then(|v| v.as_str()) {
                if !s.is_empty() {
                    out.insert(s.to_string());
                }
            }
        }
    }
    out
}

/// The label values of every sample line.
fn label_values(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(open) = line.find('{') else { continue };
        let Some(close) = line.rfind('}') else {
            continue;
        };
        let name = &line[..open];
        for pair in line[open + 1..close].split("\",") {
            if let Some((_, v)) = pair.split_once("=\"") {
                out.push((name.to_string(), v.trim_end_matches('"').to_string()));
            }
        }
    }
    out
}

#[test]
fn metrics_pass_promtool_and_carry_no_identifiers_and_the_api_answers() {
    let Some(brokers) = brokers("metrics_pass_promtool_and_carry_no_identifiers") else {
        return;
    };
    let name = "noisy";
    let topic = unique("http");
    create_topic(&brokers, &topic, 6);
    let events = common::fixture_events(name);
    produce(&brokers, &topic, &lines(&events));
    let config = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-g"),
        &format!("{topic}.dlq"),
        "",
    );
    let mut inst = Instance::start("http", &config);
    inst.wait_ready(Duration::from_secs(180));
    let expected = common::fixture_report(name);

    // /metrics: the families, after a refresh that saw the whole fixture.
    let text = wait_for(
        "gauges reflecting the fixture",
        Duration::from_secs(30),
        || {
            let (s, text) = inst.get_text("/metrics");
            (s == 200 && text.contains("keypulse_ready 1") && text.contains("keypulse_licenses{"))
                .then_some(text)
        },
    );
    for family in [
        "keypulse_licenses{",
        "keypulse_licenses_issued{",
        "keypulse_licenses_activated{",
        "keypulse_activation_cohort_7d{",
        "keypulse_activation_within_7d{",
        "keypulse_activation_ratio ",
        "keypulse_activation_by_plan_ratio{",
        "keypulse_dav_today ",
        "keypulse_dav_last_7d ",
        "keypulse_dav_prev_7d ",
        "keypulse_at_risk_licenses ",
        "keypulse_validations_total{",
        "keypulse_validations_today{",
        "keypulse_domain_licenses{",
        "keypulse_domain_utilization_mean_ratio{",
        "keypulse_domain_near_limit_licenses{",
        "keypulse_domain_at_limit_licenses{",
        "keypulse_domain_over_provisioned_licenses{",
        "keypulse_ttfv_licenses{",
        "keypulse_mrr_cents ",
        "keypulse_mrr_month_ago_cents ",
        "keypulse_validations_by_country_total{",
        "keypulse_health_customers{",
        "keypulse_churn_risk_customers ",
        "keypulse_upgrade_pipeline_licenses{",
        "keypulse_notifications_decided_total{",
        "keypulse_events_total{",
        "keypulse_events_rejected_total{",
        "keypulse_events_duplicate_total ",
        "keypulse_consumer_lag_messages{",
        "keypulse_event_time_lag_seconds ",
        "keypulse_fold_latency_seconds_bucket{",
        "keypulse_state_licenses ",
        "keypulse_state_customers ",
        "keypulse_state_bytes ",
        "keypulse_assigned_partitions 6",
        "keypulse_ready 1",
    ] {
        assert!(text.contains(family), "/metrics lacks {family}");
    }
    assert!(!text.contains("NaN"), "/metrics exports NaN");
    let total: u64 = expected["licenses"]["total"].as_u64().unwrap();
    let exported: f64 = text
        .lines()
        .filter(|l| l.starts_with("keypulse_licenses{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert_eq!(
        exported as u64, total,
        "keypulse_licenses adds up to licenses.total"
    );

    // No label value is an identifier of the fixture.
    let ids = identifiers(&events);
    assert!(!ids.is_empty());
    for (metric, value) in label_values(&text) {
        assert!(
            !ids.contains(&value),
            "{metric} carries the identifier {value:?}"
        );
    }

    // promtool
    match std::env::var("KEYPULSE_PROMTOOL") {
        Ok(promtool) => {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("metrics.txt");
            std::fs::write(&file, &text).unwrap();
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("\"$0\" check metrics < '{}'", file.display()))
                .arg(&promtool)
                .output()
                .expect("run promtool");
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => {
            if std::env::var("KEYPULSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("KEYPULSE_PROMTOOL is not set but KEYPULSE_REQUIRE_SERVICES=1");
            }
            eprintln!("note: promtool check skipped: KEYPULSE_PROMTOOL is not set");
        }
    }

    // The API.
    let (s, churn) = inst.get("/api/v1/churn-risk");
    assert_eq!(s, 200);
    assert_eq!(churn["churn_risk"], expected["health"]["churn_risk"]);
    let (s, pipeline) = inst.get("/api/v1/upgrade-pipeline");
    assert_eq!(s, 200);
    assert_eq!(pipeline["upgrade_pipeline"], expected["upgrade_pipeline"]);
    let (s, suspects) = inst.get("/api/v1/sharing-suspects");
    assert_eq!(s, 200);
    assert_eq!(suspects["sharing_suspects"], expected["sharing_suspects"]);
    assert!(!suspects["sharing_suspects"].as_array().unwrap().is_empty());
    let (s, _) = inst.get("/api/v1/customers/no-such-customer");
    assert_eq!(s, 404);
    let at_risk = &expected["health"]["churn_risk"][0];
    let id = at_risk["customer_id"]
        .as_str()
        .expect("a churn-risk customer in the fixture");
    let (s, c) = inst.get(&format!("/api/v1/customers/{id}"));
    assert_eq!(s, 200, "{c}");
    let c = &c["customer"];
    assert_eq!(c["customer_id"], id);
    assert_eq!(c["health"]["score"], at_risk["score"]);
    assert_eq!(c["health"]["reasons"], at_risk["reasons"]);
    let points: u64 = c["health"]["penalties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["points"].as_u64().unwrap())
        .sum();
    assert_eq!(
        100u64.saturating_sub(points),
        at_risk["score"].as_u64().unwrap()
    );
    let licenses = c["licenses"].as_array().unwrap();
    assert!(!licenses.is_empty());
    for key in [
        "license_key",
        "plan",
        "status",
        "mrr_cents",
        "domains_used",
        "domain_limit",
        "last_validation",
    ] {
        assert!(licenses[0].get(key).is_some(), "license view lacks {key}");
    }
    let mine = expected["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["customer_id"] == id)
        .count();
    assert_eq!(c["notifications"].as_array().unwrap().len(), mine);
    let (s, _) = inst.get("/api/v1/report?as_of=yesterday");
    assert_eq!(s, 400);
    let (s, _) = inst.get("/healthz");
    assert_eq!(s, 200);
    inst.stop(Duration::from_secs(10));
}

/// Runs `keypulse --config FILE run` and expects a quick, clear failure.
fn expect_failure(config: &str, limit: Duration, must_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keypulse.toml");
    std::fs::write(&path, config).unwrap();
    let t0 = Instant::now();
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("keypulse did not fail within {limit:?} (expected an error naming {must_name})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        !status.success(),
        "expected a failure, got {status}; stderr:\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "a panic instead of an error:\n{err}"
    );
    assert!(
        err.contains(must_name),
        "the error does not name {must_name}:\n{err}"
    );
}

#[test]
fn an_unknown_key_is_named() {
    expect_failure(
        "[kafka]\nbrokerz = \"127.0.0.1:9092\"\n",
        Duration::from_secs(10),
        "brokerz",
    );
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    expect_failure(
        &format!("[http]\nbind = \"{addr}\"\n[kafka]\nbrokers = \"127.0.0.1:1\"\n"),
        Duration::from_secs(10),
        "http.bind",
    );
}

#[test]
fn an_unreachable_broker_is_named_within_a_bounded_time() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    expect_failure(
        &format!(
            "[http]\nbind = \"127.0.0.1:0\"\n[kafka]\nbrokers = \"127.0.0.1:{port}\"\nconnect_timeout_ms = 3000\n"
        ),
        Duration::from_secs(20),
        "kafka.brokers",
    );
}
