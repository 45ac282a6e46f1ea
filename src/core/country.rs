//! The two-letter country codes: `AA` to `ZZ`, as dense slots.
//!
//! Owns the one mapping between a country given as two upper-case ASCII letters (the
//! ISO 3166-1 alpha-2 form that SPEC §1 means `country` to be) and a slot `0..ALPHA2`,
//! used wherever validations are counted by country on a hot path (the per-day tally of
//! the fold, the service's per-batch metric tally). Guarantees: slots follow the byte
//! order of the codes (`AA` = 0, `AB` = 1, … `ZZ` = 675), so walking the slots in order
//! walks the codes as a sorted string map would; any other string has no slot.

/// Number of two-letter codes, `AA`..=`ZZ`.
pub const ALPHA2: usize = 26 * 26;

/// Every code, by slot.
static CODES: [[u8; 2]; ALPHA2] = {
    let mut codes = [[0u8; 2]; ALPHA2];
    let mut i = 0;
    while i < ALPHA2 {
        codes[i] = [b'A' + (i / 26) as u8, b'A' + (i % 26) as u8];
        i += 1;
    }
    codes
};

/// The slot of `country` when it is two upper-case ASCII letters.
#[inline]
pub fn alpha2_slot(country: &str) -> Option<usize> {
    match country.as_bytes() {
        [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => {
            Some((a - b'A') as usize * 26 + (b - b'A') as usize)
        }
        _ => None,
    }
}

/// The code of `slot` (`""` past the last).
pub fn alpha2_code(slot: usize) -> &'static str {
    CODES
        .get(slot)
        .and_then(|c| std::str::from_utf8(c).ok())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_codes_are_inverse_and_in_string_order() {
        assert_eq!(alpha2_slot("AA"), Some(0));
        assert_eq!(alpha2_slot("ZZ"), Some(ALPHA2 - 1));
        assert_eq!(alpha2_code(alpha2_slot("DE").unwrap()), "DE");
        for s in 0..ALPHA2 {
            assert_eq!(alpha2_slot(alpha2_code(s)), Some(s));
            if s > 0 {
                assert!(alpha2_code(s - 1) < alpha2_code(s));
            }
        }
        assert_eq!(alpha2_code(ALPHA2), "");
        for other in ["", "D", "de", "De", "DEU", "D1", "ÄA", "other"] {
            assert_eq!(alpha2_slot(other), None, "{other:?}");
        }
    }
}
