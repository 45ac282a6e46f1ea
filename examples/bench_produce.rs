//! `scripts/bench-kafka`'s generator: produces N realistic events to a topic, keyed by
//! customer. The events are the `small` fixture's valid lines, repeated with fresh
//! customer ids, license keys and event ids for each copy (so state grows as with a larger
//! customer base).
//!
//! Usage: `bench_produce BROKERS TOPIC N [PARTITIONS] [FIXTURE]`

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: bench_produce BROKERS TOPIC N [PARTITIONS] [FIXTURE]");
        std::process::exit(2);
    }
    let (brokers, topic) = (&args[1], &args[2]);
    let n: usize = args[3].parse().expect("N");
    let partitions: i32 = args.get(4).map_or(6, |p| p.parse().expect("PARTITIONS"));
    let fixture = args.get(5).cloned().unwrap_or_else(|| {
        format!(
            "{}/../shared/fixtures/small.events.jsonl",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let text = std::fs::read_to_string(&fixture).expect("fixture");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| keypulse::core::decode(l.as_bytes()).is_ok())
        .collect();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create topic");
    for r in res {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => panic!("cannot create {t}: {e}"),
        }
    }

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let t0 = Instant::now();
    let mut sent = 0usize;
    let mut copy = 0usize;
    let mut bytes = 0usize;
    'outer: loop {
        let c = format!("\"customer_id\":\"r{copy}_");
        let k = format!("\"license_key\":\"r{copy}_");
        let e = format!("\"event_id\":\"r{copy}_");
        for line in &lines {
            if sent == n {
                break 'outer;
            }
            let payload = line
                .replace("\"customer_id\":\"", &c)
                .replace("\"license_key\":\"", &k)
                .replace("\"event_id\":\"", &e);
            let key = payload
                .split("\"customer_id\":\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("")
                .to_string();
            bytes += payload.len();
            let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("produce: {e}"),
                }
            }
            sent += 1;
            if sent.is_multiple_of(10_000) {
                producer.poll(Duration::ZERO);
            }
        }
        copy += 1;
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let s = t0.elapsed().as_secs_f64();
    eprintln!(
        "produced {sent} events ({} MB, {} copies of {} lines) in {s:.1} s",
        bytes / 1_000_000,
        copy + 1,
        lines.len()
    );
}
