//! Membership through Kafka (SPEC §8.8): who is in the consumer group, where each member
//! answers, and which partitions it holds.
//!
//! Owns the members topic (`kafka.members_topic`, compacted, created with one partition
//! when missing), this instance's announcements in it and the [`MemberTable`] read back
//! from it. One thread (`group-members`) does all the Kafka work:
//! - it announces this instance ([`Announcement`], keyed by the instance id) at start, on
//!   every change of its partitions (assignment or catch-up), and every
//!   `kafka.members_interval_ms`; on stop it writes a tombstone (its key, no value);
//! - it reads the whole topic from its beginning with a consumer that joins no group
//!   (it only assigns), keeping the latest announcement per key;
//! - every few seconds it reads the partition counts of the input topics, so that a
//!   partition no member holds is known too.
//!
//! Guarantees: a member whose latest heartbeat is older than `kafka.members_stale_ms` is
//! not [`live`](MemberTable::live) (a SIGKILLed instance drops out after that long even
//! though it wrote no tombstone); a malformed record is skipped, never fatal. The heartbeat
//! is the announcer's wall clock, so hosts' clocks must agree well within the staleness.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::app_state::AppState;
use crate::kafka::client::{ClientSettings, Role};

/// One partition as a member announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AnnouncedPartition {
    /// Input topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to fold.
    pub offset: i64,
    /// The newest event `ts` folded, in microseconds (none before any event).
    pub watermark: Option<i64>,
    /// Whether it has caught up since its assignment (false while restoring).
    pub caught_up: bool,
}

/// A member's record in the members topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// The instance id (also the record's key).
    pub id: String,
    /// Where its HTTP answers (`http.advertised_url`).
    pub url: String,
    /// The partitions it holds.
    pub partitions: Vec<AnnouncedPartition>,
    /// When it announced, in milliseconds since the epoch (its wall clock).
    pub heartbeat: i64,
}

/// What this instance knows of its group.
#[derive(Debug, Default)]
pub struct MemberTable {
    /// The latest announcement of each member (by id).
    members: RwLock<HashMap<String, Announcement>>,
    /// Every partition of the input topics, as the last metadata read gave them.
    partitions: RwLock<BTreeSet<(String, i32)>>,
}

impl MemberTable {
    /// Records a record of the members topic: an announcement, or a tombstone (`None`).
    pub fn apply(&self, key: &str, value: Option<&[u8]>) {
        let mut m = self.members.write().unwrap_or_else(|e| e.into_inner());
        match value.map(serde_json::from_slice::<Announcement>) {
            None => {
                m.remove(key);
            }
            Some(Ok(a)) if a.id == key => {
                m.insert(key.to_string(), a);
            }
            Some(_) => tracing::debug!(key, "members topic: skipped a malformed record"),
        }
    }

    /// The members whose heartbeat is at most `stale` old at `now_ms`, by id.
    pub fn live(&self, now_ms: i64, stale: Duration) -> Vec<Announcement> {
        let limit = now_ms - stale.as_millis() as i64;
        let m = self.members.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Announcement> = m
            .values()
            .filter(|a| a.heartbeat >= limit)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Every partition of the input topics (empty until the first metadata read).
    pub fn all_partitions(&self) -> BTreeSet<(String, i32)> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the partitions of the input topics.
    pub fn set_partitions(&self, p: BTreeSet<(String, i32)>) {
        *self.partitions.write().unwrap_or_else(|e| e.into_inner()) = p;
    }
}

/// What the members thread needs.
pub struct MembersSettings {
    /// The Kafka clients' settings.
    pub clients: ClientSettings,
    /// The members topic.
    pub topic: String,
    /// The consumer group (names the reader's unused group id).
    pub group_id: String,
    /// The input topics.
    pub inputs: Vec<String>,
    /// This instance's id and URL.
    pub id: String,
    /// This instance's advertised URL.
    pub url: String,
    /// How often to announce.
    pub interval: Duration,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// This instance's partitions, as the latest snapshot gives them.
fn own_partitions(app: &AppState) -> Vec<AnnouncedPartition> {
    let mut v: Vec<AnnouncedPartition> = app
        .snapshot()
        .partitions
        .iter()
        .map(|p| AnnouncedPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            offset: p.position,
            watermark: p.watermark,
            caught_up: p.caught_up,
        })
        .collect();
    v.sort();
    v
}

/// Creates the members topic if missing (compacted, one partition).
pub async fn ensure_topic(clients: &ClientSettings, topic: &str) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::error::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> = clients.admin().create()?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact")
        .set("delete.retention.ms", "3600000");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics([&new], &opts).await?.into_iter().next() {
        Some(Ok(_)) => tracing::info!(topic, "created the members topic"),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
        Some(Err((_, e))) => anyhow::bail!("cannot create kafka.members_topic `{topic}`: {e}"),
    }
    Ok(())
}

