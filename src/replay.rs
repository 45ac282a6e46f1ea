//! The file adapter: fold a JSONL event log, in file order, into one state.
//!
//! Owns reading lines (from a file or stdin), skipping blank ones, and keeping the
//! rejection summary that `keypulse replay` prints. Guarantees: a line that is not a valid
//! event is counted by reason and changes nothing else; a read error is an error (never a
//! silently shorter replay); `as_of` is the watermark, as SPEC §2 asks of a replay.

use std::collections::BTreeMap;
use std::io::BufRead;

use crate::core::{decode, CoreConfig, Notification, PartitionState, RejectReason, Report};

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

/// A replay in progress: feed it lines, then take the report.
#[derive(Debug, Default)]
pub struct Replay {
    pub state: PartitionState,
    pub rejections: RejectionSummary,
    pub decisions: Vec<Notification>,
    lines: u64,
    bytes: u64,
}

impl Replay {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one line (without its newline). Blank lines are skipped.
    pub fn feed_line(&mut self, line: &[u8], cfg: &CoreConfig) {
        self.lines += 1;
        self.bytes += line.len() as u64 + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match decode(line) {
            Ok(ev) => {
                self.state.apply(&ev, cfg, &mut self.decisions);
            }
            Err(r) => {
                self.state.record_rejected();
                self.rejections.record(r.reason, self.lines);
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
        let mut buf = Vec::with_capacity(1024);
        loop {
            buf.clear();
            let n = input.read_until(b'\n', &mut buf)?;
            if n == 0 {
                return Ok(());
            }
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            self.feed_line(&buf, cfg);
            if self.lines % 8192 == 0 {
                on_progress(self.bytes);
            }
        }
    }

    /// The report at the watermark.
    pub fn report(&self, cfg: &CoreConfig) -> Report {
        self.state.report(self.state.watermark(), cfg)
    }
}
