//! A customer's list of its licenses' positions, in 16 bytes of its record.
//!
//! Owns [`LicenseList`]. Most customers own one to three licenses: those are held inline
//! (the customer's license lookup scans them without leaving the record, see `index.rs`).
//! A customer with more has them in a boxed vector: one pointer in the record, and the
//! vector's header and room on the heap, where a customer with many licenses pays for
//! them anyway. Guarantees: the list is the positions pushed, in their order (it derefs
//! to that slice); it is inline exactly while it holds at most [`INLINE`] (it only grows),
//! so [`LicenseList::inline`] answers without leaving the record; pushing is amortized
//! O(1) however long the list is.

/// Positions held inline, without an allocation.
pub(crate) const INLINE: usize = 3;

/// A customer's license positions (16 bytes: the `SmallVec<[u32; 4]>` it replaces took 24).
#[derive(Clone)]
pub(crate) enum LicenseList {
    Inline {
        len: u8,
        items: [u32; INLINE],
    },
    /// More than [`INLINE`]. Boxed on purpose: the list stays 16 bytes (a bare `Vec` is
    /// 24), and only customers with many licenses pay the second allocation.
    #[allow(clippy::box_collection)]
    Spilled(Box<Vec<u32>>),
}

impl Default for LicenseList {
    fn default() -> Self {
        Self::new()
    }
}

impl LicenseList {
    pub(crate) const fn new() -> Self {
        Self::Inline {
            len: 0,
            items: [0; INLINE],
        }
    }

    pub(crate) fn push(&mut self, li: u32) {
        match self {
            Self::Inline { len, items } if (*len as usize) < INLINE => {
                items[*len as usize] = li;
                *len += 1;
            }
            Self::Inline { items, .. } => {
                let mut v = Vec::with_capacity(2 * INLINE);
                v.extend_from_slice(items);
                v.push(li);
                *self = Self::Spilled(Box::new(v));
            }
            Self::Spilled(v) => v.push(li),
        }
    }

    /// The positions, when they are held inline (at most [`INLINE`] of them).
    pub(crate) fn inline(&self) -> Option<&[u32]> {
        match self {
            Self::Inline { len, items } => Some(&items[..*len as usize]),
            Self::Spilled(_) => None,
        }
    }

    /// The bytes it holds on the heap (none while inline).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::Inline { .. } => 0,
            Self::Spilled(v) => std::mem::size_of::<Vec<u32>>() + v.capacity() * 4,
        }
    }
}

impl std::ops::Deref for LicenseList {
    type Target = [u32];
    fn deref(&self) -> &[u32] {
        match self {
            Self::Inline { len, items } => &items[..*len as usize],
            Self::Spilled(v) => v,
        }
    }
}

impl std::ops::DerefMut for LicenseList {
    fn deref_mut(&mut self) -> &mut [u32] {
        match self {
            Self::Inline { len, items } => &mut items[..*len as usize],
            Self::Spilled(v) => v,
        }
    }
}

impl Extend<u32> for LicenseList {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        for li in iter {
            self.push(li);
        }
    }
}

impl FromIterator<u32> for LicenseList {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut l = Self::new();
        l.extend(iter);
        l
    }
}

impl IntoIterator for LicenseList {
    type Item = u32;
    type IntoIter = std::iter::Chain<
        std::iter::Take<std::array::IntoIter<u32, INLINE>>,
        std::vec::IntoIter<u32>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        let (items, len, rest) = match self {
            Self::Inline { len, items } => (items, len as usize, Vec::new()),
            Self::Spilled(v) => ([0; INLINE], 0, *v),
        };
        items.into_iter().take(len).chain(rest)
    }
}

impl<'a> IntoIterator for &'a LicenseList {
    type Item = &'a u32;
    type IntoIter = std::slice::Iter<'a, u32>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::fmt::Debug for LicenseList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_16_bytes() {
        assert_eq!(std::mem::size_of::<LicenseList>(), 16);
    }

    /// Against a `Vec` at every length through the spill: the same slice, the same
    /// order, inline exactly while it fits, and each element writable.
    #[test]
    fn holds_what_was_pushed_in_order() {
        let mut l = LicenseList::new();
        let mut model = Vec::new();
        assert!(l.is_empty());
        for i in 0..40u32 {
            let li = i.wrapping_mul(2_654_435_761);
            l.push(li);
            model.push(li);
            assert_eq!(&*l, &model[..]);
            let inline = model.len() <= INLINE;
            assert_eq!(l.heap_bytes() == 0, inline, "at {}", model.len());
            assert_eq!(l.inline(), inline.then_some(&model[..]));
        }
        for (a, b) in l.iter_mut().zip(model.iter_mut()) {
            *a += 1;
            *b += 1;
        }
        assert_eq!(&*l, &model[..]);
        assert_eq!(l.clone().into_iter().collect::<Vec<_>>(), model);
        let short: LicenseList = (7..9).collect();
        assert_eq!(short.into_iter().collect::<Vec<_>>(), vec![7, 8]);
        let mut joined: LicenseList = (0..2).collect();
        joined.extend(10..13);
        assert_eq!(&*joined, &[0, 1, 10, 11, 12]);
        assert_eq!(format!("{joined:?}"), "[0, 1, 10, 11, 12]");
    }
}
