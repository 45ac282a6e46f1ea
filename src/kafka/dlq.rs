//! The dead-letter producer: every rejected message is copied to `kafka.dead_letter_topic`.
//!
//! Owns the producer of the dead-letter topic. A copy keeps the original key and value
//! byte for byte and adds the headers `reason` (e.g. `wrong_type`), `field` (the field at
//! fault, when there is one), `topic`, `partition` and `offset` (of the original message).
//!
//! Guarantees:
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
use crate::core::Rejection;
use crate::metrics::Metrics;

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
        if last.map_or(true, |t| t.elapsed() > Duration::from_secs(5)) {
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
        let partition = from.partition.to_string();
        let offset = from.offset.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(5).insert(Header {
            key: "reason",
            value: Some(why.reason.as_str()),
        });
        if let Some(field) = why.field {
            headers = headers.insert(Header {
                key: "field",
                value: Some(field),
            });
        }
        let headers = headers
            .insert(Header {
                key: "topic",
                value: Some(from.topic),
            })
            .insert(Header {
                key: "partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "offset",
                value: Some(offset.as_str()),
            });
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.topic).headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
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
