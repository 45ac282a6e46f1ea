//! The write side of one changelog partition: records for the keys changed since the last
//! commit, and the chunk counts that hold only once that commit has gone through.
//!
//! Owns a partition's [`ChunkBook`] between commits. [`PartitionWriter::stage`] encodes
//! the new values (`chunk.rs`) against the book as last committed and keeps the new counts
//! aside; [`PartitionWriter::committed`] makes them the book, [`PartitionWriter::rolled_back`]
//! drops them. Guarantees: the book always describes the changelog as committed, so after a
//! rolled-back transaction the next one tombstones exactly the chunks that are really there;
//! a record that cannot be encoded fails the whole stage (nothing is staged).

use std::collections::HashMap;

use super::chunk::{encode, ChunkBook, ChunkError};
use super::keys::StateKey;
use crate::kafka::txn::OutRecord;

/// One changelog partition's writer.
#[derive(Debug, Clone)]
pub struct PartitionWriter {
    topic: String,
    partition: i32,
    book: ChunkBook,
    staged: HashMap<StateKey, u32>,
}

impl PartitionWriter {
    /// A writer for partition `partition` of changelog `topic`, whose chunked keys are
    /// `book` (empty for a new changelog, else from the restore).
    pub fn new(topic: &str, partition: i32, book: ChunkBook) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            book,
            staged: HashMap::new(),
        }
    }

    /// The records that write `changes` (a key's new record, or `None` when it is gone),
    /// each at most `limit` bytes with framing (see `Committer::record_limit`). Replaces
    /// whatever was staged before.
    pub fn stage<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (&'a StateKey, Option<&'a [u8]>)>,
        limit: usize,
    ) -> Result<Vec<OutRecord>, ChunkError> {
        self.staged.clear();
        let mut staged = HashMap::new();
        let mut out = Vec::new();
        for (key, value) in changes {
            let enc = encode(key, value, self.book.get(key), limit)?;
            staged.insert(key.clone(), enc.chunks);
            out.extend(
                enc.records
                    .into_iter()
                    .map(|r| OutRecord::changelog(&self.topic, self.partition, r)),
            );
        }
        self.staged = staged;
        Ok(out)
    }

    /// The staged records are committed: their chunk counts become the book.
    pub fn committed(&mut self) {
        for (key, chunks) in self.staged.drain() {
            self.book.set(&key, chunks);
        }
    }

    /// The staged records were rolled back: the book stays as it was.
    pub fn rolled_back(&mut self) {
        self.staged.clear();
    }

    /// The changelog topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The chunk counts as committed.
    pub fn book(&self) -> &ChunkBook {
        &self.book
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_book_moves_only_on_commit() {
        let key = StateKey::Customer("c".into());
        let mut w = PartitionWriter::new("t", 3, ChunkBook::default());
        let big = vec![7u8; 10_000];
        let recs = w.stage([(&key, Some(&big[..]))], 2048).unwrap();
        assert!(recs.len() > 5);
        assert!(recs
            .iter()
            .all(|r| r.topic == "t" && r.partition == Some(3)));
        assert_eq!(w.book().get(&key), 0);
        w.rolled_back();
        assert_eq!(w.book().get(&key), 0);
        // staged again (the fold went back and came again): still no chunks to tombstone
        let again = w.stage([(&key, Some(&big[..]))], 2048).unwrap();
        assert_eq!(again, recs);
        w.committed();
        let chunks = w.book().get(&key);
        assert_eq!(chunks as usize, recs.len() - 1);
        // shrinking now tombstones every committed chunk
        let small = w.stage([(&key, Some(&b"x"[..]))], 2048).unwrap();
        assert_eq!(small.len(), 1 + chunks as usize);
        assert_eq!(
            small.iter().filter(|r| r.value.is_none()).count(),
            chunks as usize
        );
        w.committed();
        assert!(w.book().is_empty());
        // a failed stage stages nothing
        let long = StateKey::Customer("k".repeat(3000));
        assert!(w
            .stage([(&key, Some(&big[..])), (&long, Some(&big[..]))], 2048)
            .is_err());
        w.committed();
        assert!(w.book().is_empty());
    }
}
