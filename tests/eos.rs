//! Exactly-once groundwork against a real Apache Kafka (`scripts/test --test eos`): the
//! changelog topic's checks, the transactional committer (commit, abort, fencing, empty
//! commits, size checks) and the restore reader (chunked records, compaction).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::*;
use keypulse::kafka::changelog::chunk::ChunkBook;
use keypulse::kafka::changelog::keys::StateKey;
use keypulse::kafka::changelog::partition_counts;
use keypulse::kafka::changelog::writer::PartitionWriter;
use keypulse::kafka::changelog::{ensure_changelog, topic_config, ChangelogError, ChangelogTopic};
use keypulse::kafka::client::{ClientSettings, Role};
use keypulse::kafka::restore::{
    committed_then_changelog, ChangelogReader, PartitionRestore, RestoreError,
};
use keypulse::kafka::txn::{
    CommitBatch, CommitError, Committed, Committer, OutRecord, TxnSettings,
};
use keypulse::kafka::TopicPartition;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(30);

/// The clients' settings, as the service builds them (`kafka/client.rs`).
fn client(brokers: &str) -> ClientSettings {
    ClientSettings::new(brokers, "keypulse-test", &[])
}

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    client(brokers).admin().create().expect("admin client")
}

/// An input topic and its changelog (created by `ensure_changelog` with `overrides`).
fn setup(
    brokers: &str,
    name: &str,
    partitions: i32,
    overrides: &[(&str, &str)],
) -> (String, ChangelogTopic) {
    let input = unique(name);
    create_topic(brokers, &input, partitions);
    wait_for("the input topic in the metadata", T, || {
        partition_counts(&admin(brokers), &[&input], T)
            .ok()?
            .get(&input)
            .copied()
    });
    let changelog = format!("{input}-changelog");
    let overrides: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let topic = runtime()
        .block_on(ensure_changelog(
            &admin(brokers),
            &input,
            &changelog,
            &topic_config(&overrides),
            T,
        ))
        .expect("ensure_changelog");
    assert!(topic.created);
    assert_eq!(topic.partitions, partitions);
    (input, topic)
}

/// What most tests start from: the broker, an input topic with its changelog, a committer.
struct Env {
    brokers: String,
    input: String,
    topic: ChangelogTopic,
    c: Committer,
}

/// The [`Env`] of test `name` (`None`: no broker, the test is skipped).
fn env(name: &str, partitions: i32, overrides: &[(&str, &str)]) -> Option<Env> {
    let brokers = brokers(name)?;
    let (input, topic) = setup(&brokers, name, partitions, overrides);
    let c = committer(&brokers, &unique("txn"), &topic);
    Some(Env {
        brokers,
        input,
        topic,
        c,
    })
}

/// Commits changelog records alone (no offsets).
fn commit_records(c: &Committer, records: Vec<OutRecord>) -> Result<Committed, CommitError> {
    c.commit(CommitBatch {
        records,
        ..CommitBatch::default()
    })
}

/// A member of `group` subscribed to `input`, polled until it has partitions.
fn member(brokers: &str, group: &str, input: &str) -> BaseConsumer {
    member_with(brokers, group, input, "consumer")
}

/// A member with `group.protocol` `protocol` (`consumer`: KIP-848, or `classic`).
fn member_with(brokers: &str, group: &str, input: &str, protocol: &str) -> BaseConsumer {
    let props = [("group.protocol".to_string(), protocol.to_string())];
    let c: BaseConsumer = ClientSettings::new(brokers, "keypulse-test", &props)
        .group_consumer(group)
        .create()
        .expect("consumer");
    c.subscribe(&[input]).expect("subscribe");
    wait_for("an assignment", T, || {
        let _ = c.poll(Duration::from_millis(100));
        let n = c.assignment().map(|a| a.count()).unwrap_or(0);
        (n > 0).then_some(())
    });
    c
}

/// Cancels `reader` after `wait`, on a thread of its own (as a shutdown would).
fn cancel_after(reader: &ChangelogReader, wait: Duration) -> std::thread::JoinHandle<()> {
    let cancel = reader.cancel_flag();
    std::thread::spawn(move || {
        std::thread::sleep(wait);
        cancel.store(true, std::sync::atomic::Ordering::Release);
    })
}

