//! The work of one batch of a sharded replay, shared out among its threads: the decode of
//! its lines, in parts, then the fold of their events, by customer shard. A thread takes
//! the next part not yet taken; once every part is taken, it waits until every part is
//! decoded, then folds its own shard, if no other thread took it, and then any shard not
//! yet taken. So a thread held up elsewhere (the calling thread reads the next batch
//! first, see `shards::feed`) leaves its share to the others; when the read is the slow
//! side, the others decode and fold the whole batch meanwhile, and never wait for it.
//!
//! Owns [`Work`] and [`Decoded`]. Guarantees: every part is decoded once and every shard
//! folded once, each by one thread; a shard's events are folded in file order (the parts
//! are taken back in file order, and so are each part's events), and no shard is folded
//! before every part is decoded. A panic in one thread (never expected: the decode and the
//! fold do not panic on input) cannot leave the others waiting: a part counts as done when
//! its thread leaves it, even by unwinding, and the panic is raised where the threads are
//! joined.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use super::lines::Span;
use super::shards::shard_of;
use super::{Line, LineBatch};
use crate::core::{CoreConfig, Event, Notification, PartitionState, RejectReason};

/// One part of a batch, decoded by one thread: its events by customer shard, each with
/// its line's index in the batch, and its rejected lines (blank lines are only counted).
pub(super) struct Decoded<'a> {
    events: Vec<Vec<(u32, Event<'a>)>>,
    pub(super) rejected: Vec<(u32, RejectReason)>,
}

/// The decode and fold of one batch into the shards' states, shared by its threads: each
/// calls [`Work::run`], then one takes the results with [`Work::finish`].
pub(super) struct Work<'a, 's> {
    batch: &'a LineBatch,
    cfg: &'a CoreConfig,
    keep_decisions: bool,
    /// Each part with the index in the batch of its first line.
    parts: Vec<(u32, &'a [Span])>,
    decoded: Vec<OnceLock<Decoded<'a>>>,
    next_part: AtomicUsize,
    /// Parts decoded (or left by a panicking thread); every shard waits for all.
    parts_done: Mutex<usize>,
    all_decoded: Condvar,
    shards: Vec<Mutex<&'s mut PartitionState>>,
    /// Whether a thread has taken each shard.
    claimed: Vec<AtomicBool>,
    /// Each shard's decisions, with the index of the line that made them.
    made: Vec<OnceLock<Vec<(u32, Notification)>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a part as done when dropped: when its decode returns or unwinds.
struct PartDone<'w>(&'w Mutex<usize>, &'w Condvar, usize);

impl Drop for PartDone<'_> {
    fn drop(&mut self) {
        let mut done = lock(self.0);
        *done += 1;
        if *done == self.2 {
            self.1.notify_all();
        }
    }
}

impl<'a, 's> Work<'a, 's> {
    /// The work of `batch` into `states` (one per shard), in parts of `part_lines` lines.
    pub(super) fn new(
        batch: &'a LineBatch,
        states: &'s mut [PartitionState],
        cfg: &'a CoreConfig,
        keep_decisions: bool,
        part_lines: usize,
    ) -> Self {
        let parts: Vec<_> = (0u32..)
            .step_by(part_lines.max(1))
            .zip(batch.spans.chunks(part_lines.max(1)))
            .collect();
        Self {
            batch,
            cfg,
            keep_decisions,
            decoded: parts.iter().map(|_| OnceLock::new()).collect(),
            parts,
            next_part: AtomicUsize::new(0),
            parts_done: Mutex::new(0),
            all_decoded: Condvar::new(),
            made: states.iter().map(|_| OnceLock::new()).collect(),
            claimed: states.iter().map(|_| AtomicBool::new(false)).collect(),
            shards: states.iter_mut().map(Mutex::new).collect(),
        }
    }

