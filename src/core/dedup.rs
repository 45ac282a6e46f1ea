//! `event_id` de-duplication for one customer, with its horizon (SPEC §1).
//!
//! Owns the set of ids applied recently. An id is remembered as a stable 64-bit hash
//! (xxh3) with the `ts` of its latest application, and forgotten once that `ts` is more
//! than the horizon before the customer's clock. One id is held inline (a customer keeps
//! either one at a time or many, so more inline room would mostly go unused), a few in a
//! boxed slice of exactly their number; a busy customer's set moves to a hash map. The
//! whole is 24 bytes in the customer record. Guarantees: exact for every pair of distinct
//! ids whose hashes differ (two distinct ids of one customer, both inside one horizon,
//! collide with probability about 2⁻⁶⁴); pruning never changes a decision, since a pruned
//! id is one the horizon already ignores; an id remembered with a `ts` the horizon already
//! ignores is not kept at all.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::time::Micros;

/// Above this many ids the set moves from the short list to a hash map.
const INLINE_MAX: usize = 16;

type IdMap = HashMap<u64, Micros, ahash::RandomState>;

/// One remembered id: its hash and the `ts` of its latest application.
type Entry = (u64, Micros);

/// The ids a customer applied within the horizon (24 bytes in its customer record).
/// Its serialized form is [`SeenIdsWire`]'s, unchanged since the state codec's first
/// version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "SeenIdsWire")]
pub(crate) struct SeenIds(Held);

/// How the ids are held, by how many there are.
#[derive(Debug, Clone, Default)]
enum Held {
    #[default]
    None,
    One(Entry),
    /// Two to [`INLINE_MAX`] (more only after a merge), in a slice of exactly their
    /// number: a customer holds a few at once, and a growing vector's slack would sit in
    /// every one of them.
    Few(Box<[Entry]>),
    // Boxed on purpose: 8 bytes here instead of 64 for the rare busy customer.
    Many(Box<Many>),
}

/// A busy customer's ids.
#[derive(Debug, Clone, Default)]
struct Many {
    map: IdMap,
    /// Size after the last pruning of `map` (it prunes again when it has doubled).
    pruned_len: u32,
    /// A lower bound of the `ts` held, to know when pruning has work. (The short list
    /// needs none: each remember reads all of it anyway, and takes its minimum then.)
    oldest: Micros,
}

impl std::ops::Deref for Many {
    type Target = IdMap;
    fn deref(&self) -> &IdMap {
        &self.map
    }
}

impl std::ops::DerefMut for Many {
    fn deref_mut(&mut self) -> &mut IdMap {
        &mut self.map
    }
}

/// The serialized form of [`SeenIds`] (the field order is the codec's).
#[derive(Deserialize)]
struct SeenIdsWire {
    few: SmallVec<[Entry; 1]>,
    many: Option<IdMap>,
    pruned_len: u32,
    oldest: Micros,
}

impl From<SeenIdsWire> for SeenIds {
    fn from(w: SeenIdsWire) -> Self {
        Self(match w.many {
            // The short list is empty beside a map (a map never sits beside one).
            Some(map) => Held::Many(Box::new(Many {
                map,
                pruned_len: w.pruned_len,
                oldest: w.oldest,
            })),
            None => Held::of(w.few.into_vec()),
        })
    }
}

impl Serialize for SeenIds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let many = match &self.0 {
            Held::Many(m) => Some(m),
            _ => None,
        };
        let mut st = s.serialize_struct("SeenIds", 4)?;
        // A sequence, as the small vector it was written from in the first version.
        st.serialize_field("few", self.few())?;
        st.serialize_field("many", &many.map(|m| &m.map))?;
        st.serialize_field("pruned_len", &many.map_or(0, |m| m.pruned_len))?;
        // The short list's is its minimum (0 when empty, as a new set's always was).
        let oldest = match many {
            Some(m) => m.oldest,
            None => self.few().iter().map(|(_, t)| *t).min().unwrap_or(0),
        };
        st.serialize_field("oldest", &oldest)?;
        st.end()
    }
}

fn hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

impl Held {
    /// The short form of `entries` (none, one, or a slice of exactly their number).
    fn of(entries: Vec<Entry>) -> Self {
        match entries.len() {
            0 => Self::None,
            1 => Self::One(entries[0]),
            _ => Self::Few(entries.into_boxed_slice()),
        }
    }
}

impl SeenIds {
    /// The `ts` of the latest application of `id`, if remembered.
    fn get(&self, h: u64) -> Option<Micros> {
        match &self.0 {
            Held::Many(m) => m.get(&h).copied(),
            _ => self.few().iter().find(|(k, _)| *k == h).map(|(_, t)| *t),
        }
    }

    /// The ids held in the short list (hashes and times; empty once the map holds them).
    pub(crate) fn few(&self) -> &[Entry] {
        match &self.0 {
            Held::None | Held::Many(_) => &[],
            Held::One(e) => std::slice::from_ref(e),
            Held::Few(b) => b,
        }
    }

