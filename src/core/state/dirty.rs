//! Which customers changed since the state's changes were last taken: the write set of a
//! durable commit.
//!
//! Owns [`DirtySet`], a bitmap over customer positions with the list of the marked ones.
//! [`PartitionState::apply`], [`PartitionState::advance_to`] and
//! [`PartitionState::merge`] mark every customer whose record they may change;
//! [`PartitionState::take_dirty`] hands out their ids and clears the set.
//!
//! Guarantees: marking is O(1) and allocation-free once the bitmap covers the customer;
//! a customer is listed at most once per take, in the order it was first marked; a state
//! built by `from_records` or `from_bytes` starts clean (it equals what was written); a
//! state made by [`PartitionState::untracked`] (a replay's) marks nothing at all.
//! The partition's own figures change with every event folded: a writer writes the
//! partition record whenever it writes anything, so it is not tracked here.

use super::PartitionState;

/// A set of customer positions.
#[derive(Debug, Clone, Default)]
pub(crate) struct DirtySet {
    bits: Vec<u64>,
    list: Vec<u32>,
    /// Nothing is marked (see [`PartitionState::untracked`]).
    off: bool,
}

impl DirtySet {
    /// Marks customer `ci` as changed.
    #[inline]
    pub(crate) fn mark(&mut self, ci: u32) {
        if self.off {
            return;
        }
        let (word, bit) = ((ci / 64) as usize, ci % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.bits[word] & mask == 0 {
            self.bits[word] |= mask;
            self.list.push(ci);
        }
    }

    /// The marked positions, in marking order; the set is empty afterwards.
    fn take(&mut self) -> Vec<u32> {
        for &ci in &self.list {
            self.bits[(ci / 64) as usize] = 0;
        }
        std::mem::take(&mut self.list)
    }

    fn len(&self) -> usize {
        self.list.len()
    }
}

impl PartitionState {
    /// An empty state that tracks no changes, for a caller that never takes them (a
    /// replay): it saves the list of changed customers, 4 bytes per customer. Its
    /// [`Self::take_dirty`] is always empty, also after other states merge into it.
    pub fn untracked() -> Self {
        let mut s = Self::new();
        s.dirty.off = true;
        s
    }

    /// The ids of the customers changed since the last call (the no-customer group as
    /// `""`), each once; afterwards none is.
    pub fn take_dirty(&mut self) -> Vec<Box<str>> {
        self.dirty
            .take()
            .into_iter()
            .map(|ci| Box::from(&*self.customers[ci as usize].id))
            .collect()
    }

    /// How many customers changed since the last [`Self::take_dirty`].
    pub fn dirty_count(&self) -> usize {
        self.dirty.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CoreConfig;
    use crate::event::decode;

    fn apply(s: &mut PartitionState, line: &str) {
        let e = decode(line.as_bytes()).expect("event");
        s.apply(&e, &CoreConfig::default(), &mut Vec::new());
    }

    #[test]
    fn events_mark_their_customer_once_and_take_clears() {
        let mut s = PartitionState::new();
        for c in ["a", "b", "a"] {
            apply(
                &mut s,
                &format!(
                    r#"{{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"{c}","license_key":"k","plan":"pro","domain_limit":1,"mrr_cents":100}}"#
                ),
            );
        }
        assert_eq!(s.dirty_count(), 2);
        let ids: Vec<String> = s.take_dirty().iter().map(|x| x.to_string()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(s.take_dirty().is_empty());
        apply(
            &mut s,
            r#"{"type":"license.validated","ts":"2026-10-02T00:00:00Z","customer_id":"b","license_key":"k","result":"valid"}"#,
        );
        assert_eq!(s.take_dirty(), vec![Box::from("b")]);
        // a restored state starts clean, and a tick that crosses midnight marks the
        // customers whose clock it moved
        let mut r = PartitionState::from_bytes(&s.to_bytes().unwrap()).unwrap();
        assert_eq!(r.dirty_count(), 0);
        r.advance_to(
            crate::time::parse_rfc3339("2026-10-05T12:00:00Z").unwrap(),
            &CoreConfig::default(),
            &mut Vec::new(),
        );
        let mut ids: Vec<String> = r.take_dirty().iter().map(|x| x.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn an_untracked_state_marks_nothing_and_folds_the_same() {
        let line = r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"a","license_key":"k","plan":"pro","domain_limit":1,"mrr_cents":100}"#;
        let (mut tracked, mut untracked) = (PartitionState::new(), PartitionState::untracked());
        apply(&mut tracked, line);
        apply(&mut untracked, line);
        assert_eq!(tracked.dirty_count(), 1);
        assert_eq!(untracked.dirty_count(), 0);
        assert!(untracked.take_dirty().is_empty());
        assert_eq!(tracked.to_bytes().unwrap(), untracked.to_bytes().unwrap());
    }

    #[test]
    fn marks_far_apart_grow_the_bitmap() {
        let mut d = DirtySet::default();
        d.mark(5000);
        d.mark(3);
        d.mark(5000);
        assert_eq!(d.take(), vec![5000, 3]);
        assert_eq!(d.len(), 0);
        d.mark(5000);
        assert_eq!(d.take(), vec![5000]);
    }
}
