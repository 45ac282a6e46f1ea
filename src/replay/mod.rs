//! The file adapter: fold a JSONL event log, in file order, into one state.
//!
//! Owns reading lines (from a file or stdin), skipping blank ones, and keeping the
//! rejection summary that `keypulse replay` prints. Guarantees: a line that is not a valid
//! event is counted by reason and changes nothing else; a read error is an error (never a
//! silently shorter replay); `as_of` is the watermark, as SPEC §2 asks of a replay; a line
//! longer than `core.max_event_bytes` is `too_large`: it is never parsed, nor held whole
//! in memory (the reader keeps at most the limit and skips to the line's end).

use std::collections::BTreeMap;
use std::io::BufRead;

mod shards;

use crate::core::{
    decode_bounded, CoreConfig, Event, Notification, PartitionState, RejectReason, Report,
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
        while self.spans.len() < max_lines && self.bytes.len() < max_bytes {
            let start = self.bytes.len();
            let (n, cut) = read_line_bounded(input, &mut self.bytes, start + keep)?;
            if n == 0 {
                break;
            }
            self.read += n;
            let mut end = self.bytes.len();
            while !cut && end > start && matches!(self.bytes[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            self.spans.push((start, end, cut));
        }
        Ok(!self.spans.is_empty())
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
#[derive(Debug, Default)]
pub struct Replay {
    pub state: PartitionState,
    pub rejections: RejectionSummary,
    pub decisions: Vec<Notification>,
    lines: u64,
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

    /// Folds one line decoded with [`Line::decode`]: the fold's only entry for a line.
    pub fn feed_decoded(&mut self, line: &Line<'_>, cfg: &CoreConfig) {
        self.lines += 1;
        match line {
            Line::Blank => {}
            Line::Event(ev) => {
                self.state.apply(ev, cfg, &mut self.decisions);
            }
            Line::Rejected(reason) => {
                self.state.record_rejected();
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
    /// in `threads` customer shards, merged at the end (`shards.rs`); else on this thread
    /// alone. The report, the rejection summary and [`Replay::decisions`] are the same
    /// either way (sums of floats within their last bits).
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
        // Once sharded, batches are larger: each batch costs two meetings of the threads.
        let mut sharded: Option<Option<shards::Shards>> = None;
        let limits = |sharded: &Option<Option<_>>| match sharded {
            Some(Some(_)) => (shards::BATCH_LINES, shards::BATCH_BYTES),
            _ => (BATCH_LINES, BATCH_BYTES),
        };
        loop {
            let (max_lines, max_bytes) = limits(&sharded);
            if !batch.fill(&mut input, max_lines, max_bytes, cfg.max_event_bytes)? {
                break;
            }
            let mode = sharded.get_or_insert_with(|| {
                let fresh = self.lines == 0 && self.state.sizes() == (0, 0);
                let n = threads.min(MAX_THREADS);
                (fresh && n > 1 && batch.is_full()).then(|| shards::Shards::new(n))
            });
            match mode {
                Some(shards) => shards.feed(self, &batch, cfg),
                None => {
                    for line in batch.decoded(cfg.max_event_bytes) {
                        self.feed_decoded(&line, cfg);
                    }
                }
            }
            on_progress(batch.bytes_read());
        }
        if let Some(Some(shards)) = sharded {
            // Nothing was folded into `self.state` (it was fresh): the shards replace it.
            self.state = shards.merge();
        }
        Ok(())
    }

    /// The report at the watermark.
    pub fn report(&self, cfg: &CoreConfig) -> Report {
        self.state.report(self.state.watermark(), cfg)
    }
}

/// Reads one line (through its `\n`, or to the end of the input) into `buf`, keeping
/// `buf` at most `keep` bytes long. Returns the bytes consumed and whether the line was cut.
fn read_line_bounded(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<(u64, bool)> {
    let mut consumed = 0u64;
    let mut cut = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, cut));
        }
        let (part, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..=i], true),
            None => (chunk, false),
        };
        let room = keep.saturating_sub(buf.len());
        if part.len() > room {
            cut = true;
        }
        buf.extend_from_slice(&part[..part.len().min(room)]);
        let n = part.len();
        input.consume(n);
        consumed += n as u64;
        if done {
            return Ok((consumed, cut));
        }
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