/// A transactional producer (a killed instance, to its readers) with a transaction begun,
/// which its coordinator aborts after `timeout_ms` unless it is ended first.
fn open_transaction(brokers: &str, timeout_ms: &str) -> BaseProducer {
    let orphan: BaseProducer = client(brokers)
        .build(
            Role::Producer,
            &[],
            &[
                ("transactional.id", &unique("txn-orphan")),
                ("transaction.timeout.ms", timeout_ms),
            ],
        )
        .create()
        .unwrap();
    orphan.init_transactions(T).unwrap();
    orphan.begin_transaction().unwrap();
    orphan
}

/// Writes one uncommitted record (customer `a`) to partition 0 of `topic` in `orphan`'s
/// open transaction.
fn leave_uncommitted(orphan: &BaseProducer, topic: &str) {
    orphan
        .send(
            BaseRecord::to(topic)
                .partition(0)
                .key(&b"c/a"[..])
                .payload(&b"\0uncommitted"[..]),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    orphan.flush(T).unwrap();
}

fn reader(brokers: &str) -> ChangelogReader {
    ChangelogReader::new(&client(brokers)).expect("reader")
}

fn committer(brokers: &str, id: &str, topic: &ChangelogTopic) -> Committer {
    let settings = TxnSettings {
        transactional_id: id.to_string(),
        transaction_timeout: Duration::from_secs(10),
        init_timeout: Duration::from_secs(60),
    };
    let limits = HashMap::from([(topic.name.clone(), topic.max_message_bytes)]);
    Committer::start(&client(brokers), settings, limits).expect("committer")
}

fn customer(id: &str) -> StateKey {
    StateKey::Customer(id.to_string())
}

/// A writer of partition `partition` of the changelog (nothing chunked yet).
fn writer(topic: &ChangelogTopic, partition: i32) -> PartitionWriter {
    PartitionWriter::new(&topic.name, partition, ChunkBook::default())
}

/// The changelog records of `values`, staged in `w` (then `w.committed()` once committed,
/// `w.rolled_back()` if not).
fn records(
    c: &Committer,
    w: &mut PartitionWriter,
    values: &[(StateKey, Option<Vec<u8>>)],
) -> Vec<OutRecord> {
    let limit = c.record_limit(w.topic());
    w.stage(values.iter().map(|(k, v)| (k, v.as_deref())), limit)
        .expect("stage")
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: Arc::from(topic),
        partition,
    }
}

/// Every record of a partition (read_committed), key and value, in order.
fn raw(brokers: &str, topic: &str, partition: i32) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    // The end: the high watermark now (read_uncommitted), so that a transaction whose
    // commit has returned but whose markers are not written yet is waited for.
    let with = |isolation: &str| -> BaseConsumer {
        let group = unique("raw");
        client(brokers)
            .build(
                Role::Consumer,
                &[],
                &[("group.id", &group), ("isolation.level", isolation)],
            )
            .create()
            .unwrap()
    };
    let (_, end) = with("read_uncommitted")
        .fetch_watermarks(topic, partition, T)
        .unwrap();
    let c = with("read_committed");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let t0 = Instant::now();
    let mut next = 0;
    while next < end {
        assert!(t0.elapsed() < T, "reading {topic}/{partition} timed out");
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                out.push((
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().map(<[u8]>::to_vec),
                ));
                next = m.offset() + 1;
            }
            _ => {
                // past control records and aborted data
                let pos = c.position().unwrap();
                if let Some(Offset::Offset(o)) =
                    pos.find_partition(topic, partition).map(|e| e.offset())
                {
                    next = next.max(o);
                }
            }
        }
    }
    out
}

fn committed(c: &BaseConsumer, topic: &str, partition: i32) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    c.committed_offsets(tpl, T)
        .unwrap()
        .find_partition(topic, partition)
        .unwrap()
        .offset()
}

