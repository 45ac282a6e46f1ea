//! Event decoding: bytes in, a typed [`Event`] or a typed [`Rejection`] out (SPEC §1).
//!
//! Owns the wire format. Every field is checked for presence, type and value; the first
//! problem found becomes the rejection, naming its reason and field. Strings borrow from
//! the input where they can (`Cow`), so a decode allocates only for escaped strings.
//! Guarantees: [`decode`] never panics, whatever the bytes; `null` in an optional field is
//! the same as its absence; unknown fields and fields foreign to the event's type are
//! ignored; when an object repeats a key, its last occurrence counts; `-0` is the integer
//! 0; input longer than `core.max_event_bytes` is `too_large` ([`decode_bounded`]) and
//! never parsed.
//!
//! The pieces: this file holds the typed event ([`Event`], [`EventKind`] and their
//! codes); `reject.rs` the rejection ([`RejectReason`], [`Rejection`]); `read.rs` the
//! reading of the bytes, and `read/validate.rs` the checks of every field.

use std::borrow::Cow;

use super::time::Micros;

mod read;
mod reject;
#[cfg(test)]
mod tests;

pub use read::{decode, decode_bounded};
pub use reject::{RejectReason, Rejection};

/// A decoded, fully validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Event time (UTC microseconds).
    pub ts: Micros,
    /// The producer's id, used for de-duplication.
    pub event_id: Option<Cow<'a, str>>,
    /// The paying account; `None` only for an `invalid_format` validation without one.
    pub customer_id: Option<Cow<'a, str>>,
    /// What happened.
    pub kind: EventKind<'a>,
}

/// The result of a `license.validated` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationResult {
    Valid,
    Expired,
    DomainMismatch,
    RateLimited,
    InvalidFormat,
    Revoked,
}

impl ValidationResult {
    /// Every result, in the order of the report's columns.
    pub const ALL: [ValidationResult; 6] = [
        Self::Valid,
        Self::Expired,
        Self::DomainMismatch,
        Self::RateLimited,
        Self::InvalidFormat,
        Self::Revoked,
    ];
    /// The five failure types, in the report's order.
    pub const FAILURES: [ValidationResult; 5] = [
        Self::Expired,
        Self::DomainMismatch,
        Self::RateLimited,
        Self::InvalidFormat,
        Self::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expired => "expired",
            Self::DomainMismatch => "domain_mismatch",
            Self::RateLimited => "rate_limited",
            Self::InvalidFormat => "invalid_format",
            Self::Revoked => "revoked",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The category of a support ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketCategory {
    Cancellation,
    Billing,
    Technical,
    Other,
}

impl TicketCategory {
    /// Every category.
    pub const ALL: [TicketCategory; 4] = [
        Self::Cancellation,
        Self::Billing,
        Self::Technical,
        Self::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancellation => "cancellation",
            Self::Billing => "billing",
            Self::Technical => "technical",
            Self::Other => "other",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind<'a> {
    Issued {
        license_key: Cow<'a, str>,
        plan: Cow<'a, str>,
        domain_limit: u64,
        mrr_cents: u64,
        email: Option<Cow<'a, str>>,
        expires_at: Option<Micros>,
    },
    Activated {
        license_key: Cow<'a, str>,
        domain: Option<Cow<'a, str>>,
    },
    Validated {
        license_key: Cow<'a, str>,
        result: ValidationResult,
        domain: Option<Cow<'a, str>>,
        country: Option<Cow<'a, str>>,
    },
    Renewed {
        license_key: Cow<'a, str>,
        expires_at: Option<Micros>,
    },
    Expired {
        license_key: Cow<'a, str>,
    },
    Revoked {
        license_key: Cow<'a, str>,
    },
    SubscriptionChanged {
        license_key: Cow<'a, str>,
        plan: Cow<'a, str>,
        domain_limit: u64,
        mrr_cents: u64,
    },
    SubscriptionCanceled {
        license_key: Cow<'a, str>,
    },
    DomainAdded {
        license_key: Cow<'a, str>,
        domain: Cow<'a, str>,
    },
    DomainRemoved {
        license_key: Cow<'a, str>,
        domain: Cow<'a, str>,
    },
    ApiKeyCreated {
        api_key_id: Cow<'a, str>,
    },
    ApiKeyDeleted {
        api_key_id: Cow<'a, str>,
    },
    DowngradeInquiry,
    TicketOpened {
        ticket_id: Cow<'a, str>,
        category: TicketCategory,
    },
    TicketClosed {
        ticket_id: Cow<'a, str>,
    },
    PaymentFailed,
    PaymentSucceeded,
    MemberInvited,
    FeatureDenied {
        license_key: Cow<'a, str>,
        feature: Cow<'a, str>,
    },
}

/// Every event type, as named on the wire, in SPEC order.
pub const EVENT_TYPES: [&str; 19] = [
    "license.issued",
    "license.activated",
    "license.validated",
    "license.renewed",
    "license.expired",
    "license.revoked",
    "subscription.changed",
    "subscription.canceled",
    "domain.added",
    "domain.removed",
    "api_key.created",
    "api_key.deleted",
    "plan.downgrade_inquiry",
    "support.ticket_opened",
    "support.ticket_closed",
    "payment.failed",
    "payment.succeeded",
    "team.member_invited",
    "feature.access_denied",
];

impl<'a> EventKind<'a> {
    /// The wire name of the type.
    pub fn type_name(&self) -> &'static str {
        EVENT_TYPES[self.type_index()]
    }

    /// Position of the type in [`EVENT_TYPES`].
    pub fn type_index(&self) -> usize {
        match self {
            Self::Issued { .. } => 0,
            Self::Activated { .. } => 1,
            Self::Validated { .. } => 2,
            Self::Renewed { .. } => 3,
            Self::Expired { .. } => 4,
            Self::Revoked { .. } => 5,
            Self::SubscriptionChanged { .. } => 6,
            Self::SubscriptionCanceled { .. } => 7,
            Self::DomainAdded { .. } => 8,
            Self::DomainRemoved { .. } => 9,
            Self::ApiKeyCreated { .. } => 10,
            Self::ApiKeyDeleted { .. } => 11,
            Self::DowngradeInquiry => 12,
            Self::TicketOpened { .. } => 13,
            Self::TicketClosed { .. } => 14,
            Self::PaymentFailed => 15,
            Self::PaymentSucceeded => 16,
            Self::MemberInvited => 17,
            Self::FeatureDenied { .. } => 18,
        }
    }

    /// The license key, for the types that carry one.
    pub fn license_key(&self) -> Option<&str> {
        self.license_key_text().map(|k| &**k)
    }

    /// The license key as decoded (borrowed from the event's bytes, or a copy when it had
    /// escapes), for the types that carry one.
    pub fn license_key_text(&self) -> Option<&Cow<'a, str>> {
        match self {
            Self::Issued { license_key, .. }
            | Self::Activated { license_key, .. }
            | Self::Validated { license_key, .. }
            | Self::Renewed { license_key, .. }
            | Self::Expired { license_key }
            | Self::Revoked { license_key }
            | Self::SubscriptionChanged { license_key, .. }
            | Self::SubscriptionCanceled { license_key }
            | Self::DomainAdded { license_key, .. }
            | Self::DomainRemoved { license_key, .. }
            | Self::FeatureDenied { license_key, .. } => Some(license_key),
            _ => None,
        }
    }
}
