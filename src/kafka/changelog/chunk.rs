//! Records larger than the topic allows: split over several keys, and put back together.
//!
//! Owns the changelog's value envelope, as pure functions. Every value written under a
//! [`StateKey`] starts with one tag byte:
//! - [`WHOLE`]: the rest is the record itself;
//! - [`HEADER`]: the record is in `count` chunks, under the keys
//!   [`StateKey::chunk_key`]`(0..count)`; the header holds the count, the record's length
//!   and its xxh3-64 hash (21 bytes: tag, `u32`, `u64`, `u64`, little-endian).
//!
//! A chunk's value is a slice of the record, as is. [`encode`] writes the chunks and the
//! header of a record together (they go into one transaction), and tombstones every chunk
//! the key had before and no longer uses, so that after compaction a key's chunks are
//! exactly those its header names. [`assemble`] rebuilds the records from the latest value
//! of every key and checks each chunked one against its length and hash.
//!
//! Guarantees: no record [`encode`] returns is larger than the limit it was given (key,
//! value and [`RECORD_OVERHEAD`] together); a record that cannot fit however it is split
//! (the limit is smaller than its key) is an error, never dropped; [`assemble`] of what
//! [`encode`] wrote gives back every value byte for byte.

use std::collections::HashMap;

use xxhash_rust::xxh3::xxh3_64;

use super::keys::{KeyError, StateKey, StoredKey};

/// Tag of a value holding the whole record.
pub const WHOLE: u8 = 0;
/// Tag of a value holding the header of a chunked record.
pub const HEADER: u8 = 1;
/// Length of a header value.
pub const HEADER_LEN: usize = 1 + 4 + 8 + 8;
/// Bytes a record costs in a record batch beyond its key and value: the batch header
/// (61 bytes, one record per batch at worst) and the record's own framing, with a margin.
pub const RECORD_OVERHEAD: usize = 256;

/// One record to write to the changelog (`value: None` is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The stored key.
    pub key: Vec<u8>,
    /// The value, or `None` to delete the key.
    pub value: Option<Vec<u8>>,
}

impl Record {
    /// Key and value bytes (without [`RECORD_OVERHEAD`]).
    pub fn size(&self) -> usize {
        self.key.len() + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// The records of one key's new value, and how many chunks the key has after them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Records to write, in order, in one transaction.
    pub records: Vec<Record>,
    /// Chunks the key uses once they are written (0: whole, or deleted).
    pub chunks: u32,
}

/// A record that cannot be written under the topic's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "changelog record {key} cannot be written: the topic's max.message.bytes ({limit}) \
     leaves no room for its chunks"
)]
pub struct ChunkError {
    /// The record's key.
    pub key: String,
    /// The limit given.
    pub limit: usize,
}

/// Encodes the new value of `key` (`None`: the key is deleted) for a topic whose records
/// may be at most `max_record_bytes` (its `max.message.bytes`), when the changelog holds
/// `previous_chunks` chunks of the key now.
pub fn encode(
    key: &StateKey,
    value: Option<&[u8]>,
    previous_chunks: u32,
    max_record_bytes: usize,
) -> Result<Encoded, ChunkError> {
    let budget = max_record_bytes.saturating_sub(RECORD_OVERHEAD);
    let too_small = || ChunkError {
        key: key.to_string(),
        limit: max_record_bytes,
    };
    let key_len = key.encoded_len();
    let tombstones = |from: u32| {
        (from..previous_chunks).map(|i| Record {
            key: key.chunk_key(i),
            value: None,
        })
    };
    let Some(value) = value else {
        let mut records = vec![Record {
            key: key.to_bytes(),
            value: None,
        }];
        records.extend(tombstones(0));
        return Ok(Encoded { records, chunks: 0 });
    };
    if key_len + 1 + value.len() <= budget {
        let mut v = Vec::with_capacity(1 + value.len());
        v.push(WHOLE);
        v.extend_from_slice(value);
        let mut records = vec![Record {
            key: key.to_bytes(),
            value: Some(v),
        }];
        records.extend(tombstones(0));
        return Ok(Encoded { records, chunks: 0 });
    }
    let per_chunk = budget.saturating_sub(key.max_chunk_key_len());
    if per_chunk == 0 || key_len + HEADER_LEN > budget {
        return Err(too_small());
    }
    let count = u32::try_from(value.len().div_ceil(per_chunk)).map_err(|_| too_small())?;
    let mut records: Vec<Record> = value
        .chunks(per_chunk)
        .zip(0u32..)
        .map(|(part, i)| Record {
            key: key.chunk_key(i),
            value: Some(part.to_vec()),
        })
        .collect();
    records.push(Record {
        key: key.to_bytes(),
        value: Some(header(count, value)),
    });
    records.extend(tombstones(count));
    Ok(Encoded {
        records,
        chunks: count,
    })
}

