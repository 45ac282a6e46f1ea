//! Emails end to end, against a real SMTP server (scripts/smtp_sink.py, aiosmtpd) and a
//! real Kafka broker (the decision log): fixtures arrive as their reports say, a killed
//! outbox restarts without sending twice, a dead SMTP server is waited for, 4xx are
//! retried and 5xx are not, hostile event fields are escaped or refused.
//!
//! Needs `KEYPULSE_SMTP_SINK` (a command) and `KEYPULSE_TEST_BROKERS`, as `scripts/test`
//! exports them. Without them a test prints a note and passes, unless
//! `KEYPULSE_REQUIRE_SERVICES=1`, when it fails.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::smtp::Sink;
use keypulse::config::Config;
use keypulse::core::{CoreConfig, Notification, NotificationKind};
use keypulse::email::render::message_id;
use keypulse::email::{
    DecisionLog, EntryState, KafkaLog, MemoryLog, Outbox, Outcome, Renderer, Transport,
};
use keypulse::replay::Replay;
use keypulse::sink::DecisionSink;
use mail_parser::{MessageParser, MimeHeaders};

// ---------------------------------------------------------------- services

fn missing<T>(what: &str) -> Option<T> {
    if std::env::var("KEYPULSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{what} is not set, and KEYPULSE_REQUIRE_SERVICES=1: run through scripts/test");
    }
    eprintln!("note: {what} is not set; skipping (scripts/test sets it)");
    None
}

fn sink_command() -> Option<Vec<String>> {
    match std::env::var("KEYPULSE_SMTP_SINK") {
        Ok(c) if !c.trim().is_empty() => Some(c.split_whitespace().map(String::from).collect()),
        _ => missing("KEYPULSE_SMTP_SINK"),
    }
}

fn brokers() -> Option<String> {
    match std::env::var("KEYPULSE_TEST_BROKERS") {
        Ok(b) if !b.trim().is_empty() => Some(b),
        _ => missing("KEYPULSE_TEST_BROKERS"),
    }
}

macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return,
        }
    };
}

/// One message the sink accepted.
#[derive(Debug)]
struct Received {
    rcpt_tos: Vec<String>,
    raw: Vec<u8>,
}

fn received(dir: &Path) -> Vec<Received> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.len() == 10 && n.ends_with(".eml") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let raw = std::fs::read(dir.join(&n)).expect("eml");
            let meta: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.join(n.replace(".eml", ".json"))).expect("envelope json"),
            )
            .expect("envelope");
            Received {
                rcpt_tos: meta["rcpt_tos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect(),
                raw,
            }
        })
        .collect()
}

fn sink_stats(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join(".sink-stats")).unwrap()).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

// ---------------------------------------------------------------- setup

fn config(smtp_port: u16, brokers: Option<&str>) -> Config {
    let mut c = Config::default();
    c.email.transport = "smtp".into();
    c.email.smtp.host = "127.0.0.1".into();
    c.email.smtp.port = smtp_port;
    c.email.smtp.security = "plain".into();
    c.email.smtp.timeout_secs = 5;
    c.email.retry_initial_ms = 50;
    c.email.retry_max_ms = 400;
    c.email.max_attempts = 4;
    c.email.reply_to = Some("Customer Success <success@example.com>".into());
    if let Some(b) = brokers {
        c.kafka.brokers = b.to_string();
        c.kafka.notifications_topic = format!(
            "keypulse-test-notifications-{}",
            uuid::Uuid::new_v4().simple()
        );
    }
    c.validate().expect("valid test config");
    c
}

async fn start_outbox(cfg: &Config, log: Arc<dyn DecisionLog>) -> Arc<Outbox> {
    Outbox::start(cfg, &prometheus::Registry::new(), log)
        .await
        .expect("outbox starts")
}

async fn kafka_log(cfg: &Config) -> Arc<dyn DecisionLog> {
    Arc::new(KafkaLog::connect(&cfg.kafka, 1).await.expect("kafka log"))
}

fn decisions_of(events: &[u8]) -> Vec<Notification> {
    let cfg = CoreConfig::default();
    let mut replay = Replay::new();
    replay.feed_reader(events, &cfg, |_| {}).unwrap();
    replay.decisions
}

/// The report's notifications, as `Notification`s (no facts).
fn expected_of(name: &str) -> Vec<Notification> {
    let report = common::fixture_report(name);
    serde_json::from_value(report["notifications"].clone()).expect("report notifications")
}

