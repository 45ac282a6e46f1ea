//! Transports: how a rendered email leaves the process.
//!
//! Owns the SMTP client ([`SmtpClient`]: lettre's async SMTP connections on tokio, kept in a
//! small pool, sockets with `TCP_NODELAY`), the `.eml` file writer and the dry run, and the
//! classification of their failures.
//! Guarantees:
//! - SMTP security is explicit: `starttls` (the default) refuses to send unless the
//!   server upgrades the connection with STARTTLS; `tls` is implicit TLS from the first
//!   byte (usually port 465); `plain` sends in clear text and is meant only for a local
//!   sink or relay on the same host or a trusted network;
//! - the password comes from the environment variable named by `email.smtp.password_env`
//!   or else from the file `email.smtp.password_file`; it is never logged or displayed;
//! - the file transport writes `<file_dir>/<hash of the idempotency key>.eml` through a
//!   temporary file and a rename, so a reader never sees half a file and writing the same
//!   email again replaces it instead of adding a second one;
//! - every failure is [`SendError`] with a [`FailureKind`]: `Unreachable` (no usable
//!   connection: refused, timed out, no greeting, STARTTLS missing or failed, AUTH
//!   refused; nothing about the email was said), `Transient` (a 4xx reply to the email, a
//!   reset or a timeout during its transaction: retry) or `Permanent` (a 5xx reply to the
//!   email: do not retry);
//! - every timeout is `email.smtp.timeout_secs`: connect, greeting, STARTTLS, AUTH, and
//!   the transaction of one email.
//!
//! The pieces: this file holds [`Transport`], its errors, the password and certificates,
//! and the `.eml` file writer; `smtp.rs` the SMTP client, its pool, and the sorting of
//! SMTP failures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::render::RenderedEmail;
use crate::config::EmailConfig;

mod smtp;
pub use smtp::{classify_smtp, Security, SmtpClient};

/// How a send failed, which decides what the mailer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection to the server: nothing was transmitted. Retried with backoff without
    /// using up the email's attempts (the email is not at fault).
    Unreachable,
    /// A 4xx reply, a reset or a timeout during the transaction. Retried up to
    /// `email.max_attempts`.
    Transient,
    /// A 5xx reply or a message the client cannot send. Recorded as failed, never retried.
    Permanent,
}

/// A failed send.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct SendError {
    pub kind: FailureKind,
    pub message: String,
}

/// Where emails go.
pub enum Transport {
    /// SMTP through lettre's async connections, pooled here.
    Smtp(SmtpClient),
    /// `.eml` files in a folder.
    File { dir: PathBuf },
    /// Decide and log, send nothing.
    DryRun,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(c) => write!(f, "Transport::Smtp({}:{} {:?})", c.host, c.port, c.security),
            Self::File { dir } => write!(f, "Transport::File({})", dir.display()),
            Self::DryRun => write!(f, "Transport::DryRun"),
        }
    }
}

/// Reads the SMTP password: the environment variable first, then the file.
fn smtp_password(cfg: &EmailConfig) -> anyhow::Result<Option<String>> {
    let smtp = &cfg.smtp;
    if !smtp.password_env.is_empty() {
        if let Ok(v) = std::env::var(&smtp.password_env) {
            if !v.is_empty() {
                return Ok(Some(v));
            }
        }
    }
    if let Some(path) = &smtp.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "config key `email.smtp.password_file`: cannot read {}: {e}",
                path.display()
            )
        })?;
        let pw = text.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            anyhow::bail!(
                "config key `email.smtp.password_file`: {} is empty",
                path.display()
            );
        }
        return Ok(Some(pw));
    }
    Ok(None)
}

impl Transport {
    /// Builds the transport named by `email.transport`. Makes no connection yet. Call it
    /// inside a tokio runtime (the SMTP pool starts a task).
    pub fn from_config(cfg: &EmailConfig) -> anyhow::Result<Self> {
        match cfg.transport.as_str() {
            "none" => Ok(Self::DryRun),
            "file" => {
                std::fs::create_dir_all(&cfg.file_dir).map_err(|e| {
                    anyhow::anyhow!(
                        "config key `email.file_dir`: cannot create {}: {e}",
                        cfg.file_dir.display()
                    )
                })?;
                Ok(Self::File {
                    dir: cfg.file_dir.clone(),
                })
            }
            "smtp" => Self::smtp(cfg),
            other => anyhow::bail!("config key `email.transport`: unknown transport `{other}`"),
        }
    }

