//! The file adapter: fold a JSONL event log, in file order, into one state.
//!
//! Owns reading lines (from a file or stdin), skipping blank ones, and keeping the
//! rejection summary that `keypulse replay` prints. Guarantees: a line that is not a valid
//! event is counted by reason and changes nothing else; a read error is an error (never a
//! silently shorter replay); `as_of` is the watermark, as SPEC §2 asks of a replay.

use std::collections::BTreeMap;
use std::io::BufRead;

use crate::core::{decode, CoreConfig, Event, Notification, PartitionState, RejectReason, Report};

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
    /// Decodes one line (without its newline).
    pub fn decode(line: &'a [u8]) -> Self {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Self::Blank;
        }
        match decode(line) {
            Ok(ev) => Self::Event(ev),
            Err(r) => Self::Rejected(r.reason),
        }
    }
}

/// A block of whole lines read from a log, their newlines (`\n`, `\r\n`) stripped.
#[derive(Debug, Default)]
pub struct LineBatch {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
    read: u64,
}

impl LineBatch {
    /// Replaces the batch with the next lines of `input`: up to `max_lines`, or fewer once
    /// about `max_bytes` are held. Returns false at the end of the input (the batch is then
    /// empty).
    pub fn fill(
        &mut self,
        input: &mut impl BufRead,
        max_lines: usize,
        max_bytes: usize,
    ) -> std::io::Result<bool> {
        self.bytes.clear();
        self.spans.clear();
        while self.spans.len() < max_lines && self.bytes.len() < max_bytes {
            let start = self.bytes.len();
            let n = input.read_until(b'\n', &mut self.bytes)?;
            if n == 0 {
                break;
            }
            self.read += n as u64;
            let mut end = self.bytes.len();
            while end > start && matches!(self.bytes[end - 1], b'\n' | b'\r') {
                end -= 1;
            }
            self.spans.push((start, end));
        }
        Ok(!self.spans.is_empty())
    }

    /// The lines of the batch, in order.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&(a, b)| &self.bytes[a..b])
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

    /// Folds one line (without its newline). Blank lines are skipped.
    pub fn feed_line(&mut self, line: &[u8], cfg: &CoreConfig) {
        self.feed_decoded(&Line::decode(line), cfg);
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

    /// Folds every line of `input`; `on_progress` is told the bytes read so far.
    pub fn feed_reader(
        &mut self,
        mut input: impl BufRead,
        cfg: &CoreConfig,
        mut on_progress: impl FnMut(u64),
    ) -> std::io::Result<()> {
        let mut batch = LineBatch::default();
        while batch.fill(&mut input, BATCH_LINES, BATCH_BYTES)? {
            for line in batch.lines() {
                self.feed_line(line, cfg);
            }
            on_progress(batch.bytes_read());
        }
        Ok(())
    }

    /// The report at the watermark.
    pub fn report(&self, cfg: &CoreConfig) -> Report {
        self.state.report(self.state.watermark(), cfg)
    }
}
