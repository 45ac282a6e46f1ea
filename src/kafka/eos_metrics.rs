//! The metrics of exactly-once mode: restores and transactions.
//!
//! Owns the series below, registered once per service in the service's registry. Labels
//! are fixed code names only (a path, an outcome), never a topic, partition or customer.
//! - `keypulse_restore_partitions_total{path}`: partitions taken over, by path
//!   (`changelog`, `rebuild`, `refused`, `failed`; see `takeover.rs`);
//! - `keypulse_restore_seconds`: seconds each changelog read took (partitions read
//!   together share one observation each);
//! - `keypulse_restore_records_total`, `keypulse_restore_bytes_total`: changelog records
//!   and key+value bytes read by restores;
//! - `keypulse_partitions_paused`: assigned partitions left paused (refused or failed);
//! - `keypulse_transactions_total{outcome}`: commits, by outcome (`committed`,
//!   `rolled_back`, `fenced`, `fatal`, `refused`);
//! - `keypulse_transaction_seconds`: from staging to the outcome of each commit;
//! - `keypulse_changelog_records_total`, `keypulse_changelog_bytes_total`: records and
//!   bytes written by committed transactions (changelog, dead letters, decisions).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::takeover::Path;

/// Outcomes of a commit.
pub const OUTCOMES: [&str; 5] = ["committed", "rolled_back", "fenced", "fatal", "refused"];

/// The series.
#[derive(Clone)]
pub struct EosMetrics {
    restore_paths: IntCounterVec,
    restore_seconds: Histogram,
    restore_records: IntCounter,
    restore_bytes: IntCounter,
    /// Assigned partitions left paused.
    pub paused: IntGauge,
    transactions: IntCounterVec,
    transaction_seconds: Histogram,
    written_records: IntCounter,
    written_bytes: IntCounter,
}

impl EosMetrics {
    /// Creates and registers the series.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            restore_paths: IntCounterVec::new(
                Opts::new(
                    "keypulse_restore_partitions_total",
                    "Partitions taken over on assignment, by path (changelog, rebuild, refused, failed).",
                ),
                &["path"],
            )?,
            restore_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "keypulse_restore_seconds",
                    "Seconds a changelog read of an assignment took.",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
            )?,
            restore_records: IntCounter::new(
                "keypulse_restore_records_total",
                "Changelog records read by restores.",
            )?,
            restore_bytes: IntCounter::new(
                "keypulse_restore_bytes_total",
                "Changelog key and value bytes read by restores.",
            )?,
            paused: IntGauge::new(
                "keypulse_partitions_paused",
                "Assigned partitions left paused: their restore was refused or failed.",
            )?,
            transactions: IntCounterVec::new(
                Opts::new(
                    "keypulse_transactions_total",
                    "Exactly-once commits, by outcome (committed, rolled_back, fenced, fatal, refused).",
                ),
                &["outcome"],
            )?,
            transaction_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "keypulse_transaction_seconds",
                    "Seconds from staging a commit to its outcome.",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            )?,
            written_records: IntCounter::new(
                "keypulse_changelog_records_total",
                "Records written by committed transactions (changelog, dead letters, decision records).",
            )?,
            written_bytes: IntCounter::new(
                "keypulse_changelog_bytes_total",
                "Key, value and header bytes written by committed transactions.",
            )?,
        };
        registry.register(Box::new(m.restore_paths.clone()))?;
        registry.register(Box::new(m.restore_seconds.clone()))?;
        registry.register(Box::new(m.restore_records.clone()))?;
        registry.register(Box::new(m.restore_bytes.clone()))?;
        registry.register(Box::new(m.paused.clone()))?;
        registry.register(Box::new(m.transactions.clone()))?;
        registry.register(Box::new(m.transaction_seconds.clone()))?;
        registry.register(Box::new(m.written_records.clone()))?;
        registry.register(Box::new(m.written_bytes.clone()))?;
        for p in Path::ALL {
            m.restore_paths.with_label_values(&[p.as_str()]);
        }
        for o in OUTCOMES {
            m.transactions.with_label_values(&[o]);
        }
        Ok(m)
    }

    /// One changelog read.
    pub fn observe_restore(&self, seconds: f64, records: u64, bytes: u64) {
        self.restore_seconds.observe(seconds);
        self.restore_records.inc_by(records);
        self.restore_bytes.inc_by(bytes);
    }

    /// One partition taken over by `path`.
    pub fn count_path(&self, path: Path) {
        self.restore_paths.with_label_values(&[path.as_str()]).inc();
    }

    /// One commit's outcome (one of [`OUTCOMES`]).
    pub fn transaction(&self, outcome: &str, seconds: f64) {
        self.transactions.with_label_values(&[outcome]).inc();
        self.transaction_seconds.observe(seconds);
    }

    /// What a committed transaction wrote.
    pub fn written(&self, records: usize, bytes: usize) {
        self.written_records.inc_by(records as u64);
        self.written_bytes.inc_by(bytes as u64);
    }
}
