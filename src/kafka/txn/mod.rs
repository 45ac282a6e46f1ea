//! The transactional committer: each commit is one Kafka transaction (EOS v2).
//!
//! Owns the transactional producer, on an OS thread of its own: the transaction calls
//! block (up to `kafka.transaction_timeout_ms`), so they stay off the fold threads and the
//! async runtime. One commit ([`Committer::commit`]) is: begin; produce the batch's
//! records (changelog records, dead letters, decision records); send the consumed offsets
//! with the consumer's group metadata (taken by the caller afresh for this commit: with
//! KIP-848 the member epoch moves on every group change); commit.
//!
//! Guarantees:
//! - every record's size is checked against its topic's limit before the transaction
//!   begins ([`CommitError::TooLarge`], nothing written): a too-large record inside a
//!   transaction would abort it again and again;
//! - `Ok` means the records and the offsets are committed together; nothing half-written
//!   is ever visible to `read_committed` readers;
//! - [`CommitError::RolledBack`]: the transaction was aborted (an abortable error, e.g. a
//!   stale group epoch during a rebalance, or a failed write); nothing of it is visible, the
//!   producer is usable, and the caller returns its state to the last committed point;
//! - a timed-out `commit_transaction` is retried (it goes on in the background), and so is
//!   a flush that timed out (rdkafka 0.39 flushes inside `commit_transaction` and reports
//!   that as `KafkaError::Flush`), up to `COMMIT_ATTEMPTS`, then the transaction is aborted;
//! - [`CommitError::Fenced`] / [`CommitError::Fatal`]: the producer is dropped and the next
//!   commit builds a new one (whose `init_transactions` aborts whatever the old one left
//!   open). A commit cut short this way is not visible in the cases the broker reports
//!   (fenced before `EndTxn`); the caller reloads its state from the changelog all the same;
//! - an abort that itself fails also drops the producer and builds a new one at once, so
//!   the open transaction is aborted by the new `init_transactions`;
//! - an empty batch commits (librdkafka completes an empty transaction locally, without
//!   the broker: it does not notice a fence; the next commit that writes does).

pub mod producer;
mod worker;

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::ConsumerGroupMetadata;

use super::changelog::chunk::RECORD_OVERHEAD;
use super::client::{ClientSettings, Role};
use super::TopicPartition;
use worker::Worker;

/// Attempts of `commit_transaction` on retriable errors before the transaction is aborted.
pub const COMMIT_ATTEMPTS: u32 = 4;
/// librdkafka's default `message.max.bytes`: the producer refuses larger records.
const PRODUCER_MAX_DEFAULT: usize = 1_000_000;

/// How the committer is set up.
#[derive(Debug, Clone)]
pub struct TxnSettings {
    /// `transactional.id` (see `kafka/instance.rs`).
    pub transactional_id: String,
    /// `transaction.timeout.ms`; `message.timeout.ms` is set below it.
    pub transaction_timeout: Duration,
    /// How long `init_transactions` may take at start (a fresh cluster creates its
    /// transaction log first).
    pub init_timeout: Duration,
}

/// One record to write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    /// Topic.
    pub topic: String,
    /// Partition (`None`: the producer's partitioner picks, by key).
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutRecord {
    /// A changelog record for partition `partition` of `topic`.
    pub fn changelog(topic: &str, partition: i32, r: super::changelog::chunk::Record) -> Self {
        Self {
            topic: topic.to_string(),
            partition: Some(partition),
            key: Some(r.key),
            value: r.value,
            headers: Vec::new(),
        }
    }

    /// Key, value and header bytes.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// What one commit holds.
#[derive(Default)]
pub struct CommitBatch {
    /// Records to write.
    pub records: Vec<OutRecord>,
    /// Consumed input offsets: the *next* offset to read of each partition.
    pub offsets: Vec<(TopicPartition, i64)>,
    /// The consumer's group metadata, taken for this commit (needed when `offsets` is not
    /// empty).
    pub group: Option<ConsumerGroupMetadata>,
}

/// A commit that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Records written.
    pub records: usize,
    /// Their key, value and header bytes.
    pub bytes: usize,
    /// Partitions whose offsets were committed.
    pub offsets: usize,
    /// `commit_transaction` calls made (more than 1 after retriable errors).
    pub attempts: u32,
}

