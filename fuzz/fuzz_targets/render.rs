//! Fuzz target `render`: template rendering of a decided notification whose event-sourced
//! strings are hostile (CR/LF, HTML, quotes, very long, any Unicode), with the built-in
//! templates and the service's own renderer.
//!
//! The renderer's files (src/email/render.rs and check.rs) are compiled here as they are,
//! without the service crate: their only link to it is `crate::config::EmailConfig`, for
//! which this file has a stand-in with the fields they read (the service crate depends on
//! librdkafka, which the fuzz build must not pull in). If render.rs starts reading another
//! field, this build fails and the stand-in gets it.
//!
//! No panic on any input. When an email is rendered: its Message-ID is the function of the
//! idempotency key; it has exactly one From, To, Subject, Message-ID and X-Keypulse-Kind
//! header and a one-line, non-empty subject; the recipient is the notification's; the HTML
//! part contains no tag that came from an event (it is escaped); at most every event
//! string was cut. A refusal is one of the documented ones, never a template error.
#![no_main]
#![allow(dead_code)]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// The stand-in of the service's `crate::config`.
mod config {
    use std::path::PathBuf;

    /// The fields of the service's `EmailConfig` that the renderer reads.
    #[derive(Debug, Clone)]
    pub struct EmailConfig {
        pub from: String,
        pub reply_to: Option<String>,
        pub upgrade_url: String,
        pub renew_url: String,
        pub max_field_chars: usize,
        pub templates_dir: Option<PathBuf>,
    }

    impl Default for EmailConfig {
        fn default() -> Self {
            Self {
                from: "keypulse <keypulse@example.com>".into(),
                reply_to: Some("Customer Success <success@example.com>".into()),
                upgrade_url: "https://example.com/upgrade".into(),
                renew_url: "https://example.com/renew".into(),
                max_field_chars: 200,
                templates_dir: None,
            }
        }
    }
}

/// `crate::core` of the service is the core crate.
mod core {
    pub use keypulse_core::*;
}

// At the crate root, so that their `super::` (the service's `email` module) is found here.
#[path = "../../src/email/check.rs"]
mod check;
// Its re-exports (`format_money`, the template names) serve the service, not this target.
#[path = "../../src/email/render.rs"]
#[allow(unused_imports)]
mod render;

use keypulse_core::signals::{Facts, LicenseFacts};
use keypulse_core::{Notification, NotificationKind};
use render::{message_id, RenderError, Renderer};

/// A tag that must never reach the HTML part as a tag.
const TAG: &str = "<img src=x onerror=kp()>";

#[derive(Debug, Arbitrary)]
struct Input {
    kind: u8,
    to: String,
    /// Use `to` as given, else a valid address with `to` as its display name.
    raw_to: bool,
    customer_id: String,
    license_key: Option<String>,
    at: i64,
    reasons: Vec<String>,
    plan: String,
    status: String,
    other: String,
    domains: Vec<String>,
    numbers: [u64; 4],
    penalties: Vec<(String, u32)>,
    licenses: Vec<(String, String, String, u64)>,
    /// Append [`TAG`] to the customer id and the plan.
    inject: bool,
    /// A short `max_field_chars` (cuts almost everything).
    short: bool,
    with_facts: bool,
}

