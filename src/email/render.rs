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
//! - every template (built-in or replaced) is compiled and test-rendered when the
//!   [`Renderer`] is built, so a broken replacement fails at start, naming the file.

use std::path::Path;
use std::time::SystemTime;

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::config::EmailConfig;
use crate::core::codes::{ChurnSignal, HealthReason, Status, Trigger};
use crate::core::signals::{Facts, LicenseFacts};
use crate::core::time::format_rfc3339;
use crate::core::{Notification, NotificationKind};

/// The template files, by kind: `(subject, text, html)`.
pub const TEMPLATE_NAMES: [(NotificationKind, [&str; 3]); 3] = [
    (
        NotificationKind::Upgrade,
        ["upgrade.subject.txt", "upgrade.txt", "upgrade.html"],
    ),
    (
        NotificationKind::Renewal,
        ["renewal.subject.txt", "renewal.txt", "renewal.html"],
    ),
    (
        NotificationKind::ChurnWarning,
        [
            "churn_warning.subject.txt",
            "churn_warning.txt",
            "churn_warning.html",
        ],
    ),
];

const BUILT_IN: [(&str, &str); 9] = [
    (
        "upgrade.subject.txt",
        include_str!("templates/upgrade.subject.txt"),
    ),
    ("upgrade.txt", include_str!("templates/upgrade.txt")),
    ("upgrade.html", include_str!("templates/upgrade.html")),
    (
        "renewal.subject.txt",
        include_str!("templates/renewal.subject.txt"),
    ),
    ("renewal.txt", include_str!("templates/renewal.txt")),
    ("renewal.html", include_str!("templates/renewal.html")),
    (
        "churn_warning.subject.txt",
        include_str!("templates/churn_warning.subject.txt"),
    ),
    (
        "churn_warning.txt",
        include_str!("templates/churn_warning.txt"),
    ),
    (
        "churn_warning.html",
        include_str!("templates/churn_warning.html"),
    ),
];