/// Why a commit did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// Aborted: nothing is visible; return the state to the last committed point.
    #[error("transaction rolled back: {0}")]
    RolledBack(String),
    /// Another producer with this transactional id took over.
    #[error(
        "transactional producer fenced ({0}); another process uses this transactional id \
         (two live instances with one kafka.instance_id?)"
    )]
    Fenced(String),
    /// The producer failed fatally; a new one is built at the next commit.
    #[error("transactional producer failed: {0}")]
    Fatal(String),
    /// A record is larger than its topic allows; nothing was written.
    #[error(
        "record for {topic} is {size} bytes (with framing), over that topic's limit of {limit}"
    )]
    TooLarge {
        /// Its topic.
        topic: String,
        /// Its size with [`RECORD_OVERHEAD`].
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The batch is malformed (offsets without group metadata); nothing was written.
    #[error("commit refused: {0}")]
    Invalid(String),
    /// The committer's thread is gone.
    #[error("the committer has stopped")]
    Stopped,
}

pub(crate) type Reply = Result<Committed, CommitError>;

/// A commit handed to the committer's thread.
pub struct PendingCommit(mpsc::Receiver<Reply>);

impl PendingCommit {
    /// Waits for the outcome.
    pub fn wait(self) -> Reply {
        self.0.recv().unwrap_or(Err(CommitError::Stopped))
    }

    /// The outcome, if there is one yet.
    pub fn try_result(&self) -> Option<Reply> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(CommitError::Stopped)),
        }
    }
}

/// The committer: a handle to its thread.
pub struct Committer {
    jobs: Option<mpsc::Sender<(CommitBatch, mpsc::SyncSender<Reply>)>>,
    thread: Option<JoinHandle<()>>,
    limits: Limits,
    transactional_id: String,
}

/// Largest record, framing included, per topic.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    by_topic: HashMap<String, usize>,
    producer: usize,
}

impl Limits {
    pub(crate) fn of(&self, topic: &str) -> usize {
        self.by_topic
            .get(topic)
            .map_or(self.producer, |t| (*t).min(self.producer))
    }
}

impl Committer {
    /// Starts the thread, creates the producer from `client` (the connection settings) and
    /// calls `init_transactions`, waiting for it (up to `settings.init_timeout`).
    /// `max_message_bytes` gives each topic the committer writes to its
    /// `max.message.bytes` (see `changelog::max_message_bytes`).
    pub fn start(
        client: &ClientSettings,
        settings: TxnSettings,
        max_message_bytes: HashMap<String, usize>,
    ) -> Result<Committer, CommitError> {
        let producer_max = client
            .build(Role::Producer, &[], &[])
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(PRODUCER_MAX_DEFAULT);
        let limits = Limits {
            by_topic: max_message_bytes,
            producer: producer_max,
        };
        let smallest = limits
            .by_topic
            .values()
            .copied()
            .chain([producer_max])
            .min()
            .unwrap_or(producer_max);
        let txn_ms = settings.transaction_timeout.as_millis().max(1000) as u64;
        // below the transaction timeout: a message is given up before its transaction is
        let message_ms = (txn_ms - (txn_ms / 10).max(500)).to_string();
        // no batch larger than the smallest topic limit (with room for framing)
        let batch = smallest.saturating_sub(128).max(1).to_string();
        let txn_ms = txn_ms.to_string();
        let cfg = client.build(
            Role::Producer,
            &[("linger.ms", "5")],
            &[
                ("transactional.id", &settings.transactional_id),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("transaction.timeout.ms", &txn_ms),
                ("message.timeout.ms", &message_ms),
                ("batch.size", &batch),
            ],
        );
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (jobs, rx) = mpsc::channel::<(CommitBatch, mpsc::SyncSender<Reply>)>();
        let transactional_id = settings.transactional_id.clone();
        let worker_limits = limits.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-txn".into())
            .spawn(move || {
                let mut w = Worker {
                    cfg,
                    settings,
                    limits: worker_limits,
                    producer: None,
                };
                let ready = w.connect();
                let ok = ready.is_ok();
                let _ = ready_tx.send(ready);
                if !ok {
                    return;
                }
                while let Ok((batch, reply)) = rx.recv() {
                    let _ = reply.send(w.commit(batch));
                }
            })
            .map_err(|e| CommitError::Fatal(format!("cannot start the committer thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Committer {
                jobs: Some(jobs),
                thread: Some(thread),
                limits,
                transactional_id,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(CommitError::Stopped),
        }
    }

    /// The transactional id in use.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// The largest record (key, value and headers, plus [`RECORD_OVERHEAD`]) `topic` takes:
    /// the limit to give `changelog::chunk::encode`.
    pub fn record_limit(&self, topic: &str) -> usize {
        self.limits.of(topic)
    }

    /// Hands a commit to the thread; returns at once.
    pub fn submit(&self, batch: CommitBatch) -> PendingCommit {
        let (tx, rx) = mpsc::sync_channel(1);
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send((batch, tx));
        }
        PendingCommit(rx)
    }

    /// Commits `batch` in one transaction and waits for the outcome.
    pub fn commit(&self, batch: CommitBatch) -> Reply {
        self.submit(batch).wait()
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
