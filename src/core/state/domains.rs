//! A license's registered domains: [`DomainSet`], a set of 64-bit domain hashes.
//!
//! Owns the structure of the per-license domain set (issue 13, "quadratic domains").
//! Guarantees:
//! - every operation costs O(1) amortized (or O(k) with k ≤ [`SORTED_MAX`]) whatever the
//!   number of domains: up to [`INLINE_MAX`] hashes sit inline in the license (no heap),
//!   up to [`SORTED_MAX`] in a boxed sorted vector (small memmoves), beyond that in a
//!   boxed hash table; the set moves back down when removals shrink it;
//! - no cap: every registered domain is counted (SPEC §3);
//! - the hash table's seed is random per process (so a hostile customer can't aim its
//!   domains at one bucket), yet nothing observable depends on it: iteration for
//!   serialization is [`DomainSet::sorted`], so the codec's bytes are deterministic and
//!   the V1 wire form (a list of `u64`) is unchanged;
//! - the set is 24 bytes in its license, like the `SmallVec<[u64; 2]>` it replaces.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hashes held inline (no heap) in the license itself.
pub(crate) const INLINE_MAX: usize = 2;
/// Hashes held in the boxed sorted vector before the set becomes a hash table.
pub(crate) const SORTED_MAX: usize = 32;

type Table = hashbrown::HashSet<u64, ahash::RandomState>;

/// How many hashes the inline form holds (an enum so the set's own tag fits in its niche).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum InlineLen {
    Zero = 0,
    One = 1,
    Two = 2,
}

impl InlineLen {
    fn of(n: usize) -> Self {
        match n {
            0 => Self::Zero,
            1 => Self::One,
            _ => Self::Two,
        }
    }
}

/// A set of domain hashes; see the module header for its costs.
#[derive(Debug, Clone)]
pub(crate) enum DomainSet {
    /// Sorted, the first `len` of `items`.
    Inline {
        len: InlineLen,
        items: [u64; INLINE_MAX],
    },
    /// Sorted, more than `INLINE_MAX` and at most `SORTED_MAX`. Boxed on purpose: the
    /// set stays 24 bytes (a bare `Vec` would not fit beside the inline form's niche).
    #[allow(clippy::box_collection)]
    Sorted(Box<Vec<u64>>),
    /// More than `SORTED_MAX / 2` (it moves back to `Sorted` below that).
    Table(Box<Table>),
}

impl Default for DomainSet {
    fn default() -> Self {
        Self::Inline {
            len: InlineLen::Zero,
            items: [0; INLINE_MAX],
        }
    }
}

impl PartialEq for DomainSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter_unordered().all(|h| other.contains(h))
    }
}

impl Eq for DomainSet {}

impl DomainSet {
    /// Registered domains.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Inline { len, .. } => *len as usize,
            Self::Sorted(v) => v.len(),
            Self::Table(t) => t.len(),
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains(&self, h: u64) -> bool {
        match self {
            Self::Inline { len, items } => items[..*len as usize].contains(&h),
            Self::Sorted(v) => v.binary_search(&h).is_ok(),
            Self::Table(t) => t.contains(&h),
        }
    }

    /// Adds `h`; whether it was absent.
    pub(crate) fn insert(&mut self, h: u64) -> bool {
        match self {
            Self::Inline { len, items } => {
                let n = *len as usize;
                let pos = match items[..n].binary_search(&h) {
                    Ok(_) => return false,
                    Err(pos) => pos,
                };
                if n < INLINE_MAX {
                    items.copy_within(pos..n, pos + 1);
                    items[pos] = h;
                    *len = InlineLen::of(n + 1);
                } else {
                    let mut v = Vec::with_capacity(INLINE_MAX * 2);
                    v.extend_from_slice(&items[..n]);
                    v.insert(pos, h);
                    *self = Self::Sorted(Box::new(v));
                }
                true
            }
            Self::Sorted(v) => {
                let pos = match v.binary_search(&h) {
                    Ok(_) => return false,
                    Err(pos) => pos,
                };
                if v.len() < SORTED_MAX {
                    v.insert(pos, h);
                } else {
                    let mut t = Table::with_capacity_and_hasher(v.len() * 2, Default::default());
                    t.extend(v.iter().copied());
                    t.insert(h);
                    *self = Self::Table(Box::new(t));
                }
                true
            }
            Self::Table(t) => t.insert(h),
        }
    }

