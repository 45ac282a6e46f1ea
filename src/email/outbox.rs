//! The outbox: the [`DecisionSink`] that turns the fold's decisions into emails, each
//! sent once.
//!
//! Owns the map of decisions (idempotency key → where it stands), the bounded queue to the
//! mailer task, the deferred list, retries with backoff, and the records it writes to the
//! [`DecisionLog`]. Guarantees:
//! - `submit` never waits: it looks the key up, starts the durable `pending` write, and
//!   queues the job, or defers it when the queue is full (see "queue full" below);
//! - a key already known (pending, sent or failed, from this process, from the log at
//!   start, or from another instance through the log) is never queued twice: a second
//!   `submit` counts `skipped_duplicate`. Exception: a `pending` entry found in the log
//!   and not yet taken on by this process is taken on (outcome `resumed`) when the fold
//!   decides it again, as it does when it rebuilds a partition it now owns;
//! - the mailer (one sender per SMTP pool connection, `email.smtp.pool_max`) sends an
//!   email only after its `pending` record is durable, and a sender takes its next email
//!   only after the `sent` (or `failed`) record of this one is durable. So after a crash,
//!   an email can be sent a second time only if the crash fell between the SMTP server's
//!   acceptance and that record's acknowledgement (a few milliseconds, and at most one
//!   email per sender; SMTP has no idempotent submission, so no client can close this
//!   window entirely);
//! - queue full: the decision is already in the map and its `pending` write started; the
//!   job goes to an in-memory deferred list (FIFO, outcome `deferred`), and the mailer
//!   moves deferred jobs into the queue as room frees up, oldest first. Nothing is dropped;
//!   the cost of a deferred decision is its notification in memory;
//! - failures: `Unreachable` (no connection) is retried with backoff without using up an
//!   attempt; `Transient` (4xx, reset, timeout) is retried with exponential backoff and
//!   jitter up to `email.max_attempts` attempts, then recorded `failed`; `Permanent` (5xx)
//!   and refused emails (header injection, bad address) are recorded `failed` at once.
//!   While the log cannot take a record, the mailer waits (and retries the write) rather
//!   than send an email whose outcome it could not keep.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::log::{now_rfc3339, BoxFuture, DecisionLog, Entry, EntryState};
use super::render::Renderer;
use super::transport::{FailureKind, Transport};
use super::{EmailMetrics, Outcome};
use crate::config::Config;
use crate::core::Notification;
use crate::sink::DecisionSink;

/// Backoff settings of the mailer.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay after the `n`-th consecutive failure (1-based): `initial · 2^(n−1)`,
    /// capped at `max`, then drawn uniformly from its upper half (jitter).
    pub fn delay(&self, n: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
            .min(self.max);
        let f: f64 = rand::rng().random_range(0.5..=1.0);
        base.mul_f64(f)
    }
}

/// Where a key stands in this process.
enum Slot {
    /// Sent or failed (here, or by anyone, as read from the log).
    Final(EntryState),
    /// Taken on by this process: queued, deferred or being sent.
    Claimed(Box<Notification>),
    /// Pending in the log but not taken on here (written before this start, or by another
    /// instance); taken on when the fold decides it again.
    Unclaimed(Box<Entry>),
}

impl Slot {
    /// Takes on an `Unclaimed` entry: the slot becomes `Claimed`, the entry is returned.
    fn claim(&mut self) -> Option<Entry> {
        let Slot::Unclaimed(e) = self else {
            return None;
        };
        let notification = Box::new(e.notification.clone());
        match std::mem::replace(self, Slot::Claimed(notification)) {
            Slot::Unclaimed(e) => Some(*e),
            _ => unreachable!("checked above"),
        }
    }
}

struct Job {
    key: String,
    entry: Entry,
    /// The durable write of the `pending` record, started by `submit`.
    pending_write: Option<BoxFuture<'static, anyhow::Result<()>>>,
}