/// The group's committed offsets, then the changelog, of partitions 0 and 1 of `input`
/// (whose changelog is `changelog`), as a new owner restores them.
fn restore_partitions_0_and_1(
    m: &BaseConsumer,
    brokers: &str,
    input: &str,
    changelog: &str,
) -> Vec<PartitionRestore> {
    let map = HashMap::from([(input.to_string(), changelog.to_string())]);
    committed_then_changelog(m, &reader(brokers), &[tp(input, 0), tp(input, 1)], &map, T)
        .expect("restore")
}

#[test]
fn a_committed_transaction_is_visible_with_its_offsets() {
    let Some(Env {
        brokers,
        input,
        topic,
        c,
    }) = env("eos-commit", 2, &[])
    else {
        return;
    };
    let m = member(&brokers, &unique("eos-commit-g"), &input);
    let (mut w0, mut w1) = (writer(&topic, 0), writer(&topic, 1));
    let mut recs = records(
        &c,
        &mut w0,
        &[
            (customer("a"), Some(b"state of a".to_vec())),
            (customer("b"), Some(b"state of b".to_vec())),
        ],
    );
    recs.extend(records(
        &c,
        &mut w1,
        &[(
            StateKey::Partition("days".into()),
            Some(b"buckets".to_vec()),
        )],
    ));
    let done = c
        .commit(CommitBatch {
            records: recs,
            offsets: vec![(tp(&input, 0), 7), (tp(&input, 1), 3)],
            group: m.group_metadata(),
        })
        .expect("commit");
    w0.committed();
    w1.committed();
    assert_eq!((done.records, done.offsets), (3, 2));

    assert_eq!(committed(&m, &input, 0), Offset::Offset(7));
    assert_eq!(committed(&m, &input, 1), Offset::Offset(3));
    let restored = restore_partitions_0_and_1(&m, &brokers, &input, &topic.name);
    assert_eq!(restored[0].committed, Some(7));
    assert_eq!(restored[1].committed, Some(3));
    let p0 = &restored[0].changelog;
    assert_eq!(p0.values.len(), 2);
    assert_eq!(p0.values[&customer("a")], b"state of a");
    assert_eq!(p0.values[&customer("b")], b"state of b");
    assert_eq!(p0.records_read, 2);
    assert!(p0.problems.is_empty(), "{:?}", p0.problems);
    let p1 = &restored[1].changelog;
    assert_eq!(
        p1.values[&StateKey::Partition("days".into())],
        b"buckets".to_vec()
    );
}

#[test]
fn a_classic_group_member_commits_its_offsets_in_the_transaction_too() {
    let Some(Env {
        brokers,
        input,
        topic,
        c,
    }) = env("eos-classic", 2, &[])
    else {
        return;
    };
    let m = member_with(&brokers, &unique("eos-classic-g"), &input, "classic");
    let mut w1 = writer(&topic, 1);
    let recs = records(&c, &mut w1, &[(customer("k"), Some(b"classic".to_vec()))]);
    c.commit(CommitBatch {
        records: recs,
        offsets: vec![(tp(&input, 0), 1), (tp(&input, 1), 12)],
        group: m.group_metadata(),
    })
    .expect("commit with a classic member's metadata");
    w1.committed();
    let restored = restore_partitions_0_and_1(&m, &brokers, &input, &topic.name);
    assert_eq!(restored[0].committed, Some(1));
    assert_eq!(restored[1].committed, Some(12));
    assert!(restored[0].changelog.values.is_empty());
    assert_eq!(restored[1].changelog.values[&customer("k")], b"classic");
}

