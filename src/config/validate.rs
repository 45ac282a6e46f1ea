//! The checks that deserialization alone cannot make: [`Config::validate`], and the keys
//! of the changelog and the transactional commits (`KafkaConfig::validate_eos`).
//!
//! Guarantees: a bad value is an error naming its key, never quoting a secret; Kafka
//! topic names and ids are checked against what Kafka accepts.

use super::{key_error, log_filter, Config, ConfigError, KafkaConfig};

impl Config {
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
