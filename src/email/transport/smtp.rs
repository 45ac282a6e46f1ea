//! The SMTP client ([`SmtpClient`]): lettre's async SMTP connections on tokio, kept in a
//! small pool, with `TCP_NODELAY` sockets, and the sorting of SMTP failures
//! ([`classify_smtp`]).
//!
//! Guarantees: the security is explicit (`starttls` refuses a server that does not
//! upgrade, `tls` is TLS from the first byte, `plain` is clear text); failures before an
//! email's transaction are `Unreachable`, a 4xx or a reset in it `Transient`, a 5xx
//! `Permanent`; every step is bounded by `email.smtp.timeout_secs`.

use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use crate::email::render::RenderedEmail;

use super::{FailureKind, SendError};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// STARTTLS required: a server that does not offer it is not used.
    StartTls,
    /// Implicit TLS from the first byte.
    Tls,
    /// No TLS: a local sink only.
    Plain,
}

/// An SMTP client with a small pool of open connections.
///
/// Connections are made here rather than by lettre's transport so that their sockets get
/// `TCP_NODELAY` (plain and STARTTLS): lettre writes the message and its final `.` in two
/// writes, and with Nagle's algorithm the `.` waits for the peer's delayed ACK, about
/// 40 ms per email on Linux, which also widens the window in which a crash can lose the
/// record of an accepted email. Implicit TLS (`tls`) goes through lettre's own connect,
/// which does not set it.
pub struct SmtpClient {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) security: Security,
    pub(super) tls: Option<TlsParameters>,
    pub(super) credentials: Option<Credentials>,
    pub(super) timeout: Duration,
    pub(super) hello: ClientId,
    pub(super) idle: std::sync::Mutex<Vec<AsyncSmtpConnection>>,
    pub(super) pool_max: usize,
}

impl SmtpClient {
    fn unreachable(&self, what: &str, e: impl std::fmt::Display) -> SendError {
        SendError {
            kind: FailureKind::Unreachable,
            message: format!("{what} {}:{}: {e}", self.host, self.port),
        }
    }

    /// Opens, greets, secures and authenticates a connection. Any failure here is
    /// `Unreachable`: nothing about the email was said yet, so it uses up no attempt.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let t = self.timeout;
        let mut conn = match self.security {
            Security::Tls => tokio::time::timeout(
                t,
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(t),
                    &self.hello,
                    self.tls.clone(),
                    None,
                ),
            )
            .await
            .map_err(|_| self.unreachable("timed out connecting to", ""))?
            .map_err(|e| self.unreachable("cannot connect to", error_chain(&e)))?,
            Security::Plain | Security::StartTls => {
                let tcp = tokio::time::timeout(
                    t,
                    tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
                )
                .await
                .map_err(|_| self.unreachable("timed out connecting to", ""))?
                .map_err(|e| self.unreachable("cannot connect to", e))?;
                let _ = tcp.set_nodelay(true);
                let mut conn = tokio::time::timeout(
                    t,
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello),
                )
                .await
                .map_err(|_| self.unreachable("no greeting from", ""))?
                .map_err(|e| self.unreachable("greeting failed with", error_chain(&e)))?;
                if self.security == Security::StartTls {
                    if !conn.can_starttls() {
                        conn.abort().await;
                        return Err(self.unreachable(
                            "STARTTLS is required (email.smtp.security) and not offered by",
                            "refusing to send in clear text",
                        ));
                    }
                    let params = self.tls.clone().expect("TLS parameters for STARTTLS");
                    tokio::time::timeout(t, conn.starttls(params, &self.hello))
                        .await
                        .map_err(|_| self.unreachable("STARTTLS timed out with", ""))?
                        .map_err(|e| self.unreachable("STARTTLS failed with", error_chain(&e)))?;
                }
                conn
            }
        };
        if let Some(creds) = &self.credentials {
            tokio::time::timeout(t, conn.auth(&[Mechanism::Plain, Mechanism::Login], creds))
                .await
                .map_err(|_| self.unreachable("AUTH timed out with", ""))?
                .map_err(|e| self.unreachable("AUTH failed with", error_chain(&e)))?;
        }
        Ok(conn)
    }

    /// Sends one message on a pooled (or new) connection.
    pub async fn send(&self, email: &RenderedEmail) -> Result<(), SendError> {
        let pooled = self.idle.lock().expect("smtp pool").pop();
        let mut conn = match pooled {
            Some(mut c) => {
                // A server may have closed an idle connection: check it first.
                if tokio::time::timeout(self.timeout, c.test_connected())
                    .await
                    .unwrap_or(false)
                {
                    c
                } else {
                    self.connect().await?
                }
            }
            None => self.connect().await?,
        };
        let envelope = email.message.envelope().clone();
        let bytes = email.to_bytes();
        let result = tokio::time::timeout(self.timeout, conn.send(&envelope, &bytes)).await;
        match result {
            Ok(Ok(_)) => {
                if !conn.has_broken() {
                    let mut idle = self.idle.lock().expect("smtp pool");
                    if idle.len() < self.pool_max {
                        idle.push(conn);
                    }
                }
                Ok(())
            }
            Ok(Err(e)) => Err(classify_smtp(e)),
            Err(_) => Err(SendError {
                kind: FailureKind::Transient,
                message: format!(
                    "no answer from {}:{} within {:?} (email.smtp.timeout_secs)",
                    self.host, self.port, self.timeout
                ),
            }),
        }
    }
}

/// Sorts an SMTP error from an email's transaction (MAIL, RCPT, DATA) into transient and
/// permanent. (Failures before the transaction are `Unreachable`, see [`SmtpClient`].)
pub fn classify_smtp(e: lettre::transport::smtp::Error) -> SendError {
    let message = error_chain(&e);
    // 5xx, or an email this client cannot send (e.g. a non-ASCII address to a server
    // without SMTPUTF8): never retried. Everything else (4xx, a reset, a reply that does
    // not parse) may go through on another attempt.
    let kind = if e.is_permanent() || e.is_client() {
        FailureKind::Permanent
    } else {
        FailureKind::Transient
    };
    SendError { kind, message }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}