    /// Takes parts to decode, then shards to fold, until none is left; `worker` (from 0)
    /// takes shard `worker` first, if it is still there. A shard's records are then
    /// mostly allocated and reallocated by one thread: with glibc's allocator, a thread
    /// growing memory another thread's arena holds waits for that arena's lock (measured
    /// with `perf stat` on the fleet log: shards taken in any order, about 3,000 context
    /// switches a replay, most of them waits for that lock; taken this way, about 150).
    pub(super) fn run(&self, worker: usize) {
        let total = self.parts.len();
        loop {
            let k = self.next_part.fetch_add(1, Ordering::Relaxed);
            let Some(&(start, spans)) = self.parts.get(k) else {
                break;
            };
            let _done = PartDone(&self.parts_done, &self.all_decoded, total);
            let _ = self.decoded[k].set(self.decode(start, spans));
        }
        let mut done = lock(&self.parts_done);
        while *done < total {
            done = self
                .all_decoded
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(done);
        // Its own shard first, then any other not yet taken.
        let n = self.shards.len();
        for j in (worker..n).chain(0..worker.min(n)) {
            if !self.claimed[j].swap(true, Ordering::Relaxed) {
                let made = self.fold(j, &mut lock(&self.shards[j]));
                let _ = self.made[j].set(made);
            }
        }
    }

    /// Decodes the part whose first line is the batch's `start`th.
    fn decode(&self, start: u32, spans: &[Span]) -> Decoded<'a> {
        let n = self.shards.len();
        let max = self.cfg.max_event_bytes;
        let mut d = Decoded {
            events: (0..n)
                // A quarter more than an even share: a shard's share of a part varies
                // (a part is only 2048 lines), and a vector that grows doubles, copying
                // every event; the room never used is never touched.
                .map(|_| Vec::with_capacity(spans.len() * 5 / (4 * n) + 8))
                .collect(),
            rejected: Vec::new(),
        };
        for (i, span) in (start..).zip(spans) {
            match self.batch.line(span, max) {
                Line::Blank => {}
                Line::Event(ev) => {
                    let shard = shard_of(ev.customer_id.as_deref(), n) as usize;
                    d.events[shard].push((i, ev));
                }
                Line::Rejected(reason) => d.rejected.push((i, reason)),
            }
        }
        d
    }

    /// Folds shard `j`'s events of every part, in file order, into its state.
    fn fold(&self, j: usize, state: &mut PartitionState) -> Vec<(u32, Notification)> {
        let (at, events): (Vec<u32>, Vec<&Event<'_>>) = self
            .decoded
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|d| &d.events[j])
            .map(|(i, ev)| (*i, ev))
            .unzip();
        let mut made = Vec::new();
        let keep = self.keep_decisions;
        state.apply_ahead(&events, self.cfg, |k, n| {
            if keep {
                made.push((at[k], n));
            }
        });
        made
    }

    /// The decoded parts in file order, and every shard's decisions (each shard's in
    /// their order).
    pub(super) fn finish(self) -> (Vec<Decoded<'a>>, Vec<(u32, Notification)>) {
        let decoded = self
            .decoded
            .into_iter()
            .filter_map(OnceLock::into_inner)
            .collect();
        let made = self
            .made
            .into_iter()
            .filter_map(OnceLock::into_inner)
            .flatten()
            .collect();
        (decoded, made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{Replay, BATCH_BYTES, BATCH_LINES};

    /// One thread alone (not the first) decodes every part and folds every shard, its own
    /// first and then the others: what happens while the calling thread is still reading.
    #[test]
    fn one_thread_does_the_whole_batch_when_the_others_are_away() {
        let cfg = CoreConfig::default();
        let text: String = (0..500)
            .map(|i| {
                format!(
                    "{{\"type\":\"license.validated\",\"ts\":\"2026-10-0{}T10:00:00Z\",\"event_id\":\"v{i}\",\"customer_id\":\"c{}\",\"license_key\":\"k{}\",\"result\":\"valid\",\"domain\":\"d.example\",\"country\":\"FR\"}}\n{}",
                    1 + i % 7,
                    i % 13,
                    i % 29,
                    if i % 50 == 0 { "not json\n" } else { "" }
                )
            })
            .collect();
        let mut batch = LineBatch::default();
        let mut input = text.as_bytes();
        assert!(batch
            .fill(&mut input, BATCH_LINES, BATCH_BYTES, cfg.max_event_bytes)
            .unwrap());
        let mut states = vec![
            PartitionState::new(),
            PartitionState::new(),
            PartitionState::new(),
        ];
        let work = Work::new(&batch, &mut states, &cfg, true, 16);
        work.run(1);
        let (decoded, _) = work.finish();
        assert_eq!(decoded.len(), batch.spans.len().div_ceil(16));
        let rejected: usize = decoded.iter().map(|d| d.rejected.len()).sum();
        assert_eq!(rejected, 10);

        let mut one = Replay::new();
        one.feed_reader_on(text.as_bytes(), &cfg, 1, |_| {})
            .unwrap();
        assert!(states.iter().all(|s| s.sizes().0 > 0), "every shard folded");
        let as_of = one.watermark();
        let mut merged = super::super::shards::merge(states);
        // Rejections are counted by the batch's caller, from `decoded`.
        for _ in 0..rejected {
            merged.record_rejected();
        }
        assert_eq!(merged.report(as_of, &cfg), one.report(&cfg));
    }
}
