//! The template variables of a notification (see docs/EMAILS.md): [`Renderer::context`].
//!
//! Owns the mapping from a notification's kind and facts to the values its templates see,
//! the cutting of event-sourced strings (`Capper`) and the wording of triggers, churn
//! signals and amounts.
//! Guarantees: every event-sourced string is cut to `email.max_field_chars` characters
//! (with an ellipsis) and counted; a notification without facts of its kind is refused
//! ([`RenderError::NoFacts`]); links carry the license key percent-encoded.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::core::codes::{ChurnSignal, Trigger};
use crate::core::signals::{Facts, LicenseFacts};
use crate::core::time::format_rfc3339;
use crate::core::{Notification, NotificationKind};

use super::{RenderError, Renderer};

/// Characters escaped in a URL query value: all but the RFC 3986 unreserved ones.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Renderer {
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
            (
                NotificationKind::KeySharing,
                Facts::KeySharing {
                    plan,
                    domains,
                    distinct_domains,
                    mismatches,
                    window_days,
                },
            ) => json!({
                "plan": cut.cap(plan),
                "domains": domains.iter().map(|d| cut.cap(d)).collect::<Vec<_>>(),
                "distinct_domains": distinct_domains,
                "more_domains": (*distinct_domains as usize).saturating_sub(domains.len()),
                "mismatches": mismatches,
                "window_days": window_days,
            }),
            (
                NotificationKind::RevokedUse,
                Facts::RevokedUse {
                    plan,
                    status,
                    payment_failed,
                },
            ) => json!({
                "plan": cut.cap(plan),
                "status": cut.cap(status),
                "payment_failed": payment_failed,
                "payment_state": if *payment_failed { "latest payment failed" } else { "no failed payment" },
            }),
            (NotificationKind::ExpiringSoon, Facts::ExpiringSoon { plan, expires_at }) => json!({
                "plan": cut.cap(plan),
                "expires_at": expires_at,
                "expires_on": expires_at.get(..10).unwrap_or_default(),
                "renew_link": license_link(&self.renew_url).unwrap_or_else(|| self.renew_url.clone()),
            }),
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
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
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
