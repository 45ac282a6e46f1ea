//! The dead-letter producer: every rejected message is copied to `kafka.dead_letter_topic`.
//!
//! Owns the producer of the dead-letter topic. A copy keeps the original key and value
//! byte for byte and adds the headers `reason` (e.g. `wrong_type`), `field` (the field at
//! fault, when there is one), `topic`, `partition` and `offset` (of the original message).
//! A value longer than [`MAX_VALUE_BYTES`] (a `too_large` message) is cut to its first
//! [`MAX_VALUE_BYTES`] bytes, and a key longer than [`MAX_KEY_BYTES`] to that, with the
//! original length in the header `original_size` (`original_key_size` for the key), so a
//! copy always fits the dead-letter topic's own limit (1 MiB by default).
//!
//! In exactly-once mode the copies are not sent by this producer: [`dead_letter_record`]
//! builds the same record, and it is written in the commit's transaction (`durable.rs`),
//! exactly once. Guarantees of the at-least-once producer:
//! - a copy is enqueued before the original's offset counts as folded, and the consumer
//!   flushes this producer before each offset commit, so a rejected message whose offset is
//!   committed has had its copy acknowledged (or its failure logged and counted in
//!   `keypulse_dead_letter_messages_total{outcome="failed"}`);
//! - a partition rebuilt from its beginning does not copy again the messages below the
//!   group's committed offset (the consumer decides; see `consumer.rs`);
//! - a full local queue blocks the caller (back-pressure), it never drops a copy.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::client::{ClientSettings, Role};
use super::txn::OutRecord;
use crate::core::Rejection;
use crate::metrics::Metrics;

/// Longest value kept in a dead-letter copy: 64 KiB, well below the 1 MiB default
/// `max.message.bytes` of a topic.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Longest key kept in a dead-letter copy.
pub const MAX_KEY_BYTES: usize = 4 * 1024;

// A copy fits a topic with the default limit (1 MiB + 12 bytes), headers and all.
const _: () = assert!(MAX_VALUE_BYTES + MAX_KEY_BYTES + 4096 < 1_048_588);

/// `bytes` cut to its first `max` bytes, with its original length when it was cut.
pub fn cut_to_fit(bytes: &[u8], max: usize) -> (&[u8], Option<usize>) {
    if bytes.len() > max {
        (&bytes[..max], Some(bytes.len()))
    } else {
        (bytes, None)
    }
}

/// Counts deliveries and logs failures.
pub struct DlqContext {
    /// Where `sent` / `failed` are counted.
    metrics: Arc<Metrics>,
    /// Last time a client error was logged (errors repeat while a broker is down).
    last_error_log: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ClientContext for DlqContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        super::forward_librdkafka_log("dead-letter producer", level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        let mut last = self
            .last_error_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(client = "dead-letter producer", error = %error, reason, "kafka client error (repeats within 5 s not logged)");
        }
    }
}

impl ProducerContext for DlqContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let error = result
            .as_ref()
            .err()
            .map(|(e, _)| e as &dyn std::fmt::Display);
        super::events::DeadLetterDelivered { error }.emit(&self.metrics);
    }
}

/// The dead-letter topic's producer.
pub struct DeadLetter {
    /// The producer (polled by its own thread).
    producer: ThreadedProducer<DlqContext>,
    /// `kafka.dead_letter_topic`.
    topic: String,
}

/// Where a rejected message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

impl DeadLetter {
    /// Creates the producer from the service's connection settings.
    pub fn new(
        clients: &ClientSettings,
        topic: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, KafkaError> {
        let cfg = clients.build(
            Role::Producer,
            &[],
            &[("enable.idempotence", "true"), ("linger.ms", "20")],
        );
        let producer = cfg.create_with_context(DlqContext {
            metrics,
            last_error_log: std::sync::Mutex::new(None),
        })?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
        })
    }

    /// Enqueues a copy of a rejected message. Blocks while the local queue is full.
    pub fn send(
        &self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        why: Rejection,
        from: Origin<'_>,
    ) {
        let copy = dead_letter_record(&self.topic, key, payload, why, from);
        let mut headers = OwnedHeaders::new_with_capacity(copy.headers.len());
        for (k, v) in &copy.headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: Some(v.as_slice()),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).headers(headers);
        if let Some(k) = &copy.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = &copy.value {
            record = record.payload(p.as_slice());
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    tracing::error!(error = %e, topic = %self.topic, "cannot enqueue a dead-letter copy");
                    return;
                }
            }
        }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Copies not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Waits until every enqueued copy is acknowledged (or failed), at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        if self.in_flight() == 0 {
            return Ok(());
        }
        self.producer.flush(timeout)
    }
}

/// The dead-letter copy of a rejected message, as a record (written by [`DeadLetter::send`]
/// at least once, or inside a commit's transaction exactly once).
pub fn dead_letter_record(
    topic: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    why: Rejection,
    from: Origin<'_>,
) -> OutRecord {
    let (key, key_size) = match key.map(|k| cut_to_fit(k, MAX_KEY_BYTES)) {
        Some((k, size)) => (Some(k.to_vec()), size),
        None => (None, None),
    };
    let (payload, size) = match payload.map(|p| cut_to_fit(p, MAX_VALUE_BYTES)) {
        Some((p, size)) => (Some(p.to_vec()), size),
        None => (None, None),
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(7);
    let mut add = |k: &str, v: String| headers.push((k.to_string(), v.into_bytes()));
    add("reason", why.reason.as_str().to_string());
    if let Some(field) = why.field {
        add("field", field.to_string());
    }
    if let Some(n) = size {
        add("original_size", n.to_string());
    }
    if let Some(n) = key_size {
        add("original_key_size", n.to_string());
    }
    add("topic", from.topic.to_string());
    add("partition", from.partition.to_string());
    add("offset", from.offset.to_string());
    OutRecord {
        topic: topic.to_string(),
        partition: None,
        key,
        value: payload,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_their_size_kept() {
        let big = vec![b'x'; 100 * 1024];
        let (kept, size) = cut_to_fit(&big, MAX_VALUE_BYTES);
        assert_eq!(kept.len(), MAX_VALUE_BYTES);
        assert_eq!(kept, &big[..MAX_VALUE_BYTES]);
        assert_eq!(size, Some(100 * 1024));
        let (kept, size) = cut_to_fit(&big[..MAX_VALUE_BYTES], MAX_VALUE_BYTES);
        assert_eq!((kept.len(), size), (MAX_VALUE_BYTES, None));
        assert_eq!(cut_to_fit(b"", 0), (&b""[..], None));
    }
}
