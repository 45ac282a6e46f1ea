//! The service against a real Kafka broker (`KEYPULSE_TEST_BROKERS`, started by
//! `scripts/test`): fixtures produced to 6-partition topics, keyed by customer, give the
//! fixtures' reports; two instances split the work; SIGKILL and restart; dead letters.

mod common;

use std::time::Duration;

use common::kafka::*;
use serde_json::Value;

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
        // Periodic commits (every 500 ms here) are counted while the service runs.
        let ok = wait_for(
            "a counted periodic offset commit",
            Duration::from_secs(30),
            || {
                let (_, text) = inst.get_text("/metrics");
                labelled_value(&text, "keypulse_offset_commits_total", "outcome=\"ok\"")
                    .filter(|n| *n > 0.0)
            },
        );
        assert!(ok >= 1.0, "{name}: offset commits ok = {ok}");
        let status = inst.terminate(Duration::from_secs(10));
        assert!(
            status.success(),
            "{name}: exit status {status} after SIGTERM; log tail:\n{}",
            inst.log_tail(20)
        );
    }
}

/// Keys whose values are ratios or labels derived from the counts: not additive.
const DERIVED: [&str; 8] = [
    "rate",
    "rate_7d",
    "trend_ratio",
    "trend",
    "failure_rate",
    "mean",
    "mom_change",
    "median_seconds",
];

/// Adds two instances' reports: counts add up, lists are concatenated; derived figures
/// are dropped (they follow from the counts).
fn add_reports(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut out = serde_json::Map::new();
            for k in x.keys().chain(y.keys()) {
                if out.contains_key(k) || DERIVED.contains(&k.as_str()) {
                    continue;
                }
                let v = match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if k == "as_of" => {
                        assert_eq!(p, q, "both reports must be at the same as_of");
                        p.clone()
                    }
                    (Some(p), Some(q)) => add_reports(p, q),
                    (Some(p), None) | (None, Some(p)) => strip(p),
                    (None, None) => unreachable!(),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        (Value::Array(x), Value::Array(y)) => {
            let by_day = x
                .first()
                .or(y.first())
                .is_some_and(|e| e.get("day").is_some());
            if by_day {
                assert_eq!(x.len(), y.len(), "series of different lengths");
                Value::Array(x.iter().zip(y).map(|(p, q)| add_reports(p, q)).collect())
            } else {
                Value::Array(x.iter().chain(y).cloned().collect())
            }
        }
        (Value::Number(p), Value::Number(q)) => {
            Value::from(p.as_i64().expect("integer count") + q.as_i64().expect("integer count"))
        }
        (Value::String(p), Value::String(q)) => {
            assert_eq!(p, q, "strings differ between instances");
            a.clone()
        }
        (Value::Null, other) | (other, Value::Null) => other.clone(),
        _ => panic!("cannot add {a} and {b}"),
    }
}

/// Drops the derived figures.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !DERIVED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        _ => v.clone(),
    }
}

/// Sorts the report's lists as SPEC §3 says, so a union can be compared.
fn sort_lists(r: &mut Value) {
    let key_str = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    if let Some(a) = r["health"]["churn_risk"].as_array_mut() {
        a.sort_by_key(|e| (e["score"].as_i64(), key_str(e, "customer_id")));
    }
    if let Some(a) = r["upgrade_pipeline"].as_array_mut() {
        a.sort_by_key(|e| {
            (
                -(e["triggers"].as_array().map_or(0, |t| t.len()) as i64),
                key_str(e, "license_key"),
                key_str(e, "customer_id"),
            )
        });
    }
    if let Some(a) = r["sharing_suspects"].as_array_mut() {
        a.sort_by_key(|e| {
            (
                -e["domains"].as_i64().unwrap_or(0),
                -e["mismatches"].as_i64().unwrap_or(0),
                key_str(e, "license_key"),
                key_str(e, "customer_id"),
            )
        });
    }
    if let Some(a) = r["notifications"].as_array_mut() {
        a.sort_by_key(|e| {
            let at = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().unwrap_or(""))
                .map(|d| d.timestamp_micros())
                .unwrap_or(0);
            (
                at,
                key_str(e, "customer_id"),
                key_str(e, "kind"),
                e["license_key"].as_str().map(String::from),
            )
        });
    }
}

fn partitions_of(inst: &Instance) -> Option<Vec<i64>> {
    let (status, body) = inst.get("/readyz");
    if status != 200 {
        return None;
    }
    let mut p: Vec<i64> = body["partitions"]
        .as_array()?
        .iter()
        .filter_map(|p| p["partition"].as_i64())
        .collect();
    p.sort();
    Some(p)
}