    /// Removes `h`; whether it was present.
    pub(crate) fn remove(&mut self, h: u64) -> bool {
        match self {
            Self::Inline { len, items } => {
                let n = *len as usize;
                let Ok(pos) = items[..n].binary_search(&h) else {
                    return false;
                };
                items.copy_within(pos + 1..n, pos);
                items[n - 1] = 0;
                *len = InlineLen::of(n - 1);
                true
            }
            Self::Sorted(v) => {
                let Ok(pos) = v.binary_search(&h) else {
                    return false;
                };
                v.remove(pos);
                if v.len() <= INLINE_MAX {
                    *self = Self::from_sorted(v);
                } else if v.capacity() > 2 * v.len() + 4 {
                    v.shrink_to_fit();
                }
                true
            }
            Self::Table(t) => {
                if !t.remove(&h) {
                    return false;
                }
                // Back to the sorted vector only at half the threshold (hysteresis), so a
                // set hovering at the threshold does not rebuild on every event.
                if t.len() <= SORTED_MAX / 2 {
                    let mut v: Vec<u64> = t.iter().copied().collect();
                    v.sort_unstable();
                    *self = Self::from_sorted(&v);
                } else if t.capacity() > 4 * t.len() + 64 {
                    t.shrink_to_fit();
                }
                true
            }
        }
    }

    /// The set of the sorted, duplicate-free `v`.
    fn from_sorted(v: &[u64]) -> Self {
        if v.len() <= INLINE_MAX {
            let mut items = [0; INLINE_MAX];
            items[..v.len()].copy_from_slice(v);
            Self::Inline {
                len: InlineLen::of(v.len()),
                items,
            }
        } else if v.len() <= SORTED_MAX {
            Self::Sorted(Box::new(v.to_vec()))
        } else {
            let mut t = Table::with_capacity_and_hasher(v.len(), Default::default());
            t.extend(v.iter().copied());
            Self::Table(Box::new(t))
        }
    }

    /// The hashes in no particular order (cheap; for counting and comparing only).
    fn iter_unordered(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            Self::Inline { len, items } => Box::new(items[..*len as usize].iter().copied()),
            Self::Sorted(v) => Box::new(v.iter().copied()),
            Self::Table(t) => Box::new(t.iter().copied()),
        }
    }

    /// The hashes in ascending order (what the codec writes).
    pub(crate) fn sorted(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.iter_unordered().collect();
        if matches!(self, Self::Table(_)) {
            v.sort_unstable();
        }
        v
    }

    /// Heap bytes held (none while inline): what the state-size metric counts.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::Inline { .. } => 0,
            Self::Sorted(v) => std::mem::size_of::<Vec<u64>>() + v.capacity() * 8,
            Self::Table(t) => std::mem::size_of::<Table>() + t.allocation_size(),
        }
    }
}

impl FromIterator<u64> for DomainSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut v: Vec<u64> = iter.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        Self::from_sorted(&v)
    }
}

/// Written as a sorted list of `u64`: the V1 wire form of the `SmallVec<[u64; 2]>` before.
impl Serialize for DomainSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.sorted())
    }
}

