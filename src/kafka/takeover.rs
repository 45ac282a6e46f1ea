//! Taking over assigned partitions in exactly-once mode: restore from the changelog, or
//! rebuild from the input, or refuse.
//!
//! Owns the decision of how each newly assigned partition starts, made in the rebalance
//! callback before the partitions are assigned to the consumer (so their first fetch
//! already starts at the right offset). For each partition, [`Takeover::plan`]:
//! 1. lets the decision sink catch up with the decision log;
//! 2. fetches the group's committed input offsets, then reads the changelog partitions to
//!    their ends (`restore.rs`, in that order: see there why);
//! 3. **changelog**: when the changelog holds the partition's figures, the state is built
//!    from its records and the input resumes at the input offset written in the same
//!    transaction as that state (`p/input-offset`; the group's committed offset, written
//!    in that transaction too, is only cross-checked: they differ only after an operator
//!    moved the group's offsets, and the state is only right at its own offset);
//! 4. **rebuild**: without changelog state (first start, migration from a version without
//!    a changelog), the state is rebuilt from the input's first offset, counting and
//!    copying only what lies at or above the group's committed offset;
//! 5. **refused**: except when the input's first offset is above 0 (retention deleted its
//!    beginning) and `kafka.allow_partial_rebuild` is off: that rebuild would give a
//!    partial state, so the partition is paused, the instance is not ready, and a metric
//!    and a log line name the partition;
//! 6. **failed**: a restore that fails (timeout, undecodable record) pauses the partition
//!    likewise: it is never folded from a wrong start. A restore cancelled by shutdown
//!    (`restore.rs`) pauses them too, uncounted: the instance is leaving the group.
//!
//! Guarantees: a restored partition resumes exactly after the last message its state
//! includes; the restore metrics (seconds, records, bytes, path) are set for every
//! partition taken over; the sink is told which customers were restored, so that it takes
//! over their pending decisions (a restore decides nothing again).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::Offset;

use crate::core::PartitionState;
use crate::sink::DecisionSink;

use super::changelog::keys::{StateKey, INPUT_OFFSET, PARTITION_FIGURES};
use super::changelog::writer::PartitionWriter;
use super::durable::Durable;
use super::eos_metrics::EosMetrics;
use super::restore::{committed_then_changelog, ChangelogReader, PartitionRestore, RestoreError};
use super::{TopicPartition, NO_OFFSET};

/// How a partition was taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Its state was read back from its changelog.
    Changelog,
    /// Its state is rebuilt from its input's first offset.
    Rebuild,
    /// Refused: no changelog state, and the input's beginning was deleted.
    Refused,
    /// The restore failed.
    Failed,
}

impl Path {
    /// Every path, in metric order.
    pub const ALL: [Path; 4] = [Path::Changelog, Path::Rebuild, Path::Refused, Path::Failed];

    /// The metric label and `/readyz` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Changelog => "changelog",
            Path::Rebuild => "rebuild",
            Path::Refused => "refused",
            Path::Failed => "failed",
        }
    }

    /// Whether the partition is folded (else it stays paused).
    pub fn folds(self) -> bool {
        matches!(self, Path::Changelog | Path::Rebuild)
    }
}

/// How one partition starts.
pub struct Plan {
    /// The partition.
    pub tp: TopicPartition,
    /// Which path.
    pub path: Path,
    /// Where the consumer starts.
    pub start: Offset,
    /// The state to start from.
    pub state: Box<PartitionState>,
    /// The next offset to fold ([`NO_OFFSET`]: whatever comes first).
    pub next: i64,
    /// Below this offset, fold without counting or copying.
    pub count_from: i64,
    /// The durable side.
    pub durable: Option<Box<Durable>>,
    /// The input partition's (low, high) watermarks, when read.
    pub watermarks: Option<(i64, i64)>,
}