#[test]
fn an_aborted_transaction_is_invisible_and_commits_no_offsets() {
    let Some(Env {
        brokers,
        input,
        topic,
        c,
    }) = env("eos-abort", 1, &[])
    else {
        return;
    };
    let group = unique("eos-abort-g");
    let m = member(&brokers, &group, &input);
    let mut w0 = writer(&topic, 0);
    let first = records(&c, &mut w0, &[(customer("a"), Some(b"v1".to_vec()))]);
    c.commit(CommitBatch {
        records: first,
        offsets: vec![(tp(&input, 0), 5)],
        group: m.group_metadata(),
    })
    .expect("first commit");
    w0.committed();

    // Valid records first, then one the broker cannot take (no partition 99): the
    // transaction is aborted, the valid records included.
    let mut second = records(
        &c,
        &mut w0,
        &[
            (customer("a"), Some(b"v2".to_vec())),
            (customer("b"), Some(b"v2".to_vec())),
        ],
    );
    second.push(OutRecord {
        partition: Some(99),
        ..second[0].clone()
    });
    let e = c
        .commit(CommitBatch {
            records: second,
            offsets: vec![(tp(&input, 0), 9)],
            group: m.group_metadata(),
        })
        .unwrap_err();
    assert!(matches!(e, CommitError::RolledBack(_)), "{e}");
    w0.rolled_back();

    assert_eq!(committed(&m, &input, 0), Offset::Offset(5));
    let seen = raw(&brokers, &topic.name, 0);
    assert_eq!(seen, vec![(b"c/a".to_vec(), Some(b"\0v1".to_vec()))]);

    // A member that left: its group metadata is stale, the transaction rolls back.
    let stale = m.group_metadata();
    drop(m);
    let third = records(&c, &mut w0, &[(customer("c"), Some(b"v3".to_vec()))]);
    let _other = member(&brokers, &group, &input);
    let r = c.commit(CommitBatch {
        records: third,
        offsets: vec![(tp(&input, 0), 11)],
        group: stale,
    });
    assert!(matches!(r, Err(CommitError::RolledBack(_))), "{r:?}");
    w0.rolled_back();
    assert_eq!(raw(&brokers, &topic.name, 0).len(), 1);

    // The producer is still usable after a rollback.
    let fourth = records(&c, &mut w0, &[(customer("d"), Some(b"v4".to_vec()))]);
    c.commit(CommitBatch {
        records: fourth,
        offsets: vec![],
        group: None,
    })
    .expect("commit after rollbacks");
    w0.committed();
    assert_eq!(raw(&brokers, &topic.name, 0).len(), 2);
}

#[test]
fn a_second_committer_with_the_same_id_fences_the_first() {
    let Some(brokers) = brokers("eos fencing") else {
        return;
    };
    let (input, topic) = setup(&brokers, "eos-fence", 1, &[]);
    let group = unique("eos-fence-g");
    let m = member(&brokers, &group, &input);
    let id = unique("txn-shared");
    let first = committer(&brokers, &id, &topic);
    let second = committer(&brokers, &id, &topic);
    let mut w0 = writer(&topic, 0);
    let recs = records(
        &first,
        &mut w0,
        &[(customer("zombie"), Some(b"late write".to_vec()))],
    );
    let r = first.commit(CommitBatch {
        records: recs,
        offsets: vec![(tp(&input, 0), 4)],
        group: m.group_metadata(),
    });
    assert!(matches!(r, Err(CommitError::Fenced(_))), "{r:?}");
    w0.rolled_back();
    assert_eq!(raw(&brokers, &topic.name, 0), vec![]);
    assert_eq!(committed(&m, &input, 0), Offset::Invalid);

    let recs = records(
        &second,
        &mut w0,
        &[(customer("live"), Some(b"write".to_vec()))],
    );
    second
        .commit(CommitBatch {
            records: recs,
            offsets: vec![(tp(&input, 0), 6)],
            group: m.group_metadata(),
        })
        .expect("the new incarnation commits");
    w0.committed();
    assert_eq!(
        raw(&brokers, &topic.name, 0),
        vec![(b"c/live".to_vec(), Some(b"\0write".to_vec()))]
    );
    assert_eq!(committed(&m, &input, 0), Offset::Offset(6));

    // The fenced committer builds a new producer at its next commit (a new
    // init_transactions), which fences the other in turn: ids must not be shared.
    first
        .commit(CommitBatch::default())
        .expect("a fenced committer rebuilds its producer");
    // (An empty commit completes locally: only a commit that writes meets the fence.)
    let recs = records(
        &second,
        &mut w0,
        &[(customer("live"), Some(b"fenced write".to_vec()))],
    );
    let r = commit_records(&second, recs);
    assert!(matches!(r, Err(CommitError::Fenced(_))), "{r:?}");
    assert_eq!(raw(&brokers, &topic.name, 0).len(), 1);
}

