//! Reading an event's bytes: [`decode`] and [`decode_bounded`], the JSON value classes
//! (`Raw`) and the known fields of an event object (`RawEvent`), each kept as found.
//!
//! Guarantees: never panics, whatever the bytes; bytes that are not UTF-8 anywhere are
//! `not_json`; JSON that is not an object is `not_object`; a repeated key counts by its
//! last occurrence; `-0` is the integer 0; a value serde_json cannot read makes the event
//! `not_json`; input longer than the bound is `too_large` and never parsed.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Event, RejectReason, Rejection};

mod validate;

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
    // As `serde_json::from_str` reads (the value, then nothing but whitespace after it),
    // into a record filled in place.
    let mut raw = RawEvent::default();
    let mut de = serde_json::Deserializer::from_str(text);
    match RawEventVisitor(&mut raw)
        .deserialize(&mut de)
        .and_then(|()| de.end())
    {
        Ok(()) => {}
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

        impl<'de> Visitor<'de> for RawEventVisitor<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let ev = self.0;
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
                Ok(())
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

/// Fills the `RawEvent` it holds, in place: the record of every known field is about half
/// a kilobyte, and returned by value it was copied at each layer of serde's calls (3–4 %
/// of a replay's CPU, `perf`, issue 10).
struct RawEventVisitor<'r, 'a>(&'r mut RawEvent<'a>);

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

impl<'de> DeserializeSeed<'de> for RawEventVisitor<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}
