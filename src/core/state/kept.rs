//! A decided notification as its customer's record keeps it: [`Kept`].
//!
//! Owns the kept form of a [`Notification`]. A state keeps every notification it decided
//! (the report lists them all, SPEC §3), so over months they outgrow the records they
//! belong to: on a 40-day log about one per license. The kept form leaves out what the
//! record already holds or what a byte says:
//! - the customer id (the record's own);
//! - the license key, inline when at most 24 bytes long (as license keys usually are);
//! - the reasons, which are code names, one byte each;
//! - a renewal's figures (the most common kind's), as a plan name held inline and an
//!   instant; any other kind's figures are boxed.
//!
//! Guarantees: [`Kept::notification`] with the owning customer's id gives back exactly the
//! notification kept, whatever it holds: a reason that is not a code name (or more of them
//! than fit), a long plan name or an expiry that does not read back as written is kept as
//! it was given.

use compact_str::CompactString;

use crate::codes::{ChurnSignal, NotificationKind, RenewalReason, Spec8Reason, Trigger};
use crate::signals::{Facts, Notification};
use crate::time::{format_rfc3339, parse_rfc3339, Micros, NEVER};

/// One notification without its customer id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kept {
    at: Micros,
    to: Box<str>,
    license_key: Option<CompactString>,
    reasons: Reasons,
    facts: KeptFacts,
    kind: NotificationKind,
}

/// The email's figures: a renewal's held inline, any other's boxed.
#[derive(Debug, Clone, PartialEq)]
enum KeptFacts {
    None,
    /// `Facts::Renewal` with a plan name short enough to be held inline, and its expiry
    /// as the instant it was formatted from (`NEVER`: none).
    Renewal {
        plan: CompactString,
        expires_at: Micros,
    },
    Other(Box<Facts>),
}

impl KeptFacts {
    fn new(facts: Option<Facts>) -> Self {
        match facts {
            None => Self::None,
            Some(Facts::Renewal { plan, expires_at }) => {
                // Held as an instant only when formatting it gives the same string back.
                let instant = match &expires_at {
                    None => Some(NEVER),
                    Some(s) => parse_rfc3339(s).filter(|&t| t != NEVER && format_rfc3339(t) == *s),
                };
                match instant {
                    Some(expires_at) if plan.len() <= INLINE_PLAN => Self::Renewal {
                        plan: CompactString::from(plan),
                        expires_at,
                    },
                    _ => Self::Other(Box::new(Facts::Renewal { plan, expires_at })),
                }
            }
            Some(f) => Self::Other(Box::new(f)),
        }
    }

    fn facts(&self) -> Option<Facts> {
        match self {
            Self::None => None,
            Self::Renewal { plan, expires_at } => Some(Facts::Renewal {
                plan: plan.to_string(),
                expires_at: (*expires_at != NEVER).then(|| format_rfc3339(*expires_at)),
            }),
            Self::Other(f) => Some((**f).clone()),
        }
    }
}

/// The longest plan name a renewal holds inline (a `CompactString`'s inline room).
const INLINE_PLAN: usize = 24;

/// Reasons held as codes (positions in [`reason_names`]) while every one is a code name
/// and they fit; else as the strings given.
#[derive(Debug, Clone, PartialEq)]
enum Reasons {
    Codes {
        len: u8,
        codes: [u8; CODES_MAX],
    },
    /// Boxed on purpose: a thin pointer keeps the enum at 16 bytes (a bare `Vec` is 24).
    #[allow(clippy::box_collection)]
    Strings(Box<Vec<String>>),
}

/// Reasons held as codes, at most (an upgrade has at most one per trigger).
const CODES_MAX: usize = 6;

/// Every reason a decision names, in one sequence: a reason's code is its position.
fn reason_names() -> impl Iterator<Item = &'static str> {
    let renewal = RenewalReason::ALL.into_iter().map(RenewalReason::as_str);
    let churn = ChurnSignal::ALL.into_iter().map(ChurnSignal::as_str);
    let upgrade = Trigger::ALL.into_iter().map(Trigger::as_str);
    let spec8 = Spec8Reason::ALL.into_iter().map(Spec8Reason::as_str);
    renewal.chain(churn).chain(upgrade).chain(spec8)
}

impl Reasons {
    fn new(reasons: Vec<String>) -> Self {
        let mut codes = [0u8; CODES_MAX];
        if reasons.len() <= CODES_MAX {
            let coded = reasons.iter().zip(codes.iter_mut()).all(|(r, code)| {
                match reason_names().position(|name| name == r) {
                    Some(i) => u8::try_from(i).map(|i| *code = i).is_ok(),
                    None => false,
                }
            });
            if coded {
                let len = reasons.len() as u8;
                return Self::Codes { len, codes };
            }
        }
        Self::Strings(Box::new(reasons))
    }

    fn to_strings(&self) -> Vec<String> {
        match self {
            Self::Codes { len, codes } => codes[..*len as usize]
                .iter()
                .filter_map(|&c| reason_names().nth(c as usize))
                .map(str::to_string)
                .collect(),
            Self::Strings(s) => s.to_vec(),
        }
    }
}

impl Kept {
    /// The kept form of `n` (its customer id is dropped: the record holding it has it).
    pub(crate) fn new(n: Notification) -> Self {
        Self {
            at: n.at,
            to: n.to.into_boxed_str(),
            license_key: n.license_key.map(CompactString::from),
            reasons: Reasons::new(n.reasons),
            facts: KeptFacts::new(n.facts),
            kind: n.kind,
        }
    }

