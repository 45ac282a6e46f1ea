//! Reading a log into batches of lines, and a line decoded once.
//!
//! Owns [`LineBatch`] (the reader) and [`Line`]. Guarantees: lines are those of a plain
//! split on `\n`, their line end (`\n`, `\r\n`) stripped; a line longer than
//! `core.max_event_bytes` is `too_large`, even if blank: it is never parsed, nor held
//! whole in memory (the batch keeps at most the limit of it and skips to the line's end).
//! Line ends are found with memchr in the input's blocks, not by reading line by line.

use std::io::BufRead;

use crate::core::{decode_bounded, Event, RejectReason};

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

/// A line of a batch: its start and end in the batch's bytes, and whether it was cut
/// (longer than the batch keeps of a line).
pub(super) type Span = (usize, usize, bool);

/// A block of whole lines read from a log, their newlines (`\n`, `\r\n`) stripped.
#[derive(Debug, Default)]
pub struct LineBatch {
    pub(super) bytes: Vec<u8>,
    pub(super) spans: Vec<Span>,
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
        self.spans
            .iter()
            .map(move |span| self.line(span, max_line_bytes))
    }

    /// One line of the batch (a span of [`LineBatch::spans`]), decoded as in
    /// [`LineBatch::decoded`].
    pub(super) fn line(&self, &(a, b, cut): &Span, max_line_bytes: usize) -> Line<'_> {
        if cut {
            Line::Rejected(RejectReason::TooLarge)
        } else {
            Line::decode(&self.bytes[a..b], max_line_bytes)
        }
    }

    /// Whether the last fill stopped at the batch's limits (rather than at the input's end).
    pub(super) fn is_full(&self) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