    fn few_mut(&mut self) -> &mut [Entry] {
        match &mut self.0 {
            Held::None | Held::Many(_) => &mut [],
            Held::One(e) => std::slice::from_mut(e),
            Held::Few(b) => b,
        }
    }

    /// Whether `id` was applied at or after `floor` (the customer's clock minus the horizon).
    pub(crate) fn is_duplicate(&self, id: &str, floor: Micros) -> bool {
        self.get(hash(id)).is_some_and(|t| t >= floor)
    }

    /// Records an application of `id` at `ts`, then forgets ids older than `floor`.
    pub(crate) fn remember(&mut self, id: &str, ts: Micros, floor: Micros) {
        let h = hash(id);
        if let Held::Many(m) = &mut self.0 {
            if m.is_empty() {
                m.oldest = ts;
            }
            m.insert(h, ts);
            m.oldest = m.oldest.min(ts);
            if m.oldest < floor {
                self.prune(floor);
            }
            return;
        }
        // One pass over the short list: find the id, and the oldest `ts` held.
        let mut found = false;
        let mut oldest = Micros::MAX;
        for e in self.few_mut() {
            if e.0 == h {
                e.1 = ts;
                found = true;
            }
            oldest = oldest.min(e.1);
        }
        // Forget what the horizon already ignores first: a customer whose events are more
        // than the horizon apart then keeps its one id inline, with no heap copy made for
        // the second id and freed again at once.
        if oldest < floor {
            self.prune(floor);
        }
        // An id whose `ts` the horizon already ignores would be forgotten at once.
        if !found && ts >= floor {
            self.push(h, ts);
        }
    }

    /// Adds an id the short list does not hold; moves the list to a map past
    /// [`INLINE_MAX`].
    fn push(&mut self, h: u64, ts: Micros) {
        self.0 = match std::mem::take(&mut self.0) {
            Held::None => Held::One((h, ts)),
            Held::One(e) => Held::Few(Box::new([e, (h, ts)])),
            Held::Few(b) if b.len() < INLINE_MAX => {
                let mut v = Vec::with_capacity(b.len() + 1);
                v.extend_from_slice(&b);
                v.push((h, ts));
                Held::Few(v.into_boxed_slice())
            }
            Held::Few(b) => {
                let mut map: IdMap = b.iter().copied().collect();
                map.insert(h, ts);
                let oldest = map.values().copied().min().unwrap_or(Micros::MAX);
                Held::Many(Box::new(Many {
                    map,
                    pruned_len: INLINE_MAX as u32,
                    oldest,
                }))
            }
            Held::Many(mut m) => {
                m.insert(h, ts);
                m.oldest = m.oldest.min(ts);
                Held::Many(m)
            }
        };
    }

    fn prune(&mut self, floor: Micros) {
        match &mut self.0 {
            Held::None => {}
            Held::One(e) => {
                if e.1 < floor {
                    self.0 = Held::None;
                }
            }
            Held::Few(b) => {
                if b.iter().any(|(_, t)| *t < floor) {
                    let kept = b.iter().copied().filter(|(_, t)| *t >= floor).collect();
                    self.0 = Held::of(kept);
                }
            }
            Held::Many(m) => {
                // amortised: a large set prunes only when it has doubled
                if (m.len() as u32) < 2 * m.pruned_len {
                    return;
                }
                m.retain(|_, t| *t >= floor);
                m.oldest = m.values().copied().min().unwrap_or(Micros::MAX);
                if m.len() <= INLINE_MAX / 2 {
                    self.0 = Held::of(m.drain().collect());
                } else {
                    m.shrink_to_fit();
                    m.pruned_len = m.len() as u32;
                }
            }
        }
    }

