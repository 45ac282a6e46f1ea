//! Exactly-once commits of the group consumer: staging, one transaction per commit, and
//! settling its outcome with the fold workers.
//!
//! Owns the commit cycle of exactly-once mode and the parts it needs: the
//! [`Takeover`] (restore on assignment), the transactional [`Committer`] (its own
//! thread), and the [`EosMetrics`]. Driven by the consumer's poll thread:
//! - [`Eos::start`]: every fold worker stages what its partitions add to the commit
//!   (`durable.rs`: changed customers, partition figures, input offset, dead letters,
//!   decision records), the consumer's group metadata is taken afresh (with KIP-848 the
//!   member epoch moves on every group change), and the batch goes to the committer's
//!   thread; the poll thread goes on polling meanwhile;
//! - [`Eos::settle`]: once the outcome is in, every worker is told: committed (the
//!   decisions go to the email outbox now) or rolled back (the changes go into the next
//!   commit);
//! - [`Eos::commit_now`]: the same, waited for, on revocation and at shutdown.
//!
//! Guarantees: at most one commit is in flight; its outcome is settled before the next
//! is staged; nothing is committed before the decision sink is ready (the outbox has
//! loaded the decision log, so it knows which decisions are recorded already); the transaction calls never run on a fold worker or the async runtime.

use std::sync::mpsc::{self, SyncSender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::metrics::Metrics;
use crate::sink::DecisionSink;

use super::durable::StagedPartition;
use super::eos_metrics::EosMetrics;
use super::fold::WorkerMsg;
use super::takeover::Takeover;
use super::txn::{CommitBatch, CommitError, Committer, PendingCommit};
use super::TopicPartition;

/// A commit starts before `kafka.commit_interval_ms` when the assigned partitions hold
/// this many changed customers: it bounds a transaction's size (a few MB of records)
/// and its duration, well inside `kafka.transaction_timeout_ms`.
pub const EARLY_COMMIT_CUSTOMERS: i64 = 20_000;

/// How long a worker may take to stage.
const STAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A commit handed to the committer.
struct InFlight {
    pending: PendingCommit,
    tps: Vec<TopicPartition>,
    started: Instant,
}

/// Exactly-once mode's parts.
pub struct Eos {
    /// Restore on assignment.
    pub takeover: Takeover,
    /// The transactional committer.
    committer: Committer,
    /// Restore and transaction metrics.
    pub metrics: EosMetrics,
    in_flight: Mutex<Option<InFlight>>,
}

impl Eos {
    /// Exactly-once mode from its parts.
    pub fn new(takeover: Takeover, committer: Committer, metrics: EosMetrics) -> Self {
        Self {
            takeover,
            committer,
            metrics,
            in_flight: Mutex::new(None),
        }
    }

    /// Stages the partitions `only` names (all when `None`) and hands the commit to the
    /// committer. `false` when a commit is still in flight or there is nothing to commit.
    pub fn start<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        workers: &[SyncSender<WorkerMsg>],
        only: Option<&[TopicPartition]>,
        sink: &dyn DecisionSink,
    ) -> bool {
        let mut slot = lock(&self.in_flight);
        if slot.is_some() {
            return false;
        }
        if !sink.is_ready() {
            // The outbox has not loaded the decision log yet: it could not tell which
            // decisions are recorded already, so nothing is committed before it has.
            return false;
        }
        let started = Instant::now();
        let staged = stage(workers, only);
        if staged.is_empty() {
            return false;
        }
        let tps: Vec<TopicPartition> = staged.iter().map(|s| s.tp.clone()).collect();
        let mut batch = CommitBatch::default();
        for s in staged {
            if s.next >= 0 {
                batch.offsets.push((s.tp, s.next));
            }
            batch.records.extend(s.records);
        }
        batch.group = consumer.group_metadata();
        if batch.group.is_none() && !batch.offsets.is_empty() {
            tracing::warn!("no group metadata yet: commit postponed");
            settle_workers(workers, tps, false);
            return false;
        }
        *slot = Some(InFlight {
            pending: self.committer.submit(batch),
            tps,
            started,
        });
        true
    }

    /// Settles the commit in flight, if its outcome is in (waiting for it when `wait`).
    /// Returns the outcome (`Some(true)`: committed) when one was settled.
    pub fn settle(
        &self,
        workers: &[SyncSender<WorkerMsg>],
        wait: bool,
        metrics: &Metrics,
    ) -> Option<bool> {
        let mut slot = lock(&self.in_flight);
        let reply = {
            let f = slot.as_ref()?;
            if wait {
                None
            } else {
                Some(f.pending.try_result()?)
            }
        };
        let f = slot.take()?;
        let reply = match reply {
            Some(r) => r,
            None => f.pending.wait(),
        };
        let seconds = f.started.elapsed().as_secs_f64();
        let ok = match reply {
            Ok(c) => {
                self.metrics.transaction("committed", seconds);
                self.metrics.written(c.records, c.bytes);
                super::events::OffsetsCommitted {
                    partitions: c.offsets,
                }
                .emit(metrics);
                true
            }
            Err(e) => {
                let outcome = match &e {
                    CommitError::RolledBack(_) => "rolled_back",
                    CommitError::Fenced(_) => "fenced",
                    CommitError::Fatal(_) | CommitError::Stopped => "fatal",
                    CommitError::TooLarge { .. } | CommitError::Invalid(_) => "refused",
                };
                self.metrics.transaction(outcome, seconds);
                super::events::OffsetCommitFailed { error: &e }.emit(metrics);
                false
            }
        };
        settle_workers(workers, f.tps, ok);
        Some(ok)
    }

    /// Commits the partitions `only` names (all when `None`) now: settles the commit in
    /// flight, stages, commits and settles. `true` when everything staged is committed
    /// (or there was nothing to commit).
    pub fn commit_now<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        workers: &[SyncSender<WorkerMsg>],
        only: Option<&[TopicPartition]>,
        metrics: &Metrics,
        sink: &dyn DecisionSink,
    ) -> bool {
        self.settle(workers, true, metrics);
        if !self.start(consumer, workers, only, sink) {
            return true;
        }
        self.settle(workers, true, metrics) == Some(true)
    }

    /// The transactional id in use.
    pub fn transactional_id(&self) -> &str {
        self.committer.transactional_id()
    }
}

