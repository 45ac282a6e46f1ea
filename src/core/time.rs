//! Event time: instants as microseconds since the Unix epoch, UTC days, and RFC 3339.
//!
//! Owns the one representation of time the core uses. An instant is an `i64` count of
//! microseconds (the precision of the timestamps the platform sends, with room for every
//! RFC 3339 year); a day is the `i32` number of whole UTC days since 1970-01-01.
//! Guarantees: parsing never panics, accepts every RFC 3339 offset and normalises to UTC,
//! and rejects leap seconds (`:60`) and timestamps without an offset.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};

/// An instant: microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;
/// A UTC calendar day: days since 1970-01-01.
pub type Day = i32;

/// Microseconds in one second.
pub const SECOND: Micros = 1_000_000;
/// Microseconds in one hour.
pub const HOUR: Micros = 3_600 * SECOND;
/// Microseconds in one UTC day.
pub const DAY: Micros = 24 * HOUR;

/// Marker for "no instant" in compact per-license fields.
pub const NEVER: Micros = i64::MIN;

/// The UTC day an instant falls on.
pub fn day_of(t: Micros) -> Day {
    t.div_euclid(DAY) as Day
}

/// The instant of midnight starting `day`.
pub fn midnight(day: Day) -> Micros {
    day as i64 * DAY
}

/// Parses an RFC 3339 timestamp with an offset. `None` when it does not parse, has no
/// offset, or names a leap second.
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    // RFC 3339 requires `YYYY-MM-DDTHH:MM:SS`; chrono also accepts a space separator,
    // which is allowed "by agreement" in the RFC, so we take it too.
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    if dt.nanosecond() >= 1_000_000_000 {
        return None; // chrono encodes a leap second as nanosecond >= 1e9
    }
    Some(dt.with_timezone(&Utc).timestamp_micros())
}

/// Formats an instant as RFC 3339 in UTC with `Z`, fractional digits only when needed.
pub fn format_rfc3339(t: Micros) -> String {
    match DateTime::<Utc>::from_timestamp_micros(t) {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => String::from("invalid"),
    }
}

/// Formats a day as `YYYY-MM-DD`.
pub fn format_day(day: Day) -> String {
    match DateTime::<Utc>::from_timestamp(day as i64 * 86_400, 0) {
        Some(dt) => dt.format("%Y-%m-%d").to_string(),
        None => String::from("invalid"),
    }
}

/// Converts a wall-clock `DateTime` into an instant.
pub fn from_datetime(dt: DateTime<Utc>) -> Micros {
    dt.timestamp_micros()
}

/// The naive UTC date-time of an instant, for templates.
pub fn to_naive(t: Micros) -> Option<NaiveDateTime> {
    DateTime::<Utc>::from_timestamp_micros(t).map(|d| d.naive_utc())
}

/// Serde helpers writing instants as RFC 3339 strings.
pub mod serde_ts {
    use super::*;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Micros, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(t: &Option<Micros>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format_rfc3339(*t)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_normalise_to_utc() {
        let a = parse_rfc3339("2026-10-01T09:20:00+02:00").unwrap();
        let b = parse_rfc3339("2026-10-01T07:20:00Z").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn fractions_keep_microseconds() {
        let t = parse_rfc3339("2026-10-02T10:05:00.250Z").unwrap();
        assert_eq!(t % SECOND, 250_000);
        assert_eq!(format_rfc3339(t), "2026-10-02T10:05:00.250Z");
    }

    #[test]
    fn rejects_leap_seconds_and_missing_offsets() {
        assert_eq!(parse_rfc3339("2016-12-31T23:59:60Z"), None);
        assert_eq!(parse_rfc3339("2026-10-01T09:00:00"), None);
        assert_eq!(parse_rfc3339("2026-13-01T09:00:00Z"), None);
        assert_eq!(parse_rfc3339(""), None);
    }

    #[test]
    fn days_before_the_epoch_floor() {
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY - 1), 0);
        assert_eq!(
            format_day(day_of(parse_rfc3339("2026-11-07T10:00:00Z").unwrap())),
            "2026-11-07"
        );
    }
}