    /// Adds every id of `other` (for merging the no-customer group of two states).
    pub(crate) fn absorb(&mut self, other: SeenIds) {
        let entries: Vec<Entry> = match other.0 {
            Held::Many(m) => m.map.into_iter().collect(),
            _ => other.few().to_vec(),
        };
        for (h, t) in entries {
            let keep = self.get(h).map_or(t, |mine| mine.max(t));
            if let Held::Many(m) = &mut self.0 {
                m.insert(h, keep);
                m.oldest = m.oldest.min(keep);
                continue;
            }
            match self.few_mut().iter_mut().find(|(k, _)| *k == h) {
                Some(e) => e.1 = keep,
                None => self.push(h, keep),
            }
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.0 {
            Held::None | Held::One(_) => 0,
            Held::Few(b) => std::mem::size_of_val::<[Entry]>(b),
            Held::Many(m) => std::mem::size_of::<Many>() + m.capacity() * 17,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_horizon_and_forgets_after() {
        let mut s = SeenIds::default();
        s.remember("a", 100, 0);
        assert!(s.is_duplicate("a", 50));
        assert!(s.is_duplicate("a", 100));
        assert!(!s.is_duplicate("a", 101));
        assert!(!s.is_duplicate("b", 0));
        s.remember("b", 200, 150); // prunes "a"
        assert!(!s.is_duplicate("a", 0));
        assert!(s.is_duplicate("b", 0));
    }

    /// The system allocator, counting the allocations made on each thread (this crate's
    /// unit tests only), so that a test can tell that a call allocates nothing.
    struct Counting;

    thread_local! {
        static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            unsafe { std::alloc::System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
            unsafe { std::alloc::System.dealloc(p, l) }
        }
        unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            unsafe { std::alloc::System.realloc(p, l, new) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    fn allocations() -> u64 {
        ALLOCATIONS.with(|n| n.get())
    }

    #[test]
    fn ids_further_apart_than_the_horizon_stay_inline() {
        let hour = 3_600_000_000;
        let mut s = SeenIds::default();
        for i in 0..10 {
            let ts = i * 2 * hour;
            let id = format!("e{i}");
            let before = allocations();
            s.remember(&id, ts, ts - hour);
            assert_eq!(allocations(), before, "remember allocated at {i}");
            assert!(matches!(s.0, Held::One(_)), "not inline at {i}");
            assert_eq!(s.heap_bytes(), 0);
            assert!(s.is_duplicate(&id, ts - hour));
            assert!(i == 0 || !s.is_duplicate(&format!("e{}", i - 1), ts - hour));
        }
        // Two within the horizon still grow the set, and both are remembered.
        s.remember("x", 18 * hour + 1, 17 * hour);
        assert!(s.is_duplicate("e9", 17 * hour) && s.is_duplicate("x", 17 * hour));
    }

    #[test]
    fn a_short_set_holds_exact_room() {
        let mut s = SeenIds::default();
        let ids: Vec<String> = (0..INLINE_MAX).map(|i| format!("e{i}")).collect();
        for (n, id) in ids.iter().enumerate() {
            s.remember(id, n as Micros, 0);
            let room = if n == 0 { 0 } else { (n + 1) * 16 };
            assert_eq!(s.heap_bytes(), room, "after {id}");
        }
        assert!(ids.iter().all(|id| s.is_duplicate(id, 0)));
        // One more moves the set to a map.
        s.remember("x", 99, 0);
        assert!(matches!(s.0, Held::Many(_)));
        assert!(ids.iter().all(|id| s.is_duplicate(id, 0)) && s.is_duplicate("x", 0));
    }

    /// 24 bytes in the customer record (issue 10's budget; it was 32 with the small vector
    /// and the map's box side by side).
    #[test]
    fn the_set_is_24_bytes() {
        assert_eq!(std::mem::size_of::<SeenIds>(), 24);
    }

    /// An id remembered with a `ts` the horizon already ignores is not kept; the others are.
    #[test]
    fn a_late_id_below_the_floor_is_not_kept() {
        let mut s = SeenIds::default();
        s.remember("a", 100, 50);
        s.remember("late", 10, 50);
        assert!(!s.is_duplicate("late", 0));
        assert!(s.is_duplicate("a", 50));
        assert!(matches!(s.0, Held::One(_)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(300))]

        /// Against a plain map that forgets nothing: with floors that never go back (the
        /// customer's clock minus the horizon), every id answers alike after every step,
        /// and after a trip through the codec's form.
        #[test]
        fn answers_as_a_map_that_forgets_nothing(
            steps in proptest::collection::vec((0u32..40, 0i64..7_200, 0i64..900, proptest::bool::ANY), 1..300)
        ) {
            let mut s = SeenIds::default();
            let mut model: HashMap<String, Micros> = HashMap::new();
            let mut floor: Micros = 0;
            for (i, (id, ahead, step, late)) in steps.into_iter().enumerate() {
                floor += step;
                // Mostly at or after the floor; sometimes late, below it.
                let ts = if late { floor - ahead / 4 } else { floor + ahead };
                let id = format!("e{id}");
                let dup = s.is_duplicate(&id, floor);
                proptest::prop_assert_eq!(dup, model.get(&id).is_some_and(|t| *t >= floor));
                if !dup {
                    s.remember(&id, ts, floor);
                    model.insert(id, ts);
                }
                if i % 17 == 0 {
                    let bytes = postcard::to_allocvec(&s).unwrap();
                    s = postcard::from_bytes(&bytes).unwrap();
                }
                for (k, t) in &model {
                    proptest::prop_assert_eq!(s.is_duplicate(k, floor), *t >= floor, "{}", k);
                }
            }
        }
    }

    #[test]
    fn a_busy_customer_moves_to_a_map_and_back() {
        let mut s = SeenIds::default();
        for i in 0..100 {
            s.remember(&format!("id{i}"), i, 0);
        }
        assert!(matches!(s.0, Held::Many(_)));
        assert!((0..100).all(|i| s.is_duplicate(&format!("id{i}"), 0)));
        for i in 0..200 {
            s.remember(&format!("late{i}"), 10_000 + i, 10_000);
        }
        assert!(!s.is_duplicate("id5", 0));
        assert!(s.is_duplicate("late150", 10_000));
        s.remember("last", 1_000_000, 1_000_000);
        assert!(!matches!(s.0, Held::Many(_)));
        assert!(s.is_duplicate("last", 0));
    }
}
