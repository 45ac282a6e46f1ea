//! The decision log: where the outbox keeps each decision and its outcome durably.
//!
//! Owns the [`DecisionLog`] trait, the record format ([`Entry`], JSON) and two logs: the
//! Kafka one ([`KafkaLog`], a compacted topic keyed by the idempotency key, the service's)
//! and an in-memory one ([`MemoryLog`], for dry runs, tests and the demo's mock cluster,
//! which cannot create compacted topics). Guarantees:
//! - [`DecisionLog::load`] returns the latest entry of every key written before it was
//!   called (the whole topic up to its end offsets at that moment);
//! - [`DecisionLog::record`] queues the write before it returns (so writes made in order
//!   are written in order, and a caller that may not wait, like `submit`, can still start
//!   one), and its future resolves only once the write is durable (acknowledged by the
//!   brokers under `acks=all`);
//! - [`DecisionLog::poll_updates`] returns the entries written since the last load or poll
//!   (by this process or another instance), up to the end offsets at the time of the call.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::config::KafkaConfig;
use crate::core::Notification;
use crate::kafka::client::{ClientSettings, Role};

/// A boxed, sendable future (the log trait is used as `Arc<dyn DecisionLog>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a decision stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Decided, not yet sent (queued, deferred, retrying, or waiting for a restart).
    Pending,
    /// Accepted by the transport. Final.
    Sent,
    /// Refused (bad address, header injection), rejected with a 5xx, or out of attempts. Final.
    Failed,
}

impl EntryState {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Sent | Self::Failed)
    }
}

/// One record of the log, the value of a message keyed by the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub state: EntryState,
    #[serde(deserialize_with = "notification_json::deserialize")]
    pub notification: Notification,
    /// Transport attempts made so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Wall-clock time of this record (RFC 3339).
    pub updated_at: String,
}

impl Entry {
    pub fn new(state: EntryState, notification: Notification) -> Self {
        Self {
            state,
            notification,
            attempts: 0,
            last_error: None,
            updated_at: now_rfc3339(),
        }
    }
}

/// Reads a notification back from JSON (kept as a module so the field's attribute names
/// one place).
mod notification_json {
    use serde::{Deserialize, Deserializer};

    use crate::core::Notification;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Notification, D::Error> {
        Notification::deserialize(d)
    }
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Durable storage of decisions and their outcomes, keyed by idempotency key.
pub trait DecisionLog: Send + Sync {
    /// Every key's latest entry, as written before this call.
    fn load(&self) -> BoxFuture<'_, anyhow::Result<HashMap<String, Entry>>>;
    /// Writes `entry` under `key`: queued before returning, durable when the future resolves.
    fn record(&self, key: &str, entry: &Entry) -> BoxFuture<'static, anyhow::Result<()>>;
    /// Entries written since the last `load` or `poll_updates` (by anyone), in log order.
    fn poll_updates(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, Entry)>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// What and where, for logs.
    fn describe(&self) -> String;
}

/// An in-memory log. Clones share the same entries, so a second outbox built on a clone
/// sees what the first one wrote (a restart, in tests).
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the current entries.
    pub fn snapshot(&self) -> HashMap<String, Entry> {
        self.entries.lock().expect("memory log lock").clone()
    }
}

impl DecisionLog for MemoryLog {
    fn load(&self) -> BoxFuture<'_, anyhow::Result<HashMap<String, Entry>>> {
        let map = self.snapshot();
        Box::pin(async move { Ok(map) })
    }

    fn record(&self, key: &str, entry: &Entry) -> BoxFuture<'static, anyhow::Result<()>> {
        self.entries
            .lock()
            .expect("memory log lock")
            .insert(key.to_string(), entry.clone());
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        "in-memory decision log (not durable)".into()
    }
}

/// The Kafka log: a compacted topic keyed by the idempotency key, JSON values.
pub struct KafkaLog {
    topic: String,
    producer: FutureProducer,
    reader: tokio::sync::Mutex<Reader>,
    load_timeout: Duration,
}

struct Reader {
    consumer: Arc<StreamConsumer>,
    /// Next offset to read, by partition (after `load`).
    next: HashMap<i32, i64>,
    assigned: bool,
}

