//! Durable state of `keypulse run` against the real Apache Kafka of `scripts/test`
//! (exactly-once mode, the default): a fresh instance restores from the changelog after
//! retention deleted the input's beginning, and refuses a partial rebuild; SIGKILLs under a
//! paced stream end exact, with every dead letter and decision written once; a frozen
//! instance (SIGSTOP past its session) writes nothing visible after losing its partitions;
//! a SIGTERM during a restore held by an orphaned transaction exits cleanly.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::kafka::*;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

const READY_LIMIT: Duration = Duration::from_secs(180);
const PARTITIONS: i32 = 6;

fn metric(inst: &Instance, name: &str, labels: &str) -> f64 {
    let (_, text) = inst.get_text("/metrics");
    let labels: Vec<&str> = (!labels.is_empty()).then_some(labels).into_iter().collect();
    common::smtp::metric_sum(&text, name, &labels).unwrap_or(0.0)
}

/// The `path` of every partition `/readyz` lists.
fn paths(inst: &Instance) -> Vec<String> {
    let (_, body) = inst.get("/readyz");
    body["partitions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["path"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// (low, high) watermarks of every partition of `topic`.
fn watermarks(brokers: &str, topic: &str) -> Vec<(i64, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("wm"))
        .create()
        .expect("consumer");
    (0..PARTITIONS)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
        })
        .collect()
}

/// Deletes every partition's records below half of its end offset (as retention does).
fn delete_first_half(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let mut tpl = TopicPartitionList::new();
    for (p, (_, high)) in watermarks(brokers, topic).into_iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(high / 2))
            .unwrap();
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    runtime()
        .block_on(admin.delete_records(&tpl, &opts))
        .expect("DeleteRecords");
}

/// Every record of `topic` a `read_committed` reader sees: (key, value, headers).
type Seen = (Option<Vec<u8>>, Option<Vec<u8>>, HashMap<String, String>);
fn read_all(brokers: &str, topic: &str) -> Vec<Seen> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("read"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let parts = md.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut eof = std::collections::HashSet::new();
    let mut out = Vec::new();
    let t0 = Instant::now();
    while eof.len() < parts && t0.elapsed() < Duration::from_secs(60) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().map(<[u8]>::to_vec),
                    headers,
                ));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            _ => {}
        }
    }
    assert_eq!(eof.len(), parts, "{topic}: not read to its end in 60 s");
    out
}

fn protocol_extra(protocol: &str) -> String {
    format!("properties = {{ \"group.protocol\" = \"{protocol}\" }}")
}

/// Fold a fixture, stop, delete the first half of every partition, start a fresh
/// instance of the same group: its report is the fixture's, restored from the changelog.
/// A fresh group on the same truncated topic (no changelog) refuses to rebuild.
fn retention_then_restore(protocol: &str, name: &str) {
    let test = format!("retention_then_restore_{protocol}");
    let Some(brokers) = brokers(&test) else {
        return;
    };
    let topic = unique(&format!("ret-{protocol}"));
    create_topic(&brokers, &topic, PARTITIONS);
    let events = common::fixture_events(name);
    produce(&brokers, &topic, &lines(&events));
    let group = format!("{topic}-g");
    let config = config_toml(
        &brokers,
        &topic,
        &group,
        &format!("{topic}.dlq"),
        &protocol_extra(protocol),
    );
    let expected = common::fixture_report(name);

    let mut first = Instance::start("first", &config);
    first.wait_ready(READY_LIMIT);
    common::assert_same_report(
        &format!("{test}: first"),
        &expected,
        &first.get("/api/v1/report").1,
    );
    assert_eq!(
        paths(&first),
        vec!["rebuild"; PARTITIONS as usize],
        "first start rebuilds"
    );
    first.stop(Duration::from_secs(15));
    assert!(
        first
            .log_text()
            .contains("folded state, dead letters, decisions and offsets committed"),
        "the last commit went through at shutdown; log tail:\n{}",
        first.log_tail(20)
    );

    delete_first_half(&brokers, &topic);
    let marks = watermarks(&brokers, &topic);
    assert!(
        marks.iter().all(|(low, high)| *low == high / 2 && *low > 0),
        "every partition lost its first half: {marks:?}"
    );

    // A fresh process (no local state of any kind): the changelog carries the answer.
    let mut second = Instance::start("second", &config);
    second.wait_ready(READY_LIMIT);
    common::assert_same_report(
        &format!("{test}: restored"),
        &expected,
        &second.get("/api/v1/report").1,
    );
    assert_eq!(paths(&second), vec!["changelog"; PARTITIONS as usize]);
    assert_eq!(
        metric(
            &second,
            "keypulse_restore_partitions_total",
            "path=\"changelog\""
        ),
        PARTITIONS as f64
    );
    assert_eq!(
        metric(
            &second,
            "keypulse_restore_partitions_total",
            "path=\"rebuild\""
        ),
        0.0
    );
    assert!(metric(&second, "keypulse_restore_records_total", "") > 0.0);
    // No event folded again: the input resumed where the state was.
    assert_eq!(metric(&second, "keypulse_messages_folded_total", ""), 0.0);
    second.stop(Duration::from_secs(15));

    // Another group has no changelog: rebuilding the truncated input would be partial.
    let other = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-other"),
        &format!("{topic}.dlq"),
        &protocol_extra(protocol),
    );
    let third = Instance::start("third", &other);
    wait_for("the partitions refused", READY_LIMIT, || {
        (paths(&third) == vec!["refused"; PARTITIONS as usize]).then_some(())
    });
    let (status, _) = third.get("/readyz");
    assert_eq!(status, 503, "refused partitions: not ready");
    assert_eq!(
        metric(&third, "keypulse_partitions_paused", ""),
        PARTITIONS as f64
    );
    assert_eq!(
        metric(
            &third,
            "keypulse_restore_partitions_total",
            "path=\"refused\""
        ),
        PARTITIONS as f64
    );
    assert!(third
        .log_text()
        .contains("a rebuild would give a partial state"));
}

