//! The poll loop of the group consumer: polls, routes, and does the housekeeping.
//!
//! Owns the thread that drives the librdkafka consumer: each polled message goes to its
//! partition's batch (`router.rs`); every [`CHECK_EVERY`] messages, and whenever the
//! client has nothing to give, it sets up newly assigned partitions, settles and starts
//! exactly-once commits (or commits at-least-once offsets), and every 100 ms it flushes
//! partial batches, checks which partitions caught up and updates the lag gauge. At stop
//! it folds what was polled, commits, stops the workers and leaves the group.
//!
//! Guarantees: no message waits in a partial batch longer than the next empty poll or
//! 100 ms; the clock is read once per [`CHECK_EVERY`] messages, not per message.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::Offset;

use super::assign::WORKER_REPLY_TIMEOUT;
use super::consumer::Ctx;
use super::fold::WorkerMsg;
use super::router::Router;
use super::{PartitionProgress, TopicPartition, NO_OFFSET};

/// The poll loop looks at the clock, the commit and the housekeeping once every this many
/// messages (and whenever the client has nothing to give), not after each message.
pub const CHECK_EVERY: u32 = 64;

/// The high watermark the client last saw in a fetch response (no broker round trip).
fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &TopicPartition,
) -> Option<i64> {
    let topic = CString::new(tp.topic.as_bytes()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime; the topic is a
    // NUL-terminated string that outlives the call; the out-pointers are valid.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            tp.partition,
            &mut low,
            &mut high,
        )
    };
    (err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// Settings of the poll loop.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// How often folded offsets are committed.
    pub commit_interval: Duration,
    /// Whether the consumer uses keypulse's default `group.protocol=consumer` (then a
    /// warning suggests `classic` when no partition comes within 30 s).
    pub default_protocol: bool,
}

/// The poll loop: runs until `stop` is set, then hands over what was polled, stops the
/// workers, commits what they folded, and closes the consumer (leaving the group).
pub fn poll_loop(
    consumer: BaseConsumer<Ctx>,
    stop: Arc<AtomicBool>,
    settings: &PollSettings,
) -> PollEnd {
    let router = consumer.context().router.clone();
    let mut last_housekeeping = Instant::now();
    let mut last_lag = Instant::now();
    let mut last_commit = Instant::now();
    let mut committed: HashMap<TopicPartition, i64> = HashMap::new();
    let mut last_poll_error: Option<Instant> = None;
    let started = Instant::now();
    let mut warned_no_assignment = false;
    // Messages routed since the last flush, and since the last look at the clock.
    let mut unflushed = false;
    let mut since_check = 0u32;
    while !stop.load(Ordering::Acquire) {
        let timeout = if unflushed {
            Duration::ZERO
        } else {
            Duration::from_millis(100)
        };
        match consumer.poll(timeout) {
            Some(Ok(m)) => {
                router.setup_assigned(&consumer);
                router.route(&m);
                unflushed = true;
                since_check += 1;
                if since_check < CHECK_EVERY {
                    continue;
                }
            }
            Some(Err(e)) => {
                if let Some((code, reason)) = consumer.client().fatal_error() {
                    tracing::error!(error = %reason, code = ?code, "fatal Kafka consumer error: stopping");
                    router.stopping.store(true, Ordering::Release);
                    drop(consumer);
                    return PollEnd::Fatal(format!("fatal Kafka consumer error: {reason}"));
                }
                if last_poll_error.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    last_poll_error = Some(Instant::now());
                    tracing::warn!(error = %e, "consumer error (repeats within 5 s not logged)");
                }
            }
            None => {
                router.flush_batches(None);
                unflushed = false;
            }
        }
        since_check = 0;
        router.setup_assigned(&consumer);
        let housekeeping = last_housekeeping.elapsed() >= Duration::from_millis(100);
        if housekeeping {
            last_housekeeping = Instant::now();
            router.flush_batches(None);
            unflushed = false;
            if !warned_no_assignment
                && settings.default_protocol
                && started.elapsed() > Duration::from_secs(30)
                && !router.joined.load(Ordering::Acquire)
            {
                warned_no_assignment = true;
                tracing::warn!(
                    "no partition assigned after 30 s with group.protocol=consumer (KIP-848); \
                     brokers older than Apache Kafka 4.0 need kafka.properties.\"group.protocol\" = \"classic\""
                );
            }
            check_caught_up(&consumer, &router);
            if last_lag.elapsed() >= Duration::from_secs(1) {
                last_lag = Instant::now();
                update_lag(&consumer, &router);
            }
        }
        if let Some(eos) = &router.eos {
            eos.settle(&router.workers, false, &router.metrics);
        }
        // Checked with the housekeeping (every 100 ms), not per message.
        let early = housekeeping
            && router.eos.is_some()
            && router
                .partitions()
                .iter()
                .map(|p| p.dirty.load(Ordering::Acquire))
                .sum::<i64>()
                >= super::eos::EARLY_COMMIT_CUSTOMERS;
        if early || last_commit.elapsed() >= settings.commit_interval {
            last_commit = Instant::now();
            if let Some(eos) = &router.eos {
                eos.start(&consumer, &router.workers, None, &*router.sink);
                continue;
            }
            let due: Vec<(TopicPartition, i64)> = router
                .partitions()
                .iter()
                .map(|p| (p.tp.clone(), p.folded_next.load(Ordering::Acquire)))
                .filter(|(tp, next)| *next > committed.get(tp).copied().unwrap_or(NO_OFFSET))
                .collect();
            if router.commit(&consumer, &due, CommitMode::Async, Duration::from_secs(2)) {
                committed.extend(due);
            }
        }
    }

    // Shutdown: fold what was polled, stop the workers, commit, leave the group.
    tracing::info!("stopping the consumer: folding what was polled, then committing");
    router.flush_batches(None);
    if let Some(eos) = &router.eos {
        if eos.commit_now(
            &consumer,
            &router.workers,
            None,
            &router.metrics,
            &*router.sink,
        ) {
            tracing::info!("folded state, dead letters, decisions and offsets committed");
        } else {
            tracing::warn!("the last commit did not go through; the next owner restores the state last committed");
        }
    }
    let mut folded = Vec::new();
    for (i, w) in router.workers.iter().enumerate() {
        let (reply, rx) = mpsc::channel();
        if w.send(WorkerMsg::Stop { reply }).is_ok() {
            match rx.recv_timeout(WORKER_REPLY_TIMEOUT) {
                Ok(done) => folded.extend(done),
                Err(_) => tracing::error!(worker = i, "fold worker did not stop in time"),
            }
        }
    }
    router.stopping.store(true, Ordering::Release);
    if router.eos.is_none()
        && router.commit(&consumer, &folded, CommitMode::Sync, Duration::from_secs(3))
    {
        tracing::info!(partitions = folded.len(), "folded offsets committed");
    }
    drop(consumer); // closes: leaves the group (the revocation callback only unassigns now)
    tracing::info!("consumer closed");
    PollEnd::Stopped
}

