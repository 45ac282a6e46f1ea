//! Restore: a partition's state read back from its changelog, with the input offset it
//! goes with.
//!
//! Owns the reading side of the changelog. [`ChangelogReader::read_partitions`] reads
//! changelog partitions under `isolation.level=read_committed` from their beginning to
//! their end as it was when the read started, keeping the latest value of every key (a
//! tombstone deletes it) and putting chunked records back together (`changelog/chunk.rs`).
//! [`committed_then_changelog`] is the order a new owner of partitions must follow: first
//! the group's committed input offsets, then the changelog to its end, and only then may
//! the input be resumed at those offsets.
//!
//! The end is the partition's high watermark at the start (asked by a second,
//! `read_uncommitted`, consumer), not its last stable offset: Kafka answers a commit
//! before it writes the transaction's markers, so for a moment the last stable offset can
//! lie below a transaction whose offsets are already visible. Reading `read_committed` up
//! to the high watermark ends only once every transaction with records below it is
//! resolved: committed ones are read, aborted ones skipped. A transaction left open by a
//! killed instance therefore holds a restore until the coordinator aborts it, at most the
//! writer's `transaction.timeout.ms` (`kafka.transaction_timeout_ms`, 10 s) later, or at once
//! when the instance restarts with the same transactional id.
//!
//! Why that order: a transaction commits the changelog records and the input offsets
//! together. Fetched by a `read_committed` consumer, committed offsets are stable (the
//! broker makes the fetch wait while a transaction holding offsets of the group is open),
//! and once this instance owns a partition no other member's transaction can commit
//! offsets of it (its group epoch is stale). So nothing can be committed between the two
//! reads, and the changelog read to its end is exactly the state at the offsets fetched
//! first. In the other order, a zombie's commit could land between the two reads, and the
//! offsets would be ahead of the state.
//!
//! A restore can wait long (an orphaned transaction, up to `kafka.restore_timeout_ms`),
//! and it runs in the rebalance callback, on the poll thread. So it is cancellable: the
//! service's stop flag, set at shutdown, is the reader's cancel flag
//! ([`ChangelogReader::cancelled_by`]), and both waits (the committed
//! offsets, the read to the end) look at it at least every 2 s (the read every 100 ms)
//! and give up with
//! [`RestoreError::Cancelled`]. A cancelled restore has applied nothing, so the next owner
//! restores the partition as if this instance had never been assigned it.
//!
//! Guarantees: records past the end found at the start are not applied; a record that does
//! not fit the key scheme is reported in [`Restored::problems`], never applied; the figures
//! returned (records, bytes, seconds) are those the restore metrics show.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::changelog::chunk::{assemble, ChunkBook, Latest, Problem, Values};
use super::client::{ClientSettings, Role};
mod order;
pub use order::{committed_then_changelog, PartitionRestore};

/// Reads changelog partitions: a `read_committed` consumer reads the records, a
/// `read_uncommitted` one tells each partition's high watermark. Neither joins a group nor
/// commits.
pub struct ChangelogReader {
    records: BaseConsumer<ReaderContext>,
    ends: BaseConsumer<ReaderContext>,
    /// Set at shutdown: a restore under way gives up (see the module's doc).
    cancel: Arc<AtomicBool>,
}

/// How long one wait of a restore may last before it looks at the cancel flag again (the
/// committed-offsets fetch starts with it and doubles it up to [`CANCEL_CHECK_MAX`]).
const CANCEL_CHECK: Duration = Duration::from_millis(500);

/// The longest slice of the committed-offsets fetch: a broker slower than this to answer
/// one fetch would otherwise never be waited out (each slice asks again).
const CANCEL_CHECK_MAX: Duration = Duration::from_secs(2);