    /// The notification, with the id of the customer whose record keeps it; the email's
    /// figures left out when `with_facts` is false (the report never reads them).
    pub(crate) fn notification(&self, customer_id: &str, with_facts: bool) -> Notification {
        Notification {
            kind: self.kind,
            to: self.to.to_string(),
            customer_id: customer_id.to_string(),
            license_key: self.license_key.as_ref().map(|k| k.to_string()),
            at: self.at,
            reasons: self.reasons.to_strings(),
            facts: if with_facts { self.facts.facts() } else { None },
        }
    }

    /// Heap bytes held outside the record (the recipient, a long key, uncoded reasons, a
    /// boxed figures' record; the strings inside those figures are not counted).
    pub(super) fn heap_bytes(&self) -> usize {
        let facts = match &self.facts {
            KeptFacts::Other(_) => size_of::<Facts>(),
            _ => 0,
        };
        let key = self
            .license_key
            .as_ref()
            .map_or(0, super::memory::heap_bytes);
        let reasons = match &self.reasons {
            Reasons::Codes { .. } => 0,
            Reasons::Strings(s) => s.iter().map(|r| r.len() + 24).sum::<usize>() + 24,
        };
        self.to.len() + key + reasons + facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(reasons: &[&str], key: Option<&str>) -> Notification {
        Notification {
            kind: NotificationKind::Upgrade,
            to: "owner@customer.example".into(),
            customer_id: "cus_1".into(),
            license_key: key.map(str::to_string),
            at: 1_788_048_000_123_456,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            facts: Some(Facts::Renewal {
                plan: "starter".into(),
                expires_at: None,
            }),
        }
    }

    #[test]
    fn gives_back_what_it_kept() {
        let long_key = "LK-a-license-key-longer-than-twenty-four-bytes";
        let triggers: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
        for (reasons, key) in [
            (vec!["expired"], Some("LK-1")),
            (triggers.clone(), Some(long_key)),
            (vec!["validation_decline"], None),
            (
                vec![
                    Spec8Reason::Revoked.as_str(),
                    Spec8Reason::PaymentFailed.as_str(),
                ],
                Some("K"),
            ),
            (vec!["not a code name", "expired"], Some("K")),
            (vec!["expired"; CODES_MAX + 1], Some("K")),
            (vec![], None),
        ] {
            let n = sample(&reasons, key);
            let kept = Kept::new(n.clone());
            assert_eq!(kept.notification("cus_1", true), n, "{reasons:?}");
            let mut bare = n.clone();
            bare.facts = None;
            assert_eq!(kept.notification("cus_1", false), bare);
        }
    }

    #[test]
    fn gives_back_the_figures_it_kept() {
        let renewal = |plan: &str, expires_at: Option<&str>| {
            Some(Facts::Renewal {
                plan: plan.into(),
                expires_at: expires_at.map(str::to_string),
            })
        };
        let cases = [
            // (figures, held inline as a renewal)
            (renewal("starter", None), true),
            (renewal("professional", Some("2026-10-01T00:00:00Z")), true),
            (
                renewal("starter", Some(&format_rfc3339(1_788_048_000_123_456))),
                true,
            ),
            // not as `format_rfc3339` writes it: kept as given
            (renewal("starter", Some("2026-10-01T02:00:00+02:00")), false),
            (renewal("starter", Some("not a time")), false),
            (renewal(&"p".repeat(INLINE_PLAN + 1), None), false),
            (
                Some(Facts::RevokedUse {
                    plan: "starter".into(),
                    status: "revoked".into(),
                    payment_failed: true,
                }),
                false,
            ),
            (None, false),
        ];
        for (facts, inline) in cases {
            let mut n = sample(&["expired"], Some("K"));
            n.kind = NotificationKind::Renewal;
            n.facts = facts;
            let kept = Kept::new(n.clone());
            assert_eq!(kept.notification("cus_1", true), n);
            assert_eq!(
                matches!(kept.facts, KeptFacts::Renewal { .. }),
                inline,
                "{n:?}"
            );
        }
    }

    #[test]
    fn code_names_are_coded_and_others_are_not() {
        let coded = Kept::new(sample(&["domain_limit_approaching", "team_growth"], None));
        assert!(matches!(coded.reasons, Reasons::Codes { len: 2, .. }));
        let other = Kept::new(sample(&["domain_limit_approaching", "typo"], None));
        assert!(matches!(other.reasons, Reasons::Strings(_)));
        // A name in two enums (the same string) has one code, its first position, and
        // that code gives the name back.
        let names: Vec<_> = reason_names().collect();
        assert!(names.len() <= u8::MAX as usize);
        for name in &names {
            let k = Kept::new(sample(&[name], None));
            assert!(matches!(k.reasons, Reasons::Codes { len: 1, .. }), "{name}");
            assert_eq!(k.reasons.to_strings(), vec![name.to_string()]);
        }
    }

    #[test]
    fn is_smaller_than_a_notification() {
        let (kept, full) = (size_of::<Kept>(), size_of::<Notification>());
        eprintln!("Kept {kept} Notification {full}");
        assert!(kept < full, "Kept {kept} >= Notification {full}");
        // A budget, as the records' (memory.rs): growing it must be a decision.
        assert!(kept <= 104, "Kept grew: {kept}");
    }
}
