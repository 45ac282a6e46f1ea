//! The file adapter: fold a JSONL event log, in file order, into one state (or into
//! customer shards that report as one, see `shards.rs`).
//!
//! Owns [`Replay`] (feeding it lines from a file or stdin, read by `lines.rs`, skipping
//! blank ones) and the rejection summary that `keypulse replay` prints. Guarantees: a line
//! that is not a valid event is counted by reason and changes nothing else; a read error
//! is an error (never a silently shorter replay); `as_of` is the watermark, as SPEC §2 asks
//! of a replay; a line longer than `core.max_event_bytes` is `too_large`, never parsed nor
//! held whole (see `lines.rs`).

use std::collections::BTreeMap;
use std::io::BufRead;

mod lines;
mod pool;
mod shards;

pub use lines::{Line, LineBatch, BATCH_BYTES, BATCH_LINES};

use crate::core::state::EventCounts;
use crate::core::time::Micros;
use crate::core::{Aggregate, CoreConfig, Notification, PartitionState, RejectReason, Report};

/// How many line numbers per reason the summary keeps.
pub const EXAMPLE_LINES: usize = 5;

/// Rejected lines, by reason, with the first few line numbers (1-based).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionSummary {
    pub by_reason: BTreeMap<RejectReason, (u64, Vec<u64>)>,
}

impl RejectionSummary {
    fn record(&mut self, reason: RejectReason, line: u64) {
        let (n, lines) = self.by_reason.entry(reason).or_default();
        *n += 1;
        if lines.len() < EXAMPLE_LINES {
            lines.push(line);
        }
    }

    pub fn total(&self) -> u64 {
        self.by_reason.values().map(|(n, _)| n).sum()
    }
}

impl std::fmt::Display for RejectionSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.by_reason.is_empty() {
            return writeln!(f, "rejected lines: none");
        }
        writeln!(f, "rejected lines: {}", self.total())?;
        for (reason, (n, lines)) in &self.by_reason {
            let list: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let more = if *n as usize > lines.len() {
                ", ..."
            } else {
                ""
            };
            writeln!(
                f,
                "  {:<16} {:>8}  (lines {}{})",
                reason.as_str(),
                n,
                list.join(", "),
                more
            )?;
        }
        Ok(())
    }
}

/// The most threads a replay folds on.
pub const MAX_THREADS: usize = 8;

/// How many threads fold a large replay: the cores available (at most [`MAX_THREADS`]),
/// or `KEYPULSE_REPLAY_THREADS` when set to a number (1: the calling thread alone).
pub fn fold_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::env::var("KEYPULSE_REPLAY_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(cores)
        .clamp(1, MAX_THREADS)
}

/// A replay in progress: feed it lines, then take the report.
///
/// Its state is one [`PartitionState`], or, after a sharded [`Replay::feed_reader`], one
/// per customer shard (disjoint customers, see `shards.rs`): the shards are never merged
/// for the report (it is the merge of their aggregates, computed in parallel); only
/// [`Replay::state_mut`] and [`Replay::into_state`] merge them, for callers that need
/// one state (to write it out, or to fold on by hand).
#[derive(Debug)]
pub struct Replay {
    /// One state, or one per shard (at least one).
    states: Vec<PartitionState>,
    pub rejections: RejectionSummary,
    /// Every notification decided, in the order of the lines that made them (empty when
    /// made [`Replay::without_decisions`]; the report's own list is the state's).
    pub decisions: Vec<Notification>,
    keep_decisions: bool,
    /// See [`Replay::reading_ahead`].
    read_ahead: bool,
    lines: u64,
}

impl Default for Replay {
    fn default() -> Self {
        Self {
            states: vec![PartitionState::untracked()],
            rejections: RejectionSummary::default(),
            decisions: Vec::new(),
            keep_decisions: true,
            read_ahead: false,
            lines: 0,
        }
    }
}

impl Replay {
    pub fn new() -> Self {
        Self::default()
    }

    /// A replay that does not collect [`Replay::decisions`] (for a caller that only takes
    /// the report: it holds no second copy of every notification). The report is the same.
    pub fn without_decisions(mut self) -> Self {
        self.keep_decisions = false;
        self
    }

    /// A replay whose sharded [`Replay::feed_reader`] reads its input a batch ahead on the
    /// calling thread, whenever there is room, while the folds run on threads of their
    /// own: for a pipe, whose writer waits whenever it is not read. Without it (for a
    /// file, or bytes in memory), the calling thread reads the next batch first and then
    /// joins the decode and fold of the one before (see `shards::feed`), so that the read
    /// never takes a core from a fold. Measured on the fleet log, alternated
    /// (`docs/BENCHMARKS.md`): from a file, reading ahead gave 1.06× the decode floor
    /// against 1.12× without; from `gzip -dc`, without it was about 7 % slower. The
    /// answers are the same either way.
    pub fn reading_ahead(mut self) -> Self {
        self.read_ahead = true;
        self
    }