fn header(count: u32, value: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.push(HEADER);
    h.extend_from_slice(&count.to_le_bytes());
    h.extend_from_slice(&(value.len() as u64).to_le_bytes());
    h.extend_from_slice(&xxh3_64(value).to_le_bytes());
    h
}

/// How many chunks each chunked key has in the changelog (keys without chunks are absent).
/// The writer needs it to tombstone the chunks a key no longer uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkBook {
    counts: HashMap<StateKey, u32>,
}

impl ChunkBook {
    /// The chunks `key` has now.
    pub fn get(&self, key: &StateKey) -> u32 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// Records that `key` has `chunks` chunks (call once the write is committed).
    pub fn set(&mut self, key: &StateKey, chunks: u32) {
        if chunks == 0 {
            self.counts.remove(key);
        } else {
            self.counts.insert(key.clone(), chunks);
        }
    }

    /// Number of chunked keys.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether no key is chunked.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Something in the changelog that does not fit the scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A key of another scheme.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A value whose first byte is neither [`WHOLE`] nor [`HEADER`], or a short header.
    #[error("changelog record {0}: unknown value envelope")]
    Envelope(String),
    /// A chunk named by a header is not there.
    #[error("changelog record {key}: chunk {index} is missing")]
    MissingChunk {
        /// Whose.
        key: String,
        /// Which.
        index: u32,
    },
    /// The chunks put together do not have the header's length or hash.
    #[error("changelog record {0}: its chunks do not match its header (length or hash)")]
    Mismatch(String),
    /// A chunk that no header names (left over).
    #[error("changelog chunk {index} of {key} belongs to no record")]
    Orphan {
        /// Whose.
        key: String,
        /// Which.
        index: u32,
    },
}

/// The latest value of every stored key of a changelog partition, as read (hashed with
/// ahash, not SipHash: a restore hashes the key of every record it reads).
pub type Latest = HashMap<Vec<u8>, Vec<u8>, ahash::RandomState>;

/// Each state key's record, put back together.
pub type Values = HashMap<StateKey, Vec<u8>, ahash::RandomState>;

/// The records rebuilt from a changelog partition.
#[derive(Debug, Default)]
pub struct Assembled {
    /// Each key's record.
    pub values: Values,
    /// The chunk counts, for the next writes.
    pub chunks: ChunkBook,
    /// What did not fit the scheme (those records are not in `values`).
    pub problems: Vec<Problem>,
}

