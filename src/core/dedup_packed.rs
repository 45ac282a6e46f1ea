//! The short list of remembered ids (`dedup.rs`), packed: 12 bytes an id instead of 16.
//!
//! Owns [`Packed`]. The newest id (largest `ts`) is held whole: its 64-bit hash and its
//! `ts`. Every other id is held as its hash and its age, the newest `ts` minus its own, in
//! 32 bits. All of it is one boxed slice of `u32` words, so it allocates 12 bytes an id
//! plus 4 (40 bytes for three ids, a 48-byte chunk of the allocator where 16 bytes an id
//! took 64).
//!
//! Why the ages fit: the set keeps only ids whose `ts` is at or after the floor, the
//! customer's clock minus the horizon, and no `ts` is after the clock. So every age is at
//! most the horizon: one hour by default (3.6 × 10⁹ µs, where 32 bits hold 4.29 × 10⁹).
//! Guarantees: [`Packed::pack`] of any list gives back exactly its entries, or `None`
//! when an age does not fit in 32 bits (a horizon above 71 minutes, or a merge): the
//! caller then holds the ids in its map, which is exact for any `ts`. Nothing here panics.

use super::{Entry, Micros};

/// Words of the newest id: hash (low, high), `ts` (low, high).
const HEAD: usize = 4;
/// Words of every other id: hash (low, high), age.
const SLOT: usize = 3;

/// Two or more ids (see the module header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Packed(Box<[u32]>);