/// Checks one received message's structure; returns (kind, To, Message-ID, text, html).
fn check_message(r: &Received) -> (String, String, String, String, String) {
    let msg = MessageParser::default()
        .parse(&r.raw)
        .expect("the message parses");
    let ct = msg.content_type().expect("Content-Type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("alternative"));
    assert_eq!(msg.text_body_count(), 1, "one text/plain part");
    assert_eq!(msg.html_body_count(), 1, "one text/html part");
    let text_part = msg.text_bodies().next().unwrap();
    let html_part = msg.html_bodies().next().unwrap();
    assert_eq!(text_part.content_type().unwrap().subtype(), Some("plain"));
    assert_eq!(html_part.content_type().unwrap().subtype(), Some("html"));
    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.address(), Some("keypulse@example.com"));
    let reply = msg
        .header_raw("Reply-To")
        .expect("Reply-To from the config");
    assert!(reply.contains("success@example.com"), "{reply}");
    let to = msg
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .expect("To")
        .to_string();
    assert_eq!(r.rcpt_tos, vec![to.clone()], "envelope recipient = To");
    let subject = msg.subject().expect("Subject");
    assert!(subject.len() > 10, "a real subject: {subject:?}");
    let date = msg.date().expect("a valid Date");
    assert!(date.year >= 2024, "{date:?}");
    let mid = msg.message_id().expect("Message-ID").to_string();
    assert!(mid.ends_with("@keypulse"), "{mid}");
    let kind = msg
        .header_raw("X-Keypulse-Kind")
        .expect("X-Keypulse-Kind")
        .trim()
        .to_string();
    (
        kind,
        to,
        format!("<{mid}>"),
        msg.body_text(0).unwrap().into_owned(),
        msg.body_html(0).unwrap().into_owned(),
    )
}

/// Asserts the received messages are exactly `expected`, one each: kind, recipient,
/// Message-ID (so license or customer and `at`), and that the body names the license
/// (or the customer, for a churn warning).
fn assert_exactly(expected: &[Notification], got: &[Received], context: &str) {
    let mut want: BTreeMap<String, &Notification> = BTreeMap::new();
    for n in expected {
        assert!(
            want.insert(message_id(&n.idempotency_key()), n).is_none(),
            "{context}: two expected notifications with one key"
        );
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in got {
        let (kind, to, mid, text, html) = check_message(r);
        *seen.entry(mid.clone()).or_default() += 1;
        let n = want
            .get(&mid)
            .unwrap_or_else(|| panic!("{context}: unexpected email {mid} ({kind} to {to})"));
        assert_eq!(kind, n.kind.as_str(), "{context}: kind of {mid}");
        assert_eq!(to, n.to, "{context}: recipient of {mid}");
        let names = match &n.license_key {
            Some(k) => k.clone(),
            None => n.customer_id.clone(),
        };
        assert!(
            text.contains(&names),
            "{context}: text of {mid} names {names}"
        );
        assert!(
            html.contains(&names),
            "{context}: html of {mid} names {names}"
        );
    }
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "{context}: sent more than once: {dups:?}");
    let missing: Vec<_> = want.keys().filter(|k| !seen.contains_key(*k)).collect();
    assert!(missing.is_empty(), "{context}: never arrived: {missing:?}");
    assert_eq!(got.len(), expected.len(), "{context}: count");
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_arrives_as_its_report_says() {
    let sink_cmd = need!(sink_command());
    let brokers = need!(brokers());
    for name in common::fixture_names() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start(&sink_cmd, dir.path(), 0);
        let cfg = config(sink.port, Some(&brokers));
        let decisions = decisions_of(&common::fixture_events(&name));
        let expected = expected_of(&name);
        assert_eq!(
            decisions.len(),
            expected.len(),
            "{name}: the fold decides the report's notifications"
        );
        let outbox = start_outbox(&cfg, kafka_log(&cfg).await).await;
        let t0 = Instant::now();
        for n in &decisions {
            outbox.submit(n);
        }
        // a replay of the same decisions (a rebuild) sends nothing more
        for n in &decisions {
            outbox.submit(n);
        }
        let m = outbox.metrics().clone();
        wait_until("every email sent", Duration::from_secs(60), || {
            m.total(Outcome::Sent) as usize == expected.len() && outbox.depth() == 0
        })
        .await;
        let elapsed = t0.elapsed();
        let got = received(dir.path());
        assert_exactly(&expected, &got, &name);
        assert_eq!(m.total(Outcome::SkippedDuplicate) as usize, decisions.len());
        assert_eq!(m.total(Outcome::Failed) + m.total(Outcome::Refused), 0);
        eprintln!(
            "{name}: {} emails over SMTP with Kafka records in {:?} ({:.0}/s)",
            got.len(),
            elapsed,
            got.len() as f64 / elapsed.as_secs_f64()
        );
        // the outcomes are durable: a fresh reader of the topic sees every one `sent`
        let reread = kafka_log(&cfg).await.load().await.unwrap();
        assert_eq!(reread.len(), expected.len());
        assert!(reread.values().all(|e| e.state == EntryState::Sent));
        assert_eq!(
            topic_config(&brokers, &cfg.kafka.notifications_topic, "cleanup.policy").await,
            Some("compact".to_string()),
            "the decision log is created compacted"
        );
        outbox.shutdown(Duration::from_secs(2)).await;
        sink.stop();
    }
}

