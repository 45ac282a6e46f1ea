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

use crate::core::{decode_bounded, CoreConfig, Notification, PartitionState, RejectReason, Report};

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

    /// Folds one line (without its newline). Blank lines are skipped; a line longer than
    /// `core.max_event_bytes` is rejected as `too_large`, even if blank.
    pub fn feed_line(&mut self, line: &[u8], cfg: &CoreConfig) {
        self.lines += 1;
        self.bytes += line.len() as u64 + 1;
        if line.len() <= cfg.max_event_bytes && line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match decode_bounded(line, cfg.max_event_bytes) {
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
        // A line end may be `\r\n`: keep one byte more than the limit, so that a line of
        // exactly the limit plus its `\r` is not taken for a longer one.
        let keep = cfg.max_event_bytes.saturating_add(2);
        loop {
            buf.clear();
            let (n, cut) = read_line_bounded(&mut input, &mut buf, keep)?;
            if n == 0 {
                return Ok(());
            }
            if cut {
                self.feed_too_large(n);
            } else {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                self.feed_line(&buf, cfg);
            }
            if self.lines % 8192 == 0 {
                on_progress(self.bytes);
            }
        }
    }

    /// Counts a line of `n` bytes (its line end included) that was too large to keep.
    fn feed_too_large(&mut self, n: u64) {
        self.lines += 1;
        self.bytes += n;
        self.state.record_rejected();
        self.rejections.record(RejectReason::TooLarge, self.lines);
    }

    /// The report at the watermark.
    pub fn report(&self, cfg: &CoreConfig) -> Report {
        self.state.report(self.state.watermark(), cfg)
    }
}

/// Reads one line (through its `\n`, or to the end of the input) into `buf`, keeping at
/// most `keep` bytes of it. Returns the bytes consumed and whether the line was cut.
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