/// Asks every worker to stage (the partitions `only` names) and gathers the answers.
fn stage(
    workers: &[SyncSender<WorkerMsg>],
    only: Option<&[TopicPartition]>,
) -> Vec<StagedPartition> {
    let mut replies = Vec::with_capacity(workers.len());
    for w in workers {
        let (reply, rx) = mpsc::channel();
        if w.send(WorkerMsg::Stage {
            only: only.map(<[TopicPartition]>::to_vec),
            reply,
        })
        .is_ok()
        {
            replies.push(rx);
        }
    }
    let mut out = Vec::new();
    for rx in replies {
        match rx.recv_timeout(STAGE_TIMEOUT) {
            Ok(staged) => out.extend(staged),
            Err(_) => tracing::error!("a fold worker did not stage in time"),
        }
    }
    out
}

fn settle_workers(workers: &[SyncSender<WorkerMsg>], tps: Vec<TopicPartition>, committed: bool) {
    for w in workers {
        let _ = w.send(WorkerMsg::Settle {
            tps: tps.clone(),
            committed,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets exactly-once mode up at start: checks (or creates) each input topic's changelog,
/// makes sure the dead-letter and notifications topics exist (a transaction writing to a
/// missing topic would abort again and again), and starts the committer, whose
/// `init_transactions` fences an earlier incarnation of this instance. `stop` (the
/// service's stop flag) cancels a restore under way (`restore.rs`).
pub async fn connect(
    config: &crate::config::Config,
    clients: &super::client::ClientSettings,
    registry: &prometheus::Registry,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Eos> {
    use anyhow::Context;
    use std::collections::HashMap;

    use super::changelog::{ensure_changelog, partition_counts, topic_config};
    use super::restore::ChangelogReader;
    use super::txn::TxnSettings;

    let k = &config.kafka;
    let timeout = Duration::from_millis(k.connect_timeout_ms);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = clients
        .admin()
        .create()
        .context("cannot create the Kafka admin client")?;
    let mut changelog_of = HashMap::new();
    let mut max_bytes = HashMap::new();
    let mut partitions = 1;
    for input in &k.topics {
        let t0 = Instant::now();
        loop {
            let counts = partition_counts(&admin, &[input], timeout).map_err(|e| {
                anyhow::anyhow!(
                    "no Kafka broker answered at kafka.brokers = `{}` within {} s: {e}",
                    k.brokers,
                    timeout.as_secs()
                )
            })?;
            if let Some(n) = counts.get(input.as_str()) {
                partitions = partitions.max(*n);
                break;
            }
            if t0.elapsed() > timeout {
                anyhow::bail!(
                    "input topic {input} (kafka.topics) does not exist: exactly-once mode needs it \
                     to create its co-partitioned changelog; create it first"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let name = k.changelog_topic_of(input);
        let cl = ensure_changelog(
            &admin,
            input,
            &name,
            &topic_config(&k.changelog_topic_config),
            timeout,
        )
        .await?;
        tracing::info!(input = %input, changelog = %cl.name, partitions = cl.partitions, created = cl.created, "changelog topic checked");
        max_bytes.insert(cl.name.clone(), cl.max_message_bytes);
        changelog_of.insert(input.clone(), cl.name);
    }
    ensure_plain_topic(&admin, &k.dead_letter_topic, partitions, timeout).await?;
    let notifications_topic =
        (config.email.decision_log == "kafka").then(|| k.notifications_topic.clone());
    if let Some(t) = &notifications_topic {
        crate::email::log::ensure_topic(clients, t, 1).await?;
    }
    let instance = super::instance::instance_id(k, &config.http.bind);
    let settings = TxnSettings {
        transactional_id: super::instance::transactional_id(&k.group_id, &instance),
        transaction_timeout: Duration::from_millis(k.transaction_timeout_ms),
        init_timeout: Duration::from_secs(60),
    };
    let c = clients.clone();
    let committer = tokio::task::spawn_blocking(move || Committer::start(&c, settings, max_bytes))
        .await?
        .context("cannot start the transactional committer (kafka.instance_id, kafka.transaction_timeout_ms)")?;
    tracing::info!(
        transactional_id = committer.transactional_id(),
        "exactly-once mode: transactional committer ready"
    );
    let record_limits = changelog_of
        .values()
        .map(|t| (t.clone(), committer.record_limit(t)))
        .collect();
    let takeover = Takeover {
        reader: ChangelogReader::new(clients)?.cancelled_by(stop),
        changelog_of,
        record_limits,
        notifications_topic,
        allow_partial_rebuild: k.allow_partial_rebuild,
        timeout: Duration::from_millis(k.restore_timeout_ms),
    };
    let metrics =
        EosMetrics::register(registry).context("cannot register the exactly-once metrics")?;
    Ok(Eos::new(takeover, committer, metrics))
}

/// Creates `topic` (delete policy, `partitions` partitions) unless it exists.
async fn ensure_plain_topic<C: rdkafka::ClientContext + 'static>(
    admin: &rdkafka::admin::AdminClient<C>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    if super::changelog::partition_counts(admin, &[topic], timeout)?.contains_key(topic) {
        return Ok(());
    }
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(-1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    match admin.create_topics([&new], &opts).await?.into_iter().next() {
        Some(Ok(_)) => tracing::info!(topic, "created the dead-letter topic"),
        Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))) | None => {}
        Some(Err((_, code))) => anyhow::bail!("cannot create topic {topic}: {code}"),
    }
    Ok(())
}
