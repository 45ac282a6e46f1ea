//! The `[http]` section of the configuration: listeners, connection limits, authentication.
//!
//! Owns [`HttpConfig`] (re-exported as `crate::config::HttpConfig`) and its validation.
//! Guarantees: every problem is a [`ConfigError`] naming its key (`http.max_connections:
//! ...`); the token itself is never part of the configuration (only the name of the
//! variable or file that holds it), so no error can echo it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// The HTTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the main listener (API, dashboard, and the probes too).
    pub bind: String,
    /// How often the served report and gauges are recomputed, in milliseconds.
    pub refresh_ms: u64,
    /// Address of the admin listener: `/healthz`, `/readyz` and `/metrics` only, with its
    /// own accept loop and connection cap, so probes answer while the main listener is
    /// saturated. Unset: no admin listener.
    pub admin_bind: Option<String>,
    /// A client must send its whole request head within this many milliseconds (HTTP/1;
    /// also the longest wait for the next request on a kept-alive connection).
    pub header_read_timeout_ms: u64,
    /// A connection that moves no byte and has no request in progress for this many
    /// milliseconds is closed (HTTP/1 and HTTP/2).
    pub idle_timeout_ms: u64,
    /// Open connections on the main listener; beyond it, new connections wait in the
    /// kernel's listen backlog until one closes.
    pub max_connections: usize,
    /// Requests handled at once on the main listener; beyond it, requests wait.
    pub max_concurrent_requests: usize,
    /// Open connections on the admin listener.
    pub admin_max_connections: usize,
    /// Name of the environment variable holding the bearer token.
    pub auth_token_env: String,
    /// File holding the bearer token (used when the variable is unset).
    pub auth_token_file: Option<PathBuf>,
    /// Whether `/metrics` also needs the token (it never does when no token is set).
    pub metrics_require_auth: bool,
    /// The URL the group's other instances reach this one at (SPEC §8.8), e.g.
    /// `http://10.1.2.3:9464` (in Kubernetes, the pod IP). Default: `http://` and the
    /// bound address of `http.bind`.
    pub advertised_url: Option<String>,
    /// Name of the environment variable holding the instances' shared peer token.
    pub peer_token_env: String,
    /// File holding the peer token (used when the variable is unset). With neither, the
    /// internal endpoint answers loopback peers only.
    pub peer_token_file: Option<PathBuf>,
    /// How long a group answer waits for a peer, in milliseconds.
    pub peer_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9464".into(),
            refresh_ms: 1000,
            admin_bind: None,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            max_concurrent_requests: 64,
            admin_max_connections: 16,
            auth_token_env: "KEYPULSE_HTTP_TOKEN".into(),
            auth_token_file: None,
            metrics_require_auth: false,
            advertised_url: None,
            peer_token_env: "KEYPULSE_PEER_TOKEN".into(),
            peer_token_file: None,
            peer_timeout_ms: 2_000,
        }
    }
}

fn key_error(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        problem: problem.into(),
    }
}

fn address(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse::<SocketAddr>()
        .map_err(|_| key_error(key, format!("`{v}` is not an address like 127.0.0.1:9464")))
}

impl HttpConfig {
    /// Checks the values that deserialization alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let main = address("http.bind", &self.bind)?;
        if let Some(admin) = &self.admin_bind {
            let a = address("http.admin_bind", admin)?;
            if a == main && a.port() != 0 {
                return Err(key_error(
                    "http.admin_bind",
                    "must differ from http.bind (the admin listener is a second port)",
                ));
            }
        }
        for (key, v) in [
            ("http.refresh_ms", self.refresh_ms),
            ("http.peer_timeout_ms", self.peer_timeout_ms),
            ("http.header_read_timeout_ms", self.header_read_timeout_ms),
            ("http.idle_timeout_ms", self.idle_timeout_ms),
            ("http.max_connections", self.max_connections as u64),
            (
                "http.max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            (
                "http.admin_max_connections",
                self.admin_max_connections as u64,
            ),
        ] {
            if v == 0 {
                return Err(key_error(key, "must be at least 1"));
            }
        }
        // tokio's semaphore holds at most usize::MAX >> 3 permits; far beyond any real
        // file-descriptor limit anyway.
        for (key, v) in [
            ("http.max_connections", self.max_connections),
            ("http.max_concurrent_requests", self.max_concurrent_requests),
            ("http.admin_max_connections", self.admin_max_connections),
        ] {
            if v > 1_000_000 {
                return Err(key_error(key, "must be at most 1000000"));
            }
        }
        if self.auth_token_env.is_empty()
            || !self
                .auth_token_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(key_error(
                "http.auth_token_env",
                "must be the name of an environment variable (letters, digits, `_`)",
            ));
        }
        if let Some(u) = &self.advertised_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(key_error(
                    "http.advertised_url",
                    format!("`{u}` must start with http:// or https://"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn every_new_key_is_named_in_its_error() {
        for (text, key) in [
            (
                "[http]\nheader_read_timeout_ms = 0\n",
                "http.header_read_timeout_ms",
            ),
            ("[http]\nidle_timeout_ms = 0\n", "http.idle_timeout_ms"),
            ("[http]\nmax_connections = 0\n", "http.max_connections"),
            ("[http]\nmax_connections = -1\n", "http.max_connections"),
            (
                "[http]\nmax_concurrent_requests = 0\n",
                "http.max_concurrent_requests",
            ),
            (
                "[http]\nadmin_max_connections = 0\n",
                "http.admin_max_connections",
            ),
            ("[http]\nadmin_bind = \"nowhere\"\n", "http.admin_bind"),
            (
                "[http]\nbind = \"127.0.0.1:9464\"\nadmin_bind = \"127.0.0.1:9464\"\n",
                "http.admin_bind",
            ),
            ("[http]\nauth_token_env = \"\"\n", "http.auth_token_env"),
            ("[http]\nauth_token_env = \"A B\"\n", "http.auth_token_env"),
            (
                "[http]\nmetrics_require_auth = \"yes\"\n",
                "http.metrics_require_auth",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(key), "{text:?}: {e}");
        }
        let c = Config::from_toml(
            "[http]\nadmin_bind = \"127.0.0.1:9465\"\nmax_connections = 10\nmetrics_require_auth = true\n",
        )
        .unwrap();
        assert_eq!(c.http.admin_bind.as_deref(), Some("127.0.0.1:9465"));
        assert_eq!(c.http.max_connections, 10);
        assert!(c.http.metrics_require_auth);
    }
}