    /// Folds one line (without its newline). Blank lines are skipped; a line longer than
    /// `core.max_event_bytes` is rejected as `too_large`, even if blank.
    pub fn feed_line(&mut self, line: &[u8], cfg: &CoreConfig) {
        self.feed_decoded(&Line::decode(line, cfg.max_event_bytes), cfg);
    }

    /// Folds one line decoded with [`Line::decode`]: the fold's only entry for a line (an
    /// event goes to its customer's shard when the replay is sharded).
    pub fn feed_decoded(&mut self, line: &Line<'_>, cfg: &CoreConfig) {
        self.lines += 1;
        match line {
            Line::Blank => {}
            Line::Event(ev) => {
                let n = self.states.len();
                let i = if n == 1 {
                    0
                } else {
                    shards::shard_of(ev.customer_id.as_deref(), n) as usize
                };
                self.states[i].apply(ev, cfg, &mut self.decisions);
                if !self.keep_decisions {
                    self.decisions.clear();
                }
            }
            Line::Rejected(reason) => {
                self.states[0].record_rejected();
                self.rejections.record(*reason, self.lines);
            }
        }
    }

    /// Folds every line of `input`; `on_progress` is told the bytes read so far. An input
    /// of more than one batch is folded on [`fold_threads`] threads (see
    /// [`Replay::feed_reader_on`]).
    pub fn feed_reader(
        &mut self,
        input: impl BufRead,
        cfg: &CoreConfig,
        on_progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        self.feed_reader_on(input, cfg, fold_threads(), on_progress)
    }

    /// [`Replay::feed_reader`] on `threads` threads: when `threads` > 1, the input is more
    /// than one batch and nothing was fed before, lines are decoded in parallel and folded
    /// in `threads` customer shards, kept apart (`shards.rs`); else on this thread alone
    /// (a replay already sharded keeps its shards). The next batch is read while one is
    /// folded: by the calling thread before it joins the batch's work, or, when
    /// [`Replay::reading_ahead`], by the calling thread alone while the folds run on a
    /// thread of their own. The report, the rejection summary and [`Replay::decisions`]
    /// are the same either way (sums of floats within their last bits).
    pub fn feed_reader_on(
        &mut self,
        mut input: impl BufRead,
        cfg: &CoreConfig,
        threads: usize,
        mut on_progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let max_line = cfg.max_event_bytes;
        let threads = threads.min(MAX_THREADS);
        let mut batch = LineBatch::default();
        if !batch.fill(&mut input, BATCH_LINES, BATCH_BYTES, max_line)? {
            return Ok(());
        }
        // Decided at the first batch: sharded when the input is more than one batch, the
        // machine has more than one core and nothing was fed before.
        let fresh = self.lines == 0 && self.states.len() == 1 && self.sizes() == (0, 0);
        if fresh && threads > 1 && batch.is_full() {
            self.states = (0..threads).map(|_| PartitionState::untracked()).collect();
        }
        // A sharded fold takes larger batches than one thread's: each costs two meetings
        // of the threads.
        let parallel = threads > 1 && self.states.len() > 1;
        if parallel && self.read_ahead {
            return self.feed_overlapped(batch, input, cfg, on_progress);
        }
        let (max_lines, max_bytes) = if parallel {
            (shards::BATCH_LINES, shards::BATCH_BYTES)
        } else {
            (BATCH_LINES, BATCH_BYTES)
        };
        // Bytes read through the end of `batch`.
        let mut read = batch.bytes_read();
        let mut next = LineBatch::default();
        loop {
            // The next batch is read while this one is decoded (see `shards::feed`). The
            // batches are folded in order, so the answers are those of reading and folding
            // in turn; a read error is returned once the batches read before it are folded.
            let before = next.bytes_read();
            let mut more = Ok(false);
            let fill = || more = next.fill(&mut input, max_lines, max_bytes, max_line);
            shards::feed(self, &batch, cfg, parallel, fill);
            on_progress(read);
            if !more? {
                return Ok(());
            }
            read += next.bytes_read() - before;
            std::mem::swap(&mut batch, &mut next);
        }
    }

