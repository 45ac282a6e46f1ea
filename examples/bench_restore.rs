//! `scripts/bench-restore`: how fast a changelog partition reads back (`kafka/restore.rs`),
//! the part of a restore that is Kafka's (decoding the records into state is the codec's).
//!
//! Writes N customer records of about S bytes (random, so compression gains nothing) into a
//! fresh 1-partition changelog through the transactional committer, in transactions of
//! 5000 records, then reads the partition back with `ChangelogReader::read_partitions` ROUNDS times.
//! Prints `records=… bytes=… write_s=… read_s=<each round> read_rate=<records/s, median>`.
//!
//! Usage: `bench_restore BROKERS N [S] [ROUNDS]`

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use keypulse::kafka::changelog::chunk::encode;
use keypulse::kafka::changelog::keys::StateKey;
use keypulse::kafka::changelog::{ensure_changelog, topic_config};
use keypulse::kafka::client::ClientSettings;
use keypulse::kafka::restore::ChangelogReader;
use keypulse::kafka::txn::{CommitBatch, Committer, OutRecord, TxnSettings};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_restore BROKERS N [S] [ROUNDS]");
        std::process::exit(2);
    }
    let brokers = &args[1];
    let n: usize = args[2].parse().expect("N");
    let size: usize = args.get(3).map_or(300, |s| s.parse().expect("S"));
    let rounds: usize = args.get(4).map_or(3, |s| s.parse().expect("ROUNDS"));
    let client = ClientSettings::new(brokers, "keypulse-bench", &[]);
    let admin: AdminClient<DefaultClientContext> = client.admin().create().expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let input = format!("bench-restore-{}-{}", std::process::id(), n);
    let t = Duration::from_secs(30);
    let new = NewTopic::new(&input, 1, TopicReplication::Fixed(1));
    rt.block_on(admin.create_topics([&new], &AdminOptions::new()))
        .expect("create input");
    let topic = rt
        .block_on(ensure_changelog(
            &admin,
            &input,
            &format!("{input}-changelog"),
            &topic_config(&BTreeMap::new()),
            t,
        ))
        .expect("changelog");
    let committer = Committer::start(
        &client,
        TxnSettings {
            transactional_id: format!("bench-restore-{}", std::process::id()),
            transaction_timeout: Duration::from_secs(60),
            init_timeout: Duration::from_secs(60),
        },
        HashMap::from([(topic.name.clone(), topic.max_message_bytes)]),
    )
    .expect("committer");
    let limit = committer.record_limit(&topic.name);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let t0 = Instant::now();
    let mut bytes = 0usize;
    for start in (0..n).step_by(5000) {
        let mut records = Vec::with_capacity(5000);
        for i in start..(start + 5000).min(n) {
            let value: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let key = StateKey::Customer(format!("customer-{i:08}"));
            let enc = encode(&key, Some(&value), 0, limit).expect("encode");
            for r in enc.records {
                bytes += r.size();
                records.push(OutRecord::changelog(&topic.name, 0, r));
            }
        }
        committer
            .commit(CommitBatch {
                records,
                ..CommitBatch::default()
            })
            .expect("commit");
    }
    let write_s = t0.elapsed().as_secs_f64();
    let mut secs = Vec::new();
    for _ in 0..rounds {
        let reader = ChangelogReader::new(&client).expect("reader");
        let r = reader
            .read_partitions(&topic.name, &[0], Duration::from_secs(600))
            .expect("restore")
            .remove(0);
        assert_eq!(r.values.len(), n, "every record read back");
        secs.push(r.seconds);
    }
    let mut sorted = secs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let shown: Vec<String> = secs.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "records={n} bytes={bytes} write_s={write_s:.2} read_s={} read_rate={:.0}",
        shown.join(","),
        n as f64 / median
    );
}
