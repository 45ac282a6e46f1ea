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
//!
//! The pieces: this file holds [`Config`], its errors and its loading; `sections.rs` the
//! Kafka, email, SMTP and log sections with their defaults; `validate.rs` the checks that
//! deserialization alone cannot make; `overrides.rs` the environment overrides.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::CoreConfig;
pub use crate::http::config::HttpConfig;

mod overrides;
pub use overrides::is_secret_key;
mod sections;
mod validate;
pub use sections::{EmailConfig, KafkaConfig, LogConfig, SmtpConfig};

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