#[test]
fn two_instances_split_the_partitions_and_add_up() {
    let Some(brokers) = brokers("two_instances_split_the_partitions_and_add_up") else {
        return;
    };
    let name = "noisy";
    let (topic, group, dlq) = fixture_topic(&brokers, name);
    let config = config_toml(&brokers, &topic, &group, &dlq, "");
    let mut a = Instance::start("instance A", &config);
    a.wait_ready(READY_LIMIT);
    let mut b = Instance::start("instance B", &config);
    b.wait_ready(READY_LIMIT);
    let expected = common::fixture_report(name);
    let as_of = expected["as_of"].as_str().unwrap().to_string();
    // Wait for a stable split: both ready, disjoint, covering all 6 partitions, unchanged
    // across the two report requests.
    let (ra, rb, pa, pb) = wait_for(
        "a stable split of 6 partitions over A and B",
        READY_LIMIT,
        || {
            let pa = partitions_of(&a)?;
            let pb = partitions_of(&b)?;
            let mut all: Vec<i64> = pa.iter().chain(&pb).copied().collect();
            all.sort();
            if pa.is_empty() || pb.is_empty() || all != (0..6).collect::<Vec<_>>() {
                return None;
            }
            // Each instance's own share (SPEC §8.8: without `scope=local` both answer
            // for the whole group).
            let q = format!(
                "/api/v1/report?scope=local&as_of={}",
                as_of.replace('+', "%2B")
            );
            let (sa, ra) = a.get(&q);
            let (sb, rb) = b.get(&q);
            if sa != 200 || sb != 200 {
                return None;
            }
            (partitions_of(&a)? == pa && partitions_of(&b)? == pb).then_some((ra, rb, pa, pb))
        },
    );
    eprintln!("A holds partitions {pa:?}, B holds {pb:?}");
    assert!(
        ra["events"]["applied"].as_i64().unwrap() > 0,
        "A folded nothing"
    );
    assert!(
        rb["events"]["applied"].as_i64().unwrap() > 0,
        "B folded nothing"
    );
    let mut sum = add_reports(&ra, &rb);
    sort_lists(&mut sum);
    let mut want = strip(&expected);
    sort_lists(&mut want);
    common::assert_same_report("A + B", &want, &sum);
    a.stop(Duration::from_secs(10));
    b.stop(Duration::from_secs(10));
}

#[test]
fn sigkill_mid_stream_then_restart_ends_exact() {
    let Some(brokers) = brokers("sigkill_mid_stream_then_restart_ends_exact") else {
        return;
    };
    let name = "noisy";
    let topic = unique("kill");
    create_topic(&brokers, &topic, 6);
    let events = common::fixture_events(name);
    let all = lines(&events);
    let half = all.len() / 2;
    produce(&brokers, &topic, &all[..half]);
    let config = config_toml(
        &brokers,
        &topic,
        &format!("{topic}-g"),
        &format!("{topic}.dlq"),
        "",
    );
    let mut first = Instance::start("first run", &config);
    // Wait until it has folded part of the first half.
    wait_for("the first run to fold some messages", READY_LIMIT, || {
        let (_, text) = first.get_text("/metrics");
        let folded = metric_value(&text, "keypulse_messages_folded_total")?;
        (folded >= 1000.0).then_some(())
    });
    // Produce the second half while the first run consumes, and kill it mid-stream.
    let b2 = brokers.clone();
    let t2 = topic.clone();
    let rest: Vec<Vec<u8>> = all[half..].iter().map(|l| l.to_vec()).collect();
    let producer = std::thread::spawn(move || {
        let rest: Vec<&[u8]> = rest.iter().map(|l| l.as_slice()).collect();
        produce(&b2, &t2, &rest);
    });
    std::thread::sleep(Duration::from_millis(300));
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    eprintln!("first run killed; log tail:\n{}", first.log_tail(5));
    producer.join().expect("producer thread");
    let mut second = Instance::start("second run", &config);
    second.wait_ready(READY_LIMIT);
    let (_, report) = second.get("/api/v1/report");
    common::assert_same_report(
        "after SIGKILL and restart",
        &common::fixture_report(name),
        &report,
    );
    second.stop(Duration::from_secs(10));
}

