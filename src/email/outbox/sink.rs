//! The outbox as the fold's [`DecisionSink`]: `submit` and the rebalance hooks.
//!
//! Guarantees: `submit` never waits (it looks the key up, starts the durable `pending`
//! write and queues or defers the job); a key already known is never queued twice (a
//! second `submit` counts `skipped_duplicate`), except a `pending` entry from the log not
//! yet taken on, which is taken on (`resumed`); a hook waits at most `HOOK_TIMEOUT`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::core::Notification;
use crate::email::log::{Entry, EntryState};
use crate::email::Outcome;
use crate::sink::DecisionSink;

use super::{Job, Outbox, Slot};

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
