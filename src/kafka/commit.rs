//! Asynchronous offset commits whose outcome is reported back.
//!
//! Owns one call: [`commit_async`]. rust-rdkafka's `commit(.., CommitMode::Async)` hands
//! librdkafka no reply queue, and librdkafka then reports nothing back, so the consumer
//! context's `commit_callback` never runs for it (rust-rdkafka issue 856): periodic
//! commits went uncounted in `keypulse_offset_commits_total`. Here the commit names the
//! consumer's own queue as its reply queue, so its outcome comes back as an
//! `OFFSET_COMMIT` event on the queue that the poll loop serves, and rust-rdkafka calls
//! `commit_callback` with it (counted and logged there).
//!
//! Guarantees: never blocks on the broker; an error returned here means the commit was
//! not sent (its outcome is then not reported by the callback).

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::TopicPartitionList;

/// Sends an asynchronous commit of `offsets`; its outcome reaches the context's
/// `commit_callback` on a later poll.
pub fn commit_async<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &TopicPartitionList,
) -> KafkaResult<()> {
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the handle of `consumer`, alive for this call. The queue handle
    // returned by `rd_kafka_queue_get_consumer` is a new reference that we release before
    // returning; librdkafka keeps its own reference for the pending reply. `offsets` is
    // only read during the call (librdkafka copies it).
    let err = unsafe {
        let queue = rd::rd_kafka_queue_get_consumer(rk);
        if queue.is_null() {
            // No consumer queue (no group): fall back to the plain call.
            return consumer.commit(offsets, CommitMode::Async);
        }
        let err = rd::rd_kafka_commit_queue(rk, offsets.ptr(), queue, None, std::ptr::null_mut());
        rd::rd_kafka_queue_destroy(queue);
        err
    };
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(KafkaError::ConsumerCommit(err.into()))
    }
}
