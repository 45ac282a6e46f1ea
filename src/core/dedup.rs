//! `event_id` de-duplication for one customer, with its horizon (SPEC §1).
//!
//! Owns the set of ids applied recently. An id is remembered as a stable 64-bit hash
//! (xxh3) with the `ts` of its latest application, and forgotten once that `ts` is more
//! than the horizon before the customer's clock. One id is held inline (a customer keeps
//! either one at a time or many, so more inline room would mostly go unused), a few in a
//! small vector; a busy customer's set moves to a hash map. Guarantees: exact for every pair of
//! distinct ids whose hashes differ (two distinct ids of one customer, both inside one
//! horizon, collide with probability about 2⁻⁶⁴); pruning never changes a decision, since
//! a pruned id is one the horizon already ignores.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::time::Micros;

/// Above this many ids the set moves from the inline vector to a hash map.
const INLINE_MAX: usize = 16;

/// The small vector grows one id at a time up to this many, doubling beyond.
const EXACT_MAX: usize = 4;

type IdMap = HashMap<u64, Micros, ahash::RandomState>;

/// The ids a customer applied within the horizon (32 bytes in its customer record).
/// Its serialized form is [`SeenIdsWire`]'s, unchanged since the state codec's first
/// version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "SeenIdsWire")]
pub(crate) struct SeenIds {
    few: SmallVec<[(u64, Micros); 1]>,
    // Boxed on purpose: 8 bytes per customer instead of 64 for the rare busy one.
    many: Option<Box<Many>>,
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
    few: SmallVec<[(u64, Micros); 1]>,
    many: Option<IdMap>,
    pruned_len: u32,
    oldest: Micros,
}

impl From<SeenIdsWire> for SeenIds {
    fn from(w: SeenIdsWire) -> Self {
        Self {
            few: w.few,
            many: w.many.map(|map| {
                Box::new(Many {
                    map,
                    pruned_len: w.pruned_len,
                    oldest: w.oldest,
                })
            }),
        }
    }
}

impl Serialize for SeenIds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SeenIds", 4)?;
        st.serialize_field("few", &self.few)?;
        st.serialize_field("many", &self.many.as_ref().map(|m| &m.map))?;
        st.serialize_field(
            "pruned_len",
            &self.many.as_ref().map_or(0, |m| m.pruned_len),
        )?;
        // The short list's is its minimum (0 when empty, as a new set's always was).
        let oldest = match &self.many {
            Some(m) => m.oldest,
            None => self.few.iter().map(|(_, t)| *t).min().unwrap_or(0),
        };
        st.serialize_field("oldest", &oldest)?;
        st.end()
    }
}

fn hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

impl SeenIds {
    /// The `ts` of the latest application of `id`, if remembered.
    fn get(&self, h: u64) -> Option<Micros> {
        match &self.many {
            Some(m) => m.get(&h).copied(),
            None => self.few.iter().find(|(k, _)| *k == h).map(|(_, t)| *t),
        }
    }

    /// The ids held in the short list (hashes and times; empty once the map holds them).
    pub(crate) fn few(&self) -> &[(u64, Micros)] {
        &self.few
    }

    /// Whether `id` was applied at or after `floor` (the customer's clock minus the horizon).
    pub(crate) fn is_duplicate(&self, id: &str, floor: Micros) -> bool {
        self.get(hash(id)).is_some_and(|t| t >= floor)
    }

    /// Records an application of `id` at `ts`, then forgets ids older than `floor`.
    pub(crate) fn remember(&mut self, id: &str, ts: Micros, floor: Micros) {
        let h = hash(id);
        if let Some(m) = &mut self.many {
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
        for e in self.few.iter_mut() {
            if e.0 == h {
                e.1 = ts;
                found = true;
            }
            oldest = oldest.min(e.1);
        }
        if !found {
            if self.few.len() == self.few.capacity() && oldest < floor {
                // Forget what the horizon already ignores before growing: a customer
                // whose events are more than the horizon apart then keeps its one id
                // inline, instead of a heap copy made for the second id and freed again
                // by the prune below, on every event.
                self.prune(floor);
                oldest = floor; // a lower bound of what the prune kept
            }
            if self.few.len() == self.few.capacity() && self.few.len() < EXACT_MAX {
                // Exact room while short: most customers hold two to four ids at once,
                // and doubling would leave a slot in every one unused.
                self.few.reserve_exact(1);
            }
            self.few.push((h, ts));
            oldest = oldest.min(ts);
            if self.few.len() > INLINE_MAX {
                self.many = Some(Box::new(Many {
                    map: self.few.drain(..).collect(),
                    pruned_len: INLINE_MAX as u32,
                    oldest,
                }));
            }
        }
        if oldest < floor {
            self.prune(floor);
        }
    }

    fn prune(&mut self, floor: Micros) {
        match &mut self.many {
            None => {
                self.few.retain(|(_, t)| *t >= floor);
                if self.few.spilled() && self.few.len() <= self.few.inline_size() {
                    self.few.shrink_to_fit(); // back inline: frees the heap copy
                }
            }
            Some(m) => {
                // amortised: a large set prunes only when it has doubled
                if (m.len() as u32) < 2 * m.pruned_len {
                    return;
                }
                m.retain(|_, t| *t >= floor);
                m.oldest = m.values().copied().min().unwrap_or(Micros::MAX);
                if m.len() <= INLINE_MAX / 2 {
                    self.few = m.drain().collect();
                    self.many = None;
                } else {
                    m.shrink_to_fit();
                    m.pruned_len = m.len() as u32;
                }
            }
        }
    }

    /// Adds every id of `other` (for merging the no-customer group of two states).
    pub(crate) fn absorb(&mut self, other: SeenIds) {
        let entries: Vec<(u64, Micros)> = match other.many {
            Some(m) => m.map.into_iter().collect(),
            None => other.few.into_vec(),
        };
        for (h, t) in entries {
            let keep = self.get(h).map_or(t, |mine| mine.max(t));
            match &mut self.many {
                Some(m) => {
                    m.insert(h, keep);
                    m.oldest = m.oldest.min(keep);
                }
                None => match self.few.iter_mut().find(|(k, _)| *k == h) {
                    Some(e) => e.1 = keep,
                    None => self.few.push((h, keep)),
                },
            }
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        let few = if self.few.spilled() {
            self.few.capacity() * 16
        } else {
            0
        };
        few + self
            .many
            .as_ref()
            .map_or(0, |m| std::mem::size_of::<Many>() + m.capacity() * 17)
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
            assert!(!s.few.spilled(), "spilled at {i}");
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
        for (n, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            s.remember(id, n as Micros, 0);
            assert_eq!(s.few.capacity(), n + 1, "after {id}");
        }
        s.remember("e", 5, 0);
        assert_eq!(s.few.capacity(), 8); // doubling beyond
        assert!(["a", "b", "c", "d", "e"]
            .iter()
            .all(|id| s.is_duplicate(id, 0)));
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
        assert!(s.many.is_some());
        assert!((0..100).all(|i| s.is_duplicate(&format!("id{i}"), 0)));
        for i in 0..200 {
            s.remember(&format!("late{i}"), 10_000 + i, 10_000);
        }
        assert!(!s.is_duplicate("id5", 0));
        assert!(s.is_duplicate("late150", 10_000));
        s.remember("last", 1_000_000, 1_000_000);
        assert!(s.many.is_none());
        assert!(s.is_duplicate("last", 0));
    }
}
