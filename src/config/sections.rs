//! The sections of the configuration besides `core` and `http`: [`KafkaConfig`],
//! [`EmailConfig`], [`SmtpConfig`] and [`LogConfig`], their defaults, and the Kafka names
//! derived from them.
//!
//! Guarantees: every key has a default (a file is optional); an unknown key is an error
//! (`deny_unknown_fields`); secrets are never read from the file itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The Kafka side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Topics of license events.
    pub topics: Vec<String>,
    /// Consumer group id.
    pub group_id: String,
    /// Where rejected messages are copied.
    pub dead_letter_topic: String,
    /// Compacted topic of email decisions and their outcomes (the outbox and sent log).
    pub notifications_topic: String,
    /// Extra librdkafka properties, passed through as given (SASL, SSL, tuning). They
    /// override keypulse's own defaults (e.g. `group.protocol = "classic"`).
    pub properties: BTreeMap<String, String>,
    /// Fold worker threads: partitions are spread over them; decoding and folding run
    /// there, in parallel across workers.
    pub fold_workers: usize,
    /// Batches (of up to 1024 messages) queued per fold worker before the poll thread waits.
    pub worker_queue_batches: usize,
    /// How long `keypulse run` waits for a broker to answer at start, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How often folded offsets are committed, in milliseconds (also on revocation and at
    /// shutdown).
    pub commit_interval_ms: u64,
    /// Readiness also waits until the group assignment has not changed for this long, in
    /// milliseconds (KIP-848 hands partitions over incrementally).
    pub ready_settle_ms: u64,
    /// This instance's id, stable across its restarts; the transactional id is
    /// `keypulse-<group_id>-<instance_id>`. Default: `<hostname>-<port of http.bind>` (or
    /// `<hostname>-pid<pid>` when that port is 0); in Kubernetes, the pod's name.
    pub instance_id: Option<String>,
    /// Name of each input topic's changelog: `{topic}` is the input topic, `{group}` the
    /// group id.
    pub changelog_topic: String,
    /// Topic settings of a changelog keypulse creates, on top of its defaults (compacted,
    /// 64 MiB / 1 h segments, `min.cleanable.dirty.ratio` 0.1, one-day tombstones).
    pub changelog_topic_config: BTreeMap<String, String>,
    /// `transaction.timeout.ms` of the transactional commits, in milliseconds: how long an
    /// instance killed mid-transaction can hold back its changelog's readers.
    pub transaction_timeout_ms: u64,
    /// Exactly-once mode: each partition's state lives in its compacted changelog, every
    /// commit is one Kafka transaction (changelog, dead letters, decision records,
    /// offsets), and an assigned partition is restored instead of rebuilt. `false`: the
    /// at-least-once mode of earlier versions (every assigned partition is rebuilt from
    /// its first offset); the demo's embedded mock cluster needs it.
    pub exactly_once: bool,
    /// Whether a partition with no changelog state may be rebuilt from an input whose
    /// first offset is above 0 (retention deleted its beginning): that gives a partial
    /// state. `false` (default): such a partition is refused, and the instance not ready.
    pub allow_partial_rebuild: bool,
    /// How long the restore of the partitions of one assignment may take, in milliseconds.
    pub restore_timeout_ms: u64,
    /// Compacted topic where the group's instances announce themselves (SPEC §8.8);
    /// `{group}` is the group id. Created (compacted, one partition) when missing.
    pub members_topic: String,
    /// How often an instance announces itself again, in milliseconds.
    pub members_interval_ms: u64,
    /// Members whose last announcement is older than this are ignored, in milliseconds.
    pub members_stale_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topics: vec!["license-events".into()],
            group_id: "keypulse".into(),
            dead_letter_topic: "license-events.dlq".into(),
            notifications_topic: "keypulse.notifications".into(),
            properties: BTreeMap::new(),
            fold_workers: 2,
            worker_queue_batches: 16,
            connect_timeout_ms: 10_000,
            commit_interval_ms: 5_000,
            ready_settle_ms: 1_500,
            instance_id: None,
            changelog_topic: crate::kafka::changelog::DEFAULT_NAME_TEMPLATE.into(),
            changelog_topic_config: BTreeMap::new(),
            transaction_timeout_ms: 10_000,
            exactly_once: true,
            allow_partial_rebuild: false,
            restore_timeout_ms: 120_000,
            members_topic: "{group}.members".into(),
            members_interval_ms: 2_000,
            members_stale_ms: 10_000,
        }
    }
}

/// How emails are rendered and sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp`, `file` (write `.eml` files) or `none` (decide and log, send nothing).
    pub transport: String,
    /// `From:` of every email.
    pub from: String,
    /// `Reply-To:`, if any.
    pub reply_to: Option<String>,
    /// Base URL of the upgrade link (`?license=<key>` is appended, URL-encoded).
    pub upgrade_url: String,
    /// Base URL of the renewal link (`?license=<key>` is appended, URL-encoded).
    pub renew_url: String,
    /// Longest string (in characters) taken from an event into a template; longer ones are
    /// cut with an ellipsis, and counted.
    pub max_field_chars: usize,
    /// A folder whose `upgrade.*`, `renewal.*`, `churn_warning.*` templates replace the built-in ones.
    pub templates_dir: Option<PathBuf>,
    /// Folder of the file transport.
    pub file_dir: PathBuf,
    /// Where decisions and outcomes are kept: `kafka` (the compacted
    /// `kafka.notifications_topic`, durable) or `memory` (dry runs, the demo's mock cluster).
    pub decision_log: String,
    /// SMTP settings.
    pub smtp: SmtpConfig,
    /// Bound of the queue between the fold and the mailer.
    pub queue_capacity: usize,
    /// Attempts for a transient failure before it is recorded as failed.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds (doubles each time, with jitter).
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: "none".into(),
            from: "keypulse <keypulse@example.com>".into(),
            reply_to: None,
            upgrade_url: "https://example.com/upgrade".into(),
            renew_url: "https://example.com/renew".into(),
            max_field_chars: 200,
            templates_dir: None,
            file_dir: PathBuf::from("outbox"),
            decision_log: "kafka".into(),
            smtp: SmtpConfig::default(),
            queue_capacity: 10_000,
            max_attempts: 8,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
        }
    }
}

/// The SMTP connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// `starttls` (required, the default), `tls` (implicit TLS) or `plain` (local sinks only).
    pub security: String,
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: String,
    /// File holding the password (used when the variable is unset).
    pub password_file: Option<PathBuf>,
    /// PEM file of extra root certificates to trust (an internal relay's CA), in
    /// addition to the bundled WebPKI roots.
    pub ca_file: Option<PathBuf>,
    pub timeout_secs: u64,
    pub pool_max: u32,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 587,
            security: "starttls".into(),
            username: None,
            password_env: "KEYPULSE_SMTP_PASSWORD".into(),
            password_file: None,
            ca_file: None,
            timeout_secs: 10,
            pool_max: 4,
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `keypulse=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl KafkaConfig {
    /// The members topic (`kafka.members_topic` with `{group}` replaced).
    pub fn members_topic_name(&self) -> String {
        self.members_topic.replace("{group}", &self.group_id)
    }

    /// The changelog topic of input topic `input`.
    pub fn changelog_topic_of(&self, input: &str) -> String {
        crate::kafka::changelog::changelog_name(&self.changelog_topic, input, &self.group_id)
    }
}
