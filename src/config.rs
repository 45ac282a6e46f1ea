//! Configuration: `keypulse.toml` plus environment overrides, validated before use.
//!
//! Owns every operator-facing setting. A file is optional; every key has a default.
//! Environment variables override the file: `KEYPULSE__SECTION__KEY=value` sets
//! `section.key` (nested keys add more `__`), the value taking the type of its key (a
//! string key gets the string as given, whatever it looks like; see
//! [`Config::load_with_env`]). Guarantees: an unknown key or a bad value is an error that
//! names the key (`core.health.churn_risk_below: ...`), a TOML syntax error its line and
//! column; no error prints the value of a secret key ([`is_secret_key`]); secrets are
//! never read from the file itself, only from the environment or a file that the config
//! names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::CoreConfig;
pub use crate::http::config::HttpConfig;

mod overrides;
pub use overrides::is_secret_key;

/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "KEYPULSE__";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Thresholds, weights, windows and cooldowns of the fold (SPEC §2–§5).
    pub core: CoreConfig,
    /// The Kafka consumer and the topics it uses.
    pub kafka: KafkaConfig,
    /// The HTTP server.
    pub http: HttpConfig,
    /// Email rendering and delivery.
    pub email: EmailConfig,
    /// Logging.
    pub log: LogConfig,
}

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

/// A configuration problem, naming the key. No message carries the value of a secret
/// key (see [`is_secret_key`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        // Not a `source`: the message already says it, and `{:#}` would print it twice.
        error: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config key `{key}`: {problem}")]
    Key { key: String, problem: String },
}

