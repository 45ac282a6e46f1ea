//! What the HTTP handlers and the snapshot refresher share: [`AppState`] and [`Snapshot`].
//!
//! Owns the served snapshot (replaced whole, every `http.refresh_ms`, by the service's
//! refresher), the queries that go to the fold workers (`?as_of=`, one customer, each
//! partition's aggregate for the group's answers) and the group view, if any. Both
//! `http` and `service` use it; it uses neither. Guarantees: reading the snapshot never
//! waits for the fold (a read lock held only to clone an `Arc`); a worker query gives up
//! after 30 s rather than hang a handler.

use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::core::time::Micros;
use crate::core::{Aggregate, CoreConfig, CustomerView, Report};
use crate::kafka::fold::{ClockMode, PartitionAggregate, WorkerMsg};
use crate::metrics::Metrics;

/// How long a query waits for the fold workers.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// One assigned partition, as `/readyz` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Whether it has caught up with its target since its assignment.
    pub caught_up: bool,
    /// The next offset to fold.
    pub position: i64,
    /// The high watermark at assignment (−1 while unknown).
    pub target: i64,
    /// How it was taken over: `changelog`, `rebuild`, `refused` or `failed` (see
    /// `kafka/takeover.rs`).
    pub path: &'static str,
    /// The newest event `ts` folded (announced to the group, SPEC §8.8; not in `/readyz`).
    #[serde(skip)]
    pub watermark: Option<Micros>,
}

/// What HTTP serves, recomputed every `http.refresh_ms`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The report at `as_of` (SPEC §3).
    pub report: Arc<Report>,
    /// Whether every assigned partition had caught up when this snapshot was taken (the
    /// report then includes everything up to the catch-up targets).
    pub ready: bool,
    /// The assigned partitions.
    pub partitions: Vec<PartitionStatus>,
}

/// The state shared by the HTTP handlers and the refresher.
pub struct AppState {
    /// The latest snapshot.
    snapshot: RwLock<Arc<Snapshot>>,
    /// The metrics registry and families.
    pub metrics: Arc<Metrics>,
    /// The fold workers (for `?as_of=` and per-customer queries).
    workers: Vec<SyncSender<WorkerMsg>>,
    /// The fold's configuration.
    pub core: Arc<CoreConfig>,
    /// Wall or event clock.
    pub clock: ClockMode,
    /// The consumer group's view, for group-wide answers (SPEC §8.8); none: local only.
    pub group: Option<Arc<crate::group::Group>>,
}

impl AppState {
    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The shared state, serving `first` until the refresher replaces it.
    pub fn new(
        first: Snapshot,
        metrics: Arc<Metrics>,
        workers: Vec<SyncSender<WorkerMsg>>,
        core: Arc<CoreConfig>,
        clock: ClockMode,
    ) -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(first)),
            metrics,
            workers,
            core,
            clock,
            group: None,
        }
    }

    /// The same state, answering for the group too.
    pub fn with_group(mut self, group: Arc<crate::group::Group>) -> Self {
        self.group = Some(group);
        self
    }

    /// Each held partition's aggregate at `as_of`, apart (blocking).
    pub fn partition_aggregates(
        &self,
        as_of: Option<Micros>,
    ) -> anyhow::Result<Vec<PartitionAggregate>> {
        let mut replies = Vec::new();
        for w in &self.workers {
            let (reply, rx) = mpsc::channel();
            w.send(WorkerMsg::Partitions { as_of, reply })
                .map_err(|_| anyhow::anyhow!("the fold workers are stopped"))?;
            replies.push(rx);
        }
        let mut out = Vec::new();
        for rx in replies {
            out.extend(
                rx.recv_timeout(QUERY_TIMEOUT)
                    .map_err(|_| anyhow::anyhow!("a fold worker did not answer"))?,
            );
        }
        Ok(out)
    }

    /// Replaces the served snapshot.
    pub fn set_snapshot(&self, snapshot: Arc<Snapshot>) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    /// Asks every fold worker to move its partitions' clocks to the wall-clock `now`.
    pub fn advance_workers(&self, now: Micros) -> anyhow::Result<()> {
        for w in &self.workers {
            w.send(WorkerMsg::Advance { now })
                .map_err(|_| anyhow::anyhow!("the fold workers are stopped"))?;
        }
        Ok(())
    }

    /// The merged aggregate of every worker at `as_of`, with state sizes (blocking).
    pub fn aggregate(&self, as_of: Option<Micros>) -> anyhow::Result<(Aggregate, [usize; 3])> {
        let mut replies = Vec::new();
        for w in &self.workers {
            let (reply, rx) = mpsc::channel();
            w.send(WorkerMsg::Aggregate { as_of, reply })
                .map_err(|_| anyhow::anyhow!("the fold workers are stopped"))?;
            replies.push(rx);
        }
        let mut agg = Aggregate {
            as_of,
            ..Default::default()
        };
        let mut sizes = [0usize; 3];
        for rx in replies {
            let w = rx
                .recv_timeout(QUERY_TIMEOUT)
                .map_err(|_| anyhow::anyhow!("a fold worker did not answer"))?;
            agg.merge(w.aggregate);
            sizes[0] += w.customers;
            sizes[1] += w.licenses;
            sizes[2] += w.bytes;
        }
        Ok((agg, sizes))
    }

    /// The report at a chosen instant (walks the state once; blocking).
    pub fn report_at(&self, as_of: Micros) -> anyhow::Result<Report> {
        Ok(self.aggregate(Some(as_of))?.0.finish(&self.core))
    }

    /// The view of one customer at the snapshot's `as_of` (blocking).
    pub fn customer(&self, id: &str) -> anyhow::Result<Option<CustomerView>> {
        let Some(as_of) = self.snapshot().report.as_of else {
            return Ok(None);
        };
        let id: Arc<str> = id.into();
        let mut replies = Vec::new();
        for w in &self.workers {
            let (reply, rx) = mpsc::channel();
            w.send(WorkerMsg::Customer {
                id: id.clone(),
                as_of,
                reply,
            })
            .map_err(|_| anyhow::anyhow!("the fold workers are stopped"))?;
            replies.push(rx);
        }
        let mut found = None;
        for rx in replies {
            if let Some(v) = rx
                .recv_timeout(QUERY_TIMEOUT)
                .map_err(|_| anyhow::anyhow!("a fold worker did not answer"))?
            {
                found = Some(v);
            }
        }
        Ok(found)
    }
}