/// Forwards the readers' librdkafka logs.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        super::forward_librdkafka_log("changelog reader", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is what a restore waits for, not an error.
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(client = "changelog reader", error = %error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// A reader's settings: end-of-partition events, large fetches, a fresh `group.id` that
/// never joins (librdkafka wants one to assign partitions), and a short fetch wait. A
/// changelog partition ends with a transaction's commit marker, which is no message: the
/// read learns it has passed it only from the next fetch's answer, which the broker holds
/// up to `fetch.wait.max.ms` when there is nothing more (500 ms by default). The reader
/// lives only until the end it was sent to.
fn reader_config(client: &ClientSettings, isolation: &str) -> ClientConfig {
    let group = format!("keypulse-restore-{}", uuid::Uuid::new_v4());
    client.build(
        Role::Consumer,
        &[
            ("max.partition.fetch.bytes", "8388608"),
            ("fetch.queue.backoff.ms", "10"),
            ("fetch.wait.max.ms", "10"),
        ],
        &[
            ("group.id", &group),
            ("isolation.level", isolation),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
        ],
    )
}

impl ChangelogReader {
    /// A reader with the connection settings `client`.
    pub fn new(client: &ClientSettings) -> Result<Self, RestoreError> {
        let make = |isolation| {
            reader_config(client, isolation)
                .create_with_context(ReaderContext)
                .map_err(|e| RestoreError::Consumer(e.to_string()))
        };
        Ok(Self {
            records: make("read_committed")?,
            ends: make("read_uncommitted")?,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The flag that cancels this reader's restores, now and later (set at shutdown).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// This reader, cancelled by `flag` (the service's stop flag) instead of its own.
    pub fn cancelled_by(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = flag;
        self
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}

/// One changelog partition, read back.
#[derive(Debug)]
pub struct Restored {
    /// The changelog topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The latest record of every key.
    pub values: Values,
    /// Chunk counts of the chunked keys (for the next writes).
    pub chunks: ChunkBook,
    /// Records that do not fit the scheme (not in `values`).
    pub problems: Vec<Problem>,
    /// Records read (tombstones and chunks included).
    pub records_read: u64,
    /// Their key and value bytes.
    pub bytes_read: u64,
    /// Seconds the read took (partitions read together share them).
    pub seconds: f64,
    /// The end offset read up to (exclusive).
    pub end_offset: i64,
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The partition's offsets could not be had.
    #[error("changelog {topic}/{partition}: cannot get its end offset: {reason}")]
    Watermarks {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// The read did not reach the end in time.
    #[error(
        "changelog {topic}/{partition}: read reached offset {reached} of {end} within {secs} s"
    )]
    Timeout {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Next offset it would have read.
        reached: i64,
        /// The end.
        end: i64,
        /// The time given.
        secs: u64,
    },
    /// The consumer refused an assignment.
    #[error("changelog reader: {0}")]
    Consumer(String),
    /// The group's committed offsets could not be fetched.
    #[error("committed offsets of the group: {0}")]
    Committed(String),
    /// The instance is shutting down: the restore gave up, having applied nothing.
    #[error("restore cancelled: shutting down")]
    Cancelled,
}

struct Progress {
    latest: Latest,
    next: i64,
    end: i64,
    records: u64,
    bytes: u64,
    keyless: u64,
}

impl ChangelogReader {
    /// Reads changelog partitions `partitions` of `topic` to their ends (their high
    /// watermarks at the start of the call), together. At most `timeout` in all.
    pub fn read_partitions(
        &self,
        topic: &str,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<Restored>, RestoreError> {
        let reader = &self.records;
        let t0 = Instant::now();
        let mut progress: HashMap<i32, Progress, ahash::RandomState> = HashMap::default();
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            let (low, end) = self.ends.fetch_watermarks(topic, p, timeout).map_err(|e| {
                RestoreError::Watermarks {
                    topic: topic.to_string(),
                    partition: p,
                    reason: e.to_string(),
                }
            })?;
            progress.insert(
                p,
                Progress {
                    // Room for as many keys as records (up to 2^20): no rehash while a
                    // partition of distinct keys is read.
                    latest: Latest::with_capacity_and_hasher(
                        usize::try_from(end.saturating_sub(low))
                            .unwrap_or(0)
                            .min(1 << 20),
                        Default::default(),
                    ),
                    next: low,
                    end,
                    records: 0,
                    bytes: 0,
                    keyless: 0,
                },
            );
            if low < end {
                tpl.add_partition_offset(topic, p, Offset::Beginning)
                    .map_err(|e| RestoreError::Consumer(e.to_string()))?;
            }
        }
        if tpl.count() > 0 {
            reader
                .assign(&tpl)
                .map_err(|e| RestoreError::Consumer(e.to_string()))?;
        }
        let behind = |progress: &HashMap<i32, Progress, ahash::RandomState>| {
            progress.values().any(|p| p.next < p.end)
        };
        while behind(&progress) {
            if self.cancelled() {
                let _ = reader.unassign();
                return Err(RestoreError::Cancelled);
            }
            if t0.elapsed() > timeout {
                let _ = reader.unassign();
                let (partition, p) = progress
                    .iter()
                    .find(|(_, p)| p.next < p.end)
                    .expect("behind");
                return Err(RestoreError::Timeout {
                    topic: topic.to_string(),
                    partition: *partition,
                    reached: p.next,
                    end: p.end,
                    secs: timeout.as_secs(),
                });
            }
            match reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let Some(p) = progress.get_mut(&m.partition()) else {
                        continue;
                    };
                    if m.offset() >= p.end {
                        p.next = p.next.max(p.end);
                        continue;
                    }
                    p.next = m.offset() + 1;
                    p.records += 1;
                    let Some(key) = m.key() else {
                        p.keyless += 1;
                        continue;
                    };
                    p.bytes += (key.len() + m.payload().map_or(0, <[u8]>::len)) as u64;
                    match m.payload() {
                        Some(v) => p.latest.insert(key.to_vec(), v.to_vec()),
                        None => p.latest.remove(key),
                    };
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    // Control records and aborted data move the position without a message.
                    if let Ok(pos) = reader.position() {
                        for el in pos.elements_for_topic(topic) {
                            if let (Offset::Offset(o), Some(p)) =
                                (el.offset(), progress.get_mut(&el.partition()))
                            {
                                p.next = p.next.max(o);
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(topic, error = %e, "changelog read: consumer error");
                }
            }
        }
        if tpl.count() > 0 {
            let _ = reader.unassign();
        }
        let seconds = t0.elapsed().as_secs_f64();
        let mut out: Vec<Restored> = progress
            .into_iter()
            .map(|(partition, p)| {
                let assembled = assemble(p.latest);
                let mut problems = assembled.problems;
                if p.keyless > 0 {
                    problems.push(Problem::Envelope(format!("{} keyless records", p.keyless)));
                }
                Restored {
                    topic: topic.to_string(),
                    partition,
                    values: assembled.values,
                    chunks: assembled.chunks,
                    problems,
                    records_read: p.records,
                    bytes_read: p.bytes,
                    seconds,
                    end_offset: p.end,
                }
            })
            .collect();
        out.sort_by_key(|r| r.partition);
        Ok(out)
    }
}
