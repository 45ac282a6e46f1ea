//! Rendering: a decided [`Notification`] into a complete MIME email.
//!
//! Owns the templates (built-in defaults embedded from `src/email/templates/`, each
//! replaceable by a file of the same name in `email.templates_dir`), the template
//! variables, the headers and the refusal rules.
//! Guarantees:
//! - every email is `multipart/alternative` with a `text/plain` and a `text/html` part, and
//!   carries `From`, `To`, `Subject`, `Date` and `Message-ID` (plus `Reply-To` when
//!   configured); the Message-ID is a function of the idempotency key only, so a re-sent
//!   email carries the same one;
//! - `.html` templates are auto-escaped: every string that came from an event is
//!   HTML-escaped in the HTML part;
//! - a recipient, name or subject containing CR or LF is refused ([`RenderError::HeaderInjection`]),
//!   and a recipient that does not parse as a mailbox is refused ([`RenderError::BadAddress`]):
//!   no header injection is possible;
//! - every event-sourced string inserted in a template is cut to `email.max_field_chars`
//!   characters (with an ellipsis), and the number of cut strings is reported;
//! - an empty subject is refused ([`RenderError::EmptySubject`]);
//! - every template (built-in or replaced) is compiled, checked and test-rendered when the
//!   [`Renderer`] is built (`check.rs`), so a replacement that every email would be
//!   refused for fails at start, naming the file.
//!
//! The pieces: this file holds the errors, the headers and [`Renderer`] itself;
//! `templates.rs` the template files (built-in and replaced), `context.rs` the template
//! variables, `samples.rs` the sample notifications the start-up check renders, and
//! `tests.rs` the tests.

use std::time::SystemTime;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::{json, Value};

use crate::config::EmailConfig;
use crate::core::{Notification, NotificationKind};

// Paths relative to this file's directory, so that the fuzz target that includes this
// file with `#[path]` (fuzz/fuzz_targets/render.rs) finds them as the crate does.
#[path = "render/context.rs"]
mod context;
#[path = "render/samples.rs"]
mod samples;
#[path = "render/templates.rs"]
mod templates;
#[cfg(test)]
#[path = "render/tests.rs"]
mod tests;

pub use context::format_money;
pub(super) use samples::samples;
pub(super) use templates::names_of;
pub use templates::{built_in_template, TEMPLATE_NAMES};
use templates::{read_override, BUILT_IN};

/// Why a notification could not be rendered. Every variant is counted as outcome `refused`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("refused: {field} contains CR or LF (header injection)")]
    HeaderInjection { field: &'static str },
    #[error("refused: {field} is not a valid email address: {reason}")]
    BadAddress { field: &'static str, reason: String },
    #[error("refused: the subject is empty")]
    EmptySubject,
    #[error("refused: the notification carries no figures (facts) for a {kind} email")]
    NoFacts { kind: &'static str },
    #[error("template `{name}`: {message}")]
    Template { name: String, message: String },
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// A configuration or template problem found when building the [`Renderer`].
#[derive(Debug, thiserror::Error)]
pub enum RendererSetupError {
    #[error("config key `{key}`: {problem}")]
    Config { key: &'static str, problem: String },
    #[error("template file {path}: {message}")]
    Template { path: String, message: String },
}

/// One rendered email, ready for a transport.
#[derive(Debug, Clone)]
pub struct RenderedEmail {
    pub message: Message,
    /// `<...@keypulse>`, a function of the idempotency key.
    pub message_id: String,
    pub subject: String,
    /// How many event-sourced strings were cut to `email.max_field_chars`.
    pub truncated: u32,
}

impl RenderedEmail {
    /// The whole message as sent (RFC 5322, CRLF line ends).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.message.formatted()
    }
}

/// The Message-ID of a notification: a UUID v5 of its idempotency key, so that every
/// attempt and every re-decision of the same email carries the same id.
pub fn message_id(idempotency_key: &str) -> String {
    let ns = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:keypulse:notification");
    format!(
        "<{}@keypulse>",
        uuid::Uuid::new_v5(&ns, idempotency_key.as_bytes())
    )
}

/// `X-Keypulse-Kind: upgrade|renewal|churn_warning` (a fixed value, never event data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XKeypulseKind(pub NotificationKind);

impl Header for XKeypulseKind {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Keypulse-Kind")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        NotificationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .map(XKeypulseKind)
            .ok_or_else(|| format!("unknown kind {s:?}").into())
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.as_str().to_string())
    }
}

/// Renders notifications with the configured templates and headers.
pub struct Renderer {
    env: Environment<'static>,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    upgrade_url: String,
    renew_url: String,
    max_chars: usize,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .finish_non_exhaustive()
    }
}