    fn smtp(cfg: &EmailConfig) -> anyhow::Result<Self> {
        let s = &cfg.smtp;
        let security = match s.security.as_str() {
            "starttls" => Security::StartTls,
            "tls" => Security::Tls,
            "plain" => Security::Plain,
            other => anyhow::bail!(
                "config key `email.smtp.security`: `{other}` is not starttls, tls or plain"
            ),
        };
        let tls = match security {
            Security::Plain => None,
            _ => {
                let mut b = TlsParameters::builder(s.host.clone());
                if let Some(path) = &s.ca_file {
                    for cert in read_pem_certificates(path)? {
                        b = b.add_root_certificate(cert);
                    }
                }
                Some(b.build().map_err(|e| {
                    anyhow::anyhow!("config key `email.smtp.host`: no TLS parameters: {e}")
                })?)
            }
        };
        let password = smtp_password(cfg)?;
        let credentials = match (&s.username, password) {
            (Some(user), Some(pw)) => Some(Credentials::new(user.clone(), pw)),
            (Some(_), None) => anyhow::bail!(
                "config key `email.smtp.username` is set, but neither the environment variable \
                 `{}` (email.smtp.password_env) nor email.smtp.password_file gives a password",
                s.password_env
            ),
            (None, _) => None,
        };
        if security == Security::Plain {
            tracing::warn!(
                host = %s.host,
                port = s.port,
                "SMTP without TLS (email.smtp.security = \"plain\"): for a local sink only"
            );
        }
        Ok(Self::Smtp(SmtpClient {
            host: s.host.clone(),
            port: s.port,
            security,
            tls,
            credentials,
            timeout: Duration::from_secs(s.timeout_secs.max(1)),
            hello: ClientId::default(),
            idle: std::sync::Mutex::new(Vec::new()),
            pool_max: s.pool_max.max(1) as usize,
        }))
    }

    /// A file transport into `dir` (created if missing).
    pub fn file(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self::File { dir })
    }

    /// The name of the transport, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Smtp(_) => "smtp",
            Self::File { .. } => "file",
            Self::DryRun => "none",
        }
    }

    /// Sends one email. `key` is its idempotency key (names the file of the file transport).
    pub async fn send(&self, key: &str, email: &RenderedEmail) -> Result<(), SendError> {
        match self {
            Self::Smtp(c) => c.send(email).await,
            Self::File { dir } => {
                let bytes = email.to_bytes();
                let dir = dir.clone();
                let name = eml_file_name(key);
                tokio::task::spawn_blocking(move || write_atomic(&dir, &name, &bytes))
                    .await
                    .map_err(|e| SendError {
                        kind: FailureKind::Transient,
                        message: format!("file writer task: {e}"),
                    })?
                    .map_err(|e| SendError {
                        kind: FailureKind::Transient,
                        message: format!("cannot write the .eml file: {e}"),
                    })
            }
            Self::DryRun => {
                tracing::info!(
                    subject = %email.subject,
                    message_id = %email.message_id,
                    "email not sent (transport none: dry run)"
                );
                Ok(())
            }
        }
    }
}

/// Reads every certificate of a PEM file (`email.smtp.ca_file`).
fn read_pem_certificates(path: &Path) -> anyhow::Result<Vec<Certificate>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "config key `email.smtp.ca_file`: cannot read {}: {e}",
            path.display()
        )
    })?;
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    for block in text.split_inclusive(END).filter(|b| b.contains(END)) {
        let cert = Certificate::from_pem(block.trim().as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "config key `email.smtp.ca_file`: bad certificate in {}: {e}",
                path.display()
            )
        })?;
        out.push(cert);
    }
    if out.is_empty() {
        anyhow::bail!(
            "config key `email.smtp.ca_file`: no certificate in {}",
            path.display()
        );
    }
    Ok(out)
}

/// `<hex of a hash of the key>.eml`: stable, and free of the key's characters.
pub fn eml_file_name(key: &str) -> String {
    format!("{:032x}.eml", xxhash_rust::xxh3::xxh3_128(key.as_bytes()))
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_stable_and_safe() {
        let a = eml_file_name("upgrade|c1|K1|2026-10-03T10:00:00Z");
        assert_eq!(a, eml_file_name("upgrade|c1|K1|2026-10-03T10:00:00Z"));
        assert_ne!(a, eml_file_name("upgrade|c1|K2|2026-10-03T10:00:00Z"));
        assert!(a.ends_with(".eml") && a.len() == 36);
    }

    #[tokio::test]
    async fn starttls_is_the_default_and_credentials_are_required_when_a_user_is_set() {
        let mut cfg = EmailConfig {
            transport: "smtp".into(),
            ..EmailConfig::default()
        };
        assert_eq!(cfg.smtp.security, "starttls");
        cfg.smtp.username = Some("u".into());
        cfg.smtp.password_env = "KEYPULSE_TEST_NO_SUCH_VARIABLE_X".into();
        let e = Transport::from_config(&cfg).unwrap_err().to_string();
        assert!(e.contains("email.smtp.username"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\n").unwrap();
        cfg.smtp.password_file = Some(pw);
        let t = Transport::from_config(&cfg).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