/// The value of an unlabelled metric in a Prometheus text exposition.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// The value of one labelled series (`labels` as written, e.g. `outcome="ok"`).
fn labelled_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn malformed_messages_go_to_the_dead_letter_topic() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let Some(brokers) = brokers("malformed_messages_go_to_the_dead_letter_topic") else {
        return;
    };
    let topic = unique("dlq");
    let dlq = format!("{topic}.dlq");
    create_topic(&brokers, &topic, 6);
    create_topic(&brokers, &dlq, 1);
    let events = common::fixture_events("edge");
    let mut input: Vec<Vec<u8>> = lines(&events).iter().map(|l| l.to_vec()).collect();
    let bad: [&[u8]; 5] = [
        b"not json at all",
        b"[1,2,3]",
        br#"{"type":"license.issued","ts":"2026-11-01T00:00:00Z","customer_id":"cx","license_key":"kx","plan":"pro","domain_limit":-1,"mrr_cents":100}"#,
        br#"{"type":"license.exploded","ts":"2026-11-01T00:00:00Z","customer_id":"cx"}"#,
        br#"{"type":"payment.failed","ts":"yesterday","customer_id":"cx"}"#,
    ];
    for (i, b) in bad.iter().enumerate() {
        input.insert(i * 17 + 3, b.to_vec());
    }
    // A valid event but for its size (100 KiB > core.max_event_bytes): `too_large`, and its
    // copy cut to fit the dead-letter topic, with its original size in a header.
    let huge = format!(
        r#"{{"type":"payment.failed","ts":"2026-11-01T00:00:00Z","customer_id":"cx","pad":"{}"}}"#,
        "x".repeat(100 * 1024)
    );
    input.insert(40, huge.clone().into_bytes());
    let refs: Vec<&[u8]> = input.iter().map(|l| l.as_slice()).collect();
    produce(&brokers, &topic, &refs);
    // The expected report: the same lines replayed.
    let cfg = keypulse::core::CoreConfig::default();
    let mut replay = keypulse::replay::Replay::new();
    for l in &refs {
        replay.feed_line(l, &cfg);
    }
    let expected = serde_json::to_value(replay.report(&cfg)).unwrap();
    let rejected: Vec<(Vec<u8>, &'static str)> = refs
        .iter()
        .filter_map(|l| {
            keypulse::core::decode_bounded(l, cfg.max_event_bytes)
                .err()
                .map(|r| (l.to_vec(), r.reason.as_str()))
        })
        .collect();
    assert!(rejected.len() > bad.len());
    assert!(rejected.iter().any(|(_, r)| *r == "too_large"));

    let config = config_toml(&brokers, &topic, &format!("{topic}-g"), &dlq, "");
    let mut inst = Instance::start("dlq", &config);
    inst.wait_ready(READY_LIMIT);
    let (_, report) = inst.get("/api/v1/report");
    common::assert_same_report("edge + malformed", &expected, &report);

    // Every rejected message is in the dead-letter topic, with its reason and origin.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&dlq, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut got: Vec<(Vec<u8>, String, String, String)> = Vec::new();
    let mut original_sizes: Vec<(String, String)> = Vec::new();
    let t0 = std::time::Instant::now();
    while got.len() < rejected.len() && t0.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let h = m.headers().expect("dead letter headers");
            let header = |k: &str| {
                h.iter()
                    .find(|x| x.key == k)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).to_string())
                    .unwrap_or_default()
            };
            assert_eq!(header("topic"), topic);
            assert!(header("partition").parse::<i32>().is_ok());
            assert!(header("offset").parse::<i64>().is_ok());
            let key = m
                .key()
                .map(|k| String::from_utf8_lossy(k).to_string())
                .unwrap_or_default();
            if !header("original_size").is_empty() {
                original_sizes.push((header("reason"), header("original_size")));
            }
            got.push((
                m.payload().unwrap_or_default().to_vec(),
                header("reason"),
                header("field"),
                key,
            ));
        }
    }
    // The copies are the originals, the too-large one cut to its first 64 KiB.
    let cut = keypulse::kafka::dlq::MAX_VALUE_BYTES;
    let mut want: Vec<(Vec<u8>, String)> = rejected
        .iter()
        .map(|(l, r)| (l[..l.len().min(cut)].to_vec(), r.to_string()))
        .collect();
    let mut have: Vec<(Vec<u8>, String)> = got
        .iter()
        .map(|(p, r, _, _)| (p.clone(), r.clone()))
        .collect();
    want.sort();
    have.sort();
    assert_eq!(
        have.len(),
        want.len(),
        "dead-letter copies: {} of {}",
        have.len(),
        want.len()
    );
    assert_eq!(have, want, "dead-letter payloads and reasons");
    assert_eq!(
        original_sizes,
        vec![("too_large".to_string(), huge.len().to_string())],
        "only the cut copy carries its original size"
    );
    for (payload, reason, _, key) in &got {
        if reason == "too_large" {
            assert_eq!(payload.len(), cut);
            assert!(huge.as_bytes().starts_with(payload));
            assert_eq!(key, "cx", "a copy is keyed as it came");
        } else {
            assert_eq!(key, &key_of(payload), "a copy is keyed as it came");
        }
    }
    assert_eq!(inst.get("/healthz").0, 200, "the service stays up");
    inst.stop(Duration::from_secs(10));
}

