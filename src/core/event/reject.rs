//! Why an event was rejected: [`RejectReason`] (its wire codes, `not_json` …) and
//! [`Rejection`] (the reason and the field at fault).
//!
//! Guarantees: [`RejectReason::ALL`] lists every reason in declaration order, so
//! [`RejectReason::index`] is its position there; the codes are the metric label values.

use std::fmt;

/// Why an event was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not valid JSON (or not UTF-8, or trailing bytes after the object).
    NotJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// A required field is absent or `null`.
    MissingField,
    /// A required string is empty.
    EmptyField,
    /// A field has the wrong JSON type (including a negative or fractional integer).
    WrongType,
    /// `type` names no known event type.
    UnknownType,
    /// `result` names no known validation result.
    UnknownResult,
    /// `category` names no known ticket category.
    UnknownCategory,
    /// A timestamp does not parse as RFC 3339 with an offset.
    BadTimestamp,
    /// Longer than `core.max_event_bytes` (never parsed).
    TooLarge,
}

impl RejectReason {
    /// Every reason, for metrics that pre-register their label values.
    pub const ALL: [RejectReason; 10] = [
        Self::NotJson,
        Self::NotObject,
        Self::MissingField,
        Self::EmptyField,
        Self::WrongType,
        Self::UnknownType,
        Self::UnknownResult,
        Self::UnknownCategory,
        Self::BadTimestamp,
        Self::TooLarge,
    ];

    /// Position in [`Self::ALL`] (declaration order, as the `codes!` enums' `index`).
    pub const fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::NotObject => "not_object",
            Self::MissingField => "missing_field",
            Self::EmptyField => "empty_field",
            Self::WrongType => "wrong_type",
            Self::UnknownType => "unknown_type",
            Self::UnknownResult => "unknown_result",
            Self::UnknownCategory => "unknown_category",
            Self::BadTimestamp => "bad_timestamp",
            Self::TooLarge => "too_large",
        }
    }
}

/// A rejected event: the reason and, where there is one, the field at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: Option<&'static str>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{} ({})", self.reason.as_str(), field),
            None => f.write_str(self.reason.as_str()),
        }
    }
}

impl std::error::Error for Rejection {}

pub(super) fn reject(reason: RejectReason, field: &'static str) -> Rejection {
    Rejection {
        reason,
        field: Some(field),
    }
}
