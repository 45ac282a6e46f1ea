//! Environment overrides and the wording of configuration errors.
//!
//! Owns how `KEYPULSE__SECTION__KEY=value` lands in the configuration table, and what a
//! configuration error may say. Guarantees:
//! - an override takes the type of the key it sets: it is set as a string first, and only
//!   where a string does not fit that key (a number, a bool, a list) is it read as a TOML
//!   value (`5`, `true`, `["a", "b"]`), or, for a list, as comma-separated strings; so
//!   `KEYPULSE__KAFKA__GROUP_ID=12345` is the string `"12345"`;
//! - an error names the key (and the variable, for an override), and never the value of a
//!   secret key ([`is_secret_key`]);
//! - a TOML syntax error names its line and column, without quoting the text.

use std::path::Path;

use super::{key_error, Config, ConfigError, ENV_PREFIX};

/// Deserializes `table` with the `KEYPULSE__` variables of `env` applied (not validated).
pub(super) fn deserialize_with_env(
    mut table: toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut overrides: Vec<Override> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .map(|(name, raw)| Override {
            path: name[ENV_PREFIX.len()..]
                .split("__")
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            name,
            raw,
            retyped: false,
        })
        .collect();
    overrides.sort_by(|a, b| a.name.cmp(&b.name));
    for o in &overrides {
        set_path(&mut table, &o.path, toml::Value::String(o.raw.clone()))
            .map_err(|p| key_error(o.describe(), p))?;
    }
    loop {
        let e = match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
            Ok(cfg) => return Ok(cfg),
            Err(e) => e,
        };
        let at = e.path().to_string();
        let wants_list = e.inner().to_string().contains("expected a sequence");
        let retry = overrides
            .iter_mut()
            .find(|o| !o.retyped && o.path.join(".") == at)
            .and_then(|o| {
                o.retyped = true;
                let value = match scalar(&o.raw) {
                    Some(v) => v,
                    // A list key given `a,b`: the comma-separated strings.
                    None if wants_list => toml::Value::Array(
                        o.raw
                            .split(',')
                            .map(|s| toml::Value::String(s.trim().to_string()))
                            .collect(),
                    ),
                    None => return None,
                };
                Some((o.path.clone(), value))
            });
        match retry {
            Some((path, value)) => {
                set_path(&mut table, &path, value).map_err(|p| key_error(at, p))?;
            }
            None => {
                let problem = problem_of(&at, &e.into_inner().to_string());
                let key = match overrides.iter().find(|o| o.path.join(".") == at) {
                    Some(o) => o.describe(),
                    None => at,
                };
                return Err(key_error(key, problem));
            }
        }
    }
}

/// Whether the value of the config key `path` (dotted) must never be printed: any key
/// whose last part mentions a password, SASL, a secret, a token or a key (so every
/// `kafka.properties` key such as `sasl.password` or `ssl.key.password`), case-insensitive.
pub fn is_secret_key(path: &str) -> bool {
    let last = match path.strip_prefix("kafka.properties.") {
        Some(property) => property,
        None => path.rsplit('.').next().unwrap_or(path),
    }
    .to_ascii_lowercase();
    ["password", "secret", "token", "key", "sasl"]
        .iter()
        .any(|word| last.contains(word))
}

/// A serde message without the offending value: `invalid type: string "x", expected u32`
/// becomes `invalid type: string, expected u32` (serde quotes the value after its kind).
fn without_value(message: &str) -> String {
    for head in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(head) {
            let (unexpected, expected) = match rest.find(", expected ") {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let kind = unexpected.split(['`', '"']).next().unwrap_or("").trim_end();
            return format!("{head}{kind}{expected}");
        }
    }
    if message.starts_with("unknown variant ") {
        // `unknown variant `x`, expected one of ...`: keep only what is expected.
        return match message.find(", expected ") {
            Some(i) => format!("unknown variant{}", &message[i..]),
            None => "unknown variant".to_string(),
        };
    }
    message.to_string()
}

/// The problem a deserialization error states for `key`: as serde says it, without the
/// value when the key is a secret.
fn problem_of(key: &str, message: &str) -> String {
    if is_secret_key(key) {
        without_value(message)
    } else {
        message.to_string()
    }
}

/// A TOML syntax error with its line and column (1-based), without quoting the text.
pub(super) fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message: e.message().trim_end().replace('\n', "; "),
    }
}

/// One `KEYPULSE__...` override.
struct Override {
    /// The variable's name.
    name: String,
    /// The key it sets.
    path: Vec<String>,
    /// The value as given.
    raw: String,
    /// Whether it was re-read as a TOML value (after a string did not fit its key).
    retyped: bool,
}

impl Override {
    /// `kafka.group_id (KEYPULSE__KAFKA__GROUP_ID)`.
    fn describe(&self) -> String {
        format!("{} ({})", self.path.join("."), self.name)
    }
}

