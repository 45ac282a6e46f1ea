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

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::time::{parse_rfc3339, Micros};

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

fn reject(reason: RejectReason, field: &'static str) -> Rejection {
    Rejection {
        reason,
        field: Some(field),
    }
}

/// Decodes one event of at most `max_bytes` bytes; a longer one is rejected as
/// [`RejectReason::TooLarge`] without being parsed. Never panics.
pub fn decode_bounded(bytes: &[u8], max_bytes: usize) -> Result<Event<'_>, Rejection> {
    if bytes.len() > max_bytes {
        return Err(Rejection {
            reason: RejectReason::TooLarge,
            field: None,
        });
    }
    decode(bytes)
}

/// Decodes one event, whatever its size. Never panics.
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, Rejection> {
    // An event is UTF-8 JSON (SPEC §1): bytes that are not UTF-8 anywhere in it, an
    // ignored field's value included, make it `not_json`. Checked once for the whole
    // input, which also spares serde_json its check of every string and raw value.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(Rejection {
            reason: RejectReason::NotJson,
            field: None,
        });
    };
    let raw: RawEvent<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            // A data error is only ever "not an object" at the top (every field value is
            // taken as it comes), but serde reports it as soon as it sees `[` or `1`:
            // whether the whole input is JSON at all decides between the two reasons.
            let reason = if e.is_data() && serde_json::from_str::<IgnoredAny>(text).is_ok() {
                RejectReason::NotObject
            } else {
                RejectReason::NotJson
            };
            return Err(Rejection {
                reason,
                field: None,
            });
        }
    };
    if raw.unreadable {
        return Err(Rejection {
            reason: RejectReason::NotJson,
            field: None,
        });
    }
    raw.validate()
}

/// Any JSON value, kept only as far as the checks need.
#[derive(Debug)]
enum Raw<'a> {
    Null,
    Bool,
    Str(Cow<'a, str>),
    Unsigned(u64),
    Negative,
    Float,
    Composite,
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Raw::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Raw::Bool)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Raw::Unsigned(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(if v >= 0 {
                    Raw::Unsigned(v as u64)
                } else {
                    Raw::Negative
                })
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Raw::Float)
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Raw::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Raw::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Raw::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Raw::Composite)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Raw::Composite)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> Raw<'a> {
    /// Classifies a field's value from its exact text, so that `-0` (which serde_json
    /// reads as the float -0.0, like `-0.0`) can be told apart from a fraction.
    fn of(raw: &'a RawValue) -> Result<Self, serde_json::Error> {
        let text = raw.get();
        Ok(match text.as_bytes().first() {
            Some(b'"') if !text.contains('\\') => {
                // Validated JSON: a string without escapes is its text between the quotes.
                Raw::Str(Cow::Borrowed(&text[1..text.len() - 1]))
            }
            Some(b'n') => Raw::Null,
            Some(b't' | b'f') => Raw::Bool,
            Some(b'[' | b'{') => Raw::Composite,
            _ if text == "-0" => Raw::Unsigned(0),
            // The usual integer, read without a second parser: valid JSON digits only (no
            // leading zero but `0` itself), and few enough that no u64 overflows.
            Some(b'1'..=b'9') if text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()) => {
                Raw::Unsigned(text.bytes().fold(0, |n, b| n * 10 + u64::from(b - b'0')))
            }
            Some(b'0') if text.len() == 1 => Raw::Unsigned(0),
            _ => serde_json::from_str(text)?,
        })
    }
}

