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

    /// Adds an id the short list does not hold (or sets it in the map); moves the list to
    /// a map past [`INLINE_MAX`].
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
            // A map's `few_mut` is empty: `push` inserts into it (replacing its entry).
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
#[path = "dedup_tests.rs"]
mod tests;