    /// The sharded fold of `first` and the rest of `input` when [`Replay::reading_ahead`]:
    /// the folds run on a thread of their own (which starts the batch's other threads),
    /// and this thread reads into the batch the folds last gave back, so two batches are
    /// in flight and the input is read whenever there is room. The folds take the batches
    /// in order, so the answers are those of reading and folding in turn; a read error
    /// stops the reading, and is returned once the batches read before it are folded.
    fn feed_overlapped(
        &mut self,
        first: LineBatch,
        mut input: impl BufRead,
        cfg: &CoreConfig,
        mut on_progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        use std::sync::mpsc;
        let (max_lines, max_bytes) = (shards::BATCH_LINES, shards::BATCH_BYTES);
        std::thread::scope(|s| {
            // Each batch goes with the bytes read through its end. The channels are this
            // closure's: dropped when it returns, which ends the folds' loop.
            let (to_fold, folds) = mpsc::sync_channel::<(LineBatch, u64)>(1);
            let (give_back, folded) = mpsc::channel::<(LineBatch, u64)>();
            let replay = &mut *self;
            s.spawn(move || {
                for (batch, read) in folds {
                    shards::feed(replay, &batch, cfg, true, || {});
                    if give_back.send((batch, read)).is_err() {
                        return;
                    }
                }
            });
            let mut read = first.bytes_read();
            let mut next = LineBatch::default();
            let mut sent = first;
            loop {
                let _ = to_fold.send((sent, read));
                let before = next.bytes_read();
                let more = next.fill(&mut input, max_lines, max_bytes, cfg.max_event_bytes);
                read += next.bytes_read() - before;
                // The batch before `next`, folded: its buffer is read into next.
                let Ok((done, at)) = folded.recv() else {
                    return Ok(()); // the folds stopped (a panic, raised when joined)
                };
                on_progress(at);
                if !more? {
                    return Ok(());
                }
                sent = std::mem::replace(&mut next, done);
            }
        })
    }

    /// The latest clock over every shard (the watermark of the one state they make).
    pub fn watermark(&self) -> Option<Micros> {
        self.states.iter().filter_map(|s| s.watermark()).max()
    }

    /// The mergeable sums at the watermark: the merge of the shards' aggregates, computed
    /// in parallel, one thread per shard.
    pub fn aggregate(&self, cfg: &CoreConfig) -> Aggregate {
        shards::aggregate(&self.states, self.watermark(), cfg)
    }

    /// The report at the watermark (of one state alone, or of the shards' aggregates).
    pub fn report(&self, cfg: &CoreConfig) -> Report {
        match &self.states[..] {
            [one] => one.report(one.watermark(), cfg),
            _ => self.aggregate(cfg).finish(cfg),
        }
    }

    /// The state's parts: one state, or one per shard (disjoint customers).
    pub fn states(&self) -> &[PartitionState] {
        &self.states
    }

    /// Customers (the no-customer group included when present) and licenses, over every
    /// shard.
    pub fn sizes(&self) -> (usize, usize) {
        self.states.iter().fold((0, 0), |(c, l), s| {
            let (sc, sl) = s.sizes();
            (c + sc, l + sl)
        })
    }

    /// Event counts over every shard.
    pub fn counts(&self) -> EventCounts {
        self.states.iter().fold(EventCounts::default(), |mut a, s| {
            a += s.counts();
            a
        })
    }

    /// The state's own size estimate ([`PartitionState::approx_bytes`]), over every shard.
    pub fn approx_bytes(&self) -> usize {
        self.states.iter().map(PartitionState::approx_bytes).sum()
    }

    /// The one state: the shards, if any, are merged into it first (and stay merged).
    pub fn state_mut(&mut self) -> &mut PartitionState {
        if self.states.len() > 1 {
            let merged = shards::merge(std::mem::take(&mut self.states));
            self.states = vec![merged];
        }
        &mut self.states[0]
    }

    /// The one state, the shards merged.
    pub fn into_state(self) -> PartitionState {
        shards::merge(self.states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(text: &[u8], max: usize) -> Replay {
        let cfg = CoreConfig {
            max_event_bytes: max,
            ..CoreConfig::default()
        };
        let mut r = Replay::new();
        // A tiny buffer, so that lines span many reads.
        let input = std::io::BufReader::with_capacity(7, text);
        r.feed_reader(input, &cfg, |_| {}).unwrap();
        r
    }

    const EVENT: &str =
        r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c1"}"#;

    #[test]
    fn lines_over_the_limit_are_too_large_and_the_rest_folds() {
        let n = EVENT.len();
        let long = format!(r#"{{"pad":"{}","type":"payment.failed"}}"#, "x".repeat(n));
        let text = format!(
            "{EVENT}\n{long}\n{EVENT}\r\n\n{}\n{EVENT}",
            " ".repeat(n + 5)
        );
        let r = replay(text.as_bytes(), n);
        let too_large = &r.rejections.by_reason[&RejectReason::TooLarge];
        assert_eq!(too_large, &(2, vec![2, 5]));
        assert_eq!(r.rejections.total(), 2);
        assert_eq!(r.report(&CoreConfig::default()).events.applied, 3);
    }

    #[test]
    fn a_line_of_exactly_the_limit_folds() {
        let text = format!("{EVENT}\r\n{EVENT}");
        let r = replay(text.as_bytes(), EVENT.len());
        assert_eq!(r.rejections.total(), 0);
        assert_eq!(r.report(&CoreConfig::default()).events.applied, 2);
    }
}