#[test]
fn empty_commits_and_offset_only_commits_succeed() {
    let Some(Env {
        brokers, input, c, ..
    }) = env("eos-empty", 1, &[])
    else {
        return;
    };
    let m = member(&brokers, &unique("eos-empty-g"), &input);
    for _ in 0..2 {
        let done = c.commit(CommitBatch::default()).expect("empty commit");
        assert_eq!((done.records, done.offsets), (0, 0));
    }
    c.commit(CommitBatch {
        records: vec![],
        offsets: vec![(tp(&input, 0), 2)],
        group: m.group_metadata(),
    })
    .expect("offsets only");
    assert_eq!(committed(&m, &input, 0), Offset::Offset(2));
    let e = c
        .commit(CommitBatch {
            records: vec![],
            offsets: vec![(tp(&input, 0), 3)],
            group: None,
        })
        .unwrap_err();
    assert!(matches!(e, CommitError::Invalid(_)), "{e}");
    c.commit(CommitBatch::default())
        .expect("empty commit after a refusal");
}

fn big(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

#[test]
fn a_5_mb_customer_is_chunked_committed_and_restored_equal() {
    let Some(Env {
        brokers, topic, c, ..
    }) = env("eos-chunks", 1, &[("max.message.bytes", "262144")])
    else {
        return;
    };
    assert_eq!(topic.max_message_bytes, 262_144);
    let big_one = customer("whale");
    let value = big(5 * 1024 * 1024 + 123, 7);

    // A record over the limit, unchunked, is refused before any transaction.
    let too_large = OutRecord::changelog(
        &topic.name,
        0,
        keypulse::kafka::changelog::chunk::Record {
            key: big_one.to_bytes(),
            value: Some(value[..300_000].to_vec()),
        },
    );
    let e = c
        .commit(CommitBatch {
            records: vec![too_large],
            ..CommitBatch::default()
        })
        .unwrap_err();
    assert!(matches!(e, CommitError::TooLarge { .. }), "{e}");

    let mut w0 = writer(&topic, 0);
    let recs = records(
        &c,
        &mut w0,
        &[
            (big_one.clone(), Some(value.clone())),
            (customer("small"), Some(b"tiny".to_vec())),
        ],
    );
    commit_records(&c, recs).expect("commit of a 5 MB customer");
    w0.committed();
    let chunks = w0.book().get(&big_one);
    assert!(chunks >= 20, "{chunks} chunks");
    let r = reader(&brokers)
        .read_partitions(&topic.name, &[0], T)
        .expect("restore");
    let r = &r[0];
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(r.values[&big_one] == value, "the 5 MB record differs");
    assert_eq!(r.values[&customer("small")], b"tiny");
    assert_eq!(&r.chunks, w0.book());
    assert!(r.bytes_read as usize > value.len());

    // It shrinks: its chunks are tombstoned in the same transaction.
    let recs = records(&c, &mut w0, &[(big_one.clone(), Some(b"slim".to_vec()))]);
    commit_records(&c, recs).expect("commit of the shrunk customer");
    w0.committed();
    let r = reader(&brokers)
        .read_partitions(&topic.name, &[0], T)
        .expect("restore");
    assert!(r[0].problems.is_empty(), "{:?}", r[0].problems);
    assert_eq!(r[0].values[&big_one], b"slim");
    assert!(r[0].chunks.is_empty());
    let mut latest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    for (k, v) in raw(&brokers, &topic.name, 0) {
        latest.insert(k, v);
    }
    let live_chunks = latest
        .iter()
        .filter(|(k, v)| k.starts_with(b"x/") && v.is_some())
        .count();
    assert_eq!(live_chunks, 0);
}

#[test]
fn compaction_removes_old_values_and_the_restore_stays_exact() {
    let small_segments = [
        ("segment.bytes", "1048576"),
        ("min.cleanable.dirty.ratio", "0.01"),
        ("delete.retention.ms", "1000"),
    ];
    let Some(Env {
        brokers, topic, c, ..
    }) = env("eos-compact", 1, &small_segments)
    else {
        return;
    };
    let keys: Vec<StateKey> = (0..10).map(|i| customer(&format!("k{i}"))).collect();
    let rounds = 40;
    let mut w0 = writer(&topic, 0);
    let mut last = HashMap::new();
    for round in 0..rounds {
        let values: Vec<(StateKey, Option<Vec<u8>>)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut v = big(8 * 1024, (round * 10 + i) as u8);
                v.extend_from_slice(format!("round {round}").as_bytes());
                (k.clone(), Some(v))
            })
            .collect();
        for (k, v) in &values {
            last.insert(k.clone(), v.clone().unwrap());
        }
        let recs = records(&c, &mut w0, &values);
        commit_records(&c, recs).expect("commit");
        w0.committed();
    }
    let written = keys.len() * rounds;
    let count_k0 = |recs: &[(Vec<u8>, Option<Vec<u8>>)]| {
        recs.iter()
            .filter(|(k, _)| k == &keys[0].to_bytes())
            .count()
    };
    // Offsets are never reused: the end offset proves every write happened, whatever the
    // cleaner has removed since.
    let (_, end) = client(&brokers)
        .admin()
        .create::<AdminClient<DefaultClientContext>>()
        .unwrap()
        .inner()
        .fetch_watermarks(&topic.name, 0, T)
        .unwrap();
    assert!(
        end as usize >= written,
        "end offset {end} < {written} writes"
    );
    let after = wait_for(
        "the cleaner to compact the changelog",
        Duration::from_secs(120),
        || {
            let recs = raw(&brokers, &topic.name, 0);
            (count_k0(&recs) < rounds / 2).then_some(recs)
        },
    );
    assert!(after.len() < written, "{} of {written}", after.len());
    let r = reader(&brokers)
        .read_partitions(&topic.name, &[0], T)
        .expect("restore");
    assert!(r[0].problems.is_empty(), "{:?}", r[0].problems);
    assert_eq!(r[0].values.len(), keys.len());
    for k in &keys {
        assert!(r[0].values[k] == last[k], "{k} differs after compaction");
    }
    assert!(r[0].records_read as usize <= after.len());
}

