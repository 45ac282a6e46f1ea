//! The service against a real Kafka broker (`KEYPULSE_TEST_BROKERS`, started by
//! `scripts/test`): fixtures produced to 6-partition topics, keyed by customer, give the
//! fixtures' reports; two instances split the work; SIGKILL and restart; dead letters.

mod common;

use std::time::Duration;

use common::kafka::*;

const READY_LIMIT: Duration = Duration::from_secs(180);

/// Produces a fixture to a fresh 6-partition topic; returns (topic, group, dlq).
fn fixture_topic(brokers: &str, name: &str) -> (String, String, String) {
    let topic = unique(name);
    create_topic(brokers, &topic, 6);
    let events = common::fixture_events(name);
    produce(brokers, &topic, &lines(&events));
    (topic.clone(), format!("{topic}-g"), format!("{topic}.dlq"))
}

#[test]
fn each_fixture_gives_its_report() {
    let Some(brokers) = brokers("each_fixture_gives_its_report") else {
        return;
    };
    for name in common::fixture_names() {
        let (topic, group, dlq) = fixture_topic(&brokers, &name);
        let mut inst = Instance::start(&name, &config_toml(&brokers, &topic, &group, &dlq, ""));
        inst.wait_ready(READY_LIMIT);
        let (status, report) = inst.get("/api/v1/report");
        assert_eq!(status, 200, "{name}: /api/v1/report");
        common::assert_same_report(&name, &common::fixture_report(&name), &report);
        let status = inst.terminate(Duration::from_secs(10));
        assert!(status.success(), "{name}: exit status {status} after SIGTERM; log tail:\n{}", inst.log_tail(20));
    }
}