fn parse_mailbox(key: &'static str, v: &str) -> Result<Mailbox, RendererSetupError> {
    if v.contains(['\r', '\n']) {
        return Err(RendererSetupError::Config {
            key,
            problem: "contains a line break".into(),
        });
    }
    v.parse::<Mailbox>()
        .map_err(|e| RendererSetupError::Config {
            key,
            problem: format!("`{v}` is not a mailbox: {e}"),
        })
}

impl Renderer {
    /// Builds the renderer: built-in templates, replaced by any file of the same name in
    /// `email.templates_dir`; every template compiled and test-rendered.
    pub fn new(cfg: &EmailConfig) -> Result<Self, RendererSetupError> {
        let from = parse_mailbox("email.from", &cfg.from)?;
        let reply_to = cfg
            .reply_to
            .as_deref()
            .map(|r| parse_mailbox("email.reply_to", r))
            .transpose()?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") || name.ends_with(".htm") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // Keep the text exactly as written (a final newline included).
        env.set_keep_trailing_newline(true);
        let mut origin: Vec<(String, String)> = Vec::new();
        for (name, source) in BUILT_IN {
            let (src, from_where) = match cfg.templates_dir.as_deref() {
                Some(dir) => match read_override(dir, name)? {
                    Some(text) => (text, dir.join(name).display().to_string()),
                    None => (source.to_string(), format!("built-in {name}")),
                },
                None => (source.to_string(), format!("built-in {name}")),
            };
            env.add_template_owned(name.to_string(), src).map_err(|e| {
                RendererSetupError::Template {
                    path: from_where.clone(),
                    message: e.to_string(),
                }
            })?;
            origin.push((name.to_string(), from_where));
        }
        let r = Self {
            env,
            from,
            reply_to,
            upgrade_url: cfg.upgrade_url.clone(),
            renew_url: cfg.renew_url.clone(),
            max_chars: cfg.max_field_chars.max(8),
        };
        // Check and test-render every template with samples of its kind, so that a
        // replacement that every email would fail on fails now (see `check.rs`).
        super::check::check_templates(&r, &origin)?;
        Ok(r)
    }

    /// Renders `n` as a complete email. Refuses header injection and bad addresses.
    pub fn render(&self, n: &Notification) -> Result<RenderedEmail, RenderError> {
        if n.to.contains(['\r', '\n']) {
            return Err(RenderError::HeaderInjection { field: "to" });
        }
        let to: Mailbox =
            n.to.trim()
                .parse()
                .map_err(|e: lettre::address::AddressError| RenderError::BadAddress {
                    field: "to",
                    reason: e.to_string(),
                })?;
        if to.name.as_deref().is_some_and(|s| s.contains(['\r', '\n'])) {
            return Err(RenderError::HeaderInjection { field: "to name" });
        }
        let (mut ctx, truncated) = self.context(n)?;
        let [subject_t, text_t, html_t] = names_of(n.kind);
        let subject_raw = self.render_one(subject_t, &ctx)?;
        let subject = subject_raw.trim().to_string();
        if subject.contains(['\r', '\n']) {
            return Err(RenderError::HeaderInjection { field: "subject" });
        }
        if subject.is_empty() {
            return Err(RenderError::EmptySubject);
        }
        ctx["subject"] = json!(subject);
        let text = self.render_one(text_t, &ctx)?;
        let html = self.render_one(html_t, &ctx)?;
        let key = n.idempotency_key();
        let message_id = message_id(&key);
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject.clone())
            .message_id(Some(message_id.clone()))
            .date(SystemTime::now())
            .header(XKeypulseKind(n.kind));
        if let Some(r) = &self.reply_to {
            b = b.reply_to(r.clone());
        }
        let message = b
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| RenderError::Build(e.to_string()))?;
        Ok(RenderedEmail {
            message,
            message_id,
            subject,
            truncated,
        })
    }

    /// The first variable that template `name` may look up and that neither `ctx` nor
    /// the environment's globals define (minijinja's static analysis: every branch).
    pub(super) fn undefined_variable(&self, name: &str, ctx: &Value) -> Option<String> {
        let t = self.env.get_template(name).ok()?;
        let mut vars: Vec<String> = t.undeclared_variables(true).into_iter().collect();
        vars.sort_unstable();
        vars.into_iter().find(|var| {
            let root = var.split('.').next().unwrap_or(var);
            let global = self.env.globals().any(|(g, _)| g == root);
            !global && !super::check::is_defined(ctx, var)
        })
    }

    pub(super) fn render_one(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| RenderError::Template {
                name: name.into(),
                message: e.to_string(),
            })?;
        t.render(ctx).map_err(|e| RenderError::Template {
            name: name.into(),
            message: format!("{e:#}"),
        })
    }
}
