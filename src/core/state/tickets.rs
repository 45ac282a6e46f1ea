//! A customer's open support tickets: [`Tickets`].
//!
//! Owns the set of ticket ids opened and not closed. Most customers with extras never
//! open a ticket, so the set (a hash table and its random seed: 64 bytes) is boxed, and
//! the extras pay one pointer until the first ticket. Guarantees: O(1) per ticket event
//! however many are open (the seed is random per set, so ids can't be aimed at one
//! bucket); the box is dropped again when the last ticket closes.

/// The set itself.
type TicketSet = hashbrown::HashSet<Box<str>, ahash::RandomState>;

/// Open ticket ids (8 bytes; the codec writes them sorted).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tickets(Option<Box<TicketSet>>);

impl Tickets {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |t| t.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens `id` (no change when it is open).
    pub(crate) fn open(&mut self, id: &str) {
        let set = self.0.get_or_insert_with(Default::default);
        if !set.contains(id) {
            set.insert(id.into());
        }
    }

    /// Closes `id` (no change when it is not open).
    pub(crate) fn close(&mut self, id: &str) {
        if let Some(set) = self.0.as_mut() {
            set.remove(id);
            if set.is_empty() {
                self.0 = None;
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Box<str>> {
        self.0.iter().flat_map(|t| t.iter())
    }

    /// Heap bytes held: the box, the table and the ids.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |t| {
            std::mem::size_of::<TicketSet>()
                + t.allocation_size()
                + t.iter().map(|id| id.len()).sum::<usize>()
        })
    }
}

impl FromIterator<Box<str>> for Tickets {
    fn from_iter<I: IntoIterator<Item = Box<str>>>(iter: I) -> Self {
        let set: TicketSet = iter.into_iter().collect();
        Self((!set.is_empty()).then(|| Box::new(set)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_and_closes_and_holds_nothing_when_none_is_open() {
        let mut t = Tickets::default();
        assert_eq!(std::mem::size_of::<Tickets>(), 8);
        assert_eq!((t.len(), t.heap_bytes()), (0, 0));
        t.open("a");
        t.open("b");
        t.open("a");
        assert_eq!(t.len(), 2);
        assert!(t.heap_bytes() > 0);
        t.close("x");
        t.close("a");
        let mut open: Vec<&str> = t.iter().map(|s| &**s).collect();
        open.sort_unstable();
        assert_eq!(open, ["b"]);
        t.close("b");
        assert!(
            t.is_empty() && t.0.is_none(),
            "the box is dropped with the last"
        );
        let loaded: Tickets = ["c".into(), "d".into()].into_iter().collect();
        assert_eq!(loaded.len(), 2);
        assert!(Tickets::from_iter(std::iter::empty()).0.is_none());
    }
}