macro_rules! raw_fields {
    ($($name:ident = $wire:literal),* $(,)?) => {
        /// The known fields of an event object, each as found (or absent).
        #[derive(Default, Debug)]
        #[allow(non_snake_case)]
        struct RawEvent<'a> {
            $($name: Option<Raw<'a>>,)*
            /// A known field held JSON text that serde_json cannot read as a value (a
            /// number beyond a double, `1e400`; a lone surrogate escape, `"\ud800"`): the
            /// event is `not_json`, as when serde_json parses such a value itself.
            unreadable: bool,
        }

        /// Which known field a key names.
        #[allow(non_camel_case_types)]
        enum FieldName { $($name,)* Unknown }

        impl FieldName {
            fn from_key(key: &str) -> Self {
                match key { $($wire => FieldName::$name,)* _ => FieldName::Unknown }
            }

            /// The fields that hold an integer (SPEC §1: `domain_limit`, `mrr_cents`).
            const fn is_integer(&self) -> bool {
                matches!(self, FieldName::domain_limit | FieldName::mrr_cents)
            }
        }

        impl<'de> Visitor<'de> for RawEventVisitor {
            type Value = RawEvent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut ev = RawEvent::default();
                while let Some(key) = map.next_key::<KeyName>()? {
                    match key.0 {
                        // A repeated key: the last occurrence counts (SPEC §1).
                        $(FieldName::$name if FieldName::$name.is_integer() => {
                            // Read from its exact text, to tell `-0` from a fraction.
                            let raw = map.next_value::<&'de RawValue>()?;
                            match Raw::of(raw) {
                                Ok(v) => ev.$name = Some(v),
                                Err(_) => ev.unreadable = true,
                            }
                        })*
                        // Any other field is read once, as it comes: a string without
                        // escapes borrowed. A value serde_json cannot read (a lone
                        // surrogate, a number beyond a double) fails the whole parse,
                        // which is `not_json` as `unreadable` is.
                        $(FieldName::$name => ev.$name = Some(map.next_value::<Raw<'de>>()?),)*
                        FieldName::Unknown => { map.next_value::<IgnoredAny>()?; }
                    }
                }
                Ok(ev)
            }
        }
    };
}

raw_fields!(
    type_ = "type",
    ts = "ts",
    event_id = "event_id",
    customer_id = "customer_id",
    license_key = "license_key",
    plan = "plan",
    domain_limit = "domain_limit",
    mrr_cents = "mrr_cents",
    email = "email",
    expires_at = "expires_at",
    domain = "domain",
    result = "result",
    country = "country",
    api_key_id = "api_key_id",
    ticket_id = "ticket_id",
    category = "category",
    feature = "feature",
);

struct RawEventVisitor;

/// A map key, matched against the known field names without allocating.
struct KeyName(FieldName);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName, E> {
                Ok(KeyName(FieldName::from_key(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for RawEvent<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawEventVisitor)
    }
}

fn req_str<'a>(v: Option<Raw<'a>>, field: &'static str) -> Result<Cow<'a, str>, Rejection> {
    match v {
        None | Some(Raw::Null) => Err(reject(RejectReason::MissingField, field)),
        Some(Raw::Str(s)) if s.is_empty() => Err(reject(RejectReason::EmptyField, field)),
        Some(Raw::Str(s)) => Ok(s),
        Some(_) => Err(reject(RejectReason::WrongType, field)),
    }
}

fn opt_str<'a>(v: Option<Raw<'a>>, field: &'static str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Str(s)) => Ok(Some(s)),
        Some(_) => Err(reject(RejectReason::WrongType, field)),
    }
}

fn req_uint(v: Option<Raw<'_>>, field: &'static str) -> Result<u64, Rejection> {
    match v {
        None | Some(Raw::Null) => Err(reject(RejectReason::MissingField, field)),
        Some(Raw::Unsigned(n)) => Ok(n),
        Some(_) => Err(reject(RejectReason::WrongType, field)),
    }
}

fn ts_of(s: &str, field: &'static str) -> Result<Micros, Rejection> {
    parse_rfc3339(s).ok_or(reject(RejectReason::BadTimestamp, field))
}

fn opt_ts(v: Option<Raw<'_>>, field: &'static str) -> Result<Option<Micros>, Rejection> {
    match opt_str(v, field)? {
        None => Ok(None),
        Some(s) => ts_of(&s, field).map(Some),
    }
}

