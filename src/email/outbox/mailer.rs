//! The mailer and follower tasks: queueing and deferring jobs, sending, retries with
//! backoff, the durable records, and following the log for other instances' records.
//!
//! Guarantees: an email is sent only after its `pending` record is durable, and a sender
//! takes its next email only after this one's `sent` or `failed` record is durable; while
//! the log cannot take a record the mailer waits and retries the write; deferred jobs move
//! into the queue oldest first as room frees up, none dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::email::log::{now_rfc3339, Entry, EntryState};
use crate::email::transport::FailureKind;
use crate::email::Outcome;

use super::{Job, Shared, Slot};

impl Shared {
    /// Queues a job, or defers it when the queue is full (or others wait before it).
    pub(super) fn enqueue(&self, job: Job) {
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

    pub(super) fn apply_updates(&self, updates: Vec<(String, Entry)>) {
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

pub(super) async fn mailer(sh: Arc<Shared>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
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

pub(super) async fn follower(sh: Arc<Shared>, every: Duration) {
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
