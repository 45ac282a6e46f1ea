//! The transactional producer's callbacks, and what to do about each of its errors.
//!
//! Owns [`TxnContext`] (log forwarding, the first failed write of a transaction) and
//! [`classify`], the one place that maps a librdkafka transaction error to the
//! committer's next step ([`Next`]). Guarantees: a fatal producer is never used again
//! (fenced if its fatal error is a fencing one); an abortable error aborts; a retriable one
//! is retried only where the committer retries (`commit_transaction`, `init_transactions`);
//! an error of no known kind aborts (the safe side: nothing is visible).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::ClientContext;

/// What the committer does after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call again (the operation goes on in the background).
    Retry,
    /// Abort the transaction; the producer stays usable.
    Abort,
    /// Another producer with the same transactional id took over: drop this one.
    Fenced,
    /// The producer is unusable: drop it.
    Fatal,
}

fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// The next step for an error with these properties (as librdkafka reports them).
pub fn classify_flags(
    code: RDKafkaErrorCode,
    fatal: bool,
    retriable: bool,
    requires_abort: bool,
) -> Next {
    if fatal {
        if is_fencing(code) {
            Next::Fenced
        } else {
            Next::Fatal
        }
    } else if requires_abort {
        Next::Abort
    } else if retriable {
        Next::Retry
    } else if is_fencing(code) {
        Next::Fenced
    } else {
        Next::Abort
    }
}

/// The next step after `e`, given the producer's fatal error, if it has one.
pub fn classify(e: &KafkaError, fatal: Option<RDKafkaErrorCode>) -> Next {
    if let Some(code) = fatal {
        return classify_flags(code, true, false, false);
    }
    match e {
        KafkaError::Transaction(t) => classify_flags(
            t.code(),
            t.is_fatal(),
            t.is_retriable(),
            t.txn_requires_abort(),
        ),
        // rdkafka 0.39 flushes inside commit_transaction: a flush that timed out is a
        // commit that timed out, retriable; any other flush failure aborts.
        KafkaError::Flush(code) => classify_flags(
            *code,
            false,
            *code == RDKafkaErrorCode::OperationTimedOut,
            false,
        ),
        other => match other.rdkafka_error_code() {
            Some(code) => classify_flags(code, false, false, false),
            None => Next::Abort,
        },
    }
}

/// Callbacks of the transactional producer.
#[derive(Default)]
pub struct TxnContext {
    /// The first write of the current transaction that failed, if any (topic and error).
    first_failure: Mutex<Option<String>>,
    /// Last time a client error was logged (errors repeat while a broker is down).
    last_error_log: Mutex<Option<Instant>>,
}

impl TxnContext {
    /// Forgets the previous transaction's failures (at `begin_transaction`).
    pub fn reset(&self) {
        *lock(&self.first_failure) = None;
    }

    /// The first failed write of the current transaction, if any.
    pub fn first_failure(&self) -> Option<String> {
        lock(&self.first_failure).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientContext for TxnContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::kafka::forward_librdkafka_log("transactional producer", level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let mut last = lock(&self.last_error_log);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            *last = Some(Instant::now());
            tracing::warn!(client = "transactional producer", error = %error, reason, "kafka client error (repeats within 5 s not logged)");
        }
    }
}

impl ProducerContext for TxnContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            lock(&self.first_failure).get_or_insert_with(|| format!("{}: {e}", m.topic()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_has_its_step() {
        use RDKafkaErrorCode as C;
        // fatal: fenced when the code says so, else fatal, whatever the other flags
        assert_eq!(classify_flags(C::Fenced, true, true, true), Next::Fenced);
        assert_eq!(
            classify_flags(C::ProducerFenced, true, false, false),
            Next::Fenced
        );
        assert_eq!(
            classify_flags(C::InvalidTransactionalState, true, false, false),
            Next::Fatal
        );
        // abortable before retriable
        assert_eq!(
            classify_flags(C::OperationTimedOut, false, true, true),
            Next::Abort
        );
        assert_eq!(
            classify_flags(C::OperationTimedOut, false, true, false),
            Next::Retry
        );
        assert_eq!(classify_flags(C::State, false, false, false), Next::Abort);
        // a flush that timed out inside commit_transaction is retried; other flush errors abort
        let flush = KafkaError::Flush(C::OperationTimedOut);
        assert_eq!(classify(&flush, None), Next::Retry);
        assert_eq!(classify(&KafkaError::Flush(C::Fail), None), Next::Abort);
        // a producer with a fatal error is never retried
        assert_eq!(classify(&flush, Some(C::ProducerFenced)), Next::Fenced);
        assert_eq!(classify(&flush, Some(C::Fatal)), Next::Fatal);
        let size = KafkaError::MessageProduction(C::MessageSizeTooLarge);
        assert_eq!(classify(&size, None), Next::Abort);
    }
}