/// `raw` read as a TOML value (a number, a bool, a date, an array), if it is one.
fn scalar(raw: &str) -> Option<toml::Value> {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
}

/// Sets `path` in `table` to `value`, creating the sections on the way.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn env_err(pairs: &[(&str, &str)]) -> String {
        Config::load_with_env(None, env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn overrides_take_the_type_of_their_key() {
        let c = Config::load_with_env(
            None,
            env(&[
                ("KEYPULSE__KAFKA__GROUP_ID", "12345"),
                ("KEYPULSE__EMAIL__SMTP__USERNAME", "1001"),
                ("KEYPULSE__KAFKA__PROPERTIES__FETCH.MAX.BYTES", "1048576"),
                ("KEYPULSE__KAFKA__PROPERTIES__ENABLE.AUTO.COMMIT", "true"),
                ("KEYPULSE__KAFKA__FOLD_WORKERS", "4"),
                ("KEYPULSE__CORE__TREND_GROWING_AT", "1.5"),
                ("KEYPULSE__CORE__NEAR_LIMIT_RATIO", "1"),
                ("KEYPULSE__KAFKA__TOPICS", r#"["a", "b"]"#),
                ("KEYPULSE__KAFKA__BROKERS", "10.0.0.1:9092"),
                ("KEYPULSE__EMAIL__TEMPLATES_DIR", "42"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.group_id, "12345");
        assert_eq!(c.email.smtp.username.as_deref(), Some("1001"));
        assert_eq!(c.kafka.properties["fetch.max.bytes"], "1048576");
        assert_eq!(c.kafka.properties["enable.auto.commit"], "true");
        assert_eq!(c.kafka.fold_workers, 4);
        assert_eq!(c.core.trend_growing_at, 1.5);
        assert_eq!(c.core.near_limit_ratio, 1.0);
        assert_eq!(c.kafka.topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(c.email.templates_dir, Some(PathBuf::from("42")));
        assert_eq!(c.kafka.brokers, "10.0.0.1:9092");
        let c = Config::load_with_env(
            None,
            env(&[("KEYPULSE__KAFKA__TOPICS", "license-events, more-events")]),
        )
        .unwrap();
        assert_eq!(c.kafka.topics, vec!["license-events", "more-events"]);
    }

    #[test]
    fn bad_overrides_name_the_key() {
        let e = env_err(&[("KEYPULSE__KAFKA__FOLD_WORKERS", "many")]);
        assert!(e.contains("kafka.fold_workers"), "{e}");
        assert!(e.contains("KEYPULSE__KAFKA__FOLD_WORKERS"), "{e}");
        let e = env_err(&[("KEYPULSE__EMAIL__SMTP__PORT", "99999")]);
        assert!(e.contains("email.smtp.port"), "{e}");
        let e = env_err(&[("KEYPULSE__CORE__NOPE", "1")]);
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn secret_values_never_appear_in_errors() {
        // A secret where a string is wanted is fine, whatever it looks like.
        let c = Config::load_with_env(
            None,
            env(&[("KEYPULSE__KAFKA__PROPERTIES__SASL.PASSWORD", "987654321")]),
        )
        .unwrap();
        assert_eq!(c.kafka.properties["sasl.password"], "987654321");
        // A secret of the wrong type: the error names the key, never the value.
        let file = "[kafka.properties]\n\"sasl.password\" = 987654321\n";
        let e = err(file);
        assert!(e.contains("kafka.properties.sasl.password"), "{e}");
        assert!(!e.contains("987654321"), "{e}");
        let e = err("[kafka.properties]\n\"ssl.Key.Password\" = [\"hunter2secret\"]\n");
        assert!(e.contains("ssl.Key.Password"), "{e}");
        assert!(!e.contains("hunter2secret"), "{e}");
        let e = err("[email.smtp]\npassword_env = 31337\n");
        assert!(e.contains("email.smtp.password_env"), "{e}");
        assert!(!e.contains("31337"), "{e}");
        for key in [
            "kafka.properties.sasl.password",
            "kafka.properties.sasl.oauthbearer.client.secret",
            "kafka.properties.ssl.key.password",
            "kafka.properties.SASL.USERNAME",
            "kafka.properties.my.Token",
            "email.smtp.password_file",
            "http.auth_token_env",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "kafka.properties.fetch.max.bytes",
            "kafka.group_id",
            "email.smtp.username",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = err("[core]\nwindow_days = 35\nseries_days = = 3\n");
        assert!(e.contains("line 3, column 15"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(&path, "[kafka\nbrokers = \"x\"\n").unwrap();
        let e = Config::load_with_env(Some(&path), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("k.toml") && e.contains("line 1, column"), "{e}");
    }

    #[test]
    fn a_missing_file_is_said_once() {
        let e =
            Config::load_with_env(Some(Path::new("/nonexistent/k.toml")), Vec::new()).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain.matches("No such file").count(), 1, "{chain}");
        assert!(chain.contains("/nonexistent/k.toml"), "{chain}");
    }
}