fn key_error(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Loads `path` (if any), applies the environment overrides, and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Self::load`], with the environment given (for tests).
    ///
    /// An override takes the type of the key it sets: it is first set as a string, and
    /// only where a string does not fit that key (a number, a bool, a list) is it read
    /// as a TOML value (`5`, `true`, `["a", "b"]`; a list also as `a,b`). So
    /// `KEYPULSE__KAFKA__GROUP_ID=12345` is the string `"12345"`, and
    /// `KEYPULSE__KAFKA__FOLD_WORKERS=4` the number 4.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|error| ConfigError::Read {
                    path: p.to_path_buf(),
                    error,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| overrides::syntax_error(p, &text, &e))?
            }
            None => toml::Table::new(),
        };
        let cfg = overrides::deserialize_with_env(table, env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML text (no environment), for tests and embedded defaults.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| overrides::syntax_error(Path::new("<inline>"), text, &e))?;
        let cfg = overrides::deserialize_with_env(table, Vec::new())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.core
            .validate()
            .map_err(|e| key_error(format!("core.{}", e.key), e.problem))?;
        if self.kafka.topics.is_empty() || self.kafka.topics.iter().any(|t| t.is_empty()) {
            return Err(key_error(
                "kafka.topics",
                "needs at least one non-empty topic name",
            ));
        }
        for (key, v) in [
            ("kafka.group_id", &self.kafka.group_id),
            ("kafka.dead_letter_topic", &self.kafka.dead_letter_topic),
            ("kafka.notifications_topic", &self.kafka.notifications_topic),
        ] {
            if v.is_empty() {
                return Err(key_error(key, "must not be empty"));
            }
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(key_error("kafka.brokers", "must not be empty"));
        }
        for (key, v) in [
            ("kafka.fold_workers", self.kafka.fold_workers as u64),
            (
                "kafka.worker_queue_batches",
                self.kafka.worker_queue_batches as u64,
            ),
            ("kafka.connect_timeout_ms", self.kafka.connect_timeout_ms),
            ("kafka.commit_interval_ms", self.kafka.commit_interval_ms),
        ] {
            if v == 0 {
                return Err(key_error(key, "must be at least 1"));
            }
        }
        if self.kafka.fold_workers > 64 {
            return Err(key_error("kafka.fold_workers", "must be at most 64"));
        }
        self.kafka.validate_eos()?;
        self.http.validate()?;
        if !["smtp", "file", "none"].contains(&self.email.transport.as_str()) {
            return Err(key_error(
                "email.transport",
                "must be `smtp`, `file` or `none`",
            ));
        }
        if !["kafka", "memory"].contains(&self.email.decision_log.as_str()) {
            return Err(key_error(
                "email.decision_log",
                "must be `kafka` or `memory`",
            ));
        }
        if !["starttls", "tls", "plain"].contains(&self.email.smtp.security.as_str()) {
            return Err(key_error(
                "email.smtp.security",
                "must be `starttls`, `tls` or `plain`",
            ));
        }
        for (key, v) in [
            ("email.from", Some(&self.email.from)),
            ("email.reply_to", self.email.reply_to.as_ref()),
        ] {
            if let Some(v) = v {
                if v.contains(['\r', '\n']) || !v.contains('@') {
                    return Err(key_error(key, "must be one email address on one line"));
                }
            }
        }
        for (key, v) in [
            ("email.upgrade_url", &self.email.upgrade_url),
            ("email.renew_url", &self.email.renew_url),
        ] {
            if !(v.starts_with("https://") || v.starts_with("http://"))
                || v.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                return Err(key_error(key, "must be an http(s) URL without spaces"));
            }
        }
        if self.email.max_field_chars < 8 {
            return Err(key_error("email.max_field_chars", "must be at least 8"));
        }
        if self.email.retry_initial_ms == 0 || self.email.retry_max_ms < self.email.retry_initial_ms
        {
            return Err(key_error(
                "email.retry_max_ms",
                "needs retry_initial_ms >= 1 and retry_max_ms >= retry_initial_ms",
            ));
        }
        if self.email.smtp.host.is_empty() {
            return Err(key_error("email.smtp.host", "must not be empty"));
        }
        if self.email.smtp.pool_max == 0 {
            return Err(key_error("email.smtp.pool_max", "must be at least 1"));
        }
        if self.email.smtp.timeout_secs == 0 {
            return Err(key_error("email.smtp.timeout_secs", "must be at least 1"));
        }
        if self.email.queue_capacity == 0 {
            return Err(key_error("email.queue_capacity", "must be at least 1"));
        }
        if self.email.max_attempts == 0 {
            return Err(key_error("email.max_attempts", "must be at least 1"));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(key_error("log.format", "must be `text` or `json`"));
        }
        log_filter(&self.log.level).map_err(|problem| key_error("log.level", problem))?;
        Ok(())
    }
}

/// A Kafka topic name or id: 1 to 249 of `[A-Za-z0-9._-]`.
fn is_kafka_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 249
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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

    /// Checks the keys of the changelog and the transactional commits.
    fn validate_eos(&self) -> Result<(), ConfigError> {
        if let Some(id) = &self.instance_id {
            if !is_kafka_name(id) || id.len() > 200 {
                return Err(key_error(
                    "kafka.instance_id",
                    "must be 1 to 200 of the characters A-Z a-z 0-9 . _ -",
                ));
            }
        }
        if self.topics.len() > 1 && !self.changelog_topic.contains("{topic}") {
            return Err(key_error(
                "kafka.changelog_topic",
                "must contain `{topic}` when kafka.topics names more than one topic \
                 (each input topic has its own changelog)",
            ));
        }
        for t in &self.topics {
            let name = self.changelog_topic_of(t);
            if !is_kafka_name(&name) {
                return Err(key_error(
                    "kafka.changelog_topic",
                    format!(
                        "gives `{name}`, not a valid topic name (1 to 249 of A-Z a-z 0-9 . _ -)"
                    ),
                ));
            }
            if self.topics.contains(&name)
                || name == self.dead_letter_topic
                || name == self.notifications_topic
            {
                return Err(key_error(
                    "kafka.changelog_topic",
                    format!("gives `{name}`, a topic keypulse already uses for something else"),
                ));
            }
        }
        for (k, v) in &self.changelog_topic_config {
            let key = format!("kafka.changelog_topic_config.\"{k}\"");
            let ok = match k.as_str() {
                "cleanup.policy" => v == "compact",
                "min.cleanable.dirty.ratio" => {
                    v.parse::<f64>().is_ok_and(|r| (0.0..=1.0).contains(&r))
                }
                "segment.bytes"
                | "segment.ms"
                | "delete.retention.ms"
                | "max.message.bytes"
                | "min.compaction.lag.ms"
                | "max.compaction.lag.ms"
                | "segment.jitter.ms" => v.parse::<u64>().is_ok(),
                _ => !v.is_empty(),
            };
            if !ok {
                let problem = match k.as_str() {
                    "cleanup.policy" => {
                        "must be `compact` (with `delete`, retention would drop state)"
                    }
                    "min.cleanable.dirty.ratio" => "must be a number from 0 to 1",
                    _ => "must be a whole number (or, for other keys, not empty)",
                };
                return Err(key_error(key, problem));
            }
        }
        if !(1_000..=3_600_000).contains(&self.restore_timeout_ms) {
            return Err(key_error(
                "kafka.restore_timeout_ms",
                "must be from 1000 to 3600000",
            ));
        }
        if !(1_000..=900_000).contains(&self.transaction_timeout_ms) {
            return Err(key_error(
                "kafka.transaction_timeout_ms",
                "must be from 1000 to 900000 (the broker's default transaction.max.timeout.ms)",
            ));
        }
        if !(100..=600_000).contains(&self.members_interval_ms) {
            return Err(key_error(
                "kafka.members_interval_ms",
                "must be from 100 to 600000",
            ));
        }
        if self.members_stale_ms <= self.members_interval_ms {
            return Err(key_error(
                "kafka.members_stale_ms",
                "must be above kafka.members_interval_ms",
            ));
        }
        if !is_kafka_name(&self.members_topic_name()) {
            return Err(key_error(
                "kafka.members_topic",
                "must name a topic (A-Z a-z 0-9 . _ -; `{group}` is the group id)",
            ));
        }
        Ok(())
    }
}

/// The `tracing` filter of `log.level`; the error says why it is not one, once.
pub fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    // `{e}` only: the parse error's `source()` repeats its own message.
    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
        format!("`{level}` is not a tracing filter (e.g. `info` or `keypulse=debug`): {e}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_spec() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.core, CoreConfig::default());
        assert_eq!(c.http.bind, "127.0.0.1:9464");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err("[core.health]\nchurn_risk_bellow = 3\n");
        assert!(e.contains("core.health"), "{e}");
        assert!(e.contains("churn_risk_bellow"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = err("[core.health]\nchurn_risk_below = \"many\"\n");
        assert!(e.contains("core.health.churn_risk_below"), "{e}");
        let e = err("[http]\nbind = \"nowhere\"\n");
        assert!(e.contains("http.bind"), "{e}");
        let e = err("[core]\nwindow_days = 3\n");
        assert!(e.contains("core.window_days"), "{e}");
        let e = err("[email]\ntransport = \"pigeon\"\n");
        assert!(e.contains("email.transport"), "{e}");
        let e = err("[email]\ndecision_log = \"disk\"\n");
        assert!(e.contains("email.decision_log"), "{e}");
        let e = err("[email]\nupgrade_url = \"ftp://x\"\n");
        assert!(e.contains("email.upgrade_url"), "{e}");
        let e = err("[email]\nmax_field_chars = 2\n");
        assert!(e.contains("email.max_field_chars"), "{e}");
        let e = err("[email.smtp]\npool_max = 0\n");
        assert!(e.contains("email.smtp.pool_max"), "{e}");
        let e = err("[email.smtp]\nca_fil = \"x\"\n");
        assert!(e.contains("ca_fil"), "{e}");
    }

    #[test]
    fn spec8_keys_have_their_defaults_and_are_named_when_bad() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.core.sharing.min_domains, 3);
        assert_eq!(c.core.sharing.window_days, 30);
        assert_eq!(c.core.notify.expiry_notice_days, 7);
        assert_eq!(c.core.notify.key_sharing_cooldown_days, 30);
        assert_eq!(c.core.notify.revoked_use_cooldown_days, 30);
        assert!(c.core.exclude.customer_ids.is_empty());
        assert!(c.core.exclude.customer_prefixes.is_empty());
        for bad in ["0", "65", "1000"] {
            let e = err(&format!("[core.sharing]\nmin_domains = {bad}\n"));
            assert!(e.contains("core.sharing.min_domains"), "{e}");
        }
        for good in ["1", "64"] {
            let c = Config::from_toml(&format!("[core.sharing]\nmin_domains = {good}\n")).unwrap();
            assert_eq!(c.core.sharing.min_domains.to_string(), good);
        }
        let e = err("[core.sharing]\nmin_domains = -1\n");
        assert!(e.contains("core.sharing.min_domains"), "{e}");
        let e = err("[core.sharing]\nwindow_days = 0\n");
        assert!(e.contains("core.sharing.window_days"), "{e}");
        let e = err("[core.sharing]\nwindow_days = 36\n");
        assert!(e.contains("core.window_days"), "{e}");
        let e = err("[core.exclude]\ncustomer_prefixes = [\"test-\", \"\"]\n");
        assert!(e.contains("core.exclude.customer_prefixes"), "{e}");
        let e = err("[core.exclude]\ncustomer_ids = [\"\"]\n");
        assert!(e.contains("core.exclude.customer_ids"), "{e}");
        let e = err("[core.exclude]\ncustomer_id = [\"qa\"]\n");
        assert!(e.contains("customer_id"), "{e}");
        let e = err("[core.notify]\nexpiry_notice_days = \"week\"\n");
        assert!(e.contains("core.notify.expiry_notice_days"), "{e}");
    }

    #[test]
    fn the_v2_fixture_configuration_loads() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/fixtures/v2/keypulse.toml"),
        )
        .unwrap();
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.core.exclude.customer_ids, ["qa"]);
        assert_eq!(c.core.exclude.customer_prefixes, ["test-", "internal-"]);
        assert!(c.core.exclude.excludes(Some("test-7")));
        assert!(!c.core.exclude.excludes(Some("qa2")));
    }

    #[test]
    fn changelog_and_transaction_keys_are_checked() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(
            c.kafka.changelog_topic_of("license-events"),
            "license-events-keypulse-changelog"
        );
        assert_eq!(c.kafka.transaction_timeout_ms, 10_000);
        assert_eq!(c.kafka.instance_id, None);
        let e = err("[kafka]\ninstance_id = \"a b\"\n");
        assert!(e.contains("kafka.instance_id"), "{e}");
        let e = err("[kafka]\ntopics = [\"a\", \"b\"]\nchangelog_topic = \"state\"\n");
        assert!(e.contains("kafka.changelog_topic"), "{e}");
        let e = err("[kafka]\nchangelog_topic = \"{topic} state\"\n");
        assert!(e.contains("kafka.changelog_topic"), "{e}");
        let e = err("[kafka]\nchangelog_topic = \"{topic}\"\n");
        assert!(e.contains("kafka.changelog_topic"), "{e}");
        let e = err("[kafka.changelog_topic_config]\n\"cleanup.policy\" = \"delete\"\n");
        assert!(
            e.contains("kafka.changelog_topic_config.\"cleanup.policy\""),
            "{e}"
        );
        let e = err("[kafka.changelog_topic_config]\n\"segment.bytes\" = \"big\"\n");
        assert!(e.contains("segment.bytes"), "{e}");
        let e = err("[kafka.changelog_topic_config]\n\"min.cleanable.dirty.ratio\" = \"2\"\n");
        assert!(e.contains("min.cleanable.dirty.ratio"), "{e}");
        let e = err("[kafka]\ntransaction_timeout_ms = 100\n");
        assert!(e.contains("kafka.transaction_timeout_ms"), "{e}");
        let ok = Config::from_toml(
            "[kafka]\ninstance_id = \"pod-7\"\nchangelog_topic = \"{group}.{topic}.state\"\n\
             [kafka.changelog_topic_config]\n\"segment.bytes\" = \"1048576\"\n",
        )
        .unwrap();
        assert_eq!(ok.kafka.changelog_topic_of("t"), "keypulse.t.state");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = vec![
            (
                "KEYPULSE__CORE__HEALTH__CHURN_RISK_BELOW".to_string(),
                "40".to_string(),
            ),
            (
                "KEYPULSE__KAFKA__BROKERS".to_string(),
                "10.0.0.1:9092,10.0.0.2:9092".to_string(),
            ),
            ("KEYPULSE_UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load_with_env(None, env).unwrap();
        assert_eq!(c.core.health.churn_risk_below, 40);
        assert_eq!(c.kafka.brokers, "10.0.0.1:9092,10.0.0.2:9092");
        let bad = vec![("KEYPULSE__CORE__NOPE".to_string(), "1".to_string())];
        let e = Config::load_with_env(None, bad).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }
}