#[test]
fn a_transaction_left_open_holds_the_restore_until_it_is_aborted() {
    let Some(Env {
        brokers,
        input,
        topic,
        c,
    }) = env("eos-open", 1, &[])
    else {
        return;
    };
    let mut w0 = writer(&topic, 0);
    let recs = records(&c, &mut w0, &[(customer("a"), Some(b"committed".to_vec()))]);
    commit_records(&c, recs).expect("commit");
    w0.committed();
    // Another producer (a killed instance) leaves a transaction open; the coordinator
    // aborts it 10 s later.
    let orphan = open_transaction(&brokers, "10000");
    leave_uncommitted(&orphan, &topic.name);
    // While it is open, the restore cannot know whether it commits: it waits...
    let r = reader(&brokers).read_partitions(&topic.name, &[0], Duration::from_secs(2));
    assert!(matches!(r, Err(RestoreError::Timeout { .. })), "{r:?}");
    // ...until the coordinator aborts it; then the restore holds only what was committed.
    let r = reader(&brokers)
        .read_partitions(&topic.name, &[0], T)
        .expect("restore");
    assert_eq!(r[0].values[&customer("a")], b"committed");
    assert_eq!(r[0].records_read, 1);
    // And the committed offsets come first: none for this group yet.
    let m = member(&brokers, &unique("eos-open-g"), &input);
    let map = HashMap::from([(input.clone(), topic.name.clone())]);
    let restored =
        committed_then_changelog(&m, &reader(&brokers), &[tp(&input, 0)], &map, T).unwrap();
    assert_eq!(restored[0].committed, None);
    drop(orphan);
}

