//! The licenses' emails, held in one buffer per state.
//!
//! Owns [`Emails`] and [`EmailRef`]. A license holds an 8-byte reference instead of a
//! boxed string: the box was 16 bytes in the record plus a heap allocation of its own
//! (48 bytes for a 34-byte email, with the allocator's header and rounding). Here each
//! email is its length (LEB128) followed by its bytes, appended to one buffer.
//!
//! A license's email changes only by a `license.issued` that names another one; the old
//! text stays behind as garbage. Once the garbage is at least half the buffer, past
//! [`COMPACT_MIN`], and at least [`WALK_GARBAGE`] bytes per license of the state, the state
//! copies the live emails to a new buffer and rewrites every license's reference
//! ([`PartitionState::compact_emails`]). That copies at most as many bytes as were left
//! as garbage since the last compaction, and walks every license once; the last
//! condition charges that walk to the garbage too (a state of 1 M licenses without an
//! email, whose one small live email changed again and again, was walked whole every
//! 64 KB of changes: 28 µs per event against 0.8 µs at 10 k licenses, `scripts/
//! bench-quadratic`'s `emails` shape). So the cost stays O(1) per byte written, whatever
//! the state's size, and the garbage is at most the larger of half the buffer,
//! [`COMPACT_MIN`] and [`WALK_GARBAGE`] bytes per license (plus the last text released).
//!
//! Guarantees: [`Emails::get`] of what [`Emails::push`] returned is the string pushed, for
//! every string of any length (offsets and lengths are 64-bit); a reference stays valid
//! until the next compaction; nothing here panics.

use std::num::NonZeroU64;

use super::PartitionState;

/// Below this many bytes of garbage, no compaction (a small state is not worth it).
pub(super) const COMPACT_MIN: usize = 64 * 1024;

/// Bytes of garbage per license of the state below which no compaction: the walk over
/// every license is paid for by at least this much garbage per license walked.
pub(super) const WALK_GARBAGE: usize = 8;

/// Where one email starts in its state's [`Emails`] (offset + 1, so that
/// `Option<EmailRef>` is 8 bytes too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EmailRef(NonZeroU64);

