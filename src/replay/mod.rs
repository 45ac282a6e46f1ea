//! The file adapter: fold a JSONL event log, in file order, into one state (or into
//! customer shards that report as one, see `shards.rs`).
//!
//! Owns reading lines (from a file or stdin), skipping blank ones, and keeping the
//! rejection summary that `keypulse replay` prints. Guarantees: a line that is not a valid
//! event is counted by reason and changes nothing else; a read error is an error (never a
//! silently shorter replay); `as_of` is the watermark, as SPEC §2 asks of a replay; a line
//! longer than `core.max_event_bytes` is `too_large`: it is never parsed, nor held whole
//! in memory (the reader keeps at most the limit and skips to the line's end). Lines are
//! split in the input's blocks with memchr, not read one by one.

use std::collections::BTreeMap;
use std::io::BufRead;

mod shards;

use crate::core::state::EventCounts;
use crate::core::time::Micros;
use crate::core::{
    decode_bounded, Aggregate, CoreConfig, Event, Notification, PartitionState, RejectReason,
    Report,
};

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

/// One line of a log, decoded once: a backtest folds the same decoded lines under two
/// configurations.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// Empty or whitespace only: skipped, but it keeps its line number.
    Blank,
    Event(Event<'a>),
    Rejected(RejectReason),
}

impl<'a> Line<'a> {
    /// Decodes one line (without its newline); a line longer than `max_bytes` is
    /// `too_large`, even if blank.
    pub fn decode(line: &'a [u8], max_bytes: usize) -> Self {
        if line.len() <= max_bytes && line.iter().all(u8::is_ascii_whitespace) {
            return Self::Blank;
        }
        match decode_bounded(line, max_bytes) {
            Ok(ev) => Self::Event(ev),
            Err(r) => Self::Rejected(r.reason),
        }
    }
}

/// A block of whole lines read from a log, their newlines (`\n`, `\r\n`) stripped.
#[derive(Debug, Default)]
pub struct LineBatch {
    bytes: Vec<u8>,
    /// Start, end, and whether the line was cut (longer than the batch keeps of a line).
    spans: Vec<(usize, usize, bool)>,
    read: u64,
}

impl LineBatch {
    /// Replaces the batch with the next lines of `input`: up to `max_lines`, or fewer once
    /// about `max_bytes` are held. Of a line longer than `max_line_bytes` (its line end
    /// excluded) only that much is held: it is never kept whole. Returns false at the end
    /// of the input (the batch is then empty).
    pub fn fill(
        &mut self,
        input: &mut impl BufRead,
        max_lines: usize,
        max_bytes: usize,
        max_line_bytes: usize,
    ) -> std::io::Result<bool> {
        self.bytes.clear();
        self.spans.clear();
        // A line end may be `\r\n`: keep two bytes more than the limit, so that a line of
        // exactly the limit plus its line end is not taken for a longer one.
        let keep = max_line_bytes.saturating_add(2);
        // The line being read across the input's blocks: its start in `bytes`, and
        // whether it was cut.
        let mut open: Option<(usize, bool)> = None;
        while open.is_some() || (self.spans.len() < max_lines && self.bytes.len() < max_bytes) {
            let block = match input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if block.is_empty() {
                // The input's end: its last line has no line end.
                if let Some((start, cut)) = open {
                    self.push_span(start, cut);
                }
                break;
            }
            // Every line end of the block, found with memchr; the block's whole lines are
            // taken until the batch is full, the rest of a line is carried to the next block.
            let mut used = 0;
            while open.is_some() || (self.spans.len() < max_lines && self.bytes.len() < max_bytes) {
                let rest = &block[used..];
                if rest.is_empty() {
                    break;
                }
                let (start, mut cut) = open.unwrap_or((self.bytes.len(), false));
                let end = memchr::memchr(b'\n', rest);
                let part = &rest[..end.map_or(rest.len(), |i| i + 1)];
                let room = start.saturating_add(keep).saturating_sub(self.bytes.len());
                if part.len() > room {
                    cut = true;
                }
                self.bytes.extend_from_slice(&part[..part.len().min(room)]);
                used += part.len();
                if end.is_some() {
                    self.push_span(start, cut);
                    open = None;
                } else {
                    open = Some((start, cut));
                    break;
                }
            }
            input.consume(used);
            self.read += used as u64;
        }
        Ok(!self.spans.is_empty())
    }