/// What taking over needs.
pub struct Takeover {
    /// Reads changelog partitions.
    pub reader: ChangelogReader,
    /// Input topic → changelog topic.
    pub changelog_of: HashMap<String, String>,
    /// Changelog topic → largest record with framing.
    pub record_limits: HashMap<String, usize>,
    /// Where decision records go (`None`: the decision log is not Kafka).
    pub notifications_topic: Option<String>,
    /// `kafka.allow_partial_rebuild`.
    pub allow_partial_rebuild: bool,
    /// `kafka.restore_timeout_ms`.
    pub timeout: Duration,
}

impl Takeover {
    /// How each of `tps` starts (see the module's steps). Blocks up to the restore timeout.
    pub fn plan<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tps: &[TopicPartition],
        counted: &HashMap<TopicPartition, i64>,
        sink: &dyn DecisionSink,
        metrics: &EosMetrics,
    ) -> Vec<Plan> {
        sink.partitions_assigned();
        tracing::info!(
            partitions = tps.len(),
            "restoring: the group's committed offsets, then the changelog to its end"
        );
        let restores = match committed_then_changelog(
            consumer,
            &self.reader,
            tps,
            &self.changelog_of,
            self.timeout,
        ) {
            Ok(r) => r,
            Err(RestoreError::Cancelled) => {
                // Shutting down: nothing was applied, nothing of these will be committed,
                // and the next owner restores them. Not a failure, so not counted as one.
                tracing::info!(partitions = tps.len(), "restore cancelled: shutting down");
                return tps.iter().map(|tp| self.idle(tp, Path::Failed)).collect();
            }
            Err(e) => {
                tracing::error!(error = %e, partitions = tps.len(), "restore failed; the partitions stay paused");
                return tps
                    .iter()
                    .map(|tp| self.paused(tp, Path::Failed, metrics))
                    .collect();
            }
        };
        // Partitions are decoded on parallel threads (one per core): decoding is CPU work.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, restores.len().max(1));
        let mut groups: Vec<Vec<PartitionRestore>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, r) in restores.into_iter().enumerate() {
            groups[i % threads].push(r);
        }
        let planned: Vec<(Plan, Vec<Box<str>>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        group
                            .into_iter()
                            .map(|r| {
                                let counted = counted.get(&r.input).copied().unwrap_or(0);
                                let mut customers = Vec::new();
                                let plan =
                                    self.plan_one(consumer, r, counted, &mut customers, metrics);
                                (plan, customers)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        // The set is built only when the sink has pending decisions to take over.
        let take_over = sink.has_unclaimed();
        let mut restored_customers: HashSet<Box<str>> = HashSet::new();
        let mut plans = Vec::with_capacity(planned.len());
        for (plan, customers) in planned {
            if take_over {
                restored_customers.extend(customers);
            }
            plans.push(plan);
        }
        if !restored_customers.is_empty() {
            sink.customers_restored(&restored_customers);
        }
        plans
    }

    fn plan_one<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        r: PartitionRestore,
        counted: i64,
        restored_customers: &mut Vec<Box<str>>,
        metrics: &EosMetrics,
    ) -> Plan {
        let tp = r.input.clone();
        let cl = r.changelog;
        // Read once: the rebuild-or-refuse decision needs the first offset, the consumer
        // setup the last.
        let marks = consumer.fetch_watermarks(&tp.topic, tp.partition, self.timeout);
        let watermarks = marks.as_ref().ok().copied();
        metrics.observe_restore(cl.seconds, cl.records_read, cl.bytes_read);
        for p in &cl.problems {
            tracing::warn!(partition = %tp, problem = ?p, "changelog record that fits no key; ignored");
        }
        let mut values = cl.values;
        let figures = values.remove(&StateKey::Partition(PARTITION_FIGURES.into()));
        let input_offset = values
            .remove(&StateKey::Partition(INPUT_OFFSET.into()))
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok());
        let limit = self
            .record_limits
            .get(&cl.topic)
            .copied()
            .unwrap_or(1_000_000);
        let writer = PartitionWriter::new(&cl.topic, cl.partition, cl.chunks);
        let Some(figures) = figures else {
            return self.rebuild_or_refuse(marks, tp, r.committed, counted, writer, limit, metrics);
        };
        let customers: Vec<(String, Vec<u8>)> = values
            .into_iter()
            .filter_map(|(k, v)| match k {
                StateKey::Customer(id) => Some((id, v)),
                StateKey::Partition(_) => None,
            })
            .collect();
        let decode_started = std::time::Instant::now();
        let state = PartitionState::from_records(&figures, customers.iter().map(|(_, v)| &v[..]));
        let decode_seconds = decode_started.elapsed().as_secs_f64();
        let (state, next) = match (state, input_offset) {
            (Ok(s), Some(next)) => (s, next),
            (Err(e), _) => {
                tracing::error!(partition = %tp, error = %e, "changelog state cannot be read; the partition stays paused");
                return self.paused(&tp, Path::Failed, metrics);
            }
            (Ok(_), None) => {
                tracing::error!(partition = %tp, "changelog state without its input offset; the partition stays paused");
                return self.paused(&tp, Path::Failed, metrics);
            }
        };
        if r.committed.is_some_and(|c| c != next) {
            tracing::warn!(partition = %tp, committed = ?r.committed, state_offset = next, "the group's committed offset differs from the changelog's (offsets moved by hand?); resuming where the state is");
        }
        restored_customers.extend(customers.into_iter().map(|(id, _)| id.into_boxed_str()));
        let (c, l) = state.sizes();
        tracing::info!(partition = %tp, customers = c, licenses = l, offset = next, records = cl.records_read, read_seconds = cl.seconds, decode_seconds, "partition restored from its changelog");
        metrics.count_path(Path::Changelog);
        Plan {
            durable: Some(Box::new(Durable::new(
                writer,
                limit,
                self.notifications_topic.as_deref(),
                next,
            ))),
            tp,
            path: Path::Changelog,
            start: Offset::Offset(next),
            state: Box::new(state),
            next,
            count_from: next.max(counted),
            watermarks,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rebuild_or_refuse(
        &self,
        marks: rdkafka::error::KafkaResult<(i64, i64)>,
        tp: TopicPartition,
        committed: Option<i64>,
        counted: i64,
        writer: PartitionWriter,
        limit: usize,
        metrics: &EosMetrics,
    ) -> Plan {
        let (low, high) = match marks {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot read the input's first offset; the partition stays paused");
                return self.paused(&tp, Path::Failed, metrics);
            }
        };
        if low > 0 && !self.allow_partial_rebuild {
            tracing::error!(partition = %tp, first_offset = low, "no changelog state, and the input's beginning is deleted: a rebuild would give a partial state. Refused (set kafka.allow_partial_rebuild = true to rebuild anyway); the instance is not ready");
            return self.paused(&tp, Path::Refused, metrics);
        }
        tracing::info!(partition = %tp, first_offset = low, committed = ?committed, "no changelog state: rebuilding from the input");
        metrics.count_path(Path::Rebuild);
        Plan {
            durable: Some(Box::new(Durable::new(
                writer,
                limit,
                self.notifications_topic.as_deref(),
                NO_OFFSET,
            ))),
            tp,
            path: Path::Rebuild,
            start: Offset::Beginning,
            state: Box::new(PartitionState::new()),
            next: NO_OFFSET,
            count_from: committed.unwrap_or(0).max(counted),
            watermarks: Some((low, high)),
        }
    }

    fn paused(&self, tp: &TopicPartition, path: Path, metrics: &EosMetrics) -> Plan {
        metrics.count_path(path);
        self.idle(tp, path)
    }

    /// A paused partition's plan, not counted in the path metrics.
    fn idle(&self, tp: &TopicPartition, path: Path) -> Plan {
        Plan {
            tp: tp.clone(),
            path,
            start: Offset::Beginning,
            state: Box::new(PartitionState::new()),
            next: NO_OFFSET,
            count_from: i64::MAX,
            durable: None,
            watermarks: None,
        }
    }
}