/// Rebuilds the records from the latest value of every stored key (tombstoned keys
/// removed), as read from a changelog partition.
pub fn assemble(latest: Latest) -> Assembled {
    let mut out = Assembled::default();
    let mut heads: Vec<(StateKey, Vec<u8>)> = Vec::new();
    let mut chunks: HashMap<(StateKey, u32), Vec<u8>> = HashMap::new();
    out.values.reserve(latest.len());
    for (key, value) in latest {
        match StoredKey::parse(&key) {
            Err(e) => out.problems.push(e.into()),
            Ok(StoredKey::Chunk { of, index }) => {
                chunks.insert((of, index), value);
            }
            Ok(StoredKey::State(k)) => match value.first() {
                Some(&WHOLE) => {
                    let mut v = value;
                    v.drain(..1);
                    out.values.insert(k, v);
                }
                Some(&HEADER) if value.len() == HEADER_LEN => heads.push((k, value)),
                _ => out.problems.push(Problem::Envelope(k.to_string())),
            },
        }
    }
    for (key, head) in heads {
        let count = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes"));
        let len = u64::from_le_bytes(head[5..13].try_into().expect("8 bytes"));
        let hash = u64::from_le_bytes(head[13..21].try_into().expect("8 bytes"));
        let mut value = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 30));
        let mut missing = None;
        for i in 0..count {
            match chunks.remove(&(key.clone(), i)) {
                Some(part) => value.extend_from_slice(&part),
                None => {
                    missing.get_or_insert(i);
                }
            }
        }
        if let Some(index) = missing {
            out.problems.push(Problem::MissingChunk {
                key: key.to_string(),
                index,
            });
        } else if value.len() as u64 != len || xxh3_64(&value) != hash {
            out.problems.push(Problem::Mismatch(key.to_string()));
        } else {
            out.chunks.set(&key, count);
            out.values.insert(key, value);
        }
    }
    let mut orphans: Vec<_> = chunks.into_keys().collect();
    orphans.sort();
    for (of, index) in orphans {
        out.problems.push(Problem::Orphan {
            key: of.to_string(),
            index,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies records to a key → latest value map, as a compacted read would see them.
    fn apply(latest: &mut Latest, records: &[Record]) {
        for r in records {
            match &r.value {
                Some(v) => latest.insert(r.key.clone(), v.clone()),
                None => latest.remove(&r.key),
            };
        }
    }

    fn big(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_5_mb_record_round_trips_in_chunks_within_the_limit() {
        let limit = 1_048_588; // Kafka's default max.message.bytes
        let key = StateKey::Customer("big-customer".into());
        let value = big(5 * 1024 * 1024 + 17, 1);
        let enc = encode(&key, Some(&value), 0, limit).unwrap();
        assert!(enc.chunks >= 6, "{}", enc.chunks);
        assert_eq!(enc.records.len(), enc.chunks as usize + 1);
        for r in &enc.records {
            assert!(r.size() + RECORD_OVERHEAD <= limit, "{}", r.size());
        }
        let mut latest = Latest::default();
        apply(&mut latest, &enc.records);
        let back = assemble(latest);
        assert!(back.problems.is_empty(), "{:?}", back.problems);
        assert_eq!(back.values.len(), 1);
        assert!(back.values[&key] == value);
        assert_eq!(back.chunks.get(&key), enc.chunks);
    }

    #[test]
    fn shrinking_growing_and_deleting_leave_no_stale_chunks() {
        let limit = 4096;
        let key = StateKey::Customer("c1".into());
        let other = StateKey::Partition("days".into());
        let mut latest = Latest::default();
        let mut book = ChunkBook::default();
        for (round, len) in [40_000, 9_000, 100, 30_000, 0].into_iter().enumerate() {
            let value = big(len, round as u64);
            for k in [&key, &other] {
                let enc = encode(k, Some(&value), book.get(k), limit).unwrap();
                for r in &enc.records {
                    assert!(r.size() + RECORD_OVERHEAD <= limit);
                }
                apply(&mut latest, &enc.records);
                book.set(k, enc.chunks);
            }
            let chunk_keys = latest.keys().filter(|k| k.starts_with(b"x/")).count();
            assert_eq!(chunk_keys as u32, book.get(&key) + book.get(&other));
            let back = assemble(latest.clone());
            assert!(back.problems.is_empty(), "{:?}", back.problems);
            assert!(back.values[&key] == value && back.values[&other] == value);
            assert_eq!(back.chunks, book);
        }
        let enc = encode(&key, None, book.get(&key), limit).unwrap();
        assert_eq!(enc.chunks, 0);
        apply(&mut latest, &enc.records);
        let back = assemble(latest);
        assert!(!back.values.contains_key(&key));
        assert!(back.values.contains_key(&other));
    }

    #[test]
    fn a_limit_smaller_than_the_key_is_an_error() {
        let key = StateKey::Customer("x".repeat(500));
        let e = encode(&key, Some(&[1; 10_000]), 0, 600).unwrap_err();
        assert!(e.to_string().contains("max.message.bytes"), "{e}");
        assert!(encode(&key, Some(&[1; 10_000]), 0, 2000).is_ok());
    }

    #[test]
    fn damage_is_reported_not_returned() {
        let limit = 2048;
        let key = StateKey::Customer("c".into());
        let value = big(10_000, 9);
        let enc = encode(&key, Some(&value), 0, limit).unwrap();
        let mut latest = Latest::default();
        apply(&mut latest, &enc.records);

        let mut missing = latest.clone();
        missing.remove(&key.chunk_key(2));
        let back = assemble(missing);
        assert!(back.values.is_empty());
        assert!(matches!(
            back.problems[..],
            [Problem::MissingChunk { index: 2, .. }]
        ));

        let mut flipped = latest.clone();
        flipped.get_mut(&key.chunk_key(1)).unwrap()[0] ^= 1;
        let back = assemble(flipped);
        assert!(matches!(back.problems[..], [Problem::Mismatch(_)]));

        let mut extra = latest;
        extra.insert(key.chunk_key(99), vec![1]);
        extra.insert(b"p/x".to_vec(), vec![7, 1]);
        extra.insert(b"nope".to_vec(), vec![0]);
        let back = assemble(extra);
        assert_eq!(back.values.len(), 1);
        assert_eq!(back.problems.len(), 3, "{:?}", back.problems);
    }
}