/// The built-in source of a template, by file name.
pub fn built_in_template(name: &str) -> Option<&'static str> {
    BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Characters escaped in a URL query value: all but the RFC 3986 unreserved ones.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a notification could not be rendered. Every variant is counted as outcome `refused`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("refused: {field} contains CR or LF (header injection)")]
    HeaderInjection { field: &'static str },
    #[error("refused: {field} is not a valid email address: {reason}")]
    BadAddress { field: &'static str, reason: String },
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
        // Test-render every template with a sample of its kind, so that a replaced
        // template that names an unknown variable fails now rather than at send time.
        for sample in samples() {
            let mut ctx = r
                .context(&sample)
                .map_err(|e| RendererSetupError::Template {
                    path: "sample".into(),
                    message: e.to_string(),
                })?;
            let names = names_of(sample.kind);
            for name in names {
                ctx.0["subject"] = json!("sample subject");
                if let Err(e) = r.render_one(name, &ctx.0) {
                    let path = origin
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_else(|| name.to_string());
                    return Err(RendererSetupError::Template {
                        path,
                        message: e.to_string(),
                    });
                }
            }
        }
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

    fn render_one(&self, name: &str, ctx: &Value) -> Result<String, RenderError> {
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

    /// The template variables of `n` (see docs/EMAILS.md), and how many strings were cut.
    pub fn context(&self, n: &Notification) -> Result<(Value, u32), RenderError> {
        let mut cut = Capper {
            max: self.max_chars,
            count: 0,
        };
        let license_link = |base: &str| {
            n.license_key.as_deref().map(|k| {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}license={}", utf8_percent_encode(k, QUERY_VALUE))
            })
        };
        let mut ctx = json!({
            "kind": n.kind.as_str(),
            "to": cut.cap(&n.to),
            "customer_id": cut.cap(&n.customer_id),
            "license_key": n.license_key.as_deref().map(|k| cut.cap(k)),
            "at": format_rfc3339(n.at),
            "at_date": format_rfc3339(n.at).get(..10).unwrap_or_default(),
            "reasons": n.reasons.iter().map(|r| cut.cap(r)).collect::<Vec<_>>(),
            "subject": "",
        });
        let facts = n.facts.as_ref().ok_or(RenderError::NoFacts {
            kind: n.kind.as_str(),
        })?;
        let extra = match (n.kind, facts) {
            (
                NotificationKind::Upgrade,
                Facts::Upgrade {
                    plan,
                    domains_used,
                    domain_limit,
                    rate_limited_30d,
                    features_denied_30d,
                    invites_30d,
                },
            ) => json!({
                "plan": cut.cap(plan),
                "domains_used": domains_used,
                "domain_limit": domain_limit,
                "rate_limited_30d": rate_limited_30d,
                "features_denied_30d": features_denied_30d,
                "invites_30d": invites_30d,
                "triggers": n.reasons.iter().map(|r| json!({
                    "code": cut.cap(r),
                    "text": trigger_text(r, *domains_used, *domain_limit, *rate_limited_30d, *features_denied_30d, *invites_30d),
                })).collect::<Vec<_>>(),
                "upgrade_link": license_link(&self.upgrade_url).unwrap_or_else(|| self.upgrade_url.clone()),
            }),
            (NotificationKind::Renewal, Facts::Renewal { plan, expires_at }) => json!({
                "plan": cut.cap(plan),
                "expires_at": expires_at,
                "expires_on": expires_at.as_deref().and_then(|e| e.get(..10)),
                "renew_link": license_link(&self.renew_url).unwrap_or_else(|| self.renew_url.clone()),
            }),
            (
                NotificationKind::ChurnWarning,
                Facts::ChurnWarning {
                    score,
                    penalties,
                    licenses,
                    mrr_cents,
                },
            ) => {
                let signal = n.reasons.first().map(String::as_str).unwrap_or("unknown");
                json!({
                    "score": score,
                    "penalties": penalties.iter().map(|(r, p)| json!({"reason": cut.cap(r), "points": p})).collect::<Vec<_>>(),
                    "licenses": licenses.iter().map(|l: &LicenseFacts| json!({
                        "license_key": cut.cap(&l.license_key),
                        "plan": cut.cap(&l.plan),
                        "status": cut.cap(&l.status),
                        "mrr_cents": l.mrr_cents,
                        "mrr": format_money(l.mrr_cents as i128),
                    })).collect::<Vec<_>>(),
                    "mrr_cents": mrr_cents.to_string(),
                    "mrr": format_money(*mrr_cents as i128),
                    "signal": cut.cap(signal),
                    "signal_text": signal_text(signal),
                })
            }
            _ => {
                return Err(RenderError::NoFacts {
                    kind: n.kind.as_str(),
                })
            }
        };
        if let (Value::Object(base), Value::Object(more)) = (&mut ctx, extra) {
            base.extend(more);
        }
        Ok((ctx, cut.count))
    }
}

fn names_of(kind: NotificationKind) -> [&'static str; 3] {
    TEMPLATE_NAMES
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, n)| *n)
        .expect("every kind has templates")
}

fn read_override(dir: &Path, name: &str) -> Result<Option<String>, RendererSetupError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RendererSetupError::Template {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Cuts strings to `max` characters (the last one an ellipsis) and counts the cuts.
struct Capper {
    max: usize,
    count: u32,
}

impl Capper {
    fn cap(&mut self, s: &str) -> String {
        if s.chars().count() <= self.max {
            return s.to_string();
        }
        self.count += 1;
        let mut out: String = s.chars().take(self.max - 1).collect();
        out.push('…');
        out
    }
}

/// `123456` cents → `1,234.56`.
pub fn format_money(cents: i128) -> String {
    let neg = cents < 0;
    let c = cents.unsigned_abs();
    let whole = (c / 100).to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, ch) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{}{grouped}.{:02}", if neg { "-" } else { "" }, c % 100)
}