/// A restore held by an orphaned transaction gives up as soon as its reader is cancelled
/// (at shutdown), instead of holding the poll thread until its timeout: both the changelog
/// read and the committed-offsets fetch.
#[test]
fn a_restore_held_by_an_open_transaction_gives_up_when_cancelled() {
    let Some(Env {
        brokers,
        input,
        topic,
        c: _c,
    }) = env("eos-cancel", 1, &[])
    else {
        return;
    };
    // An orphan that the coordinator would abort only after a minute.
    let orphan = open_transaction(&brokers, "60000");
    leave_uncommitted(&orphan, &topic.name);
    let r = reader(&brokers);
    let canceller = cancel_after(&r, Duration::from_secs(1));
    let out = r.read_partitions(&topic.name, &[0], T);
    canceller.join().unwrap();
    // Cancelled, not timed out (T is 30 s, the orphan's timeout a minute).
    assert!(matches!(out, Err(RestoreError::Cancelled)), "{out:?}");
    // A cancelled reader stays cancelled: the next takeover gives up before any fetch.
    let m = member(&brokers, &unique("eos-cancel-g"), &input);
    let map = HashMap::from([(input.clone(), topic.name.clone())]);
    let out = committed_then_changelog(&m, &r, &[tp(&input, 0)], &map, T);
    assert!(matches!(out, Err(RestoreError::Cancelled)), "{out:?}");
    orphan.abort_transaction(T).unwrap();
}

/// The group's committed offsets, held by the broker while a transaction with offsets of
/// the group is open, are given up on as soon as the reader is cancelled (the fetch is
/// asked in slices), not waited for until the restore's timeout.
#[test]
fn a_committed_offsets_fetch_held_by_an_open_transaction_gives_up_when_cancelled() {
    let Some(Env {
        brokers,
        input,
        topic,
        c: _c,
    }) = env("eos-cancel-offsets", 1, &[])
    else {
        return;
    };
    let m = member(&brokers, &unique("eos-cancel-offsets-g"), &input);
    let orphan = open_transaction(&brokers, "60000");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, 0, Offset::Offset(5))
        .unwrap();
    let group = m.group_metadata().expect("group metadata");
    orphan
        .send_offsets_to_transaction(&offsets, &group, T)
        .unwrap();
    let r = reader(&brokers);
    let canceller = cancel_after(&r, Duration::from_secs(3));
    let map = HashMap::from([(input.clone(), topic.name.clone())]);
    let t0 = Instant::now();
    let out = committed_then_changelog(&m, &r, &[tp(&input, 0)], &map, T);
    let took = t0.elapsed();
    canceller.join().unwrap();
    // Cancelled: not the offsets (the broker held them), and before the call's own
    // timeout (a fetch asked once for all of T would only look at the flag after it).
    assert!(matches!(out, Err(RestoreError::Cancelled)), "{out:?}");
    assert!(took < T / 2, "gave up only after {took:?}");
    orphan.abort_transaction(T).unwrap();
}

#[test]
fn a_changelog_with_another_partition_count_is_refused_naming_both_topics() {
    let Some(brokers) = brokers("eos co-partitioning") else {
        return;
    };
    let input = unique("eos-copart");
    create_topic(&brokers, &input, 3);
    let changelog = format!("{input}-changelog");
    let rt = runtime();
    let a = admin(&brokers);
    let new =
        NewTopic::new(&changelog, 2, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let res = rt
        .block_on(a.create_topics([&new], &AdminOptions::new()))
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let cfg = topic_config(&BTreeMap::new());
    let e = rt
        .block_on(ensure_changelog(&a, &input, &changelog, &cfg, T))
        .unwrap_err();
    assert!(matches!(e, ChangelogError::NotCoPartitioned { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&input) && msg.contains(&changelog), "{msg}");

    // Not compacted: refused too.
    let plain = format!("{input}-plain");
    create_topic(&brokers, &plain, 3);
    let e = rt
        .block_on(ensure_changelog(&a, &input, &plain, &cfg, T))
        .unwrap_err();
    assert!(matches!(e, ChangelogError::NotCompacted { .. }), "{e}");

    // No input topic: said so.
    let e = rt
        .block_on(ensure_changelog(&a, "kp-no-such-topic", &plain, &cfg, T))
        .unwrap_err();
    assert!(matches!(e, ChangelogError::InputMissing { .. }), "{e}");
}