#[test]
fn retention_then_restore_consumer_protocol() {
    retention_then_restore("consumer", "noisy");
}

#[test]
fn retention_then_restore_classic_protocol() {
    retention_then_restore("classic", "small");
}

/// `copies` copies of a fixture's log, each with its customers renamed (disjoint
/// customers, so the report is a real sum, not a duplicate).
fn many_customers(name: &str, copies: usize) -> Vec<u8> {
    let events = common::fixture_events(name);
    let mut out = Vec::with_capacity(events.len() * copies);
    for i in 0..copies {
        let renamed = String::from_utf8_lossy(&events)
            .replace("\"customer_id\":\"", &format!("\"customer_id\":\"r{i}-"));
        out.extend_from_slice(renamed.as_bytes());
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

/// A small deterministic generator (xorshift), so the kill moments are seeded.
struct Seeded(u64);
impl Seeded {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

#[test]
fn twenty_sigkills_under_a_paced_stream_end_exact() {
    let Some(brokers) = brokers("twenty_sigkills_under_a_paced_stream_end_exact") else {
        return;
    };
    let kills: usize = std::env::var("KEYPULSE_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let log = many_customers("noisy", 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, &log).unwrap();
    let expected = common::replay_file(&path, &keypulse::config::Config::default().core);
    let all: Vec<Vec<u8>> = lines(&log).iter().map(|l| l.to_vec()).collect();
    assert!(all.len() >= 200_000, "{} events", all.len());

    let topic = unique("kills");
    create_topic(&brokers, &topic, PARTITIONS);
    let dlq = format!("{topic}.dlq");
    let notifications = format!("{topic}.notifications");
    let config = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-g"),
        &dlq,
        &format!("notifications_topic = \"{notifications}\"\ninstance_id = \"killed\""),
    );
    // The paced producer: the whole log over about 60 s, so every kill lands with lag.
    let (b2, t2) = (brokers.clone(), topic.clone());
    let producer = std::thread::spawn(move || {
        let chunk = 4000;
        let pause = Duration::from_millis(60_000 * chunk as u64 / all.len() as u64);
        for c in all.chunks(chunk) {
            let refs: Vec<&[u8]> = c.iter().map(|l| l.as_slice()).collect();
            produce(&b2, &t2, &refs);
            std::thread::sleep(pause);
        }
    });
    let mut rng = Seeded(0x5eed_2026);
    for i in 0..kills {
        let mut inst = Instance::start(&format!("run {i}"), &config);
        std::thread::sleep(Duration::from_millis(rng.next_ms(1_500, 4_000)));
        inst.child.kill().expect("SIGKILL");
        let _ = inst.child.wait();
    }
    producer.join().expect("producer");
    let mut last = Instance::start("last", &config);
    last.wait_ready(READY_LIMIT);
    let report = last.get("/api/v1/report").1;
    common::assert_same_report("after 20 SIGKILLs", &expected, &report);
    assert!(
        metric(
            &last,
            "keypulse_restore_partitions_total",
            "path=\"changelog\""
        ) > 0.0,
        "the last run restored from the changelog"
    );
    last.stop(Duration::from_secs(15));

    // Every rejected message has exactly one dead letter.
    let letters = read_all(&brokers, &dlq);
    let mut origins = HashMap::new();
    for (_, _, h) in &letters {
        *origins
            .entry((h["partition"].clone(), h["offset"].clone()))
            .or_insert(0) += 1;
    }
    let twice: Vec<_> = origins.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dead letters written twice: {twice:?}");
    assert_eq!(
        letters.len() as u64,
        expected["events"]["rejected"].as_u64().unwrap(),
        "one dead letter per rejected message"
    );
    // Every decision has its record, and none was sent twice.
    let mut sent: HashMap<String, usize> = HashMap::new();
    let mut keys = std::collections::HashSet::new();
    for (k, v, _) in read_all(&brokers, &notifications) {
        let (Some(k), Some(v)) = (k, v) else { continue };
        let key = String::from_utf8_lossy(&k).into_owned();
        let entry: Value = serde_json::from_slice(&v).unwrap();
        if entry["state"] == "sent" {
            *sent.entry(key.clone()).or_insert(0) += 1;
        }
        keys.insert(key);
    }
    let twice: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "emails sent twice: {twice:?}");
    let decided = expected["notifications"].as_array().map_or(0, Vec::len);
    assert_eq!(keys.len(), decided, "one decision record per decision");
}

#[test]
fn a_frozen_instance_writes_nothing_after_losing_its_partitions() {
    let Some(brokers) = brokers("a_frozen_instance_writes_nothing_after_losing_its_partitions")
    else {
        return;
    };
    let name = "small";
    let topic = unique("zombie");
    create_topic(&brokers, &topic, PARTITIONS);
    let events = common::fixture_events(name);
    let all = lines(&events);
    let half = all.len() / 2;
    produce(&brokers, &topic, &all[..half]);
    let config = |id: &str| {
        config_toml(
            &brokers,
            &topic,
            &format!("{topic}-g"),
            &format!("{topic}.dlq"),
            &format!("instance_id = \"{id}\""),
        )
    };
    let mut a = Instance::start("a", &config("a"));
    a.wait_ready(READY_LIMIT);
    let mut b = Instance::start("b", &config("b"));
    wait_for("both instances to hold partitions", READY_LIMIT, || {
        (!paths(&a).is_empty() && !paths(&b).is_empty()).then_some(())
    });
    b.wait_ready(READY_LIMIT);
    unsafe_kill(a.child.id(), "STOP");
    produce(&brokers, &topic, &all[half..]);
    // Past the 10 s session timeout, b owns every partition.
    wait_for("b to take every partition", Duration::from_secs(90), || {
        (paths(&b).len() == PARTITIONS as usize).then_some(())
    });
    b.wait_ready(READY_LIMIT);
    unsafe_kill(a.child.id(), "CONT");
    // The thawed instance finds out it lost its partitions; whatever it tries to commit
    // with its stale epoch aborts. Let it run a while, then stop it.
    std::thread::sleep(Duration::from_secs(5));
    a.stop(Duration::from_secs(20));
    wait_for(
        "b to hold every partition again",
        Duration::from_secs(90),
        || (paths(&b).len() == PARTITIONS as usize).then_some(()),
    );
    b.wait_ready(READY_LIMIT);
    common::assert_same_report(
        "the group after a zombie",
        &common::fixture_report(name),
        &b.get("/api/v1/report").1,
    );
    // And what the changelog holds is exact too: a fresh instance restores it.
    b.stop(Duration::from_secs(20));
    let mut c = Instance::start("c", &config("c"));
    c.wait_ready(READY_LIMIT);
    assert_eq!(paths(&c), vec!["changelog"; PARTITIONS as usize]);
    common::assert_same_report(
        "restored after a zombie",
        &common::fixture_report(name),
        &c.get("/api/v1/report").1,
    );
}

#[test]
fn a_compacted_changelog_restores_exactly() {
    let Some(brokers) = brokers("a_compacted_changelog_restores_exactly") else {
        return;
    };
    let name = "small";
    let topic = unique("compact");
    create_topic(&brokers, &topic, PARTITIONS);
    let group = format!("{topic}-g");
    // Small segments that roll at every commit, cleaned as soon as anything is dirty.
    let config = config_toml(
        &brokers,
        &topic,
        &group,
        &format!("{topic}.dlq"),
        "changelog_topic_config = { \"segment.bytes\" = \"1048576\", \"segment.ms\" = \"100\", \
         \"min.cleanable.dirty.ratio\" = \"0.01\", \"delete.retention.ms\" = \"100\" }",
    );
    let events = common::fixture_events(name);
    let all = lines(&events);
    let mut first = Instance::start("first", &config);
    // Many commits, each rewriting the input offset of every partition it touches.
    for chunk in all.chunks(all.len() / 12 + 1) {
        produce(&brokers, &topic, chunk);
        std::thread::sleep(Duration::from_millis(700));
    }
    first.wait_ready(READY_LIMIT);
    let commits = metric(
        &first,
        "keypulse_transactions_total",
        "outcome=\"committed\"",
    );
    assert!(commits >= 10.0, "{commits} commits");
    first.stop(Duration::from_secs(15));

    let changelog = format!("{topic}-{group}-changelog");
    let offset_key = b"p/input-offset".to_vec();
    let marks = watermarks(&brokers, &changelog);
    let appended: i64 = marks.iter().map(|(_, h)| h).sum();
    // Cleaning ran: the input offset, written at every commit of a partition, is left
    // with at most its latest values (the active segment is never cleaned).
    let left = wait_for(
        "the cleaner to compact the changelog",
        Duration::from_secs(90),
        || {
            let records = read_all(&brokers, &changelog);
            let offsets = records
                .iter()
                .filter(|(k, _, _)| k.as_deref() == Some(&offset_key[..]))
                .count();
            (offsets <= 2 * PARTITIONS as usize).then_some(records.len())
        },
    );
    assert!(
        (left as i64) < appended / 2,
        "{left} records left of {appended} offsets appended"
    );
    let mut second = Instance::start("second", &config);
    second.wait_ready(READY_LIMIT);
    assert_eq!(paths(&second), vec!["changelog"; PARTITIONS as usize]);
    common::assert_same_report(
        "restored from a compacted changelog",
        &common::fixture_report(name),
        &second.get("/api/v1/report").1,
    );
}

/// SIGTERM while a restore waits on a transaction left open on the changelog (a killed
/// instance's) exits cleanly: the restore is cancelled, not waited out (the shutdown
/// watchdog would exit 1 after 9.5 s), and the next owner restores the partitions exactly.
#[test]
fn sigterm_during_a_held_restore_exits_cleanly() {
    let Some(brokers) = brokers("sigterm_during_a_held_restore_exits_cleanly") else {
        return;
    };
    let name = "small";
    let topic = unique("held");
    create_topic(&brokers, &topic, 2);
    let events = common::fixture_events(name);
    produce(&brokers, &topic, &lines(&events));
    let changelog = format!("{topic}-cl");
    let config = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-g"),
        &format!("{topic}.dlq"),
        &format!("changelog_topic = \"{changelog}\""),
    );
    let mut first = Instance::start("first", &config);
    first.wait_ready(READY_LIMIT);
    first.stop(Duration::from_secs(15));

    // The orphan: the coordinator would abort its transaction only after a minute.
    let t = Duration::from_secs(30);
    let orphan: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", unique("held-orphan"))
        .set("transaction.timeout.ms", "60000")
        .create()
        .expect("producer");
    orphan.init_transactions(t).expect("init_transactions");
    orphan.begin_transaction().expect("begin");
    orphan
        .send(
            BaseRecord::to(&changelog)
                .partition(0)
                .key(&b"c/held"[..])
                .payload(&b"uncommitted"[..]),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    orphan.flush(t).expect("flush");

    let mut second = Instance::start("second", &config);
    wait_for("the restore to start", READY_LIMIT, || {
        second.log_text().contains("\"restoring: ").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(second.get("/readyz").0, 503, "not ready while restoring");
    second.stop(Duration::from_secs(15));
    assert!(
        second
            .log_text()
            .contains("restore cancelled: shutting down"),
        "the restore was cancelled; log tail:\n{}",
        second.log_tail(30)
    );
    orphan.abort_transaction(t).expect("abort");

    let mut third = Instance::start("third", &config);
    third.wait_ready(READY_LIMIT);
    assert_eq!(paths(&third), vec!["changelog"; 2]);
    common::assert_same_report(
        "restored after a cancelled restore",
        &common::fixture_report(name),
        &third.get("/api/v1/report").1,
    );
    third.stop(Duration::from_secs(15));
}
