//! The optional bearer token that guards the API, the dashboard's data and (configurably)
//! `/metrics`.
//!
//! Owns [`Auth`]: the token, read once at start from the environment variable named by
//! `http.auth_token_env` or else from `http.auth_token_file`, and the middleware that
//! checks `Authorization: Bearer <token>`.
//!
//! Guarantees: the comparison takes the same time whatever the bytes (`subtle`; only the
//! length may show); a missing or wrong token is a JSON 401 with `WWW-Authenticate:
//! Bearer`; the token never appears in a log line, an error or a `Debug` output; with no
//! token configured every request passes (and [`warn_if_exposed`] warns loudly at start
//! when the listener is reachable beyond loopback).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::config::HttpConfig;
use super::error::json_error;
use crate::config::ConfigError;

/// Shortest token accepted (bytes).
pub const MIN_TOKEN_LEN: usize = 16;

/// The configured token, if any.
#[derive(Clone, Default)]
pub struct Auth {
    token: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Auth {
    /// No token: everything is open.
    pub fn open() -> Self {
        Self::default()
    }

    /// A token given directly (tests, embedding).
    pub fn with_token(token: &str) -> Self {
        Self {
            token: Some(token.as_bytes().into()),
        }
    }

    /// Reads the token named by the configuration, with `env` standing for the
    /// environment. Errors name the key and never include the token.
    pub fn from_config(
        c: &HttpConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let (key, raw) = match env(&c.auth_token_env) {
            Some(v) => ("http.auth_token_env", v),
            None => match &c.auth_token_file {
                Some(path) => (
                    "http.auth_token_file",
                    std::fs::read_to_string(path).map_err(|e| ConfigError::Key {
                        key: "http.auth_token_file".into(),
                        problem: format!("cannot read {}: {}", path.display(), e.kind()),
                    })?,
                ),
                None => return Ok(Self::open()),
            },
        };
        let token = raw.trim();
        let problem = if token.len() < MIN_TOKEN_LEN {
            Some(format!(
                "the token must be at least {MIN_TOKEN_LEN} characters"
            ))
        } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Some("the token must not contain spaces or control characters".to_string())
        } else if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            Some("the token must be visible ASCII".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            let key = if key == "http.auth_token_env" {
                format!("http.auth_token_env (${})", c.auth_token_env)
            } else {
                key.to_string()
            };
            return Err(ConfigError::Key { key, problem });
        }
        Ok(Self::with_token(token))
    }

    /// Whether a token is configured.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `req` may pass.
    fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .map(|v| &v[7..])
        else {
            return false;
        };
        bool::from(given.ct_eq(token))
    }
}

/// Middleware: lets the request through when [`Auth`] allows it, else a JSON 401.
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if auth.allows(req.headers()) {
        return next.run(req).await;
    }
    let reason = if req.headers().contains_key(header::AUTHORIZATION) {
        "wrong token"
    } else {
        "missing token"
    };
    let mut r = json_error(
        StatusCode::UNAUTHORIZED,
        format!("unauthorized: {reason}; send `Authorization: Bearer <token>`"),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"keypulse\""),
    );
    r.into_response()
}

/// Logs a loud warning when `addr` is reachable beyond loopback and no token is set.
pub fn warn_if_exposed(auth: &Auth, key: &str, addr: SocketAddr) {
    if !auth.enabled() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "!!! {key} listens beyond loopback WITHOUT AUTHENTICATION: anyone who can reach \
             it reads the report (customer ids, recipient emails). Set a token in the \
             variable named by http.auth_token_env (or http.auth_token_file), or bind \
             127.0.0.1 !!!"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(file: Option<std::path::PathBuf>) -> HttpConfig {
        HttpConfig {
            auth_token_env: "T".into(),
            auth_token_file: file,
            ..HttpConfig::default()
        }
    }

    #[test]
    fn token_from_env_then_file_and_errors_never_show_it() {
        let none = Auth::from_config(&cfg(None), |_| None).unwrap();
        assert!(!none.enabled());
        let a =
            Auth::from_config(&cfg(None), |_| Some("s3cret-token-0123456789\n".into())).unwrap();
        let mut h = axum::http::HeaderMap::new();
        assert!(!a.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-token-0123456789".parse().unwrap(),
        );
        assert!(a.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret-token-012345678X".parse().unwrap(),
        );
        assert!(!a.allows(&h));
        assert!(!format!("{a:?}").contains("s3cret"));

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "from-the-file-0123456789\n").unwrap();
        let b = Auth::from_config(&cfg(Some(f.clone())), |_| None).unwrap();
        h.insert(
            header::AUTHORIZATION,
            "Bearer from-the-file-0123456789".parse().unwrap(),
        );
        assert!(b.allows(&h));

        let e = Auth::from_config(&cfg(None), |_| Some("short-secret".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("http.auth_token_env") && !e.contains("short-secret"),
            "{e}"
        );
        std::fs::write(&f, "has a gap in it 0123456789").unwrap();
        let e = Auth::from_config(&cfg(Some(f)), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("http.auth_token_file") && !e.contains("gap"),
            "{e}"
        );
        let e = Auth::from_config(&cfg(Some(dir.path().join("missing"))), |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("http.auth_token_file"), "{e}");
    }
}
