//! The outbox handle: [`Outbox::start`] (renderer, transport, metrics, the whole log read,
//! the mailer and follower tasks started), resuming and releasing pending decisions,
//! its depth and states, and [`Outbox::shutdown`].
//!
//! Guarantees: `start` returns once the log is loaded, so `submit` knows every decision
//! recorded before; a released decision is unclaimed, never dropped or sent twice;
//! shutdown stops the tasks and waits at most its grace period.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::Notification;
use crate::email::log::{DecisionLog, Entry, EntryState};
use crate::email::render::Renderer;
use crate::email::transport::Transport;
use crate::email::{EmailMetrics, Outcome};

use super::mailer::{follower, mailer};
use super::{Job, Outbox, OutboxOptions, RetryPolicy, Shared, Slot};

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
    pub(super) fn resume_pending(&self, which: impl Fn(&Notification) -> bool) -> usize {
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
    pub(super) fn unclaim(&self, which: impl Fn(&Notification) -> bool) -> Vec<String> {
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