/// Read from a list of `u64` in any order (duplicates count once).
impl<'de> Deserialize<'de> for DomainSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(s: &DomainSet) -> &'static str {
        match s {
            DomainSet::Inline { .. } => "inline",
            DomainSet::Sorted(_) => "sorted",
            DomainSet::Table(_) => "table",
        }
    }

    fn roundtrip(s: &DomainSet) -> DomainSet {
        postcard::from_bytes(&postcard::to_allocvec(s).unwrap()).unwrap()
    }

    #[test]
    fn is_as_small_as_the_vector_it_replaces() {
        assert_eq!(std::mem::size_of::<DomainSet>(), 24);
    }

    #[test]
    fn insert_twice_counts_once_and_remove_absent_is_a_no_op() {
        let mut s = DomainSet::default();
        assert!(s.is_empty());
        assert!(s.insert(7));
        assert!(!s.insert(7));
        assert_eq!(s.len(), 1);
        assert!(!s.remove(8));
        assert_eq!(s.len(), 1);
        assert!(s.remove(7));
        assert!(!s.remove(7));
        assert!(s.is_empty());
        assert!(s.insert(7), "re-added after removal");
        assert!(s.contains(7));
    }

    #[test]
    fn crosses_every_tier_both_ways_with_the_right_members() {
        let mut s = DomainSet::default();
        let n = 10 * SORTED_MAX as u64;
        // a spread of values, inserted out of order
        let val = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut seen = vec![];
        for i in 0..n {
            assert!(s.insert(val(i)));
            assert!(!s.insert(val(i)));
            assert_eq!(s.len() as u64, i + 1);
            seen.push(tier(&s));
        }
        assert_eq!(seen[0], "inline");
        assert_eq!(seen[INLINE_MAX], "sorted");
        assert_eq!(seen[SORTED_MAX], "table");
        assert!((0..n).all(|i| s.contains(val(i))));
        for i in (0..n).rev() {
            assert!(s.remove(val(i)));
            assert!(!s.contains(val(i)));
            assert_eq!(s.len() as u64, i);
            assert!((0..i).step_by(7).all(|j| s.contains(val(j))));
        }
        assert_eq!(tier(&s), "inline");
        assert!(s.is_empty());
        assert_eq!(s.heap_bytes(), 0);
    }

    #[test]
    fn iteration_is_sorted_and_deterministic_in_every_tier() {
        for n in [0u64, 1, 2, 3, 20, 33, 500] {
            let fwd: DomainSet = (0..n).map(|i| i * 977 % 1009).collect();
            let mut back = DomainSet::default();
            for i in (0..n).rev() {
                back.insert(i * 977 % 1009);
            }
            let mut want: Vec<u64> = (0..n).map(|i| i * 977 % 1009).collect();
            want.sort_unstable();
            assert_eq!(fwd.sorted(), want, "n={n}");
            assert_eq!(back.sorted(), want, "n={n}");
            assert_eq!(fwd, back);
            assert_eq!(
                postcard::to_allocvec(&fwd).unwrap(),
                postcard::to_allocvec(&back).unwrap(),
                "same bytes, n={n}"
            );
        }
    }

    #[test]
    fn serializes_as_the_sorted_list_and_round_trips() {
        for n in [0u64, 2, 3, 32, 33, 1000] {
            let s: DomainSet = (0..n).map(|i| i.wrapping_mul(31) ^ 0xABCD).collect();
            let back = roundtrip(&s);
            assert_eq!(back, s, "n={n}");
            assert_eq!(back.len() as u64, n);
            // the V1 wire form: exactly a list of u64, as the SmallVec wrote it
            let list: Vec<u64> = postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
            assert_eq!(list, s.sorted());
            let old: smallvec::SmallVec<[u64; 2]> = s.sorted().into_iter().collect();
            assert_eq!(
                postcard::to_allocvec(&old).unwrap(),
                postcard::to_allocvec(&s).unwrap()
            );
        }
    }

    #[test]
    fn heap_bytes_grow_with_the_domains() {
        let small: DomainSet = (0..2).collect();
        let mid: DomainSet = (0..30).collect();
        let big: DomainSet = (0..10_000).collect();
        assert_eq!(small.heap_bytes(), 0);
        assert!(mid.heap_bytes() >= 30 * 8);
        assert!(big.heap_bytes() >= 10_000 * 8);
        assert!(big.heap_bytes() <= 10_000 * 8 * 3, "{}", big.heap_bytes());
    }
}
