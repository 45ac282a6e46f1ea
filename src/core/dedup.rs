//! `event_id` de-duplication for one customer, with its horizon (SPEC §1).
//!
//! Owns the set of ids applied recently. An id is remembered as a stable 64-bit hash
//! (xxh3) with the `ts` of its latest application, and forgotten once that `ts` is more
//! than the horizon before the customer's clock. One id is held inline (a customer keeps
//! either one at a time or many, so more inline room would mostly go unused), a few in a
//! boxed slice of exactly their number, packed to 12 bytes an id (`dedup_packed.rs`); a
//! busy customer's set moves to a hash map, and so does a short list whose `ts` lie too
//! far apart to pack. The whole is 24 bytes in the customer record. Guarantees: exact for
//! every pair of distinct ids whose hashes differ (two distinct ids of one customer, both
//! inside one horizon, collide with probability about 2⁻⁶⁴); pruning never changes a
//! decision, since a pruned id is one the horizon already ignores; an id remembered with a
//! `ts` the horizon already ignores is not kept at all.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::time::Micros;

#[path = "dedup_packed.rs"]
mod packed;
use packed::Packed;

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
    /// Two to [`INLINE_MAX`], packed in a slice of exactly their number: a customer
    /// holds a few at once, and a growing vector's slack would sit in every one of them.
    Few(Packed),
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
            None => Held::of(&w.few),
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
        st.serialize_field("few", &self.few())?;
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

/// Sets the `ts` of `h` among `ids`, adding it when absent; whether that changed them.
fn upsert(ids: &mut Short, h: u64, ts: Micros) -> bool {
    match ids.iter_mut().find(|e| e.0 == h) {
        Some(e) => std::mem::replace(&mut e.1, ts) != ts,
        None => {
            ids.push((h, ts));
            true
        }
    }
}

/// The ids of a short form, copied out of it (on the stack: at most one more than a
/// short list holds, the one being added).
type Short = SmallVec<[Entry; INLINE_MAX + 1]>;

impl Held {
    /// The form of `entries` (distinct hashes): none, one, a packed slice of exactly their
    /// number, or a map when they are more than [`INLINE_MAX`] or do not pack.
    fn of(entries: &[Entry]) -> Self {
        match entries {
            [] => Self::None,
            [e] => Self::One(*e),
            _ => match (entries.len() <= INLINE_MAX)
                .then(|| Packed::pack(entries))
                .flatten()
            {
                Some(p) => Self::Few(p),
                None => Self::map_of(entries),
            },
        }
    }

    fn map_of(entries: &[Entry]) -> Self {
        let map: IdMap = entries.iter().copied().collect();
        let oldest = map.values().copied().min().unwrap_or(Micros::MAX);
        Self::Many(Box::new(Many {
            pruned_len: INLINE_MAX as u32,
            map,
            oldest,
        }))
    }

    /// Holds `entries`: in the packed slice it has when they are as many (no
    /// allocation), else in their own form.
    fn hold(&mut self, entries: &[Entry]) {
        if let Self::Few(p) = self {
            // (A packed list holds at most `INLINE_MAX`, so as many entries are that few.)
            if p.repack(entries) {
                return;
            }
        }
        *self = Self::of(entries);
    }
}

impl SeenIds {
    /// The `ts` of the latest application of `id`, if remembered.
    fn get(&self, h: u64) -> Option<Micros> {
        match &self.0 {
            Held::None => None,
            Held::One((k, t)) => (*k == h).then_some(*t),
            Held::Few(p) => p.get(h),
            Held::Many(m) => m.get(&h).copied(),
        }
    }

    /// The ids held in a short form (hashes and times; none once the map holds them),
    /// the newest first.
    fn few(&self) -> Short {
        match &self.0 {
            Held::None | Held::Many(_) => Short::new(),
            Held::One(e) => Short::from_slice(std::slice::from_ref(e)),
            Held::Few(p) => p.iter().collect(),
        }
    }

    /// The heap words of the short list (for a cache hint; empty in the other forms).
    pub(crate) fn packed_words(&self) -> &[u32] {
        match &self.0 {
            Held::Few(p) => p.words(),
            _ => &[],
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
        // The usual step of a packed list: a new id, and nothing for the horizon to forget.
        if let Held::Few(p) = &self.0 {
            if ts >= floor && p.oldest() >= floor && p.get(h).is_none() {
                if let Some(grown) = p.with(h, ts, INLINE_MAX) {
                    self.0 = Held::Few(grown);
                    return;
                }
            }
        }
        // On a copy of the short list, on the stack: set the id's `ts` (adding it if new),
        // then forget what the horizon already ignores, the id itself if its `ts` is below
        // the floor; only then is the set written back. So a customer whose events are
        // more than the horizon apart keeps its one id inline, with no heap copy made for
        // the second id and freed again at once.
        let mut ids = self.few();
        let mut changed = upsert(&mut ids, h, ts);
        let held = ids.len();
        ids.retain(|e| e.1 >= floor);
        changed |= ids.len() != held;
        if changed {
            self.0.hold(&ids);
        }
    }

    /// Sets the `ts` of `h`, held or not (moving a short list to a map past
    /// [`INLINE_MAX`]).
    fn put(&mut self, h: u64, ts: Micros) {
        if let Held::Many(m) = &mut self.0 {
            m.insert(h, ts);
            m.oldest = m.oldest.min(ts);
            return;
        }
        let mut ids = self.few();
        upsert(&mut ids, h, ts);
        self.0.hold(&ids);
    }

    fn prune(&mut self, floor: Micros) {
        match &mut self.0 {
            Held::None => {}
            Held::One(e) => {
                if e.1 < floor {
                    self.0 = Held::None;
                }
            }
            Held::Few(p) => {
                if p.iter().any(|(_, t)| t < floor) {
                    let kept: Short = p.iter().filter(|(_, t)| *t >= floor).collect();
                    self.0 = Held::of(&kept);
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
                    let kept: Short = m.drain().collect();
                    self.0 = Held::of(&kept);
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
            self.put(h, keep);
        }
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        match &self.0 {
            Held::None | Held::One(_) => 0,
            Held::Few(p) => p.heap_bytes(),
            Held::Many(m) => std::mem::size_of::<Many>() + m.capacity() * 17,
        }
    }
}

#[cfg(test)]
#[path = "dedup_tests.rs"]
mod tests;