impl<'a> RawEvent<'a> {
    fn validate(mut self) -> Result<Event<'a>, Rejection> {
        let ty = req_str(self.type_.take(), "type")?;
        let type_index = EVENT_TYPES
            .iter()
            .position(|t| *t == ty)
            .ok_or(reject(RejectReason::UnknownType, "type"))?;
        let ts = ts_of(&req_str(self.ts.take(), "ts")?, "ts")?;
        let event_id = opt_str(self.event_id.take(), "event_id")?;
        let customer_raw = self.customer_id.take();
        let mut customer_optional = false;
        let kind = self.kind(type_index, &mut customer_optional)?;
        let customer_id = if customer_optional {
            opt_str(customer_raw, "customer_id")?
        } else {
            Some(req_str(customer_raw, "customer_id")?)
        };
        Ok(Event {
            ts,
            event_id,
            customer_id,
            kind,
        })
    }

    fn kind(
        &mut self,
        type_index: usize,
        customer_optional: &mut bool,
    ) -> Result<EventKind<'a>, Rejection> {
        let key = |s: &mut Self| req_str(s.license_key.take(), "license_key");
        Ok(match type_index {
            0 => EventKind::Issued {
                license_key: key(self)?,
                plan: req_str(self.plan.take(), "plan")?,
                domain_limit: req_uint(self.domain_limit.take(), "domain_limit")?,
                mrr_cents: req_uint(self.mrr_cents.take(), "mrr_cents")?,
                email: opt_str(self.email.take(), "email")?,
                expires_at: opt_ts(self.expires_at.take(), "expires_at")?,
            },
            1 => EventKind::Activated {
                license_key: key(self)?,
                domain: opt_str(self.domain.take(), "domain")?,
            },
            2 => {
                let license_key = key(self)?;
                let result = req_str(self.result.take(), "result")?;
                let result = ValidationResult::parse(&result)
                    .ok_or(reject(RejectReason::UnknownResult, "result"))?;
                *customer_optional = result == ValidationResult::InvalidFormat;
                EventKind::Validated {
                    license_key,
                    result,
                    domain: opt_str(self.domain.take(), "domain")?,
                    country: opt_str(self.country.take(), "country")?,
                }
            }
            3 => EventKind::Renewed {
                license_key: key(self)?,
                expires_at: opt_ts(self.expires_at.take(), "expires_at")?,
            },
            4 => EventKind::Expired {
                license_key: key(self)?,
            },
            5 => EventKind::Revoked {
                license_key: key(self)?,
            },
            6 => EventKind::SubscriptionChanged {
                license_key: key(self)?,
                plan: req_str(self.plan.take(), "plan")?,
                domain_limit: req_uint(self.domain_limit.take(), "domain_limit")?,
                mrr_cents: req_uint(self.mrr_cents.take(), "mrr_cents")?,
            },
            7 => EventKind::SubscriptionCanceled {
                license_key: key(self)?,
            },
            8 => EventKind::DomainAdded {
                license_key: key(self)?,
                domain: req_str(self.domain.take(), "domain")?,
            },
            9 => EventKind::DomainRemoved {
                license_key: key(self)?,
                domain: req_str(self.domain.take(), "domain")?,
            },
            10 => EventKind::ApiKeyCreated {
                api_key_id: req_str(self.api_key_id.take(), "api_key_id")?,
            },
            11 => EventKind::ApiKeyDeleted {
                api_key_id: req_str(self.api_key_id.take(), "api_key_id")?,
            },
            12 => EventKind::DowngradeInquiry,
            13 => {
                let ticket_id = req_str(self.ticket_id.take(), "ticket_id")?;
                let category = req_str(self.category.take(), "category")?;
                EventKind::TicketOpened {
                    ticket_id,
                    category: TicketCategory::parse(&category)
                        .ok_or(reject(RejectReason::UnknownCategory, "category"))?,
                }
            }
            14 => EventKind::TicketClosed {
                ticket_id: req_str(self.ticket_id.take(), "ticket_id")?,
            },
            15 => EventKind::PaymentFailed,
            16 => EventKind::PaymentSucceeded,
            17 => EventKind::MemberInvited,
            _ => EventKind::FeatureDenied {
                license_key: key(self)?,
                feature: req_str(self.feature.take(), "feature")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reason_index_matches_all() {
        for (i, r) in RejectReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    fn reason(line: &str) -> (RejectReason, Option<&'static str>) {
        let r = decode(line.as_bytes()).unwrap_err();
        (r.reason, r.field)
    }

    #[test]
    fn decodes_an_issue_with_offset_time() {
        let e = decode(br#"{"type":"license.issued","ts":"2026-10-01T11:00:00+02:00","customer_id":"c1","license_key":"K1","plan":"starter","domain_limit":3,"mrr_cents":2900,"email":null,"extra":{"a":[1,2]}}"#).unwrap();
        assert_eq!(e.customer_id.as_deref(), Some("c1"));
        assert_eq!(e.ts, parse_rfc3339("2026-10-01T09:00:00Z").unwrap());
        match e.kind {
            EventKind::Issued {
                domain_limit,
                mrr_cents,
                email,
                ..
            } => {
                assert_eq!((domain_limit, mrr_cents, email), (3, 2900, None));
            }
            other => panic!("wrong kind {other:?}"),
        }
    }

    #[test]
    fn rejects_with_typed_reasons() {
        assert_eq!(reason("not json"), (RejectReason::NotJson, None));
        assert_eq!(reason("[1,2,3]"), (RejectReason::NotObject, None));
        assert_eq!(reason(r#"{"a":1} x"#), (RejectReason::NotJson, None));
        assert_eq!(
            reason(r#"{"ts":"2026-10-25T10:00:00Z","customer_id":"c5"}"#),
            (RejectReason::MissingField, Some("type"))
        );
        assert_eq!(
            reason(r#"{"type":5}"#),
            (RejectReason::WrongType, Some("type"))
        );
        assert_eq!(
            reason(r#"{"type":"license.exploded","ts":"2026-10-25T10:00:00Z"}"#),
            (RejectReason::UnknownType, Some("type"))
        );
        assert_eq!(
            reason(r#"{"type":"payment.failed","ts":"yesterday","customer_id":"c"}"#),
            (RejectReason::BadTimestamp, Some("ts"))
        );
        assert_eq!(
            reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00","customer_id":"c"}"#),
            (RejectReason::BadTimestamp, Some("ts"))
        );
        assert_eq!(
            reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":""}"#),
            (RejectReason::EmptyField, Some("customer_id"))
        );
        assert_eq!(
            reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z"}"#),
            (RejectReason::MissingField, Some("customer_id"))
        );
        assert_eq!(
            reason(
                r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","event_id":7}"#
            ),
            (RejectReason::WrongType, Some("event_id"))
        );
        let issued = |limit: &str| {
            format!(
                r#"{{"type":"license.issued","ts":"2026-10-25T10:00:00Z","customer_id":"c","license_key":"k","plan":"p","domain_limit":{limit},"mrr_cents":1}}"#
            )
        };
        assert_eq!(
            reason(&issued("-1")),
            (RejectReason::WrongType, Some("domain_limit"))
        );
        assert_eq!(
            reason(&issued("3.0")),
            (RejectReason::WrongType, Some("domain_limit"))
        );
        assert_eq!(
            reason(&issued("1e2")),
            (RejectReason::WrongType, Some("domain_limit"))
        );
        assert_eq!(
            reason(&issued("\"3\"")),
            (RejectReason::WrongType, Some("domain_limit"))
        );
        assert_eq!(
            reason(&issued("null")),
            (RejectReason::MissingField, Some("domain_limit"))
        );
        assert!(decode(issued("18446744073709551615").as_bytes()).is_ok());
        assert_eq!(
            reason(
                r#"{"type":"license.validated","ts":"2026-10-25T10:00:00Z","customer_id":"c","license_key":"k","result":"maybe"}"#
            ),
            (RejectReason::UnknownResult, Some("result"))
        );
        assert_eq!(
            reason(
                r#"{"type":"support.ticket_opened","ts":"2026-10-25T10:00:00Z","customer_id":"c","ticket_id":"t","category":"rage"}"#
            ),
            (RejectReason::UnknownCategory, Some("category"))
        );
    }

    #[test]
    fn invalid_format_needs_no_customer_but_others_do() {
        let ok = decode(br#"{"type":"license.validated","ts":"2026-10-25T11:00:00Z","license_key":"???","result":"invalid_format","country":"BR"}"#).unwrap();
        assert_eq!(ok.customer_id, None);
        assert_eq!(
            reason(
                r#"{"type":"license.validated","ts":"2026-10-25T11:00:00Z","license_key":"k","result":"valid"}"#
            ),
            (RejectReason::MissingField, Some("customer_id"))
        );
    }

    #[test]
    fn escaped_strings_are_owned_and_exact() {
        let e = decode(
            br#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c\u00e9\n"}"#,
        )
        .unwrap();
        assert_eq!(e.customer_id.as_deref(), Some("c\u{e9}\n"));
    }

    #[test]
    fn leap_second_is_a_bad_timestamp() {
        assert_eq!(
            reason(r#"{"type":"payment.failed","ts":"2016-12-31T23:59:60Z","customer_id":"c"}"#),
            (RejectReason::BadTimestamp, Some("ts"))
        );
    }

    #[test]
    fn unreadable_values_are_not_json() {
        let line = r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","domain_limit":1e400}"#;
        assert_eq!(reason(line), (RejectReason::NotJson, None));
        let line = r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","email":"\ud800"}"#;
        assert_eq!(reason(line), (RejectReason::NotJson, None));
        // ...but in an unknown field, skipped unread, as before.
        for x in ["1e400", r#""\ud800""#] {
            let line = format!(
                r#"{{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","x":{x}}}"#
            );
            assert!(decode(line.as_bytes()).is_ok(), "{line}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_not_json_wherever_they_are() {
        let base = r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c""#;
        let ok = format!("{base},\"x\":\"ab\"}}");
        assert!(decode(ok.as_bytes()).is_ok());
        // In an ignored field, a known field, a key, and between tokens.
        for (at, bad) in [
            (",\"x\":\"a", &b"\xff\xfe\"}"[..]),
            (",\"email\":\"a", b"\xc3\"}"),
            (",\"", b"\xed\xa0\x80\":1}"),
            ("", b" \x80}"),
        ] {
            let mut line = format!("{base}{at}").into_bytes();
            line.extend_from_slice(bad);
            assert_eq!(
                decode(&line).map_err(|r| (r.reason, r.field)),
                Err((RejectReason::NotJson, None)),
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn integers_read_exactly_at_every_length() {
        let limit_of = |text: &str| match decode(issued(text, "0").as_bytes()).map(|e| e.kind) {
            Ok(EventKind::Issued { domain_limit, .. }) => Ok(domain_limit),
            Ok(other) => panic!("wrong kind {other:?}"),
            Err(r) => Err(r.reason),
        };
        for n in [
            0u64,
            7,
            10,
            999,
            1_000_000_007,
            9_999_999_999_999_999_999,
            u64::MAX,
        ] {
            assert_eq!(limit_of(&n.to_string()), Ok(n), "{n}");
        }
        // One past u64 is not an integer the event can hold; leading zeros are not JSON.
        assert_eq!(
            limit_of("18446744073709551616"),
            Err(RejectReason::WrongType)
        );
        assert_eq!(limit_of("007"), Err(RejectReason::NotJson));
        assert_eq!(limit_of("1e2"), Err(RejectReason::WrongType));
    }

    #[test]
    fn truncated_json_is_not_json() {
        for line in ["[", "[1,", "{", "{\"type\":", "[1,2", "\"abc", "-"] {
            assert_eq!(reason(line), (RejectReason::NotJson, None), "{line}");
        }
        for line in ["[]", "[1,2,3]", "1", "\"abc\"", "null", "true", "-0"] {
            assert_eq!(reason(line), (RejectReason::NotObject, None), "{line}");
        }
    }

    fn issued(limit: &str, mrr: &str) -> String {
        format!(
            r#"{{"type":"license.issued","ts":"2026-10-25T10:00:00Z","customer_id":"c","license_key":"k","plan":"p","domain_limit":{limit},"mrr_cents":{mrr}}}"#
        )
    }

    #[test]
    fn minus_zero_is_the_integer_zero() {
        let line = issued("-0", " -0 ");
        let e = decode(line.as_bytes()).unwrap();
        match e.kind {
            EventKind::Issued {
                domain_limit,
                mrr_cents,
                ..
            } => assert_eq!((domain_limit, mrr_cents), (0, 0)),
            other => panic!("wrong kind {other:?}"),
        }
        for bad in ["-0.0", "-0e0", "-0E1", "-1", "0.0", "\"-0\""] {
            assert_eq!(
                reason(&issued(bad, "0")),
                (RejectReason::WrongType, Some("domain_limit")),
                "{bad}"
            );
        }
        // `-0` where a string is asked is still the wrong type.
        assert_eq!(
            reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":-0}"#),
            (RejectReason::WrongType, Some("customer_id"))
        );
    }

    #[test]
    fn a_repeated_key_counts_its_last_occurrence() {
        let e = decode(br#"{"type":"payment.failed","type":"payment.succeeded","ts":"2026-10-25T10:00:00Z","customer_id":"a","customer_id":"b"}"#).unwrap();
        assert_eq!(e.kind, EventKind::PaymentSucceeded);
        assert_eq!(e.customer_id.as_deref(), Some("b"));
        // The last occurrence counts even when an earlier one was valid and it is not.
        assert_eq!(
            reason(
                r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","ts":"soon","customer_id":"c"}"#
            ),
            (RejectReason::BadTimestamp, Some("ts"))
        );
        // ... and an earlier invalid one is forgotten.
        let line = issued("3", "1").replace(
            r#""domain_limit":3"#,
            r#""domain_limit":"x","domain_limit":3"#,
        );
        let e = decode(line.as_bytes()).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Issued {
                domain_limit: 3,
                ..
            }
        ));
    }

    #[test]
    fn too_large_is_never_parsed() {
        let line = issued("1", "1");
        assert!(decode_bounded(line.as_bytes(), line.len()).is_ok());
        let r = decode_bounded(line.as_bytes(), line.len() - 1).unwrap_err();
        assert_eq!((r.reason, r.field), (RejectReason::TooLarge, None));
        // Not parsed: garbage of that size is too large, not `not_json`.
        let r = decode_bounded(&[0xff; 100], 64).unwrap_err();
        assert_eq!(r.reason, RejectReason::TooLarge);
    }

    #[test]
    fn strings_keep_their_escapes_and_borrow_otherwise() {
        let e = decode(br#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"plain","event_id":"a\"b"}"#).unwrap();
        assert!(matches!(e.customer_id, Some(Cow::Borrowed("plain"))));
        assert_eq!(e.event_id.as_deref(), Some("a\"b"));
    }
}