impl EmailRef {
    fn offset(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

/// The email texts of one state's licenses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Emails {
    bytes: Vec<u8>,
    /// Bytes of texts no license refers to any more.
    garbage: usize,
}

impl Emails {
    /// Appends `s`; its reference.
    pub(super) fn push(&mut self, s: &str) -> EmailRef {
        let at = self.bytes.len();
        let mut n = s.len() as u64;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.bytes.push(low);
                break;
            }
            self.bytes.push(low | 0x80);
        }
        self.bytes.extend_from_slice(s.as_bytes());
        EmailRef(NonZeroU64::MIN.saturating_add(at as u64))
    }

    /// The text of `r` (empty for a reference this buffer never gave: never the case).
    pub(super) fn get(&self, r: EmailRef) -> &str {
        let (start, len) = self.span(r);
        self.bytes
            .get(start..start.saturating_add(len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Where `r`'s text starts, and its length.
    fn span(&self, r: EmailRef) -> (usize, usize) {
        let mut at = r.offset();
        let mut len = 0u64;
        let mut shift = 0u32;
        while let Some(&b) = self.bytes.get(at) {
            at += 1;
            len |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        (at, len as usize)
    }

    /// `r`'s text is no longer referred to.
    pub(super) fn release(&mut self, r: EmailRef) {
        let (start, len) = self.span(r);
        self.garbage += start - r.offset() + len;
    }

    /// Whether enough garbage has built up to compact a state of `licenses` licenses.
    pub(super) fn wants_compaction(&self, licenses: usize) -> bool {
        self.garbage >= COMPACT_MIN
            && self.garbage * 2 >= self.bytes.len()
            && self.garbage / WALK_GARBAGE >= licenses
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends every email of `other`, rewriting the references `refs` (into `other`) to
    /// point here.
    pub(super) fn absorb<'a>(
        &mut self,
        other: &Emails,
        refs: impl Iterator<Item = &'a mut Option<EmailRef>>,
    ) {
        for r in refs {
            if let Some(old) = *r {
                *r = Some(self.push(other.get(old)));
            }
        }
    }
}

impl PartitionState {
    /// The email of license `li`, if it has one.
    pub(crate) fn email_of(&self, li: u32) -> Option<&str> {
        let r = self.licenses.get(li as usize)?.email?;
        Some(self.emails.get(r))
    }

    /// Sets the email of license `li` (`None`: it has none); compacts when due. Kept out
    /// of line: only `license.issued` calls it, and the fold's hot path is `apply`'s body.
    #[inline(never)]
    pub(super) fn set_email(&mut self, li: u32, email: Option<&str>) {
        if self.email_of(li) == email {
            return;
        }
        // The customer's kept notifications that read this email from the license keep
        // it (`kept.rs`). A license without one has none reading it: its first email
        // (an issue, the usual case) copies nothing.
        if self.licenses[li as usize].email.is_some() {
            self.unborrow_recipients(self.licenses[li as usize].customer);
        }
        let emails = &mut self.emails;
        let l = &mut self.licenses[li as usize];
        if let Some(old) = l.email.take() {
            emails.release(old);
        }
        l.email = email.map(|e| emails.push(e));
        if self.emails.wants_compaction(self.licenses.len()) {
            self.compact_emails();
        }
    }

    /// Copies the live emails to a new buffer and rewrites every license's reference.
    #[cold]
    #[inline(never)]
    pub(super) fn compact_emails(&mut self) {
        let old = std::mem::take(&mut self.emails);
        self.emails
            .absorb(&old, self.licenses.iter_mut().map(|l| &mut l.email));
        self.emails.bytes.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_reads_back() {
        let mut e = Emails::default();
        let texts: Vec<String> = [0usize, 1, 127, 128, 300, 16_384, 70_000]
            .iter()
            .map(|&n| "é".repeat(n / 2) + &"x".repeat(n % 2))
            .collect();
        let refs: Vec<EmailRef> = texts.iter().map(|t| e.push(t)).collect();
        for (t, r) in texts.iter().zip(&refs) {
            assert_eq!(e.get(*r), t);
        }
        assert_eq!(std::mem::size_of::<Option<EmailRef>>(), 8);
    }

    #[test]
    fn garbage_is_counted_and_compaction_keeps_the_live_ones() {
        let mut s = PartitionState::new();
        let ci = s.customer_index("c");
        for i in 0..4 {
            s.license_index(ci, &format!("k{i}"), 0);
        }
        s.set_email(0, Some("a@x"));
        s.set_email(1, Some("b@x"));
        assert_eq!(s.emails.garbage, 0);
        s.set_email(0, Some("a@x")); // unchanged: nothing released
        assert_eq!(s.emails.garbage, 0);
        s.set_email(0, Some("c@xx"));
        assert_eq!(s.emails.garbage, 4); // length byte + "a@x"
        s.set_email(1, None);
        assert_eq!(s.emails.garbage, 8);
        // Enough churn on one license to compact, again and again: the buffer stays small.
        let big = "y".repeat(1000);
        for i in 0..1000 {
            s.set_email(2, Some(&format!("{i}{big}")));
        }
        assert!(
            s.emails.bytes.len() < 4 * COMPACT_MIN,
            "{}",
            s.emails.bytes.len()
        );
        assert_eq!(s.email_of(0), Some("c@xx"));
        assert_eq!(s.email_of(1), None);
        assert_eq!(s.email_of(2), Some(format!("999{big}").as_str()));
        assert_eq!(s.email_of(3), None);
        s.compact_emails();
        assert_eq!(s.emails.garbage, 0);
        assert_eq!(s.emails.bytes.len(), 5 + 2 + 1003);
        assert_eq!(s.email_of(0), Some("c@xx"));
        assert_eq!(s.email_of(2), Some(format!("999{big}").as_str()));
    }

    /// A compaction walks every license: with many licenses and one email changing, it
    /// comes only once the garbage pays for the walk ([`WALK_GARBAGE`] bytes a license),
    /// and the garbage stays within that bound.
    #[test]
    fn compaction_is_paid_for_by_the_garbage_it_walks_past() {
        const LICENSES: usize = 100_000;
        let mut s = PartitionState::new();
        let ci = s.customer_index("c");
        for i in 0..LICENSES {
            s.license_index(ci, &format!("k{i}"), 0);
        }
        let big = "z".repeat(1000);
        let (mut released, mut compactions) = (0usize, 0usize);
        for i in 0..5_000 {
            let before = s.emails.garbage;
            s.set_email(0, Some(&format!("{}{big}", i % 2)));
            if i > 0 {
                released += 1003; // the length bytes and the 1,001 bytes of the text before
            }
            if s.emails.garbage < before {
                compactions += 1;
                assert!(
                    before + 1003 >= WALK_GARBAGE * LICENSES,
                    "compacted at {before}"
                );
            }
            assert!(s.emails.garbage <= WALK_GARBAGE * LICENSES + 1003);
        }
        // 5 MB of garbage, 800 kB a walk: six compactions, where the half-buffer rule
        // alone made one every 66 changes, at 64 kB (75).
        assert_eq!(compactions, released / (WALK_GARBAGE * LICENSES));
        assert_eq!(s.email_of(0), Some(format!("1{big}").as_str()));
        assert_eq!(s.email_of(1), None);
    }
}