struct Shared {
    map: Mutex<HashMap<String, Slot>>,
    /// Keys inside a transport call or writing their outcome (lock order: map, then this).
    in_flight: Mutex<HashSet<String>>,
    tx: mpsc::Sender<Job>,
    deferred: Mutex<VecDeque<Job>>,
    log: Arc<dyn DecisionLog>,
    metrics: EmailMetrics,
    renderer: Renderer,
    transport: Transport,
    policy: RetryPolicy,
    stop: watch::Receiver<bool>,
    accepting: AtomicBool,
}

/// The email outbox. Build it with [`Outbox::start`]; hand it to the fold as its
/// [`DecisionSink`].
pub struct Outbox {
    shared: Arc<Shared>,
    /// The runtime the outbox runs on, for the blocking rebalance hooks.
    handle: tokio::runtime::Handle,
    stop_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("transport", &self.shared.transport)
            .field("log", &self.shared.log.describe())
            .finish_non_exhaustive()
    }
}

/// Options that are not in the configuration file.
#[derive(Debug, Clone, Copy)]
pub struct OutboxOptions {
    /// How often the log is read for records written by other instances.
    pub follow_interval: Duration,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            follow_interval: Duration::from_secs(1),
        }
    }
}

impl Outbox {
    /// Builds the renderer and the transport from `cfg.email`, registers the metrics on
    /// `registry`, reads the whole `log`, and starts the mailer. Returns once the log is
    /// loaded: from then on `submit` knows every decision recorded before.
    pub async fn start(
        cfg: &Config,
        registry: &prometheus::Registry,
        log: Arc<dyn DecisionLog>,
    ) -> anyhow::Result<Arc<Outbox>> {
        let renderer = Renderer::new(&cfg.email)?;
        let transport = Transport::from_config(&cfg.email)?;
        let metrics = EmailMetrics::register(registry)?;
        Self::start_with(
            cfg,
            renderer,
            transport,
            metrics,
            log,
            OutboxOptions::default(),
        )
        .await
    }