fn trigger_text(code: &str, used: u64, limit: u64, rl: u64, fd: u64, inv: u64) -> String {
    match Trigger::parse(code) {
        Some(Trigger::DomainLimitApproaching) => {
            format!("{used} of your {limit} domains are in use")
        }
        Some(Trigger::RateLimitFrequent) => format!("validations hit the rate limit {rl} times"),
        Some(Trigger::FeatureInterest) => {
            format!("features outside your plan were tried {fd} times")
        }
        Some(Trigger::TeamGrowth) => format!("{inv} team members were invited"),
        None => code.to_string(),
    }
}

fn signal_text(signal: &str) -> &'static str {
    match ChurnSignal::parse(signal) {
        Some(ChurnSignal::DomainDeactivation) => "a domain was removed",
        Some(ChurnSignal::ApiKeyDeletion) => "an API key was deleted",
        Some(ChurnSignal::DowngradeInquiry) => "the customer asked about downgrading",
        Some(ChurnSignal::CancellationTicket) => "a support ticket about cancellation was opened",
        Some(ChurnSignal::PaymentFailed) => "a payment failed",
        Some(ChurnSignal::ValidationDecline) => {
            "validations fell to half or less of the week before"
        }
        None => "churn signal",
    }
}

/// One notification of each kind, for test-rendering templates at start.
fn samples() -> Vec<Notification> {
    let base = |kind, license: Option<&str>, facts| Notification {
        kind,
        to: "someone@example.com".into(),
        customer_id: "cus_sample".into(),
        license_key: license.map(String::from),
        at: 0,
        reasons: vec![
            Trigger::DomainLimitApproaching.as_str().into(),
            Trigger::TeamGrowth.as_str().into(),
        ],
        facts: Some(facts),
    };
    vec![
        base(
            NotificationKind::Upgrade,
            Some("LK-SAMPLE"),
            Facts::Upgrade {
                plan: "starter".into(),
                domains_used: 4,
                domain_limit: 5,
                rate_limited_30d: 12,
                features_denied_30d: 4,
                invites_30d: 3,
            },
        ),
        base(
            NotificationKind::Renewal,
            Some("LK-SAMPLE"),
            Facts::Renewal {
                plan: "starter".into(),
                expires_at: Some("2026-01-01T00:00:00Z".into()),
            },
        ),
        base(
            NotificationKind::Renewal,
            Some("LK-SAMPLE"),
            Facts::Renewal {
                plan: "starter".into(),
                expires_at: None,
            },
        ),
        base(
            NotificationKind::ChurnWarning,
            None,
            Facts::ChurnWarning {
                score: 35,
                penalties: vec![
                    (HealthReason::Inactive7d.as_str().into(), 20),
                    (HealthReason::OpenTicket.as_str().into(), 10),
                ],
                licenses: vec![LicenseFacts {
                    license_key: "LK-SAMPLE".into(),
                    plan: "starter".into(),
                    status: Status::Active.as_str().into(),
                    mrr_cents: 4900,
                }],
                mrr_cents: 4900,
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::parse_rfc3339;

    fn cfg() -> EmailConfig {
        EmailConfig {
            reply_to: Some("Support <support@example.com>".into()),
            ..EmailConfig::default()
        }
    }

    fn upgrade(license: &str, plan: &str) -> Notification {
        Notification {
            kind: NotificationKind::Upgrade,
            to: "owner@customer.example".into(),
            customer_id: "cus_1".into(),
            license_key: Some(license.into()),
            at: parse_rfc3339("2026-10-03T10:00:00Z").unwrap(),
            reasons: vec![
                "domain_limit_approaching".into(),
                "rate_limit_frequent".into(),
            ],
            facts: Some(Facts::Upgrade {
                plan: plan.into(),
                domains_used: 9,
                domain_limit: 10,
                rate_limited_30d: 14,
                features_denied_30d: 2,
                invites_30d: 1,
            }),
        }
    }

    fn churn(customer: &str) -> Notification {
        Notification {
            kind: NotificationKind::ChurnWarning,
            to: "customer-success@example.com".into(),
            customer_id: customer.into(),
            license_key: None,
            at: parse_rfc3339("2026-10-11T00:00:00Z").unwrap(),
            reasons: vec!["validation_decline".into()],
            facts: Some(Facts::ChurnWarning {
                score: 45,
                penalties: vec![
                    ("inactive_7d".into(), 20),
                    ("validation_decline".into(), 20),
                ],
                licenses: vec![LicenseFacts {
                    license_key: "K1".into(),
                    plan: "pro".into(),
                    status: "active".into(),
                    mrr_cents: 123456,
                }],
                mrr_cents: 123456,
            }),
        }
    }

    fn parts(e: &RenderedEmail) -> (String, String, String) {
        let bytes = e.to_bytes();
        let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
        (
            msg.subject().unwrap_or_default().to_string(),
            msg.body_text(0).unwrap_or_default().to_string(),
            msg.body_html(0).unwrap_or_default().to_string(),
        )
    }

    #[test]
    fn upgrade_names_its_figures_and_link() {
        let r = Renderer::new(&cfg()).unwrap();
        let e = r.render(&upgrade("LK 1/ä&x", "pro")).unwrap();
        let (subject, text, html) = parts(&e);
        assert_eq!(
            subject,
            "Your pro license is outgrowing its plan: 9 of 10 domains in use"
        );
        for s in [&text, &html] {
            assert!(s.contains("14"), "{s}");
            assert!(
                s.contains("9</strong> of 10") || s.contains("9 of 10"),
                "{s}"
            );
        }
        assert!(
            text.contains("https://example.com/upgrade?license=LK%201%2F%C3%A4%26x"),
            "{text}"
        );
        assert!(
            html.contains(
                "href=\"https:&#x2f;&#x2f;example.com&#x2f;upgrade?license=LK%201%2F%C3%A4%26x\""
            ) || html.contains("href=\"https://example.com/upgrade?license=LK%201%2F%C3%A4%26x\""),
            "{html}"
        );
        assert_eq!(e.truncated, 0);
        let raw = String::from_utf8(e.to_bytes()).unwrap();
        assert!(
            raw.contains("Reply-To: Support <support@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("X-Keypulse-Kind: upgrade"), "{raw}");
    }

    #[test]
    fn message_id_is_stable_per_key() {
        let r = Renderer::new(&cfg()).unwrap();
        let a = r.render(&upgrade("K", "pro")).unwrap();
        let b = r.render(&upgrade("K", "pro")).unwrap();
        let c = r.render(&upgrade("K2", "pro")).unwrap();
        assert_eq!(a.message_id, b.message_id);
        assert_ne!(a.message_id, c.message_id);
        assert!(a.message_id.starts_with('<') && a.message_id.ends_with("@keypulse>"));
    }

    #[test]
    fn churn_warning_names_score_reasons_licenses_and_mrr() {
        let r = Renderer::new(&cfg()).unwrap();
        let e = r.render(&churn("cus_9")).unwrap();
        let (subject, text, html) = parts(&e);
        assert_eq!(
            subject,
            "Churn warning: customer cus_9 (health 45/100, validation_decline)"
        );
        for s in [&text, &html] {
            assert!(s.contains("inactive_7d"), "{s}");
            assert!(s.contains("-20"), "{s}");
            assert!(s.contains("K1"), "{s}");
            assert!(s.contains("1,234.56"), "{s}");
            assert!(s.contains("validation_decline"), "{s}");
        }
    }

    #[test]
    fn event_strings_are_html_escaped() {
        let r = Renderer::new(&cfg()).unwrap();
        let e = r
            .render(&upgrade("<script>alert(1)</script>", "<b>pro</b>"))
            .unwrap();
        let (_, text, html) = parts(&e);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<b>pro"), "{html}");
        // the plain-text part shows the string as it is
        assert!(text.contains("<script>alert(1)</script>"), "{text}");
    }

    #[test]
    fn line_breaks_in_headers_are_refused() {
        let r = Renderer::new(&cfg()).unwrap();
        let mut n = upgrade("K", "pro");
        n.to = "a@b.example\r\nBcc: victim@example.com".into();
        assert_eq!(
            r.render(&n).unwrap_err(),
            RenderError::HeaderInjection { field: "to" }
        );
        // the customer id is in the churn warning's subject
        let n = churn("cus\r\nBcc: victim@example.com");
        assert_eq!(
            r.render(&n).unwrap_err(),
            RenderError::HeaderInjection { field: "subject" }
        );
        let mut n = upgrade("K", "pro");
        n.to = "not an address".into();
        assert!(matches!(
            r.render(&n).unwrap_err(),
            RenderError::BadAddress { .. }
        ));
        // in the subject of an upgrade, the plan: refused too
        let n = upgrade("K", "pro\nBcc: x@example.com");
        assert_eq!(
            r.render(&n).unwrap_err(),
            RenderError::HeaderInjection { field: "subject" }
        );
    }

    #[test]
    fn long_strings_are_cut_and_counted() {
        let r = Renderer::new(&cfg()).unwrap();
        let long = "x".repeat(5000);
        let e = r.render(&upgrade(&long, "pro")).unwrap();
        assert_eq!(e.truncated, 1);
        let (_, text, _) = parts(&e);
        assert!(text.contains(&format!("{}…", "x".repeat(199))), "{text}");
        // the link keeps the whole key, so that it still works
        assert!(text.contains(&format!("license={long}")));
    }

    #[test]
    fn a_folder_replaces_templates_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("upgrade.subject.txt"),
            "Time to grow, {{ customer_id }}",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("upgrade.html"),
            "<p>{{ plan }} at {{ domains_used }}/{{ domain_limit }}</p>",
        )
        .unwrap();
        let c = EmailConfig {
            templates_dir: Some(dir.path().to_path_buf()),
            ..cfg()
        };
        let r = Renderer::new(&c).unwrap();
        let e = r.render(&upgrade("K", "<pro>")).unwrap();
        let (subject, text, html) = parts(&e);
        assert_eq!(subject, "Time to grow, cus_1");
        assert!(html.contains("<p>&lt;pro&gt; at 9/10</p>"), "{html}");
        // not replaced: the built-in text part
        assert!(text.contains("Rate-limit hits"), "{text}");
    }

    #[test]
    fn a_broken_replacement_fails_at_start_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("renewal.txt"), "{{ no_such_variable }}").unwrap();
        let c = EmailConfig {
            templates_dir: Some(dir.path().to_path_buf()),
            ..cfg()
        };
        let e = Renderer::new(&c).unwrap_err().to_string();
        assert!(e.contains("renewal.txt"), "{e}");
        std::fs::write(dir.path().join("renewal.txt"), "{% if %}").unwrap();
        let e = Renderer::new(&c).unwrap_err().to_string();
        assert!(e.contains("renewal.txt"), "{e}");
    }

    #[test]
    fn renewal_names_license_and_expiry() {
        let r = Renderer::new(&cfg()).unwrap();
        let n = Notification {
            kind: NotificationKind::Renewal,
            to: "a@b.example".into(),
            customer_id: "c".into(),
            license_key: Some("K9".into()),
            at: parse_rfc3339("2026-10-03T10:00:00Z").unwrap(),
            reasons: vec!["expired".into()],
            facts: Some(Facts::Renewal {
                plan: "team".into(),
                expires_at: Some("2026-09-30T00:00:00Z".into()),
            }),
        };
        let e = r.render(&n).unwrap();
        let (subject, text, html) = parts(&e);
        assert_eq!(
            subject,
            "Your team license has expired (2026-09-30): renew to keep it working"
        );
        for s in [&text, &html] {
            assert!(
                s.contains("K9") && s.contains("2026-09-30T00:00:00Z"),
                "{s}"
            );
        }
        assert!(
            text.contains("https://example.com/renew?license=K9"),
            "{text}"
        );
    }

    #[test]
    fn money() {
        assert_eq!(format_money(0), "0.00");
        assert_eq!(format_money(123456), "1,234.56");
        assert_eq!(format_money(-100000005), "-1,000,000.05");
    }
}