/// Why the poll loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollEnd {
    /// `stop` was set: everything folded was committed, the workers are stopped.
    Stopped,
    /// The consumer hit a fatal error; the service cannot go on.
    Fatal(String),
}

fn check_caught_up<C: ConsumerContext>(consumer: &BaseConsumer<C>, router: &Router) {
    let pending: Vec<Arc<PartitionProgress>> = router
        .partitions()
        .into_iter()
        .filter(|p| !p.caught_up.load(Ordering::Acquire))
        .collect();
    if pending.is_empty() {
        return;
    }
    let positions: HashMap<(String, i32), Offset> = consumer
        .position()
        .map(|l| l.to_topic_map())
        .unwrap_or_default();
    for p in pending {
        if !p.path().folds() {
            continue; // paused: refused or failed, never caught up
        }
        let mut target = p.target.load(Ordering::Acquire);
        if target < 0 {
            if let Ok((low, high)) =
                consumer.fetch_watermarks(&p.tp.topic, p.tp.partition, Duration::from_secs(1))
            {
                p.low.store(low, Ordering::Release);
                p.high.store(high, Ordering::Release);
                p.target.store(high, Ordering::Release);
                target = high;
            } else {
                continue;
            }
        }
        let sent = p.sent_next.load(Ordering::Acquire);
        let folded = p.folded_next.load(Ordering::Acquire);
        if sent != folded {
            continue; // the worker has messages to fold
        }
        let polled = match positions.get(&(p.tp.topic.to_string(), p.tp.partition)) {
            Some(Offset::Offset(n)) => *n,
            _ => NO_OFFSET,
        };
        let at = folded.max(polled).max(p.low.load(Ordering::Acquire));
        if at >= target {
            p.caught_up.store(true, Ordering::Release);
            super::events::PartitionCaughtUp {
                tp: &p.tp,
                offset: at,
                target,
            }
            .emit();
        }
    }
}

fn update_lag<C: ConsumerContext>(consumer: &BaseConsumer<C>, router: &Router) {
    let mut lags = Vec::new();
    for p in router.partitions() {
        if let Some(high) = cached_high_watermark(consumer, &p.tp) {
            p.high.store(high, Ordering::Release);
        }
        if let Some(lag) = p.lag() {
            lags.push((p.tp.topic.to_string(), p.tp.partition, lag));
        }
    }
    router.metrics.set_consumer_lag(&lags);
}