    /// As [`Self::start`], with the parts given (tests, the demo).
    pub async fn start_with(
        cfg: &Config,
        renderer: Renderer,
        transport: Transport,
        metrics: EmailMetrics,
        log: Arc<dyn DecisionLog>,
        options: OutboxOptions,
    ) -> anyhow::Result<Arc<Outbox>> {
        let loaded = log.load().await?;
        let (mut pending, mut done) = (0usize, 0usize);
        let mut map = HashMap::with_capacity(loaded.len());
        for (k, e) in loaded {
            let slot = if e.state.is_final() {
                done += 1;
                Slot::Final(e.state)
            } else {
                pending += 1;
                Slot::Unclaimed(Box::new(e))
            };
            map.insert(k, slot);
        }
        tracing::info!(
            log = %log.describe(),
            transport = ?transport,
            sent_or_failed = done,
            pending,
            "email outbox loaded"
        );
        let (tx, rx) = mpsc::channel(cfg.email.queue_capacity.max(1));
        // One sender per SMTP connection of the pool; the file and dry-run transports
        // need no more than one.
        let workers = match transport {
            Transport::Smtp { .. } => cfg.email.smtp.pool_max.max(1) as usize,
            _ => 1,
        };
        let (stop_tx, stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            map: Mutex::new(map),
            in_flight: Mutex::new(HashSet::new()),
            tx,
            deferred: Mutex::new(VecDeque::new()),
            log,
            metrics,
            renderer,
            transport,
            policy: RetryPolicy {
                max_attempts: cfg.email.max_attempts.max(1),
                initial: Duration::from_millis(cfg.email.retry_initial_ms.max(1)),
                max: Duration::from_millis(cfg.email.retry_max_ms.max(cfg.email.retry_initial_ms)),
            },
            stop,
            accepting: AtomicBool::new(true),
        });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut tasks: Vec<JoinHandle<()>> = (0..workers)
            .map(|_| tokio::spawn(mailer(shared.clone(), rx.clone())))
            .collect();
        tasks.push(tokio::spawn(follower(
            shared.clone(),
            options.follow_interval,
        )));
        Ok(Arc::new(Outbox {
            handle: tokio::runtime::Handle::current(),
            shared,
            stop_tx,
            tasks: Mutex::new(tasks),
        }))
    }

    /// Reads every record written to the log since the last read (by another instance,
    /// say) and applies it, so that a decision sent elsewhere is not sent here. The
    /// service calls this when partitions are assigned, before rebuilding them.
    pub async fn catch_up(&self) -> anyhow::Result<()> {
        let updates = self.shared.log.poll_updates().await?;
        self.shared.apply_updates(updates);
        Ok(())
    }

    /// Takes on every `pending` entry read from the log that the fold has not decided
    /// again (for a single instance that restores state instead of rebuilding it). Returns
    /// how many were queued.
    pub fn resume_all_pending(&self) -> usize {
        self.resume_pending(|_| true)
    }

    /// Takes on the `pending` entries read from the log, not taken on here, whose
    /// notification `which` selects. Returns how many were queued.
    fn resume_pending(&self, which: impl Fn(&Notification) -> bool) -> usize {
        let jobs: Vec<Job> = {
            let mut map = self.shared.map.lock().expect("outbox map");
            map.iter_mut()
                .filter(|(_, slot)| matches!(slot, Slot::Unclaimed(e) if which(&e.notification)))
                .filter_map(|(k, slot)| {
                    slot.claim().map(|entry| Job {
                        key: k.clone(),
                        entry,
                        pending_write: None,
                    })
                })
                .collect()
        };
        let n = jobs.len();
        for job in jobs {
            self.shared
                .metrics
                .count(job.entry.notification.kind, Outcome::Resumed);
            self.shared.metrics.depth.inc();
            self.shared.enqueue(job);
        }
        n
    }

    /// Gives up the decisions that `which` selects and that this outbox has taken on but
    /// not finished: they are not sent from here any more and stay `pending` in the log,
    /// for the instance that now owns them (it takes them on when its rebuild decides them
    /// again). Waits until none of them is in a transport call or writing its outcome
    /// (at most about `email.smtp.timeout_secs` plus the log write); an email already
    /// accepted by then is recorded `sent` as usual. The service calls this when
    /// partitions are revoked, selecting the customers of those partitions, before it
    /// lets them go. Returns how many were released.
    pub async fn release(&self, which: impl Fn(&Notification) -> bool) -> usize {
        let keys = self.unclaim(which);
        loop {
            let busy = {
                let f = self.shared.in_flight.lock().expect("outbox in flight");
                keys.iter().any(|k| f.contains(k))
            };
            if !busy {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !keys.is_empty() {
            tracing::info!(released = keys.len(), "email decisions released");
        }
        keys.len()
    }

    /// Marks the decisions `which` selects, taken on and not finished, as no longer ours.
    fn unclaim(&self, which: impl Fn(&Notification) -> bool) -> Vec<String> {
        let mut map = self.shared.map.lock().expect("outbox map");
        let mut keys = Vec::new();
        for (k, slot) in map.iter_mut() {
            if let Slot::Claimed(n) = slot {
                if which(n) {
                    let entry = Entry::new(EntryState::Pending, (**n).clone());
                    *slot = Slot::Unclaimed(Box::new(entry));
                    keys.push(k.clone());
                }
            }
        }
        keys
    }

    /// Emails taken on and not yet finished (queued, deferred, being sent or retried).
    pub fn depth(&self) -> i64 {
        self.shared.metrics.depth.get()
    }

    /// The state of a key as this outbox knows it.
    pub fn state_of(&self, key: &str) -> Option<EntryState> {
        match self.shared.map.lock().expect("outbox map").get(key)? {
            Slot::Final(s) => Some(*s),
            Slot::Claimed(_) | Slot::Unclaimed(_) => Some(EntryState::Pending),
        }
    }

    /// The metrics this outbox counts into.
    pub fn metrics(&self) -> &EmailMetrics {
        &self.shared.metrics
    }

    /// Stops taking decisions, lets the mailer finish what it has for up to `grace`, then
    /// stops it. What is left stays `pending` in the log for the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.accepting.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        while self.depth() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop_tx.send(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().expect("outbox tasks"));
        for t in tasks {
            let _ = t.await;
        }
        tracing::info!(left_pending = self.depth(), "email outbox stopped");
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Dropping without `shutdown` is a kill: the tasks stop where they are.
        if let Ok(tasks) = self.tasks.get_mut() {
            for t in tasks.drain(..) {
                t.abort();
            }
        }
    }
}

