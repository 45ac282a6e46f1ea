//! The committer's thread: one transaction per commit, and what each error leads to.
//!
//! Owns the transactional producer (`BaseProducer`, polled only here) and the steps of a
//! commit; the guarantees are those of the committer (`txn/mod.rs`). Every decision on an
//! error goes through [`classify`](super::producer::classify).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::producer::{classify, Next, TxnContext};
use super::{CommitBatch, CommitError, Committed, Limits, OutRecord, Reply, TxnSettings};
use super::{COMMIT_ATTEMPTS, RECORD_OVERHEAD};

/// The thread's side.
pub(super) struct Worker {
    pub(super) cfg: ClientConfig,
    pub(super) settings: TxnSettings,
    pub(super) limits: Limits,
    pub(super) producer: Option<BaseProducer<TxnContext>>,
}

impl Worker {
    /// Builds the producer and calls `init_transactions` (retrying retriable errors).
    pub(super) fn connect(&mut self) -> Result<(), CommitError> {
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

    pub(super) fn commit(&mut self, batch: CommitBatch) -> Reply {
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