    /// Ends the line that starts at `start` (through the end of `bytes`), its line end
    /// stripped unless it was cut.
    fn push_span(&mut self, start: usize, cut: bool) {
        let mut end = self.bytes.len();
        while !cut && end > start && matches!(self.bytes[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        self.spans.push((start, end, cut));
    }

    /// The lines of the batch, in order, decoded with [`Line::decode`]; a line that was
    /// cut is `too_large` without being parsed.
    pub fn decoded(&self, max_line_bytes: usize) -> impl Iterator<Item = Line<'_>> {
        self.spans.iter().map(move |&(a, b, cut)| {
            if cut {
                Line::Rejected(RejectReason::TooLarge)
            } else {
                Line::decode(&self.bytes[a..b], max_line_bytes)
            }
        })
    }

    /// Whether the last fill stopped at the batch's limits (rather than at the input's end).
    fn is_full(&self) -> bool {
        self.spans.len() >= BATCH_LINES || self.bytes.len() >= BATCH_BYTES
    }

    /// Bytes read from the input so far, over every fill.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

/// Lines per batch read from a log.
pub const BATCH_LINES: usize = 8192;
/// Bytes after which a batch stops taking lines.
pub const BATCH_BYTES: usize = 4 << 20;

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
    pub decisions: Vec<Notification>,
    lines: u64,
}

impl Default for Replay {
    fn default() -> Self {
        Self {
            states: vec![PartitionState::new()],
            rejections: RejectionSummary::default(),
            decisions: Vec::new(),
            lines: 0,
        }
    }
}

impl Replay {
    pub fn new() -> Self {
        Self::default()
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
    /// (a replay already sharded keeps its shards). The report, the rejection summary and
    /// [`Replay::decisions`] are the same either way (sums of floats within their last
    /// bits).
    pub fn feed_reader_on(
        &mut self,
        mut input: impl BufRead,
        cfg: &CoreConfig,
        threads: usize,
        mut on_progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let mut batch = LineBatch::default();
        // Decided at the first batch: sharded when the input is more than one batch, the
        // machine has more than one core and nothing was fed before.
        let mut decided = false;
        let threads = threads.min(MAX_THREADS);
        loop {
            let sharded = threads > 1 && self.states.len() > 1;
            // Once sharded, batches are larger: each batch costs two meetings of the threads.
            let (max_lines, max_bytes) = if sharded {
                (shards::BATCH_LINES, shards::BATCH_BYTES)
            } else {
                (BATCH_LINES, BATCH_BYTES)
            };
            if !batch.fill(&mut input, max_lines, max_bytes, cfg.max_event_bytes)? {
                break;
            }
            if !decided {
                decided = true;
                let fresh = self.lines == 0 && self.states.len() == 1 && self.sizes() == (0, 0);
                if fresh && threads > 1 && batch.is_full() {
                    self.states = (0..threads).map(|_| PartitionState::new()).collect();
                }
            }
            if threads > 1 && self.states.len() > 1 {
                shards::feed(self, &batch, cfg);
            } else {
                for line in batch.decoded(cfg.max_event_bytes) {
                    self.feed_decoded(&line, cfg);
                }
            }
            on_progress(batch.bytes_read());
        }
        Ok(())
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
            let c = s.counts();
            a.applied += c.applied;
            a.rejected += c.rejected;
            a.duplicates += c.duplicates;
            a.excluded += c.excluded;
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

    /// Every line of `text` as a plain split sees it: without its line end (unless cut),
    /// and whether it is longer than `max` (its `\r\n` or `\n` aside).
    fn split(text: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut pieces: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        if pieces.last().is_some_and(|p| p.is_empty()) {
            pieces.pop();
        }
        let last = pieces.len().saturating_sub(1);
        let keep = max + 2;
        (0..)
            .zip(pieces)
            .map(|(i, p)| {
                let raw = p.len() + usize::from(i < last || text.ends_with(b"\n"));
                if raw > keep {
                    return (Vec::new(), true);
                }
                let mut end = p.len();
                while end > 0 && p[end - 1] == b'\r' {
                    end -= 1;
                }
                (p[..end].to_vec(), false)
            })
            .collect()
    }

    #[test]
    fn batches_hold_the_lines_of_a_plain_split_whatever_the_blocks() {
        let max = 10;
        let lines = [
            "",
            "a",
            "0123456789",
            "0123456789a",
            " ",
            "            ",
            "x\r",
            "01234567\r",
            "012345678\r",
            "0123456789\r",
            "0123456789a\r",
            "\r",
            "\r\r",
        ];
        let long = "long".repeat(40);
        let mut text = Vec::new();
        for (i, l) in lines
            .iter()
            .chain([&long.as_str()])
            .cycle()
            .take(300)
            .enumerate()
        {
            text.extend_from_slice(l.as_bytes());
            text.extend_from_slice(if i % 7 == 3 { b"\r\n" } else { b"\n" });
        }
        for tail in ["", "tail", "0123456789", "0123456789ab", "0123456789\r"] {
            let mut text = text.clone();
            text.extend_from_slice(tail.as_bytes());
            let expected = split(&text, max);
            for capacity in [1, 2, 3, 5, 64, 1 << 16] {
                for (max_lines, max_bytes) in [(1, 1 << 20), (3, 1 << 20), (8192, 1), (8192, 50)] {
                    let mut input = std::io::BufReader::with_capacity(capacity, &text[..]);
                    let mut batch = LineBatch::default();
                    let mut got = Vec::new();
                    while batch.fill(&mut input, max_lines, max_bytes, max).unwrap() {
                        assert!(batch.spans.len() <= max_lines);
                        for &(a, b, cut) in &batch.spans {
                            assert!(b - a <= max + 2);
                            got.push((
                                if cut {
                                    Vec::new()
                                } else {
                                    batch.bytes[a..b].to_vec()
                                },
                                cut,
                            ));
                        }
                    }
                    assert_eq!(batch.bytes_read(), text.len() as u64);
                    assert_eq!(
                        got, expected,
                        "capacity {capacity}, batch {max_lines}/{max_bytes}, tail {tail:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_folds() {
        let text = format!("{EVENT}\r\n{EVENT}");
        let r = replay(text.as_bytes(), EVENT.len());
        assert_eq!(r.rejections.total(), 0);
        assert_eq!(r.report(&CoreConfig::default()).events.applied, 2);
    }
}
