//! The changelog: a compacted topic per input topic, holding the partitions' state.
//!
//! Owns the changelog topic itself: its name, its creation and the checks made on it at
//! start. The record keys are in [`keys`], the splitting of records too large for one
//! Kafka record in [`chunk`], a partition's chunk counts between commits in [`writer`];
//! reading a partition back is `kafka/restore.rs`, committing writes is the transactional
//! committer (`kafka/txn/`).
//!
//! Guarantees of [`ensure_changelog`]:
//! - the changelog of an input topic is named from it (`kafka.changelog_topic`, default
//!   `{topic}-{group}-changelog`, so two groups reading one topic never share a changelog);
//! - a missing changelog is created compacted, with the input's partition count and
//!   segment and cleaning settings that let compaction run (`kafka.changelog_topic_config`
//!   on top of [`DEFAULT_TOPIC_CONFIG`]);
//! - an existing changelog whose partition count differs from its input's is refused with
//!   an error naming both topics (changelog partition `n` holds the state of input
//!   partition `n`: they must be co-partitioned), and so is one that is not compacted;
//! - the topic's `max.message.bytes` is read (DescribeConfigs), so that every record's size
//!   can be checked before a transaction: one too large would abort it again and again.

pub mod chunk;
pub mod keys;
pub mod writer;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Default of `kafka.changelog_topic`: `{topic}` is the input topic, `{group}` the group id.
pub const DEFAULT_NAME_TEMPLATE: &str = "{topic}-{group}-changelog";

/// Topic settings of a changelog keypulse creates, before `kafka.changelog_topic_config`.
///
/// Kafka's own defaults (1 GiB segments, a 7-day `segment.ms`, dirty ratio 0.5) barely
/// ever clean a changelog: the active segment is never cleaned, and it rolls only when full
/// or old. 64 MiB or one hour, and cleaning once a tenth of the log is dirty, keep a
/// restore's read near one record per key. Tombstones stay a day, so that a reader that
/// started before them still sees the deletion.
pub const DEFAULT_TOPIC_CONFIG: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.bytes", "67108864"),
    ("segment.ms", "3600000"),
    ("min.cleanable.dirty.ratio", "0.1"),
    ("delete.retention.ms", "86400000"),
    ("min.compaction.lag.ms", "0"),
];

/// The changelog's name for an input topic.
pub fn changelog_name(template: &str, input: &str, group: &str) -> String {
    template.replace("{topic}", input).replace("{group}", group)
}

/// The topic settings of a new changelog: [`DEFAULT_TOPIC_CONFIG`], then `overrides`.
pub fn topic_config(overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = DEFAULT_TOPIC_CONFIG
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// A changelog checked at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogTopic {
    /// The input topic it belongs to.
    pub input: String,
    /// Its name.
    pub name: String,
    /// Its partition count (= the input's).
    pub partitions: i32,
    /// Its `max.message.bytes`: no record may be larger.
    pub max_message_bytes: usize,
    /// Whether keypulse created it just now.
    pub created: bool,
}

/// Why a changelog cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    /// The input topic does not exist (yet).
    #[error("input topic {input} does not exist (yet), so its changelog cannot be checked")]
    InputMissing {
        /// The input topic.
        input: String,
    },
    /// Partition counts differ.
    #[error(
        "changelog topic {changelog} has {changelog_partitions} partitions but input topic \
         {input} has {input_partitions}: they must be co-partitioned (the same count). \
         Give the changelog {input_partitions} partitions (or a new name with \
         kafka.changelog_topic, keypulse then creates it)"
    )]
    NotCoPartitioned {
        /// The changelog.
        changelog: String,
        /// Its partition count.
        changelog_partitions: i32,
        /// The input topic.
        input: String,
        /// Its partition count.
        input_partitions: i32,
    },
    /// The changelog exists and is not (only) compacted.
    #[error(
        "changelog topic {topic} has cleanup.policy={policy}; it must be `compact` (with \
         `delete`, retention would drop state)"
    )]
    NotCompacted {
        /// The changelog.
        topic: String,
        /// Its policy.
        policy: String,
    },
    /// An admin request failed.
    #[error("changelog topic {topic}: {what} failed: {reason}")]
    Admin {
        /// The topic.
        topic: String,
        /// Which request.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

fn admin_error(
    topic: impl Into<String>,
    what: &'static str,
    reason: impl ToString,
) -> ChangelogError {
    ChangelogError::Admin {
        topic: topic.into(),
        what,
        reason: reason.to_string(),
    }
}

/// Partition counts of `topics` (absent: the topic does not exist). Blocks up to `timeout`.
///
/// Asks for the metadata of every topic, not of these by name: a request by name would let
/// a broker with `auto.create.topics.enable` create a missing changelog, uncompacted.
pub fn partition_counts<C: ClientContext>(
    admin: &AdminClient<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<HashMap<String, i32>, ChangelogError> {
    let md = admin
        .inner()
        .fetch_metadata(None, timeout)
        .map_err(|e| admin_error(topics.join(","), "Metadata", e))?;
    Ok(md
        .topics()
        .iter()
        .filter(|mt| topics.contains(&mt.name()))
        .filter(|mt| mt.error().is_none() && !mt.partitions().is_empty())
        .map(|mt| (mt.name().to_string(), mt.partitions().len() as i32))
        .collect())
}

/// The configuration of a topic (DescribeConfigs), by key.
pub async fn describe_topic<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<String, String>, ChangelogError> {
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let res = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| admin_error(topic, "DescribeConfigs", e))?;
    let resource = res
        .into_iter()
        .next()
        .ok_or_else(|| admin_error(topic, "DescribeConfigs", "no answer"))?
        .map_err(|code| admin_error(topic, "DescribeConfigs", code))?;
    Ok(resource
        .entries
        .into_iter()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect())
}

/// A topic's `max.message.bytes` (DescribeConfigs).
pub async fn max_message_bytes<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topic: &str,
    timeout: Duration,
) -> Result<usize, ChangelogError> {
    let config = describe_topic(admin, topic, timeout).await?;
    config
        .get("max.message.bytes")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| admin_error(topic, "DescribeConfigs", "no max.message.bytes"))
}