fn facts(kind: NotificationKind, i: &Input, plan: &str) -> Facts {
    let [a, b, c, d] = i.numbers;
    match kind {
        NotificationKind::Upgrade => Facts::Upgrade {
            plan: plan.to_string(),
            domains_used: a,
            domain_limit: b,
            rate_limited_30d: c,
            features_denied_30d: d,
            invites_30d: a ^ d,
        },
        NotificationKind::Renewal => Facts::Renewal {
            plan: plan.to_string(),
            expires_at: (!i.other.is_empty()).then(|| i.other.clone()),
        },
        NotificationKind::ChurnWarning => Facts::ChurnWarning {
            score: a as u32,
            penalties: i.penalties.clone(),
            licenses: i
                .licenses
                .iter()
                .map(|(k, p, s, m)| LicenseFacts {
                    license_key: k.clone(),
                    plan: p.clone(),
                    status: s.clone(),
                    mrr_cents: *m,
                })
                .collect(),
            mrr_cents: b as i64,
        },
        NotificationKind::KeySharing => Facts::KeySharing {
            plan: plan.to_string(),
            domains: i.domains.clone(),
            distinct_domains: a as u32,
            mismatches: b,
            window_days: c as u32,
        },
        NotificationKind::RevokedUse => Facts::RevokedUse {
            plan: plan.to_string(),
            status: i.status.clone(),
            payment_failed: a % 2 == 0,
        },
        NotificationKind::ExpiringSoon => Facts::ExpiringSoon {
            plan: plan.to_string(),
            expires_at: i.other.clone(),
        },
    }
}

/// The headers of a formatted message (up to the first empty line), unfolded.
fn header_names(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect()
}

fuzz_target!(|i: Input| {
    thread_local! {
        static RENDERERS: [Renderer; 2] = [
            Renderer::new(&config::EmailConfig::default()).expect("the built-in templates"),
            Renderer::new(&config::EmailConfig {
                max_field_chars: 8,
                ..Default::default()
            })
            .expect("the built-in templates"),
        ];
    }
    let kind = NotificationKind::ALL[i.kind as usize % NotificationKind::ALL.len()];
    let suffix = if i.inject { TAG } else { "" };
    let customer_id = format!("{}{suffix}", i.customer_id);
    let plan = format!("{}{suffix}", i.plan);
    let to = if i.raw_to {
        i.to.clone()
    } else {
        format!(
            "\"{}\" <someone@example.com>",
            i.to.replace(['"', '\\'], "")
        )
    };
    let n = Notification {
        kind,
        to: to.clone(),
        customer_id,
        license_key: i.license_key.clone(),
        // any instant the report can print (years 0000 to 9999)
        at: i.at.rem_euclid(315_569_520_000_000_000) - 62_167_219_200_000_000,
        reasons: i.reasons.clone(),
        facts: i.with_facts.then(|| facts(kind, &i, &plan)),
    };
    let strings = 3 + i.reasons.len() + i.domains.len() + 4 * i.licenses.len() + 4;
    RENDERERS.with(|r| {
        let renderer = &r[i.short as usize];
        match renderer.render(&n) {
            Ok(email) => {
                assert!(n.facts.is_some(), "rendered without facts");
                assert_eq!(email.message_id, message_id(&n.idempotency_key()));
                assert!(!email.subject.is_empty());
                assert!(!email.subject.contains(['\r', '\n']), "{:?}", email.subject);
                assert!(
                    (email.truncated as usize) <= strings + i.penalties.len(),
                    "{} cut of at most {strings}",
                    email.truncated
                );
                let bytes = email.to_bytes();
                let names = header_names(&bytes);
                for h in [
                    "from",
                    "to",
                    "subject",
                    "message-id",
                    "x-keypulse-kind",
                    "date",
                ] {
                    let count = names.iter().filter(|n| *n == h).count();
                    assert_eq!(count, 1, "{h} header {count} times in {names:?}");
                }
                let msg = mail_parser::MessageParser::default()
                    .parse(&bytes)
                    .expect("the message parses");
                assert_eq!(msg.to().map(|a| a.iter().count()), Some(1), "one recipient");
                let want: lettre::message::Mailbox = to.trim().parse().expect("it rendered");
                let got = msg.to().and_then(|a| a.first()).and_then(|a| a.address());
                assert_eq!(got, Some(want.email.to_string().as_str()), "the recipient");
                if let Some(html) = msg.body_html(0) {
                    assert!(!html.contains(TAG), "an event's tag reached the HTML part");
                }
            }
            Err(
                RenderError::HeaderInjection { .. }
                | RenderError::BadAddress { .. }
                | RenderError::EmptySubject
                | RenderError::NoFacts { .. },
            ) => {}
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    });
});