/// On librdkafka's mock cluster (in this process, so the service runs in-process too):
/// the only broker goes down for 10 s mid-stream; the service recovers by itself and the
/// report is exact.
#[test]
fn mock_cluster_broker_down_for_10_s_then_exact() {
    use keypulse::kafka::fold::ClockMode;
    use keypulse::service::{RunOptions, Service};
    use rdkafka::mocking::MockCluster;
    use std::sync::Arc;

    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let name = "small";
    let mock = MockCluster::new(1).expect("mock cluster");
    let topic = "events";
    mock.create_topic(topic, 6, 1).expect("mock topic");
    mock.create_topic("events.dlq", 1, 1)
        .expect("mock dlq topic");
    let bootstrap = mock.bootstrap_servers();
    let events = common::fixture_events(name);
    let all = lines(&events);
    let half = all.len() / 2;
    produce(&bootstrap, topic, &all[..half]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = keypulse::config::Config::from_toml(&config_toml(
        &bootstrap,
        topic,
        "mock-group",
        "events.dlq",
        // the mock cluster has no compaction: at-least-once mode
        "exactly_once = false",
    ))
    .unwrap();
    let metrics = Arc::new(keypulse::metrics::Metrics::new().unwrap());
    let service = rt
        .block_on(Service::start(
            config,
            RunOptions {
                clock: ClockMode::Event,
            },
            Arc::new(keypulse::sink::LogOnlySink),
            metrics,
        ))
        .expect("service starts on the mock cluster");
    let app = service.app().clone();
    wait_for(
        "the service to catch up on the first half",
        READY_LIMIT,
        || app.snapshot().ready.then_some(()),
    );

    mock.broker_down(1).expect("broker down");
    let b = bootstrap.clone();
    let rest: Vec<Vec<u8>> = all[half..].iter().map(|l| l.to_vec()).collect();
    let producer = std::thread::spawn(move || {
        let rest: Vec<&[u8]> = rest.iter().map(|l| l.as_slice()).collect();
        produce(&b, topic, &rest);
    });
    std::thread::sleep(Duration::from_secs(10));
    mock.broker_up(1).expect("broker up");
    producer.join().expect("producer");

    let expected = common::fixture_report(name);
    let want_total = ["applied", "rejected", "duplicates"]
        .iter()
        .map(|k| expected["events"][k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(want_total, all.len() as u64);
    let report = wait_for(
        "the service to fold every event after the outage",
        READY_LIMIT,
        || {
            let s = app.snapshot();
            let e = &s.report.events;
            (s.ready && e.applied + e.rejected + e.duplicates == want_total)
                .then(|| s.report.clone())
        },
    );
    let report = serde_json::to_value(&*report).unwrap();
    common::assert_same_report("mock cluster, broker down 10 s", &expected, &report);
    rt.block_on(service.shutdown()).expect("clean shutdown");
}

/// `kafka.properties` overrides keypulse's defaults: the classic group protocol (eager
/// rebalancing) gives the same report.
#[test]
fn classic_group_protocol_gives_the_same_report() {
    let Some(brokers) = brokers("classic_group_protocol_gives_the_same_report") else {
        return;
    };
    let name = "small";
    let (topic, group, dlq) = fixture_topic(&brokers, name);
    let extra =
        "properties = { \"group.protocol\" = \"classic\", \"session.timeout.ms\" = \"6000\" }";
    let mut inst = Instance::start(
        "classic",
        &config_toml(&brokers, &topic, &group, &dlq, extra),
    );
    inst.wait_ready(READY_LIMIT);
    let (status, report) = inst.get("/api/v1/report");
    assert_eq!(status, 200);
    common::assert_same_report("classic protocol", &common::fixture_report(name), &report);
    inst.stop(Duration::from_secs(10));
}