/// Makes sure the changelog `name` of input topic `input` exists, compacted and
/// co-partitioned with it, creating it with `config` (see [`topic_config`]) if missing,
/// and reads its `max.message.bytes`. Blocks its caller up to `timeout` for metadata.
pub async fn ensure_changelog<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    input: &str,
    name: &str,
    config: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<ChangelogTopic, ChangelogError> {
    let counts = partition_counts(admin, &[input, name], timeout)?;
    let input_partitions = *counts
        .get(input)
        .ok_or_else(|| ChangelogError::InputMissing {
            input: input.to_string(),
        })?;
    let mut created = false;
    let changelog_partitions = match counts.get(name) {
        Some(n) => *n,
        None => {
            created = create(admin, name, input_partitions, config, timeout).await?;
            wait_for_partitions(admin, name, timeout)?
        }
    };
    if changelog_partitions != input_partitions {
        return Err(ChangelogError::NotCoPartitioned {
            changelog: name.to_string(),
            changelog_partitions,
            input: input.to_string(),
            input_partitions,
        });
    }
    let described = describe_topic(admin, name, timeout).await?;
    let policy = described.get("cleanup.policy").cloned().unwrap_or_default();
    if policy.trim() != "compact" {
        return Err(ChangelogError::NotCompacted {
            topic: name.to_string(),
            policy,
        });
    }
    let max_message_bytes = described
        .get("max.message.bytes")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| admin_error(name, "DescribeConfigs", "no max.message.bytes"))?;
    Ok(ChangelogTopic {
        input: input.to_string(),
        name: name.to_string(),
        partitions: changelog_partitions,
        max_message_bytes,
        created,
    })
}

/// Creates the topic; `false` when another instance created it first.
async fn create<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    name: &str,
    partitions: i32,
    config: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<bool, ChangelogError> {
    let mut new = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in config {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| admin_error(name, "CreateTopics", e))?;
    match results.into_iter().next() {
        Some(Ok(_)) => {
            tracing::info!(
                topic = name,
                partitions,
                "created the compacted changelog topic"
            );
            Ok(true)
        }
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(admin_error(
            name,
            "CreateTopics (check kafka.changelog_topic_config)",
            code,
        )),
        None => Err(admin_error(name, "CreateTopics", "no answer")),
    }
}

/// Waits until metadata shows the topic (just created) with its partitions.
fn wait_for_partitions<C: ClientContext>(
    admin: &AdminClient<C>,
    name: &str,
    timeout: Duration,
) -> Result<i32, ChangelogError> {
    let t0 = Instant::now();
    loop {
        if let Some(n) = partition_counts(admin, &[name], timeout)?.get(name) {
            return Ok(*n);
        }
        if t0.elapsed() > timeout {
            return Err(admin_error(
                name,
                "Metadata",
                "created, but not in metadata",
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_template() {
        assert_eq!(
            changelog_name(DEFAULT_NAME_TEMPLATE, "license-events", "keypulse"),
            "license-events-keypulse-changelog"
        );
        assert_eq!(changelog_name("state.{topic}", "t", "g"), "state.t");
        assert_eq!(changelog_name("fixed", "t", "g"), "fixed");
    }

    #[test]
    fn overrides_replace_defaults_and_add_keys() {
        let mut o = BTreeMap::new();
        o.insert("segment.bytes".to_string(), "1048576".to_string());
        o.insert("max.message.bytes".to_string(), "65536".to_string());
        let c = topic_config(&o);
        assert_eq!(c["segment.bytes"], "1048576");
        assert_eq!(c["max.message.bytes"], "65536");
        assert_eq!(c["cleanup.policy"], "compact");
        assert_eq!(c["min.cleanable.dirty.ratio"], "0.1");
    }
}