fn join(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

fn split(v: u64) -> [u32; 2] {
    [v as u32, (v >> 32) as u32]
}

impl Packed {
    /// The packed form of `entries` (at least one), or `None` when an age does not fit.
    pub(super) fn pack(entries: &[Entry]) -> Option<Self> {
        let newest = Self::newest_if_fits(entries)?;
        let mut words = vec![0; Self::words_for(entries.len())?].into_boxed_slice();
        Self::write(&mut words, entries, newest);
        Some(Self(words))
    }

    /// This list with `(h, ts)` added (`h` not held), in a new slice of exactly their
    /// number, when it then holds at most `max` ids and every age fits; else `None`.
    pub(super) fn with(&self, h: u64, ts: Micros, max: usize) -> Option<Self> {
        if self.0.len() + SLOT > Self::words_for(max)? {
            return None;
        }
        let (head, t) = self.newest();
        let mut words = Vec::with_capacity(self.0.len() + SLOT);
        if ts <= t {
            // Older than the newest: one more slot after the others.
            let age = u32::try_from(t.checked_sub(ts)?).ok()?;
            words.extend_from_slice(&self.0);
            words.extend_from_slice(&split(h));
            words.push(age);
        } else {
            // The new newest: every age grows by how much newer it is.
            let step = ts.checked_sub(t)?;
            let grown = |age: u32| u32::try_from(step.checked_add(age as Micros)?).ok();
            words.extend_from_slice(&split(h));
            words.extend_from_slice(&split(ts as u64));
            words.extend_from_slice(&split(head));
            words.push(grown(0)?);
            for s in self.0[HEAD..].chunks_exact(SLOT) {
                words.extend_from_slice(&s[..2]);
                words.push(grown(s[2])?);
            }
        }
        Some(Self(words.into_boxed_slice()))
    }

    /// The oldest `ts` held.
    pub(super) fn oldest(&self) -> Micros {
        let oldest_age = self.0[HEAD..].chunks_exact(SLOT).map(|s| s[2]).max();
        self.newest().1 - oldest_age.unwrap_or(0) as Micros
    }

    /// Packs `entries` into this list's own room when they are as many as it holds;
    /// whether it did (false, and unchanged, when they are not, or an age does not fit).
    pub(super) fn repack(&mut self, entries: &[Entry]) -> bool {
        if Self::words_for(entries.len()) != Some(self.0.len()) {
            return false;
        }
        let Some(newest) = Self::newest_if_fits(entries) else {
            return false;
        };
        Self::write(&mut self.0, entries, newest);
        true
    }

    fn words_for(n: usize) -> Option<usize> {
        n.checked_sub(1).map(|rest| HEAD + SLOT * rest)
    }

    /// Where the newest of `entries` is, when every age fits in 32 bits (`None` for none).
    fn newest_if_fits(entries: &[Entry]) -> Option<usize> {
        let newest = (0..entries.len()).max_by_key(|&i| entries[i].1)?;
        let t = entries[newest].1;
        entries
            .iter()
            .all(|&(_, ts)| {
                t.checked_sub(ts)
                    .is_some_and(|age| age <= u32::MAX as Micros)
            })
            .then_some(newest)
    }

    /// Writes `entries` into `words` (of their size): the newest (at `newest`, every age
    /// checked to fit) first, then the others in their order.
    fn write(words: &mut [u32], entries: &[Entry], newest: usize) {
        let (h, t) = entries[newest];
        words[..2].copy_from_slice(&split(h));
        words[2..HEAD].copy_from_slice(&split(t as u64));
        let others = entries.iter().enumerate().filter(|&(i, _)| i != newest);
        for ((_, &(h, ts)), slot) in others.zip(words[HEAD..].chunks_exact_mut(SLOT)) {
            slot[..2].copy_from_slice(&split(h));
            // Checked by `newest_if_fits`: 0 ≤ t − ts ≤ u32::MAX.
            slot[2] = t.wrapping_sub(ts) as u32;
        }
    }

    /// How many ids.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        1 + (self.0.len().saturating_sub(HEAD)) / SLOT
    }

    fn newest(&self) -> Entry {
        let w = &self.0;
        (join(w[0], w[1]), join(w[2], w[3]) as Micros)
    }

    /// The ids and their `ts`: the newest first, then the others in the order packed.
    pub(super) fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        let newest = self.newest();
        let others = self.0[HEAD..]
            .chunks_exact(SLOT)
            .map(move |s| (join(s[0], s[1]), newest.1 - s[2] as Micros));
        std::iter::once(newest).chain(others)
    }

    /// The `ts` of `h`, if held.
    pub(super) fn get(&self, h: u64) -> Option<Micros> {
        let [lo, hi] = split(h);
        let newest = self.newest();
        if newest.0 == h {
            return Some(newest.1);
        }
        self.0[HEAD..]
            .chunks_exact(SLOT)
            .find(|s| s[0] == lo && s[1] == hi)
            .map(|s| newest.1 - s[2] as Micros)
    }

    /// The words, for a cache hint.
    pub(super) fn words(&self) -> &[u32] {
        &self.0
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_what_it_packed() {
        let t = 1_788_048_000_000_000;
        let entries = [
            (7, t - 5),
            (u64::MAX, t),
            (1 << 40, t - 3_600_000_000),
            (3, t),
        ];
        let p = Packed::pack(&entries).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p.heap_bytes(), 4 + 12 * 4);
        let mut back: Vec<Entry> = p.iter().collect();
        back.sort_unstable();
        let mut want = entries.to_vec();
        want.sort_unstable();
        assert_eq!(back, want);
        for (h, ts) in entries {
            assert_eq!(p.get(h), Some(ts));
        }
        assert_eq!(p.get(8), None);
        // One id is the head alone.
        let one = Packed::pack(&[(9, -4)]).unwrap();
        assert_eq!((one.len(), one.get(9)), (1, Some(-4)));
    }

    #[test]
    fn an_age_past_32_bits_does_not_pack() {
        let t = 10_000_000_000;
        let max = u32::MAX as Micros;
        assert!(Packed::pack(&[(1, t), (2, t - max)]).is_some());
        assert!(Packed::pack(&[(1, t), (2, t - max - 1)]).is_none());
        assert!(Packed::pack(&[(1, Micros::MAX), (2, Micros::MIN)]).is_none());
        assert!(Packed::pack(&[]).is_none());
    }

    /// Adding an id gives what packing the list with it gives, older or newer than the
    /// newest, and nothing when it would hold too many or an age would not fit.
    #[test]
    fn with_adds_one_as_packing_would() {
        let t = 5_000_000_000;
        let list = [(1, t), (2, t - 10), (3, t - 3_000_000_000)];
        let p = Packed::pack(&list).unwrap();
        assert_eq!(p.oldest(), t - 3_000_000_000);
        for ts in [t - 20, t, t + 7, t + 1_000_000_000] {
            let grown = p.with(9, ts, 16).unwrap();
            let mut want = list.to_vec();
            want.push((9, ts));
            let mut got: Vec<Entry> = grown.iter().collect();
            got.sort_unstable();
            assert_eq!(got, want, "at {ts}");
            assert_eq!(
                grown.heap_bytes(),
                Packed::pack(&want).unwrap().heap_bytes()
            );
        }
        assert!(
            p.with(9, t + 2_000_000_000, 16).is_none(),
            "the oldest's age"
        );
        assert!(
            p.with(9, t - u32::MAX as Micros - 1, 16).is_none(),
            "its own age"
        );
        assert!(p.with(9, t, 3).is_none(), "one too many");
    }

    #[test]
    fn repacks_in_its_own_room_only_when_it_fits() {
        let mut p = Packed::pack(&[(1, 100), (2, 50)]).unwrap();
        assert!(p.repack(&[(1, 100), (2, 99)]));
        assert_eq!(p.get(2), Some(99));
        assert!(!p.repack(&[(1, 100)]), "another size");
        assert!(!p.repack(&[(1, 100), (2, 100 - u32::MAX as Micros - 1)]));
        assert_eq!((p.get(1), p.get(2)), (Some(100), Some(99)), "unchanged");
    }
}