/// Starts the members thread; it runs until `stop`, then writes the tombstone.
pub fn spawn(
    s: MembersSettings,
    table: Arc<MemberTable>,
    app: Arc<AppState>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let producer: BaseProducer = s
        .clients
        .build(
            Role::Producer,
            &[("linger.ms", "5")],
            &[("enable.idempotence", "true")],
        )
        .create()?;
    let reader_group = format!("{}-members-reader", s.group_id);
    let consumer: BaseConsumer = s
        .clients
        .build(
            Role::Consumer,
            &[("auto.offset.reset", "earliest")],
            &[
                ("group.id", reader_group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create()?;
    let thread = std::thread::Builder::new()
        .name("group-members".into())
        .spawn(move || run(s, table, app, stop, producer, consumer))?;
    Ok(thread)
}

fn run(
    s: MembersSettings,
    table: Arc<MemberTable>,
    app: Arc<AppState>,
    stop: Arc<AtomicBool>,
    producer: BaseProducer,
    consumer: BaseConsumer,
) {
    let mut assigned = 0usize;
    let mut last: Option<Vec<AnnouncedPartition>> = None;
    let mut next_announce = Instant::now();
    let mut next_metadata = Instant::now();
    while !stop.load(Ordering::Acquire) {
        if Instant::now() >= next_metadata {
            next_metadata = Instant::now() + Duration::from_secs(3);
            assigned = read_metadata(&s, &table, &consumer, assigned);
        }
        let mine = own_partitions(&app);
        // Offsets move all the time: only the set of partitions and their catch-up count
        // as a change worth announcing at once.
        let shape = |v: &[AnnouncedPartition]| -> Vec<(String, i32, bool)> {
            v.iter()
                .map(|p| (p.topic.clone(), p.partition, p.caught_up))
                .collect()
        };
        let changed = last.as_deref().map(shape) != Some(shape(&mine));
        if changed || Instant::now() >= next_announce {
            let a = Announcement {
                id: s.id.clone(),
                url: s.url.clone(),
                partitions: mine.clone(),
                heartbeat: now_ms(),
            };
            if let Ok(json) = serde_json::to_vec(&a) {
                let r = producer.send(BaseRecord::to(&s.topic).key(&s.id).payload(&json));
                if let Err((e, _)) = r {
                    tracing::warn!(error = %e, "cannot announce this instance in the members topic");
                }
            }
            // Our own announcement counts at once (the reader sees it a moment later).
            table.apply(&s.id, serde_json::to_vec(&a).ok().as_deref());
            last = Some(mine);
            next_announce = Instant::now() + s.interval;
        }
        producer.poll(Duration::ZERO);
        // Read what arrived (the poll's timeout paces the loop).
        let mut budget = 1000;
        let mut wait = Duration::from_millis(100);
        while budget > 0 {
            match consumer.poll(wait) {
                Some(Ok(m)) => {
                    if let Some(k) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                        table.apply(k, m.payload());
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "members topic read");
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
            budget -= 1;
        }
    }
    let r = producer.send(BaseRecord::<str, [u8]>::to(&s.topic).key(s.id.as_str()));
    if let Err((e, _)) = r {
        tracing::warn!(error = %e, "cannot write this instance's tombstone to the members topic");
    }
    let _ = producer.flush(Duration::from_secs(2));
}

/// Reads the input topics' partition counts into `table`, and (re)assigns the members
/// topic's partitions from their beginning when their count changed. Returns how many
/// members-topic partitions are assigned.
fn read_metadata(
    s: &MembersSettings,
    table: &MemberTable,
    consumer: &BaseConsumer,
    assigned: usize,
) -> usize {
    let Ok(md) = consumer.fetch_metadata(None, Duration::from_secs(5)) else {
        return assigned;
    };
    let mut all = BTreeSet::new();
    let mut members_partitions = 0;
    for t in md.topics() {
        if s.inputs.iter().any(|i| i == t.name()) {
            for p in t.partitions() {
                all.insert((t.name().to_string(), p.id()));
            }
        }
        if t.name() == s.topic {
            members_partitions = t.partitions().len();
        }
    }
    if !all.is_empty() {
        table.set_partitions(all);
    }
    if members_partitions != assigned && members_partitions > 0 {
        let mut tpl = TopicPartitionList::new();
        for p in 0..members_partitions as i32 {
            let _ = tpl.add_partition_offset(&s.topic, p, Offset::Beginning);
        }
        if consumer.assign(&tpl).is_ok() {
            return members_partitions;
        }
    }
    assigned
}

/// The live members' partitions, by partition: who holds it (for the `missing` answer).
pub fn holders(members: &[Announcement]) -> BTreeMap<(String, i32), Vec<String>> {
    let mut out: BTreeMap<(String, i32), Vec<String>> = BTreeMap::new();
    for m in members {
        for p in &m.partitions {
            out.entry((p.topic.clone(), p.partition))
                .or_default()
                .push(m.id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(id: &str, hb: i64) -> Vec<u8> {
        serde_json::to_vec(&Announcement {
            id: id.into(),
            url: "http://x".into(),
            partitions: vec![],
            heartbeat: hb,
        })
        .unwrap()
    }

    #[test]
    fn stale_members_and_tombstones_drop_out_and_garbage_is_skipped() {
        let t = MemberTable::default();
        t.apply("a", Some(&ann("a", 10_000)));
        t.apply("b", Some(&ann("b", 1_000)));
        t.apply("c", Some(&ann("c", 10_000)));
        t.apply("d", Some(b"not json"));
        t.apply("e", Some(&ann("someone-else", 10_000)));
        let ids = |v: Vec<Announcement>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(ids(t.live(12_000, Duration::from_secs(5))), ["a", "c"]);
        t.apply("c", None);
        assert_eq!(ids(t.live(12_000, Duration::from_secs(5))), ["a"]);
        assert_eq!(ids(t.live(12_000, Duration::from_secs(60))), ["a", "b"]);
    }
}
