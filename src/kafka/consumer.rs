//! The group consumer: its creation, and its callbacks (rebalance, commits, errors).
//!
//! Owns the librdkafka consumer's context ([`Ctx`]) over the [`Router`] that hands each
//! assigned partition to a fold worker (`router.rs`, `assign.rs`); the poll thread
//! (`poll.rs`) only copies messages into per-partition batches and sends them to the
//! partition's worker (decoding and folding happen there, see `fold.rs`).
//!
//! Delivery guarantee, exactly-once mode (`kafka.exactly_once`): each newly assigned
//! partition is taken over in the rebalance callback (`takeover.rs`: restored from its
//! changelog, rebuilt, or refused and paused) and assigned at the offset its state goes
//! with; every `kafka.commit_interval_ms`, on revocation and at shutdown the folded state,
//! dead letters, decisions and offsets are committed in one transaction (`eos.rs`).
//! At-least-once mode (**at least once consumption, every event counted exactly once**):
//! - On assignment a partition is read from its beginning (`Offset::Beginning`), whatever
//!   the group committed, and its state is rebuilt from scratch. Its high watermark at
//!   that moment is its catch-up target: `/readyz` answers 200
//!   only when every assigned partition has folded up to its target.
//! - Offsets are committed only for messages already folded (and, for rejected ones, whose
//!   dead-letter copy was acknowledged: the dead-letter producer is flushed first), every
//!   `kafka.commit_interval_ms` asynchronously, and synchronously on revocation and shutdown.
//! - On revocation, the partition's pending messages are folded, its folded offsets are
//!   committed, and only then is its state dropped.
//! - The group's committed offset at assignment tells which messages someone already
//!   folded: those are folded again (to rebuild the state) but not counted in the
//!   `*_total` counters nor copied to the dead-letter topic again.
//! - `group.protocol=consumer` (KIP-848) is the default; `kafka.properties` may override
//!   any librdkafka property, this one included.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;

use super::client::ClientSettings;
use super::router::lock;
use super::TopicPartition;

pub use super::poll::{poll_loop, PollEnd, PollSettings};
pub use super::router::Router;

/// The consumer's callbacks.
pub struct Ctx {
    /// The shared side.
    pub router: Arc<Router>,
    /// Last time a client error was logged (errors repeat while a broker is down).
    last_error_log: Mutex<Option<Instant>>,
}

impl Ctx {
    /// Callbacks over `router`.
    pub fn new(router: Arc<Router>) -> Self {
        Self {
            router,
            last_error_log: Mutex::new(None),
        }
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::forward_librdkafka_log("consumer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let mut last = lock(&self.last_error_log);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %error, reason, "kafka client error (repeats within 5 s not logged)");
        }
    }
}

fn tps_of(tpl: &TopicPartitionList, router: &Router) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| TopicPartition {
            topic: router.intern(e.topic()),
            partition: e.partition(),
        })
        .collect()
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        *lock(&self.router.last_change) = Instant::now();
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut pause = TopicPartitionList::new();
                match &self.router.eos {
                    // Restore (or rebuild, or refuse) each one, then start it where its
                    // plan says.
                    Some(eos) => {
                        let tps = tps_of(tpl, &self.router);
                        let counted = lock(&self.router.counted_through).clone();
                        let plans = eos.takeover.plan(
                            consumer,
                            &tps,
                            &counted,
                            &*self.router.sink,
                            &eos.metrics,
                        );
                        let mut table = lock(&self.router.plans);
                        for p in plans {
                            let _ = tpl.set_partition_offset(&p.tp.topic, p.tp.partition, p.start);
                            if !p.path.folds() {
                                pause.add_partition(&p.tp.topic, p.tp.partition);
                            }
                            table.insert(p.tp.clone(), p);
                        }
                    }
                    // Rebuild from the beginning: start every new partition at its first offset.
                    None => {
                        let _ = tpl.set_all_offsets(Offset::Beginning);
                    }
                }
                let r = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                match r {
                    Ok(()) => {
                        if pause.count() > 0 {
                            if let Err(e) = consumer.pause(&pause) {
                                tracing::error!(error = %e, "cannot pause the partitions left unrestored");
                            }
                        }
                        let tps = tps_of(tpl, &self.router);
                        lock(&self.router.pending_assign).extend(tps);
                        self.router.assign_pending.store(true, Ordering::Release);
                        // The settle time counts from the end of a (possibly long) restore.
                        *lock(&self.router.last_change) = Instant::now();
                        self.router.joined.store(true, Ordering::Release);
                    }
                    Err(e) => tracing::error!(error = %e, "cannot take the assigned partitions"),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let tps = tps_of(tpl, &self.router);
                self.router.revoke(consumer, &tps);
                let r = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot release the revoked partitions");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                if !cooperative {
                    let _ = consumer.unassign();
                }
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => super::events::OffsetsCommitted {
                partitions: offsets.count(),
            }
            .emit(&self.router.metrics),
            // Nothing to commit (the offsets were committed already): not a commit.
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {
                tracing::debug!("offset commit: nothing new to commit")
            }
            Err(e) => super::events::OffsetCommitFailed { error: &e }.emit(&self.router.metrics),
        }
    }
}

/// Creates the consumer and subscribes it, after checking that the brokers answer.
///
/// Fails after `timeout` with an error naming `kafka.brokers` when no broker answers.
pub fn connect(
    k: &KafkaConfig,
    router: Arc<Router>,
    timeout: Duration,
) -> anyhow::Result<BaseConsumer<Ctx>> {
    let cfg = ClientSettings::from_config(k).group_consumer(&k.group_id);
    let consumer: BaseConsumer<Ctx> = cfg.create_with_context(Ctx::new(router)).map_err(|e| {
        anyhow::anyhow!("cannot create the Kafka consumer (check kafka.properties): {e}")
    })?;
    let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| {
        anyhow::anyhow!(
            "no Kafka broker answered at kafka.brokers = `{}` within {} s: {e}",
            k.brokers,
            timeout.as_secs()
        )
    })?;
    for t in &k.topics {
        let found = metadata
            .topics()
            .iter()
            .any(|m| m.name() == t && m.error().is_none());
        if !found {
            tracing::warn!(topic = %t, "topic not found (yet); waiting for it to be created");
        }
    }
    let topics: Vec<&str> = k.topics.iter().map(|s| s.as_str()).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to kafka.topics {:?}: {e}", k.topics))?;
    Ok(consumer)
}
