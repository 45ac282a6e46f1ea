//! The order a new owner of input partitions follows (`restore.rs` says why): the group's
//! committed offsets first, then each one's changelog partition read to its end.
//!
//! Owns [`committed_then_changelog`] and [`PartitionRestore`]. Guarantees: every input
//! asked for is answered with its committed offset (or none) and its changelog's state, or
//! the whole call fails; the fetch of the offsets gives up at the reader's cancel flag or
//! the timeout, like the read.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::super::TopicPartition;
use super::{ChangelogReader, RestoreError, Restored, CANCEL_CHECK, CANCEL_CHECK_MAX};

/// An input partition with its committed offset and its changelog partition's state.
#[derive(Debug)]
pub struct PartitionRestore {
    /// The input partition.
    pub input: TopicPartition,
    /// The group's committed offset of it (the next offset to read), if any.
    pub committed: Option<i64>,
    /// Its changelog partition, read to its end.
    pub changelog: Restored,
}

/// The first two steps of taking over `inputs`: fetch the group's committed offsets of
/// them with `group` (the group's consumer, which must use `isolation.level=read_committed`,
/// librdkafka's default, so that the offsets fetched are stable), then read each one's changelog partition (same
/// number, topic from `changelog_of`: input topic → changelog topic) to its end with
/// `reader`. The caller then resumes the input at the committed offsets. At most `timeout`
/// in all.
pub fn committed_then_changelog<G: ConsumerContext>(
    group: &BaseConsumer<G>,
    reader: &ChangelogReader,
    inputs: &[TopicPartition],
    changelog_of: &HashMap<String, String>,
    timeout: Duration,
) -> Result<Vec<PartitionRestore>, RestoreError> {
    let t0 = Instant::now();
    let mut tpl = TopicPartitionList::new();
    for tp in inputs {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    let committed = committed_offsets(group, reader, tpl, timeout)?;
    let mut by_topic: HashMap<&str, Vec<i32>> = HashMap::new();
    for tp in inputs {
        let changelog = changelog_of.get(&*tp.topic).ok_or_else(|| {
            RestoreError::Consumer(format!("no changelog topic for input topic {}", tp.topic))
        })?;
        by_topic.entry(changelog).or_default().push(tp.partition);
    }
    let mut restored: HashMap<(String, i32), Restored> = HashMap::new();
    for (changelog, partitions) in by_topic {
        let left = timeout.saturating_sub(t0.elapsed());
        for r in reader.read_partitions(changelog, &partitions, left)? {
            restored.insert((r.topic.clone(), r.partition), r);
        }
    }
    let mut out = Vec::with_capacity(inputs.len());
    for tp in inputs {
        let changelog = &changelog_of[&*tp.topic];
        let offset = committed
            .find_partition(&tp.topic, tp.partition)
            .map(|e| e.offset());
        let committed = match offset {
            Some(Offset::Offset(o)) if o >= 0 => Some(o),
            _ => None,
        };
        let state = restored
            .remove(&(changelog.clone(), tp.partition))
            .expect("read above");
        out.push(PartitionRestore {
            input: tp.clone(),
            committed,
            changelog: state,
        });
    }
    Ok(out)
}

/// The group's committed offsets of `tpl`, at most `timeout`. The fetch waits while a
/// transaction holding offsets of the group is open, so it is asked in slices (from
/// [`CANCEL_CHECK`], doubling up to [`CANCEL_CHECK_MAX`]), each slice's timeout retried
/// while time is left and `reader` is not cancelled.
fn committed_offsets<G: ConsumerContext>(
    group: &BaseConsumer<G>,
    reader: &ChangelogReader,
    tpl: TopicPartitionList,
    timeout: Duration,
) -> Result<TopicPartitionList, RestoreError> {
    let t0 = Instant::now();
    let mut slice = CANCEL_CHECK;
    loop {
        if reader.cancelled() {
            return Err(RestoreError::Cancelled);
        }
        let left = timeout.saturating_sub(t0.elapsed());
        match group.committed_offsets(tpl.clone(), left.min(slice)) {
            Ok(c) => return Ok(c),
            Err(e)
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut)
                    && left > slice => {}
            Err(e) => return Err(RestoreError::Committed(e.to_string())),
        }
        slice = (slice * 2).min(CANCEL_CHECK_MAX);
    }
}
