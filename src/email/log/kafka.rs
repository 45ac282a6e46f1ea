//! The Kafka decision log ([`KafkaLog`]): a compacted topic keyed by the idempotency key,
//! JSON values, and the creation of such a topic ([`ensure_topic`]).
//!
//! Guarantees: `load` returns the latest entry of every key up to the end offsets at the
//! call; `record` queues the write before it returns and resolves once it is acknowledged
//! under `acks=all`; `poll_updates` returns the entries written since the last load or
//! poll, by any instance, up to the end offsets at the call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::kafka::client::{ClientSettings, Role};

use super::{BoxFuture, DecisionLog, Entry};

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