async fn topic_config(brokers: &str, topic: &str, key: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let res = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let r = res.into_iter().next()?.ok()?;
    r.get(key).and_then(|e| e.value.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_and_restarted_sends_each_email_once() {
    let sink_cmd = need!(sink_command());
    let brokers = need!(brokers());
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&sink_cmd, dir.path(), 0);
    let port = sink.port;
    let cfg = config(port, Some(&brokers));
    let decisions = decisions_of(&common::fixture_events("noisy"));
    let half = decisions.len() / 2;

    // 1. The first instance sends the first half.
    let a = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions[..half] {
        a.submit(n);
    }
    let ma = a.metrics().clone();
    wait_until("first half sent", Duration::from_secs(60), || {
        ma.total(Outcome::Sent) as usize == half && a.depth() == 0
    })
    .await;
    // 2. The SMTP server goes away; the fold goes on deciding; the instance retries...
    sink.stop();
    for n in &decisions[half..] {
        a.submit(n);
    }
    wait_until("retries", Duration::from_secs(20), || {
        ma.total(Outcome::Retried) >= 2
    })
    .await;
    // (its pending records are in the topic by now)
    let t0 = Instant::now();
    while kafka_log(&cfg).await.load().await.unwrap().len() < decisions.len() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "pending records never durable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and is killed: its tasks abort where they are, its producer is dropped.
    drop(a);

    // 3. Restart: SMTP back, a new outbox on the same topic, every decision re-submitted
    //    (a partition rebuilt from the start of its Kafka partition).
    let sink = Sink::start(&sink_cmd, dir.path(), port);
    let b = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions {
        b.submit(n);
    }
    let mb = b.metrics().clone();
    wait_until("everything sent", Duration::from_secs(60), || {
        received(dir.path()).len() >= decisions.len() && b.depth() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_exactly(&decisions, &received(dir.path()), "after the restart");
    assert_eq!(mb.total(Outcome::SkippedDuplicate) as usize, half);
    assert_eq!(mb.total(Outcome::Resumed) as usize, decisions.len() - half);
    assert_eq!(mb.total(Outcome::Sent) as usize, decisions.len() - half);
    b.shutdown(Duration::from_secs(2)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_an_arbitrary_moment_loses_nothing() {
    // The honest window: a kill between the SMTP server's acceptance and the `sent`
    // record's acknowledgement re-sends that one email after the restart. Nothing is lost,
    // and at most the emails in flight (one per sender) arrive twice.
    let sink_cmd = need!(sink_command());
    let brokers = need!(brokers());
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&sink_cmd, dir.path(), 0);
    let cfg = config(sink.port, Some(&brokers));
    let decisions = decisions_of(&common::fixture_events("noisy"));
    let a = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions {
        a.submit(n);
    }
    let kill_after = decisions.len() / 3;
    wait_until("a third sent", Duration::from_secs(60), || {
        received(dir.path()).len() >= kill_after
    })
    .await;
    drop(a);
    let b = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions {
        b.submit(n);
    }
    wait_until("everything sent", Duration::from_secs(60), || {
        b.depth() == 0 && received(dir.path()).len() >= decisions.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = received(dir.path());
    let mut ids: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *ids.entry(check_message(r).2).or_default() += 1;
    }
    let want: BTreeSet<String> = decisions
        .iter()
        .map(|n| message_id(&n.idempotency_key()))
        .collect();
    let missing = want.iter().filter(|k| !ids.contains_key(*k)).count();
    let twice: usize = ids.values().filter(|c| **c > 1).count();
    eprintln!(
        "arbitrary kill after {kill_after} of {}: {} arrived, {missing} missing, {twice} twice",
        decisions.len(),
        got.len()
    );
    assert_eq!(missing, 0, "nothing lost");
    assert!(ids.values().all(|c| *c <= 2));
    let senders = cfg.email.smtp.pool_max as usize;
    assert!(
        twice <= senders,
        "at most the emails in flight at the kill, one per sender: {twice}"
    );
    b.shutdown(Duration::from_secs(2)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_while_deciding_then_up_delivers_each_once() {
    let sink_cmd = need!(sink_command());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(port, None);
    let decisions = decisions_of(&common::fixture_events("small"));
    let outbox = start_outbox(&cfg, Arc::new(MemoryLog::new())).await;
    let t0 = Instant::now();
    for n in &decisions {
        outbox.submit(n);
    }
    let m = outbox.metrics().clone();
    // every sender retries more often than max_attempts: unreachable uses up no attempt
    let enough = (cfg.email.smtp.pool_max * (cfg.email.max_attempts + 1)) as u64;
    wait_until(
        "retries while SMTP is down",
        Duration::from_secs(20),
        || m.total(Outcome::Retried) >= enough,
    )
    .await;
    assert_eq!(m.total(Outcome::Sent), 0);
    assert_eq!(outbox.depth() as usize, decisions.len());
    assert_eq!(m.total(Outcome::Failed), 0);
    let sink = Sink::start(&sink_cmd, dir.path(), port);
    let down_for = t0.elapsed();
    wait_until("all sent once SMTP is up", Duration::from_secs(30), || {
        m.total(Outcome::Sent) as usize == decisions.len() && outbox.depth() == 0
    })
    .await;
    eprintln!(
        "SMTP down for {down_for:?}: {} retries, then {} emails in {:?}",
        m.total(Outcome::Retried),
        decisions.len(),
        t0.elapsed() - down_for
    );
    assert_exactly(&decisions, &received(dir.path()), "after the outage");
    outbox.shutdown(Duration::from_secs(2)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_retried_and_delivered_once() {
    let sink_cmd = need!(sink_command());
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_with(&sink_cmd, dir.path(), 0, &["--fail-first", "2"]);
    let cfg = config(sink.port, None);
    let decisions = decisions_of(&common::fixture_events("edge"));
    let outbox = start_outbox(&cfg, Arc::new(MemoryLog::new())).await;
    for n in &decisions {
        outbox.submit(n);
    }
    let m = outbox.metrics().clone();
    wait_until("all sent", Duration::from_secs(30), || {
        m.total(Outcome::Sent) as usize == decisions.len() && outbox.depth() == 0
    })
    .await;
    assert_eq!(m.total(Outcome::Retried), 2);
    assert_eq!(m.total(Outcome::Failed), 0);
    assert_exactly(&decisions, &received(dir.path()), "fail-first 2");
    let stats = sink_stats(dir.path());
    assert_eq!(stats["temp_failed"], 2);
    assert_eq!(
        stats["accepted"].as_u64().unwrap() as usize,
        decisions.len()
    );
    outbox.shutdown(Duration::from_secs(2)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_recorded_failed_and_not_retried() {
    let sink_cmd = need!(sink_command());
    let brokers = need!(brokers());
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_with(&sink_cmd, dir.path(), 0, &["--reject-all"]);
    let cfg = config(sink.port, Some(&brokers));
    let decisions = decisions_of(&common::fixture_events("edge"));
    let outbox = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions {
        outbox.submit(n);
    }
    let m = outbox.metrics().clone();
    wait_until("all failed", Duration::from_secs(30), || {
        m.total(Outcome::Failed) as usize == decisions.len() && outbox.depth() == 0
    })
    .await;
    assert_eq!(m.total(Outcome::Retried), 0);
    assert_eq!(m.total(Outcome::Sent), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = sink_stats(dir.path());
    assert_eq!(
        stats["rejected"].as_u64().unwrap() as usize,
        decisions.len(),
        "one DATA per email, no retry"
    );
    assert!(received(dir.path()).is_empty());
    // recorded durably as failed, with the server's answer
    let reread = kafka_log(&cfg).await.load().await.unwrap();
    assert_eq!(reread.len(), decisions.len());
    for e in reread.values() {
        assert_eq!(e.state, EntryState::Failed);
        assert_eq!(e.attempts, 1);
        assert!(
            e.last_error.as_deref().unwrap_or("").contains("550"),
            "{e:?}"
        );
    }
    // and a restart does not try them again
    outbox.shutdown(Duration::from_secs(2)).await;
    let again = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions {
        again.submit(n);
    }
    assert_eq!(
        again.metrics().total(Outcome::SkippedDuplicate) as usize,
        decisions.len()
    );
    again.shutdown(Duration::from_secs(1)).await;
    sink.stop();
}

fn hostile_events() -> Vec<u8> {
    use serde_json::json;
    let mut lines = Vec::new();
    let mut t = chrono::DateTime::parse_from_rfc3339("2026-10-01T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut push = |mut v: serde_json::Value| {
        t += chrono::Duration::minutes(1);
        v["ts"] = json!(t.to_rfc3339());
        lines.push(serde_json::to_string(&v).unwrap());
    };
    let long_plan = format!("<b>gold</b>{}", "Z".repeat(600));
    let customers = [
        // script in the customer id and license key, a very long plan name
        (
            "<script>alert(\"c\")</script>",
            "<img src=x onerror=alert(1)>",
            "owner@x.example",
            long_plan.as_str(),
        ),
        // CRLF in the license's email: the upgrade to it is refused
        (
            "cus_b",
            "LK-B",
            "victim@b.example\r\nBcc: evil@example.com",
            "pro",
        ),
        // CRLF in the customer id: fine in a body, refused in the churn warning's subject
        (
            "cus_c\r\nBcc: evil@example.com",
            "LK-C",
            "owner@c.example",
            "pro",
        ),
    ];
    for (c, k, email, plan) in customers {
        push(
            json!({"type": "license.issued", "customer_id": c, "license_key": k,
            "plan": plan, "domain_limit": 1, "mrr_cents": 4900, "email": email}),
        );
        push(
            json!({"type": "license.activated", "customer_id": c, "license_key": k,
            "domain": "a.example"}),
        );
        for _ in 0..11 {
            push(
                json!({"type": "license.validated", "customer_id": c, "license_key": k,
                "result": "rate_limited"}),
            );
        }
    }
    for (c, k, _, _) in [customers[0], customers[2]] {
        push(
            json!({"type": "domain.removed", "customer_id": c, "license_key": k,
            "domain": "a.example"}),
        );
    }
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_event_fields_are_escaped_or_refused_and_counted() {
    let sink_cmd = need!(sink_command());
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&sink_cmd, dir.path(), 0);
    let cfg = config(sink.port, None);
    let decisions = decisions_of(&hostile_events());
    let kinds: Vec<_> = decisions.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::Upgrade,
            NotificationKind::Upgrade,
            NotificationKind::Upgrade,
            NotificationKind::ChurnWarning,
            NotificationKind::ChurnWarning
        ],
        "{decisions:#?}"
    );
    let log = MemoryLog::new();
    let outbox = start_outbox(&cfg, Arc::new(log.clone())).await;
    for n in &decisions {
        outbox.submit(n);
    }
    let m = outbox.metrics().clone();
    wait_until("all done", Duration::from_secs(30), || outbox.depth() == 0).await;
    assert_eq!(m.get(NotificationKind::Upgrade, Outcome::Refused), 1);
    assert_eq!(m.get(NotificationKind::ChurnWarning, Outcome::Refused), 1);
    assert_eq!(m.total(Outcome::Sent), 3);
    assert!(
        m.truncated
            .with_label_values(&[NotificationKind::Upgrade.as_str()])
            .get()
            >= 1
    );
    // refusals are recorded as failed, with the reason
    let entries = log.snapshot();
    let refused: Vec<_> = entries
        .values()
        .filter(|e| e.state == EntryState::Failed)
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(refused
        .iter()
        .all(|e| e.last_error.as_deref().unwrap().contains("CR or LF")));
    let got = received(dir.path());
    assert_eq!(got.len(), 3);
    for r in &got {
        assert!(
            !r.rcpt_tos.iter().any(|t| t.contains("evil")),
            "{:?}",
            r.rcpt_tos
        );
        let raw = String::from_utf8_lossy(&r.raw);
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(!head.to_ascii_lowercase().contains("\r\nbcc:"), "{head}");
        let (_, _, _, text, html) = check_message(r);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>gold"), "{html}");
        if text.contains("<script>alert") {
            assert!(html.contains("&lt;script&gt;"), "{html}");
        }
        if text.contains("ZZZZ") {
            assert!(text.contains("Z…"), "a long plan is cut: {text}");
            assert!(!text.contains(&"Z".repeat(300)), "{text}");
        }
    }
    outbox.shutdown(Duration::from_secs(2)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_defers_without_blocking_or_dropping() {
    // The file transport and a queue of 2: submit returns at once for 73 decisions; the
    // rest are deferred and all are written.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.email.transport = "file".into();
    cfg.email.file_dir = dir.path().join("out");
    cfg.email.queue_capacity = 2;
    let decisions = decisions_of(&common::fixture_events("noisy"));
    let registry = prometheus::Registry::new();
    let outbox = Outbox::start(&cfg, &registry, Arc::new(MemoryLog::new()))
        .await
        .unwrap();
    let t0 = Instant::now();
    for n in &decisions {
        outbox.submit(n);
    }
    let submit_time = t0.elapsed();
    let m = outbox.metrics().clone();
    assert!(m.total(Outcome::Deferred) > 0);
    wait_until("all written", Duration::from_secs(30), || {
        m.total(Outcome::Sent) as usize == decisions.len() && outbox.depth() == 0
    })
    .await;
    eprintln!(
        "{} submits took {submit_time:?}; {} deferred",
        decisions.len(),
        m.total(Outcome::Deferred)
    );
    let files: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
        .collect();
    assert_eq!(files.len(), decisions.len());
    // the metrics are on the registry, with no per-customer label
    let text = {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    };
    assert!(text.contains("keypulse_emails_total{kind=\"upgrade\",outcome=\"sent\"}"));
    assert!(text.contains("keypulse_outbox_depth 0"));
    outbox.shutdown(Duration::from_secs(1)).await;
    // writing the same emails again replaces the files: still one per decision
    let renderer = Renderer::new(&cfg.email).unwrap();
    let t = Transport::file(dir.path().join("out")).unwrap();
    for n in &decisions {
        t.send(&n.idempotency_key(), &renderer.render(n).unwrap())
            .await
            .unwrap();
    }
    let count = std::fs::read_dir(dir.path().join("out")).unwrap().count();
    assert_eq!(
        count,
        decisions.len(),
        "no temp files left, no second copies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_catches_up_before_a_rebuild() {
    // B was started before A sent anything; after a rebalance hands A's partitions to B,
    // B catches up on the log and re-decides everything: nothing is sent again.
    let sink_cmd = need!(sink_command());
    let brokers = need!(brokers());
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&sink_cmd, dir.path(), 0);
    let cfg = config(sink.port, Some(&brokers));
    let decisions = decisions_of(&common::fixture_events("small"));
    let b = start_outbox(&cfg, kafka_log(&cfg).await).await;
    let a = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions {
        a.submit(n);
    }
    let ma = a.metrics().clone();
    wait_until("A sent everything", Duration::from_secs(30), || {
        ma.total(Outcome::Sent) as usize == decisions.len() && a.depth() == 0
    })
    .await;
    b.catch_up().await.unwrap();
    for n in &decisions {
        b.submit(n);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.metrics().total(Outcome::SkippedDuplicate) as usize,
        decisions.len()
    );
    assert_eq!(b.metrics().total(Outcome::Sent), 0);
    assert_exactly(&decisions, &received(dir.path()), "after the hand-over");
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_is_released_and_sent_once_by_its_new_owner() {
    // A decided everything while SMTP was down, so it holds them all pending. The
    // partitions move to B: A releases them, B catches up and rebuilds. SMTP comes back:
    // B sends each once, A sends nothing.
    let sink_cmd = need!(sink_command());
    let brokers = need!(brokers());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = config(port, Some(&brokers));
    let decisions = decisions_of(&common::fixture_events("small"));
    let a = start_outbox(&cfg, kafka_log(&cfg).await).await;
    let b = start_outbox(&cfg, kafka_log(&cfg).await).await;
    for n in &decisions {
        a.submit(n);
    }
    let ma = a.metrics().clone();
    wait_until("A retrying", Duration::from_secs(20), || {
        ma.total(Outcome::Retried) >= 4
    })
    .await;
    assert_eq!(a.release(|_| true).await, decisions.len());
    // the new owner catches up until it has read A's pending records
    let t0 = Instant::now();
    loop {
        b.catch_up().await.unwrap();
        if decisions
            .iter()
            .all(|n| b.state_of(&n.idempotency_key()) == Some(EntryState::Pending))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "B never saw A's records"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in &decisions {
        b.submit(n);
    }
    let mb = b.metrics().clone();
    assert_eq!(mb.total(Outcome::Resumed) as usize, decisions.len());
    let sink = Sink::start(&sink_cmd, dir.path(), port);
    wait_until("B sent everything", Duration::from_secs(30), || {
        mb.total(Outcome::Sent) as usize == decisions.len() && b.depth() == 0
    })
    .await;
    wait_until(
        "A dropped its released jobs",
        Duration::from_secs(10),
        || a.depth() == 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ma.total(Outcome::Sent), 0);
    assert_exactly(&decisions, &received(dir.path()), "after the release");
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_required_means_nothing_goes_out_in_clear_text() {
    // The sink offers no STARTTLS: with the default security, no email is sent, none is
    // given up, and the outbox keeps waiting for a server it may use.
    let sink_cmd = need!(sink_command());
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&sink_cmd, dir.path(), 0);
    let mut cfg = config(sink.port, None);
    cfg.email.smtp.security = "starttls".into();
    let decisions = decisions_of(&common::fixture_events("edge"));
    let outbox = start_outbox(&cfg, Arc::new(MemoryLog::new())).await;
    for n in &decisions {
        outbox.submit(n);
    }
    let m = outbox.metrics().clone();
    wait_until("retries", Duration::from_secs(20), || {
        m.total(Outcome::Retried) >= 8
    })
    .await;
    assert_eq!(m.total(Outcome::Sent), 0);
    assert_eq!(m.total(Outcome::Failed), 0);
    assert_eq!(outbox.depth() as usize, decisions.len());
    assert_eq!(sink_stats(dir.path())["data_commands"], 0);
    assert!(received(dir.path()).is_empty());
    outbox.shutdown(Duration::from_millis(100)).await;
    sink.stop();
}

// ---------------------------------------------------------------- TLS

/// A small aiosmtpd server with TLS (implicit, or STARTTLS required) and optional AUTH,
/// for the TLS paths that smtp_sink.py (plain only) does not cover. Writes N.eml files.
const TLS_SINK: &str = r#"
import asyncio, os, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult

mode, cert, key, out, user, password = sys.argv[1:7]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
count = 0

class Handler:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        tmp = os.path.join(out, ".%d.tmp" % count)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.replace(tmp, os.path.join(out, "%06d.eml" % count))
        with open(os.path.join(out, "%06d.json" % count), "w") as f:
            f.write('{"rcpt_tos": ["%s"], "tls": %s}' % (envelope.rcpt_tos[0], "true" if server.transport.get_extra_info("ssl_object") is not None else "false"))
        return "250 2.0.0 OK"

def auth(server, session, envelope, mechanism, data):
    ok = data.login.decode() == user and data.password.decode() == password
    return AuthResult(success=ok)

async def main():
    loop = asyncio.get_running_loop()
    kw = dict(hostname="tls-sink", decode_data=False)
    if user:
        kw.update(authenticator=auth, auth_require_tls=True, auth_required=True)
    if mode == "starttls":
        factory = lambda: SMTP(Handler(), tls_context=ctx, require_starttls=True, **kw)
        server = await loop.create_server(factory, "127.0.0.1", 0)
    else:
        factory = lambda: SMTP(Handler(), **kw)
        server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ctx)
    print("LISTENING 127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

/// A CA and a certificate for `localhost` signed by it (webpki refuses a self-signed
/// CA certificate used as the server's own).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=keypulse test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

fn start_tls_sink(
    python: &str,
    mode: &str,
    dir: &Path,
    out: &Path,
    user: &str,
    password: &str,
) -> Sink {
    let script = dir.join("tls_sink.py");
    std::fs::write(&script, TLS_SINK).unwrap();
    let (_, cert, key) = (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    );
    std::fs::create_dir_all(out).unwrap();
    let mut child = Command::new(python)
        .arg(&script)
        .args([
            mode,
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            out.to_str().unwrap(),
            user,
            password,
        ])
        .stdout(Stdio::piped())
        // quiet: the untrusted-certificate half of a test makes it print handshake errors
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the TLS sink");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("TLS sink said {line:?}"));
    Sink::adopt(child, port)
}

async fn tls_round_trip(mode: &str, with_auth: bool) {
    let sink_cmd = need!(sink_command());
    let python = sink_cmd[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let (ca, _, _) = make_certificates(dir.path());
    let out = dir.path().join("out");
    let (user, password) = if with_auth {
        ("mailer", "s3cret pass")
    } else {
        ("", "")
    };
    let sink = start_tls_sink(&python, mode, dir.path(), &out, user, password);
    let mut cfg = config(sink.port, None);
    cfg.email.smtp.host = "localhost".into();
    cfg.email.smtp.security = mode.into();
    cfg.email.smtp.ca_file = Some(ca);
    if with_auth {
        cfg.email.smtp.username = Some(user.into());
        cfg.email.smtp.password_env = String::new();
        let pw = dir.path().join("password");
        std::fs::write(&pw, format!("{password}\n")).unwrap();
        cfg.email.smtp.password_file = Some(pw);
    }
    let decisions = decisions_of(&common::fixture_events("edge"));
    let outbox = start_outbox(&cfg, Arc::new(MemoryLog::new())).await;
    for n in &decisions {
        outbox.submit(n);
    }
    let m = outbox.metrics().clone();
    wait_until("all sent over TLS", Duration::from_secs(30), || {
        m.total(Outcome::Sent) as usize == decisions.len() && outbox.depth() == 0
    })
    .await;
    assert_exactly(&decisions, &received(&out), mode);
    for f in std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()) {
        if f.file_name().to_string_lossy().ends_with(".json") {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
            assert_eq!(v["tls"], true, "received over TLS");
        }
    }
    outbox.shutdown(Duration::from_secs(1)).await;

    // Without the CA, the server's certificate is not trusted: nothing is sent.
    let mut untrusted = cfg.clone();
    untrusted.email.smtp.ca_file = None;
    let before = received(&out).len();
    let outbox = start_outbox(&untrusted, Arc::new(MemoryLog::new())).await;
    outbox.submit(&decisions[0]);
    let m = outbox.metrics().clone();
    wait_until("retries", Duration::from_secs(20), || {
        m.total(Outcome::Retried) >= 2
    })
    .await;
    assert_eq!(m.total(Outcome::Sent), 0);
    assert_eq!(received(&out).len(), before);
    outbox.shutdown(Duration::from_millis(100)).await;
    sink.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_auth_delivers_over_tls() {
    tls_round_trip("starttls", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers_over_tls() {
    tls_round_trip("tls", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_decisions_from_the_log_can_be_resumed_without_a_rebuild() {
    // An instance that restores its state instead of rebuilding it takes on every
    // pending decision it loaded; those already sent stay sent.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.email.transport = "file".into();
    cfg.email.file_dir = dir.path().to_path_buf();
    let decisions = decisions_of(&common::fixture_events("small"));
    let log = MemoryLog::new();
    for (i, n) in decisions.iter().enumerate() {
        let state = if i % 2 == 0 {
            EntryState::Pending
        } else {
            EntryState::Sent
        };
        log.record(
            &n.idempotency_key(),
            &keypulse::email::Entry::new(state, n.clone()),
        )
        .await
        .unwrap();
    }
    let outbox = start_outbox(&cfg, Arc::new(log.clone())).await;
    let pending = decisions.len().div_ceil(2);
    assert_eq!(outbox.resume_all_pending(), pending);
    assert_eq!(outbox.resume_all_pending(), 0, "taken on once");
    let m = outbox.metrics().clone();
    wait_until("resumed ones written", Duration::from_secs(20), || {
        m.total(Outcome::Sent) as usize == pending && outbox.depth() == 0
    })
    .await;
    for n in &decisions {
        outbox.submit(n);
    }
    assert_eq!(m.total(Outcome::SkippedDuplicate) as usize, decisions.len());
    assert!(log.snapshot().values().all(|e| e.state == EntryState::Sent));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), pending);
    outbox.shutdown(Duration::from_secs(1)).await;
}
