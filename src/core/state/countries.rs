//! One day's validations by country: [`CountryCounts`].
//!
//! Owns the per-day country tally of a partition (the report's `countries`). A country
//! of two upper-case ASCII letters, the form nearly every event carries, is counted in a
//! dense table by its slot ([`crate::country`]): no string compare, no allocation, one
//! indexed add per validation. Any other string is counted as given (SPEC §1) in a
//! sorted map beside it.
//!
//! Guarantees:
//! - iteration yields each country once, in the byte order of the strings, exactly as the
//!   `BTreeMap<String, u64>` it replaces did; its serialized form is that map's, so the
//!   codec's bytes are unchanged (no format version bump);
//! - a country is present only with a count above zero (nothing ever adds zero: the
//!   fold adds one, a merge adds counts that were present).

use std::collections::BTreeMap;
use std::iter::Peekable;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::country::{alpha2_code, alpha2_slot, ALPHA2};

/// Validations by country over one day.
#[derive(Debug, Clone, Default)]
pub(crate) struct CountryCounts {
    /// By slot; allocated at the day's first two-letter country.
    alpha2: Option<Box<[u64; ALPHA2]>>,
    /// Every other string, as given.
    other: BTreeMap<String, u64>,
}

impl CountryCounts {
    /// Adds `n` validations from `country`.
    #[inline]
    pub(crate) fn add(&mut self, country: &str, n: u64) {
        if n == 0 {
            return;
        }
        match alpha2_slot(country) {
            Some(slot) => self.alpha2.get_or_insert_with(|| Box::new([0; ALPHA2]))[slot] += n,
            None => match self.other.get_mut(country) {
                Some(v) => *v += n,
                None => {
                    self.other.insert(country.to_string(), n);
                }
            },
        }
    }

    /// Every country with its count, in string order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        let alpha2 = self.alpha2.iter().flat_map(|t| {
            t.iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(slot, n)| (alpha2_code(slot), *n))
        });
        let other = self.other.iter().map(|(c, n)| (c.as_str(), *n));
        Merged {
            a: alpha2.peekable(),
            b: other.peekable(),
        }
    }

    /// Countries with a count.
    pub(crate) fn len(&self) -> usize {
        let alpha2 = self
            .alpha2
            .as_ref()
            .map_or(0, |t| t.iter().filter(|n| **n > 0).count());
        alpha2 + self.other.len()
    }

    /// Heap bytes held (the dense table, and the other countries' strings and counts).
    pub(crate) fn heap_bytes(&self) -> usize {
        let alpha2 = self.alpha2.as_ref().map_or(0, |_| ALPHA2 * 8);
        alpha2 + self.other.keys().map(|k| k.len() + 32).sum::<usize>()
    }
}

/// Two iterators sorted by key, with disjoint keys, merged in key order.
struct Merged<'a, A: Iterator<Item = (&'a str, u64)>, B: Iterator<Item = (&'a str, u64)>> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<'a, A, B> Iterator for Merged<'a, A, B>
where
    A: Iterator<Item = (&'a str, u64)>,
    B: Iterator<Item = (&'a str, u64)>,
{
    type Item = (&'a str, u64);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

impl PartialEq for CountryCounts {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Serialize for CountryCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.len()))?;
        for (c, n) in self.iter() {
            m.serialize_entry(c, &n)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for CountryCounts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, u64>::deserialize(d)?;
        let mut out = Self::default();
        for (c, n) in map {
            out.add(&c, n);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(adds: &[(&str, u64)]) -> (CountryCounts, BTreeMap<String, u64>) {
        let mut counts = CountryCounts::default();
        let mut map = BTreeMap::new();
        for &(c, n) in adds {
            counts.add(c, n);
            *map.entry(c.to_string()).or_insert(0) += n;
        }
        (counts, map)
    }

    #[test]
    fn counts_iterate_as_the_sorted_map_they_replace() {
        let (counts, map) = tally(&[
            ("US", 2),
            ("DEU", 1),
            ("DE", 3),
            ("de", 1),
            ("", 4),
            ("A", 1),
            ("ZZ", 1),
            ("AA", 1),
            ("DE", 1),
            ("ZZZ", 2),
            ("Ü", 1),
        ]);
        let got: Vec<(String, u64)> = counts.iter().map(|(c, n)| (c.to_string(), n)).collect();
        let want: Vec<(String, u64)> = map.into_iter().collect();
        assert_eq!(got, want);
        assert_eq!(counts.len(), want.len());
    }

    #[test]
    fn the_serialized_form_is_the_maps() {
        let (counts, map) = tally(&[("FR", 5), ("fr", 1), ("XK", 2), ("Kosovo", 1)]);
        let bytes = postcard::to_allocvec(&counts).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&map).unwrap());
        let back: CountryCounts = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, counts);
        assert_eq!(
            serde_json::to_string(&counts).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let empty = CountryCounts::default();
        assert_eq!(empty.iter().count(), 0);
        assert_eq!(
            postcard::to_allocvec(&empty).unwrap(),
            postcard::to_allocvec(&BTreeMap::<String, u64>::new()).unwrap()
        );
    }

    #[test]
    fn equal_counts_are_equal_however_they_were_added() {
        let (a, _) = tally(&[("DE", 1), ("x", 1), ("DE", 1)]);
        let (b, _) = tally(&[("x", 1), ("DE", 2)]);
        let (c, _) = tally(&[("DE", 2)]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut zero = CountryCounts::default();
        zero.add("DE", 0);
        zero.add("xx", 0);
        assert_eq!(zero, CountryCounts::default());
        assert_eq!(zero.len(), 0);
    }
}