impl KafkaLog {
    /// Connects to `kafka.brokers` and makes sure `kafka.notifications_topic` exists,
    /// creating it with `cleanup.policy=compact` if missing (with `partitions`
    /// partitions and the brokers' default replication factor).
    pub async fn connect(cfg: &KafkaConfig, partitions: i32) -> anyhow::Result<Self> {
        let topic = cfg.notifications_topic.clone();
        let clients = ClientSettings::from_config(cfg);
        ensure_topic(&clients, &topic, partitions).await?;
        let pc = clients.build(
            Role::Producer,
            &[],
            &[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "1"),
            ],
        );
        let producer: FutureProducer = pc
            .create()
            .context("cannot create the notifications producer")?;
        let group = format!("keypulse-outbox-{}", uuid::Uuid::new_v4());
        let cc = clients.build(
            Role::Consumer,
            &[],
            &[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
                ("auto.offset.reset", "earliest"),
                ("fetch.wait.max.ms", "100"),
            ],
        );
        let consumer: StreamConsumer = cc
            .create()
            .context("cannot create the notifications consumer")?;
        Ok(Self {
            topic,
            producer,
            reader: tokio::sync::Mutex::new(Reader {
                consumer: Arc::new(consumer),
                next: HashMap::new(),
                assigned: false,
            }),
            load_timeout: Duration::from_secs(120),
        })
    }

    /// The topic's end offsets, by partition.
    async fn end_offsets(
        &self,
        consumer: &Arc<StreamConsumer>,
    ) -> anyhow::Result<HashMap<i32, (i64, i64)>> {
        let c = consumer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<HashMap<i32, (i64, i64)>> {
            let t = Duration::from_secs(10);
            // A topic just created (by another instance, or by us) may be unknown to the
            // broker answering for a few seconds: wait for it, at most 10 s.
            let since = std::time::Instant::now();
            let (md, mt) = loop {
                let md = c
                    .fetch_metadata(Some(&topic), t)
                    .with_context(|| format!("no metadata for topic {topic}"))?;
                let mt = md
                    .topics()
                    .iter()
                    .position(|x| x.name() == topic)
                    .with_context(|| format!("topic {topic} not in metadata"))?;
                match md.topics()[mt].error().map(RDKafkaErrorCode::from) {
                    None => break (md, mt),
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                        if since.elapsed() < Duration::from_secs(10) =>
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Some(e) => anyhow::bail!("topic {topic}: {e:?}"),
                }
            };
            let mt = &md.topics()[mt];
            let mut out = HashMap::new();
            for p in mt.partitions() {
                let (lo, hi) = c
                    .fetch_watermarks(&topic, p.id(), t)
                    .with_context(|| format!("no watermarks for {topic}/{}", p.id()))?;
                out.insert(p.id(), (lo, hi));
            }
            if out.is_empty() {
                anyhow::bail!("topic {topic} has no partitions");
            }
            Ok(out)
        })
        .await?
    }

    /// Reads from the current positions until every partition reaches `ends`.
    async fn read_to(
        &self,
        reader: &mut Reader,
        ends: &HashMap<i32, (i64, i64)>,
    ) -> anyhow::Result<Vec<(String, Entry)>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + self.load_timeout;
        let behind = |next: &HashMap<i32, i64>| {
            ends.iter()
                .any(|(p, (lo, hi))| next.get(p).copied().unwrap_or(*lo).max(*lo) < *hi)
        };
        while behind(&reader.next) {
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "reading {} did not reach its end offsets within {:?}",
                    self.topic,
                    self.load_timeout
                );
            }
            match tokio::time::timeout(Duration::from_millis(250), reader.consumer.recv()).await {
                Ok(Ok(m)) => {
                    reader.next.insert(m.partition(), m.offset() + 1);
                    let (Some(key), Some(payload)) = (m.key(), m.payload()) else {
                        continue; // a tombstone or a keyless record
                    };
                    let key = String::from_utf8_lossy(key).into_owned();
                    match serde_json::from_slice::<Entry>(payload) {
                        Ok(e) => out.push((key, e)),
                        Err(e) => tracing::warn!(
                            topic = %self.topic,
                            offset = m.offset(),
                            error = %e,
                            "unreadable record in the notifications topic, skipped"
                        ),
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "notifications consumer error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    // No message: positions still move past control records and gaps.
                    if let Ok(pos) = reader.consumer.position() {
                        for el in pos.elements() {
                            if let Offset::Offset(o) = el.offset() {
                                let e = reader.next.entry(el.partition()).or_insert(o);
                                *e = (*e).max(o);
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

pub(crate) async fn ensure_topic(
    clients: &ClientSettings,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = clients
        .admin()
        .create()
        .context("cannot create the Kafka admin client")?;
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(15)));
    match tokio::time::timeout(Duration::from_secs(20), admin.create_topics([&new], &opts)).await {
        Ok(Ok(results)) => {
            for r in results {
                match r {
                    Ok(name) => {
                        tracing::info!(topic = %name, "created the compacted notifications topic")
                    }
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((name, code)) => tracing::warn!(
                        topic = %name,
                        error = ?code,
                        "could not create the notifications topic; using it as it is"
                    ),
                }
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(topic, error = %e, "CreateTopics failed; using the topic as it is")
        }
        Err(_) => tracing::warn!(topic, "CreateTopics timed out; using the topic as it is"),
    }
    Ok(())
}

impl DecisionLog for KafkaLog {
    fn load(&self) -> BoxFuture<'_, anyhow::Result<HashMap<String, Entry>>> {
        Box::pin(async move {
            let mut reader = self.reader.lock().await;
            let consumer = reader.consumer.clone();
            let ends = self.end_offsets(&consumer).await?;
            let mut tpl = TopicPartitionList::new();
            for p in ends.keys() {
                tpl.add_partition_offset(&self.topic, *p, Offset::Beginning)?;
            }
            consumer
                .assign(&tpl)
                .context("cannot assign the notifications topic")?;
            reader.assigned = true;
            reader.next = ends.iter().map(|(p, (lo, _))| (*p, *lo)).collect();
            let records = self.read_to(&mut reader, &ends).await?;
            let mut map = HashMap::with_capacity(records.len());
            for (k, e) in records {
                map.insert(k, e);
            }
            Ok(map)
        })
    }

    fn record(&self, key: &str, entry: &Entry) -> BoxFuture<'static, anyhow::Result<()>> {
        let payload = match serde_json::to_vec(entry) {
            Ok(p) => p,
            Err(e) => return Box::pin(async move { Err(e.into()) }),
        };
        let rec = FutureRecord::to(&self.topic).key(key).payload(&payload);
        match self.producer.send_result(rec) {
            Ok(delivery) => Box::pin(async move {
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(anyhow::anyhow!("notifications topic write: {e}")),
                    Err(_) => Err(anyhow::anyhow!("notifications producer gone")),
                }
            }),
            Err((e, _)) => {
                let msg = format!("notifications topic write not queued: {e}");
                Box::pin(async move { Err(anyhow::anyhow!(msg)) })
            }
        }
    }

    fn poll_updates(&self) -> BoxFuture<'_, anyhow::Result<Vec<(String, Entry)>>> {
        Box::pin(async move {
            let mut reader = self.reader.lock().await;
            if !reader.assigned {
                return Ok(Vec::new());
            }
            let consumer = reader.consumer.clone();
            let mut ends = self.end_offsets(&consumer).await?;
            // Partitions added after the load are not followed (the topic is made with one).
            ends.retain(|p, _| reader.next.contains_key(p));
            self.read_to(&mut reader, &ends).await
        })
    }

    fn describe(&self) -> String {
        format!("Kafka topic {} (compacted)", self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::signals::{Facts, LicenseFacts};
    use crate::core::NotificationKind;

    #[test]
    fn entries_of_every_kind_round_trip_through_json() {
        let base = Notification {
            kind: NotificationKind::ChurnWarning,
            to: "cs@example.com".into(),
            customer_id: "c".into(),
            license_key: None,
            at: 1_700_000_000_000_000,
            reasons: vec!["payment_failed".into()],
            facts: Some(Facts::ChurnWarning {
                score: 50,
                penalties: vec![("open_ticket".into(), 10)],
                licenses: vec![LicenseFacts {
                    license_key: "K".into(),
                    plan: "pro".into(),
                    status: "active".into(),
                    mrr_cents: 29900,
                }],
                mrr_cents: 29900,
            }),
        };
        let upgrade = Notification {
            kind: NotificationKind::Upgrade,
            license_key: Some("K".into()),
            facts: Some(Facts::Upgrade {
                plan: "pro".into(),
                domains_used: 1,
                domain_limit: 1,
                rate_limited_30d: 11,
                features_denied_30d: 0,
                invites_30d: 0,
            }),
            ..base.clone()
        };
        let renewal = Notification {
            kind: NotificationKind::Renewal,
            license_key: Some("K".into()),
            facts: Some(Facts::Renewal {
                plan: "pro".into(),
                expires_at: None,
            }),
            ..base.clone()
        };
        let bare = Notification {
            facts: None,
            ..base.clone()
        };
        for n in [base, upgrade, renewal, bare] {
            let e = Entry::new(EntryState::Sent, n);
            let back: Entry = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
            assert_eq!(back, e);
        }
    }
}
