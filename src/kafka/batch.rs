//! The hand-off between the poll thread and the fold workers: batches of raw messages, and
//! the pool their buffers come back to.
//!
//! Owns [`Batch`] (consecutive messages of one partition: keys and values back to back in
//! one contiguous buffer, with their byte ranges) and [`BatchPool`]. The poll thread copies
//! each message once, into its partition's batch; the worker reads the messages in place
//! and, once folded, gives the buffers back to the pool, so that in steady state no batch
//! allocates or grows (a grown `Vec` would copy the bytes again).
//!
//! Guarantees: a batch holds the messages in the order they were pushed; a recycled batch
//! is empty; the pool keeps at most [`POOL_MAX`] buffers (memory stays bounded).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::TopicPartition;

/// A batch is handed to its worker at this many messages...
pub const BATCH_MESSAGES: usize = 1024;
/// ...or this many bytes, or when the client has nothing more to give right now.
pub const BATCH_BYTES: usize = 512 * 1024;
/// A new buffer's capacity: 1024 messages of up to ~250 bytes without growing (a
/// recycled buffer keeps whatever it grew to).
const NEW_BUFFER_BYTES: usize = 256 * 1024;
/// Buffers kept for reuse: the workers' queues full, plus the batches being filled.
const POOL_MAX: usize = 64;

/// A message as handed from the poll thread: byte ranges into the batch's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage {
    /// The message's offset.
    pub offset: i64,
    /// The key's byte range in [`Batch::buf`], if the message has a key.
    pub key: Option<(u32, u32)>,
    /// The value's byte range in [`Batch::buf`], if the message has a value.
    pub payload: Option<(u32, u32)>,
}

/// Buffers of folded batches, for the next ones.
#[derive(Debug, Default)]
pub struct BatchPool {
    free: Mutex<Vec<(Vec<u8>, Vec<RawMessage>)>>,
}

impl BatchPool {
    /// An empty batch for `tp`, with recycled buffers when there are some.
    pub fn batch(self: &Arc<Self>, tp: TopicPartition) -> Batch {
        let recycled = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (buf, msgs) = recycled.unwrap_or_else(|| {
            (
                Vec::with_capacity(NEW_BUFFER_BYTES),
                Vec::with_capacity(BATCH_MESSAGES),
            )
        });
        Batch {
            tp,
            polled_at: Instant::now(),
            buf,
            msgs,
            pool: Some(self.clone()),
        }
    }

    fn give_back(&self, mut buf: Vec<u8>, mut msgs: Vec<RawMessage>) {
        buf.clear();
        msgs.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_MAX {
            free.push((buf, msgs));
        }
    }
}

/// Consecutive messages of one partition, copied out of the client's buffers.
#[derive(Debug)]
pub struct Batch {
    /// Their partition.
    pub tp: TopicPartition,
    /// When the first message was polled.
    pub polled_at: Instant,
    /// Keys and values, back to back.
    pub buf: Vec<u8>,
    /// The messages, in offset order.
    pub msgs: Vec<RawMessage>,
    /// Where the buffers go once the batch is folded.
    pool: Option<Arc<BatchPool>>,
}

impl Batch {
    /// Appends a message.
    #[inline]
    pub fn push(&mut self, offset: i64, key: Option<&[u8]>, payload: Option<&[u8]>) {
        if self.msgs.is_empty() {
            self.polled_at = Instant::now();
        }
        let mut range = |b: Option<&[u8]>| {
            b.map(|b| {
                let start = self.buf.len() as u32;
                self.buf.extend_from_slice(b);
                (start, self.buf.len() as u32)
            })
        };
        let key = range(key);
        let payload = range(payload);
        self.msgs.push(RawMessage {
            offset,
            key,
            payload,
        });
    }

    /// Whether the batch is full enough to hand over.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.msgs.len() >= BATCH_MESSAGES || self.buf.len() >= BATCH_BYTES
    }

    /// The bytes of a key or value range.
    #[inline]
    pub fn slice(&self, r: Option<(u32, u32)>) -> Option<&[u8]> {
        r.map(|(s, e)| &self.buf[s as usize..e as usize])
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(
                std::mem::take(&mut self.buf),
                std::mem::take(&mut self.msgs),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition: 0,
        }
    }

    #[test]
    fn messages_read_back_in_place_and_buffers_come_back_empty() {
        let pool = Arc::new(BatchPool::default());
        let mut b = pool.batch(tp());
        b.push(7, Some(b"k"), Some(b"{\"a\":1}"));
        b.push(8, None, Some(b"x"));
        assert_eq!(b.slice(b.msgs[0].key), Some(&b"k"[..]));
        assert_eq!(b.slice(b.msgs[0].payload), Some(&b"{\"a\":1}"[..]));
        assert_eq!(b.slice(b.msgs[1].key), None);
        assert_eq!(b.msgs[1].offset, 8);
        let cap = b.buf.capacity();
        drop(b);
        let again = pool.batch(tp());
        assert!(again.msgs.is_empty() && again.buf.is_empty());
        assert_eq!(again.buf.capacity(), cap);
    }
}