/// How long a rebalance hook waits for the outbox.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

impl Outbox {
    /// Runs `f` on the outbox's runtime and waits for it (from a thread outside it).
    fn wait_on<F>(&self, what: &'static str, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            f.await;
            let _ = tx.send(());
        });
        if rx.recv_timeout(HOOK_TIMEOUT).is_err() {
            tracing::warn!(hook = what, "the email outbox did not finish in time");
        }
    }
}

impl DecisionSink for Outbox {
    fn partitions_assigned(&self) {
        let shared = self.shared.clone();
        self.wait_on("partitions_assigned", async move {
            match shared.log.poll_updates().await {
                Ok(updates) => shared.apply_updates(updates),
                Err(e) => tracing::warn!(error = %e, "cannot read the email decision log before a rebuild"),
            }
        });
    }

    fn customers_released(&self, customers: &std::collections::HashSet<Box<str>>) {
        let keys = self.unclaim(|n| customers.contains(n.customer_id.as_str()));
        if keys.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let released = keys.len();
        self.wait_on("customers_released", async move {
            while {
                let f = shared.in_flight.lock().expect("outbox in flight");
                keys.iter().any(|k| f.contains(k))
            } {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        tracing::info!(released, "email decisions released with their partitions");
    }

    fn submit(&self, n: &Notification) {
        self.take(n, false);
    }

    fn is_recorded(&self, key: &str) -> bool {
        self.shared
            .map
            .lock()
            .expect("outbox map")
            .contains_key(key)
    }

    fn submit_recorded(&self, n: &Notification) {
        self.take(n, true);
    }

    fn has_unclaimed(&self) -> bool {
        self.shared
            .map
            .lock()
            .expect("outbox map")
            .values()
            .any(|slot| matches!(slot, Slot::Unclaimed(_)))
    }

    fn customers_restored(&self, customers: &std::collections::HashSet<Box<str>>) {
        let shared = self.shared.clone();
        self.wait_on("customers_restored", async move {
            match shared.log.poll_updates().await {
                Ok(updates) => shared.apply_updates(updates),
                Err(e) => tracing::warn!(error = %e, "cannot read the email decision log before a takeover"),
            }
        });
        let n = self.resume_pending(|n| customers.contains(n.customer_id.as_str()));
        if n > 0 {
            tracing::info!(
                resumed = n,
                "pending email decisions of restored partitions taken over"
            );
        }
    }
}

impl Outbox {
    /// Takes one decision; `recorded`: its `pending` record is durable already (it was
    /// committed in the transaction of the state that decided it), so it is not written
    /// again and finding it in the log does not count as `resumed`.
    fn take(&self, n: &Notification, recorded: bool) {
        let sh = &self.shared;
        let key = n.idempotency_key();
        let job = {
            let mut map = sh.map.lock().expect("outbox map");
            match map.get_mut(&key) {
                Some(Slot::Final(_)) | Some(Slot::Claimed(_)) => {
                    sh.metrics.count(n.kind, Outcome::SkippedDuplicate);
                    return;
                }
                Some(slot @ Slot::Unclaimed(_)) => {
                    let entry = slot.claim().expect("unclaimed");
                    if !recorded {
                        sh.metrics.count(n.kind, Outcome::Resumed);
                    }
                    Job {
                        key,
                        entry,
                        pending_write: None,
                    }
                }
                None => {
                    let entry = Entry::new(EntryState::Pending, n.clone());
                    // Started under the map lock, so records of one key are queued in order.
                    let write = (!recorded).then(|| sh.log.record(&key, &entry));
                    map.insert(key.clone(), Slot::Claimed(Box::new(n.clone())));
                    Job {
                        key,
                        entry,
                        pending_write: write,
                    }
                }
            }
        };
        sh.metrics.depth.inc();
        if !sh.accepting.load(Ordering::SeqCst) {
            // Shutting down: the pending write is under way; the next start sends it.
            tracing::warn!(
                kind = n.kind.as_str(),
                "decision after shutdown began: left pending for the next start"
            );
            if let Some(w) = job.pending_write {
                // On the outbox's runtime: `take` is called from fold threads too.
                self.handle.spawn(async move {
                    if let Err(e) = w.await {
                        tracing::error!(error = %e, "pending record not written during shutdown");
                    }
                });
            }
            return;
        }
        sh.enqueue(job);
    }
}

impl Shared {
    /// Queues a job, or defers it when the queue is full (or others wait before it).
    fn enqueue(&self, job: Job) {
        let mut deferred = self.deferred.lock().expect("outbox deferred");
        let kind = job.entry.notification.kind;
        if !deferred.is_empty() {
            deferred.push_back(job);
            self.metrics.count(kind, Outcome::Deferred);
            return;
        }
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                deferred.push_back(job);
                self.metrics.count(kind, Outcome::Deferred);
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                tracing::warn!(
                    key_kind = kind.as_str(),
                    "mailer stopped: decision left pending"
                );
                deferred.push_back(job);
            }
        }
    }

    /// Moves deferred jobs into the queue while it has room, oldest first.
    fn refill(&self) {
        let mut deferred = self.deferred.lock().expect("outbox deferred");
        while !deferred.is_empty() {
            match self.tx.try_reserve() {
                Ok(permit) => permit.send(deferred.pop_front().expect("non-empty")),
                Err(_) => break,
            }
        }
    }

    fn apply_updates(&self, updates: Vec<(String, Entry)>) {
        if updates.is_empty() {
            return;
        }
        let mut map = self.map.lock().expect("outbox map");
        for (key, entry) in updates {
            match map.get_mut(&key) {
                None => {
                    let slot = if entry.state.is_final() {
                        Slot::Final(entry.state)
                    } else {
                        Slot::Unclaimed(Box::new(entry))
                    };
                    map.insert(key, slot);
                }
                Some(slot) => {
                    if entry.state.is_final() && !matches!(slot, Slot::Final(_)) {
                        // Finished elsewhere; a claimed job is dropped by the mailer.
                        *slot = Slot::Final(entry.state);
                    }
                }
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps `d`, or less if asked to stop. Returns false when stopping.
    async fn pause(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = stop.changed() => false,
        }
    }

    /// Writes `entry` until the log has it durably (or the outbox stops).
    async fn record_durably(&self, key: &str, entry: &Entry) -> bool {
        let mut failures = 0;
        loop {
            match self.log.record(key, entry).await {
                Ok(()) => return true,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, state = ?entry.state, "decision log write failed; retrying");
                    if !self.pause(self.policy.delay(failures)).await {
                        tracing::error!(state = ?entry.state, "outbox stopped before the log took a record");
                        return false;
                    }
                }
            }
        }
    }

    /// Before each attempt: is the key still this outbox's to send? If so it is marked in
    /// flight (under the map lock, so that `release` sees it). If not (finished
    /// elsewhere, or released), the job is dropped here.
    fn begin(&self, key: &str, kind: crate::core::NotificationKind) -> bool {
        let map = self.map.lock().expect("outbox map");
        match map.get(key) {
            Some(Slot::Claimed(_)) => {
                // `insert` is false when another sender has this key in flight (a job
                // queued twice after a release and a re-claim): that one goes on.
                let mine = self
                    .in_flight
                    .lock()
                    .expect("outbox in flight")
                    .insert(key.to_string());
                if !mine {
                    self.metrics.depth.dec();
                }
                mine
            }
            Some(Slot::Final(_)) => {
                self.metrics.count(kind, Outcome::SkippedDuplicate);
                self.metrics.depth.dec();
                false
            }
            _ => {
                // released: left pending for its new owner
                self.metrics.depth.dec();
                false
            }
        }
    }

    fn end_attempt(&self, key: &str) {
        self.in_flight.lock().expect("outbox in flight").remove(key);
    }

    /// Marks a job finished: map, counter, the durable record, then depth and in-flight.
    async fn finish(&self, key: &str, mut entry: Entry, state: EntryState, outcome: Outcome) {
        entry.state = state;
        entry.updated_at = now_rfc3339();
        {
            let mut map = self.map.lock().expect("outbox map");
            map.insert(key.to_string(), Slot::Final(state));
        }
        self.metrics.count(entry.notification.kind, outcome);
        self.record_durably(key, &entry).await;
        self.end_attempt(key);
        self.metrics.depth.dec();
    }

    async fn process(&self, mut job: Job) {
        let kind = job.entry.notification.kind;
        // 1. The pending record must be durable before anything is sent.
        if let Some(w) = job.pending_write.take() {
            if let Err(e) = w.await {
                tracing::warn!(error = %e, "pending record not written; writing again");
                if !self.record_durably(&job.key, &job.entry).await {
                    return;
                }
            }
        }
        // 2. Still ours (not finished elsewhere through the log, not released)?
        if !self.begin(&job.key, kind) {
            return;
        }
        // 3. Render (refusals are final).
        let email = match self.renderer.render(&job.entry.notification) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "email refused");
                job.entry.last_error = Some(e.to_string());
                self.finish(&job.key, job.entry, EntryState::Failed, Outcome::Refused)
                    .await;
                return;
            }
        };
        if email.truncated > 0 {
            self.metrics
                .truncated
                .with_label_values(&[kind.as_str()])
                .inc_by(email.truncated as u64);
        }
        // 4. Send, retrying.
        let mut consecutive = 0u32;
        loop {
            match self.transport.send(&job.key, &email).await {
                Ok(()) => {
                    job.entry.attempts += 1;
                    job.entry.last_error = None;
                    tracing::debug!(kind = kind.as_str(), message_id = %email.message_id, "email sent");
                    self.finish(&job.key, job.entry, EntryState::Sent, Outcome::Sent)
                        .await;
                    return;
                }
                Err(e) => {
                    job.entry.last_error = Some(e.to_string());
                    if e.kind != FailureKind::Unreachable {
                        job.entry.attempts += 1;
                    }
                    let out_of_attempts = e.kind == FailureKind::Transient
                        && job.entry.attempts >= self.policy.max_attempts;
                    if e.kind == FailureKind::Permanent || out_of_attempts {
                        tracing::warn!(
                            kind = kind.as_str(),
                            attempts = job.entry.attempts,
                            error = %e,
                            "email failed"
                        );
                        self.finish(&job.key, job.entry, EntryState::Failed, Outcome::Failed)
                            .await;
                        return;
                    }
                    consecutive += 1;
                    self.metrics.count(kind, Outcome::Retried);
                    let delay = self.policy.delay(consecutive);
                    tracing::info!(
                        kind = kind.as_str(),
                        attempts = job.entry.attempts,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %e,
                        "email not sent yet; retrying"
                    );
                    // Keep the attempts count across a restart (not awaited: best effort).
                    let w = self.log.record(&job.key, &job.entry);
                    tokio::spawn(async move {
                        let _ = w.await;
                    });
                    self.end_attempt(&job.key);
                    if !self.pause(delay).await {
                        return; // stopping: stays pending in the log
                    }
                    if !self.begin(&job.key, kind) {
                        return;
                    }
                }
            }
        }
    }
}

async fn mailer(sh: Arc<Shared>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    let mut stop = sh.stop.clone();
    loop {
        sh.refill();
        if sh.stopping() {
            break;
        }
        let job = {
            let mut rx = rx.lock().await;
            tokio::select! {
                j = rx.recv() => j,
                _ = stop.changed() => None,
            }
        };
        let Some(job) = job else { break };
        sh.process(job).await;
    }
}

async fn follower(sh: Arc<Shared>, every: Duration) {
    loop {
        if !sh.pause(every).await {
            return;
        }
        match sh.log.poll_updates().await {
            Ok(u) => sh.apply_updates(u),
            Err(e) => tracing::warn!(error = %e, "cannot read the decision log for updates"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for _ in 0..50 {
            let d1 = p.delay(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.delay(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            let d9 = p.delay(9);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
            assert!(p.delay(200) <= Duration::from_millis(1000));
        }
    }
}
