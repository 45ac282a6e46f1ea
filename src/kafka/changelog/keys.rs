//! The changelog's record keys: which key holds what.
//!
//! Owns the key scheme, as pure functions. Three kinds of keys, each told apart by its
//! first two bytes, so that no customer id can be mistaken for another kind:
//! - `c/<customer_id>`: one customer's record (its whole state);
//! - `p/<name>`: a partition's own figures (day buckets, MRR book, counts), one key each;
//! - `x/<n>/<key>`: chunk `n` (from 0) of the record of `<key>` (a `c/…` or `p/…` key),
//!   when that record is larger than the topic lets one record be (see `chunk.rs`).
//!
//! Guarantees: [`StoredKey::parse`] is the inverse of every encoder here, for any customer
//! id or name (ids may contain `/`, `#` or digits: the prefix alone decides the kind, and a
//! chunk's index ends at the first `/` after `x/`).

use std::fmt;

/// Prefix of a customer's record.
pub const CUSTOMER_PREFIX: &str = "c/";
/// Prefix of a partition figure's record.
pub const PARTITION_PREFIX: &str = "p/";
/// Prefix of a chunk of a record.
pub const CHUNK_PREFIX: &str = "x/";

/// Name of the partition key holding the partition's own figures
/// (`PartitionState::partition_record`): `p/figures`.
pub const PARTITION_FIGURES: &str = "figures";
/// Name of the partition key holding the next input offset to fold, in decimal:
/// `p/input-offset`. Written in the same transaction as the state it goes with.
pub const INPUT_OFFSET: &str = "input-offset";

/// The key of one logical record of a partition's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKey {
    /// One customer's record, by customer id.
    Customer(String),
    /// One of the partition's own figures, by name (e.g. `days`, `mrr`).
    Partition(String),
}

impl StateKey {
    /// The key as written to the changelog.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (prefix, rest) = match self {
            StateKey::Customer(id) => (CUSTOMER_PREFIX, id.as_str()),
            StateKey::Partition(name) => (PARTITION_PREFIX, name.as_str()),
        };
        let mut out = Vec::with_capacity(prefix.len() + rest.len());
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(rest.as_bytes());
        out
    }

    /// Length of [`Self::to_bytes`] without building it.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            StateKey::Customer(id) => id.len(),
            StateKey::Partition(name) => name.len(),
        }
    }

    /// The key of chunk `index` of this record.
    pub fn chunk_key(&self, index: u32) -> Vec<u8> {
        let mut out = format!("{CHUNK_PREFIX}{index}/").into_bytes();
        out.extend_from_slice(&self.to_bytes());
        out
    }

    /// The longest a chunk key of this record can be (any index).
    pub fn max_chunk_key_len(&self) -> usize {
        CHUNK_PREFIX.len() + u32::MAX.to_string().len() + 1 + self.encoded_len()
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateKey::Customer(id) => write!(f, "{CUSTOMER_PREFIX}{id}"),
            StateKey::Partition(name) => write!(f, "{PARTITION_PREFIX}{name}"),
        }
    }
}

/// Any key found in the changelog.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoredKey {
    /// A logical record (whole, or the header of a chunked one).
    State(StateKey),
    /// Chunk `index` of the record of `of`.
    Chunk {
        /// Whose chunk.
        of: StateKey,
        /// Its place, from 0.
        index: u32,
    },
}

/// A key the scheme does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("changelog key {shown:?} is not a keypulse state key ({why})")]
pub struct KeyError {
    /// The key, lossily as text (for the message).
    pub shown: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl StoredKey {
    /// Reads a key from the changelog.
    pub fn parse(key: &[u8]) -> Result<StoredKey, KeyError> {
        let err = |why| KeyError {
            shown: String::from_utf8_lossy(&key[..key.len().min(80)]).into_owned(),
            why,
        };
        let text = std::str::from_utf8(key).map_err(|_| err("not UTF-8"))?;
        if let Some(rest) = text.strip_prefix(CHUNK_PREFIX) {
            let (digits, of) = rest.split_once('/').ok_or(err("chunk key without `/`"))?;
            if digits.is_empty()
                || !digits.bytes().all(|b| b.is_ascii_digit())
                || (digits.len() > 1 && digits.starts_with('0'))
            {
                return Err(err("chunk index is not a number"));
            }
            let index = digits.parse().map_err(|_| err("chunk index too large"))?;
            return match parse_state(of) {
                Some(of) => Ok(StoredKey::Chunk { of, index }),
                None => Err(err("chunk of an unknown kind of key")),
            };
        }
        parse_state(text)
            .map(StoredKey::State)
            .ok_or(err("unknown prefix"))
    }
}

fn parse_state(text: &str) -> Option<StateKey> {
    if let Some(id) = text.strip_prefix(CUSTOMER_PREFIX) {
        Some(StateKey::Customer(id.to_string()))
    } else {
        text.strip_prefix(PARTITION_PREFIX)
            .map(|name| StateKey::Partition(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        [
            "",
            "cust-1",
            "a/b",
            "x/1/c/a",
            "c/c/c",
            "a#1",
            "7",
            "ünïcødé 客户",
            "p/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn every_key_reads_back_as_written() {
        for id in ids() {
            for key in [
                StateKey::Customer(id.clone()),
                StateKey::Partition(id.clone()),
            ] {
                let bytes = key.to_bytes();
                assert_eq!(bytes.len(), key.encoded_len());
                assert_eq!(
                    StoredKey::parse(&bytes).unwrap(),
                    StoredKey::State(key.clone())
                );
                for index in [0, 1, 9, 10, 12345, u32::MAX] {
                    let ck = key.chunk_key(index);
                    assert!(ck.len() <= key.max_chunk_key_len());
                    assert_eq!(
                        StoredKey::parse(&ck).unwrap(),
                        StoredKey::Chunk {
                            of: key.clone(),
                            index
                        },
                        "{}",
                        String::from_utf8_lossy(&ck)
                    );
                }
            }
        }
    }

    #[test]
    fn kinds_never_collide() {
        let customer = StateKey::Customer("x/0/c/a".into()).to_bytes();
        let chunk = StateKey::Customer("a".into()).chunk_key(0);
        assert_ne!(customer, chunk);
        assert_eq!(customer, b"c/x/0/c/a");
        assert_eq!(chunk, b"x/0/c/a");
        assert_eq!(StateKey::Partition("days".into()).to_bytes(), b"p/days");
    }

    #[test]
    fn foreign_keys_are_errors() {
        for bad in [
            &b"license-1"[..],
            b"x/",
            b"x/a/c/1",
            b"x/01/c/1",
            b"x//c/1",
            b"x/1/z/1",
            b"x/99999999999/c/1",
            b"\xff\xfe",
        ] {
            assert!(StoredKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
