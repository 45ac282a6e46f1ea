//! [`InlineStr`]: a short string held inline, for the ids and keys the fold looks up.
//!
//! Owns nothing but the representation. Customer ids and license keys are usually a
//! dozen or two bytes; held inline, comparing one during a lookup reads the record the
//! lookup already loaded instead of following a pointer to the heap (a cache miss per
//! event on a large state), and costs no allocation. Serializes exactly as a string.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest string held inline.
const INLINE: usize = 22;

/// A string of up to 22 bytes held inline, a longer one on the heap; 24 bytes either way.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum InlineStr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<str>),
}

impl InlineStr {
    pub(crate) fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Self::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            Self::Heap(s.into())
        }
    }

    /// The bytes (no UTF-8 check: for comparisons).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, buf } => &buf[..*len as usize],
            Self::Heap(s) => s.as_bytes(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Always valid: copied from a `&str` in `new`.
            Self::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            Self::Heap(s) => s,
        }
    }

    /// Heap bytes held (none when inline).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::Inline { .. } => 0,
            Self::Heap(s) => s.len(),
        }
    }
}

impl std::ops::Deref for InlineStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for InlineStr {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl fmt::Debug for InlineStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for InlineStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InlineStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_inline_long_on_heap_same_text() {
        assert_eq!(std::mem::size_of::<InlineStr>(), 24);
        for s in [
            "",
            "cus_0000001",
            "LK-00000001-0001",
            &"x".repeat(22),
            &"é".repeat(30),
        ] {
            let i = InlineStr::new(s);
            assert_eq!(i.as_str(), s);
            assert_eq!(i.as_bytes(), s.as_bytes());
            assert_eq!(matches!(i, InlineStr::Inline { .. }), s.len() <= INLINE);
            let json = serde_json::to_string(&i).unwrap();
            assert_eq!(json, serde_json::to_string(s).unwrap());
            let back: InlineStr = serde_json::from_str(&json).unwrap();
            assert_eq!(back, i);
        }
    }
}
