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

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::changelog::chunk::RECORD_OVERHEAD;
use super::client::{ClientSettings, Role};
use super::txn_producer::{classify, Next, TxnContext};
use super::TopicPartition;

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

type Reply = Result<Committed, CommitError>;

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
struct Limits {
    by_topic: HashMap<String, usize>,
    producer: usize,
}

impl Limits {
    fn of(&self, topic: &str) -> usize {
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

/// The thread's side.
struct Worker {
    cfg: ClientConfig,
    settings: TxnSettings,
    limits: Limits,
    producer: Option<BaseProducer<TxnContext>>,
}

impl Worker {
    /// Builds the producer and calls `init_transactions` (retrying retriable errors).
    fn connect(&mut self) -> Result<(), CommitError> {
        self.producer = None;
        let p: BaseProducer<TxnContext> = self
            .cfg
            .create_with_context(TxnContext::default())
            .map_err(|e| CommitError::Fatal(format!("cannot create the producer: {e}")))?;
        let t0 = Instant::now();
        loop {
            let left = self.settings.init_timeout.saturating_sub(t0.elapsed());
            match p.init_transactions(left.max(Duration::from_millis(100))) {
                Ok(()) => break,
                Err(e) => match classify(&e, p.client().fatal_error().map(|f| f.0)) {
                    Next::Retry if !left.is_zero() => {
                        tracing::debug!(error = %e, "init_transactions: retrying");
                    }
                    Next::Fenced => return Err(CommitError::Fenced(e.to_string())),
                    _ => return Err(CommitError::Fatal(format!("init_transactions: {e}"))),
                },
            }
        }
        tracing::info!(transactional_id = %self.settings.transactional_id, "transactional producer ready");
        self.producer = Some(p);
        Ok(())
    }

    fn check(&self, batch: &CommitBatch) -> Result<(), CommitError> {
        if !batch.offsets.is_empty() && batch.group.is_none() {
            return Err(CommitError::Invalid(
                "offsets without the consumer's group metadata".into(),
            ));
        }
        for r in &batch.records {
            let (size, limit) = (r.size() + RECORD_OVERHEAD, self.limits.of(&r.topic));
            if size > limit {
                return Err(CommitError::TooLarge {
                    topic: r.topic.clone(),
                    size,
                    limit,
                });
            }
        }
        Ok(())
    }

    fn commit(&mut self, batch: CommitBatch) -> Reply {
        self.check(&batch)?;
        if self.producer.is_none() {
            self.connect()?;
        }
        let p = self.producer.as_ref().expect("connected");
        p.poll(Duration::ZERO);
        p.context().reset();
        if let Err(e) = p.begin_transaction() {
            return Err(self.fail(e, "begin_transaction"));
        }
        let mut bytes = 0;
        for r in &batch.records {
            bytes += r.size();
            if let Err(e) = send(p, r) {
                return Err(self.fail(e, "produce"));
            }
        }
        if !batch.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (tp, next) in &batch.offsets {
                let _ = tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next));
            }
            let group = batch.group.as_ref().expect("checked");
            let timeout = self.settings.transaction_timeout;
            if let Err(e) = p.send_offsets_to_transaction(&tpl, group, timeout) {
                return Err(self.fail(e, "send_offsets_to_transaction"));
            }
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            let p = self.producer.as_ref().expect("connected");
            match p.commit_transaction(self.settings.transaction_timeout) {
                Ok(()) => {
                    return Ok(Committed {
                        records: batch.records.len(),
                        bytes,
                        offsets: batch.offsets.len(),
                        attempts,
                    })
                }
                Err(e) => {
                    let next = classify(&e, p.client().fatal_error().map(|f| f.0));
                    if next == Next::Retry && attempts < COMMIT_ATTEMPTS {
                        tracing::warn!(error = %e, attempts, "commit_transaction: retrying");
                        continue;
                    }
                    return Err(self.fail(e, "commit_transaction"));
                }
            }
        }
    }

    /// Handles an error inside a transaction: abort, or drop the producer.
    fn fail(&mut self, e: KafkaError, during: &str) -> CommitError {
        let Some(p) = self.producer.as_ref() else {
            return CommitError::Fatal(format!("{during}: {e}"));
        };
        let delivery = p.context().first_failure();
        let reason = match delivery {
            Some(d) => format!("{during}: {e} (first failed write: {d})"),
            None => format!("{during}: {e}"),
        };
        match classify(&e, p.client().fatal_error().map(|f| f.0)) {
            Next::Fenced => {
                tracing::error!(error = %reason, "transactional producer fenced; it is rebuilt at the next commit");
                self.producer = None;
                CommitError::Fenced(reason)
            }
            Next::Fatal => {
                tracing::error!(error = %reason, "fatal transactional producer error; it is rebuilt at the next commit");
                self.producer = None;
                CommitError::Fatal(reason)
            }
            Next::Retry | Next::Abort => self.abort(reason),
        }
    }

    /// Aborts the open transaction; if that fails, replaces the producer (its
    /// `init_transactions` aborts the transaction on the coordinator).
    fn abort(&mut self, reason: String) -> CommitError {
        tracing::warn!(error = %reason, "aborting the transaction");
        for _ in 0..3 {
            let Some(p) = self.producer.as_ref() else {
                break;
            };
            // librdkafka's abort waits until every queued write is reported; with rdkafka's
            // event API the reports are served only by polling, which `flush` does.
            let _ = p.flush(self.settings.transaction_timeout);
            match p.abort_transaction(self.settings.transaction_timeout) {
                Ok(()) => return CommitError::RolledBack(reason),
                Err(e) => match classify(&e, p.client().fatal_error().map(|f| f.0)) {
                    Next::Retry => continue,
                    Next::Fenced => {
                        self.producer = None;
                        return CommitError::Fenced(format!("{reason}; abort: {e}"));
                    }
                    _ => {
                        tracing::warn!(error = %e, "abort_transaction failed; replacing the producer");
                        break;
                    }
                },
            }
        }
        match self.connect() {
            Ok(()) => CommitError::RolledBack(reason),
            Err(e) => e,
        }
    }
}

/// Produces one record, waiting while the local queue is full.
fn send(p: &BaseProducer<TxnContext>, r: &OutRecord) -> Result<(), KafkaError> {
    let mut headers = rdkafka::message::OwnedHeaders::new_with_capacity(r.headers.len());
    for (k, v) in &r.headers {
        headers = headers.insert(rdkafka::message::Header {
            key: k,
            value: Some(v),
        });
    }
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&r.topic).headers(headers);
    if let Some(k) = &r.key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &r.value {
        record = record.payload(v.as_slice());
    }
    if let Some(partition) = r.partition {
        record = record.partition(partition);
    }
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                back,
            )) => {
                record = back;
                p.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
