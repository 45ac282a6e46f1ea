//! The simulator's producer loops (`keypulse::sim::produce::{pump_history, pump}`) on
//! librdkafka's mock cluster, as `keypulse demo` will run them: every event arrives, keyed
//! by customer, through the producer settings `produce::producer` uses (batching, lz4,
//! idempotence); the history first, then live events stamped after it.

use std::time::{Duration, Instant};

use keypulse::sim::produce::{producer, pump, pump_history, ProduceStats};
use keypulse::sim::{SimConfig, Simulator};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pump_sends_every_event_to_the_mock_cluster() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("events", 4, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let cfg = SimConfig {
        customers: 40,
        history_days: 10,
        seed: 9,
        live_rate: 2_000.0,
        ..SimConfig::default()
    };
    let history = Simulator::history(cfg.clone());
    let n = history.len() as u64 + 500; // the whole history and some live events
    let p = producer(&brokers, &[]).unwrap();
    // Spawned, as the demo will (the futures must be Send), in the demo's order: the
    // whole history first, then (once the service is up) live.
    let (sim, stats) = tokio::spawn(async move {
        let mut sim = Simulator::new(cfg);
        let h = pump_history(&mut sim, &p, "events", std::future::pending()).await;
        assert_eq!(
            h.unwrap(),
            ProduceStats {
                history: n - 500,
                live: 0
            }
        );
        let stats = pump(
            &mut sim,
            &p,
            "events",
            Some(500),
            std::future::pending(),
            |_| {},
        )
        .await;
        (sim, stats)
    })
    .await
    .unwrap();
    let stats = stats.unwrap();
    assert_eq!(stats.total(), n);
    assert_eq!(stats.history, history.len() as u64);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for part in 0..4 {
        tpl.add_partition_offset("events", part, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut count, mut live) = (0u64, 0u64);
    let end = sim.config().history_end();
    let deadline = Instant::now() + Duration::from_secs(30);
    while count < n && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
        if let Some(id) = value["customer_id"].as_str() {
            assert_eq!(m.key().unwrap_or_default(), id.as_bytes());
        }
        if let Some(ts) = value["ts"].as_str() {
            if keypulse::core::time::parse_rfc3339(ts).is_some_and(|t| t >= end) {
                live += 1;
            }
        }
        count += 1;
    }
    assert_eq!(count, n);
    assert!(live >= 400, "live events stamped after the history: {live}");
}
