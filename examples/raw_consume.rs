//! `scripts/bench-kafka`'s baseline: a bare librdkafka consumer that reads a whole topic
//! from the beginning and does nothing with the messages. Same fetch settings as the
//! service's defaults (`kafka::client::GROUP_CONSUMER_DEFAULTS`' fetch keys). Prints
//! `raw_rate=<msg/s>` (first message to last).
//!
//! Usage: `raw_consume BROKERS TOPIC [ISOLATION]` (`read_committed`, the default, or
//! `read_uncommitted`)

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: raw_consume BROKERS TOPIC [ISOLATION]");
        std::process::exit(2);
    }
    let (brokers, topic) = (&args[1], &args[2]);
    let isolation = args.get(3).map_or("read_committed", String::as_str);
    let mut config = ClientConfig::new();
    for (k, v) in keypulse::kafka::client::FETCH_DEFAULTS {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-consume-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut expected = 0i64;
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .expect("watermarks");
        expected += high - low;
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut n = 0i64;
    let mut bytes = 0usize;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, |p| p.len());
            n += 1;
        }
    }
    let s = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    eprintln!(
        "raw consumer: {n} of {expected} messages ({} MB) in {s:.2} s",
        bytes / 1_000_000
    );
    println!("raw_rate={:.0}", n as f64 / s.max(1e-9));
}
