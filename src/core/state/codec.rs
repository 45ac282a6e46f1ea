//! The state codec: versioned records, and a whole [`PartitionState`] made of them.
//!
//! Owns the binary form of a state. It is written with `postcard` (serde-based, compact
//! varints, maintained; it replaced bincode, unmaintained since RUSTSEC-2025-0141), as
//! records that each start with the format version (a varint):
//! - a **customer record** ([`PartitionState::customer_record`]): one customer and its
//!   licenses, self-contained (plan names, not positions), so a changelog can key it by
//!   the customer id;
//! - a **partition record** ([`PartitionState::partition_record`]): the partition's own
//!   figures (per-day figures, the MRR book, the event counts);
//! - the **whole state** ([`PartitionState::to_bytes`]): the version, then the partition
//!   record and every customer record, each as a length-prefixed byte string.
//!
//! Guarantees: `from_bytes(to_bytes(s))` and `from_records` of `s`'s records fold on and
//! report exactly as `s` would (the indexes are rebuilt); a record of an unknown version
//! is refused with [`StateError::Version`], naming it; a change of form bumps
//! [`FORMAT_VERSION`] and keeps a reader for every older version (the golden files under
//! `tests/golden/` prove it); malformed bytes are an error, never a panic.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::wire::{CustomerV1, PartitionV1};
use super::PartitionState;

/// The format version this code writes. It reads every version up to this one.
pub const FORMAT_VERSION: u32 = 1;

/// A serialization or restore failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot encode state: {0}")]
    Encode(String),
    #[error("cannot decode state: {0}")]
    Decode(String),
    #[error("state record of format version {found}, this version reads 1 to {FORMAT_VERSION}")]
    Version { found: u32 },
}

/// A byte string inside a postcard document (length, then the bytes, borrowed on read).
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// `FORMAT_VERSION`, then `value`.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    let out = postcard::to_extend(&FORMAT_VERSION, Vec::new())
        .map_err(|e| StateError::Encode(e.to_string()))?;
    postcard::to_extend(value, out).map_err(|e| StateError::Encode(e.to_string()))
}

/// The version at the head of `bytes`, and the rest.
fn version(bytes: &[u8]) -> Result<(u32, &[u8]), StateError> {
    let (v, rest) = postcard::take_from_bytes::<u32>(bytes)
        .map_err(|e| StateError::Decode(format!("no format version: {e}")))?;
    match v {
        1..=FORMAT_VERSION => Ok((v, rest)),
        found => Err(StateError::Version { found }),
    }
}

/// The whole of `bytes` as one `T` (trailing bytes are an error).
fn decode_all<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StateError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| StateError::Decode(format!("{what}: {e}")))?;
    if !rest.is_empty() {
        return Err(StateError::Decode(format!(
            "{what}: {} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

/// A record of any version, read into the current form.
fn read_record<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StateError> {
    let (v, rest) = version(bytes)?;
    match v {
        // Version 1 is the current form; a later version adds its arm here and keeps this
        // one, converting from the older form.
        1 => decode_all(rest, what),
        found => Err(StateError::Version { found }),
    }
}

impl PartitionState {
    /// The record of the customer with id `id` (the no-customer group is `""`), if held.
    pub fn customer_record(&self, id: &str) -> Option<Result<Vec<u8>, StateError>> {
        let ci = self.find_customer(id)?;
        Some(encode(&self.customer_v1(ci)))
    }

    /// The record of the partition's own figures.
    pub fn partition_record(&self) -> Result<Vec<u8>, StateError> {
        encode(&self.partition_v1())
    }

    /// A state made of one partition record and any number of customer records.
    pub fn from_records<'a>(
        partition: &[u8],
        customers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, StateError> {
        let mut state = Self::new();
        state.set_partition_v1(read_record::<PartitionV1>(partition, "partition record")?);
        let customers = customers.into_iter();
        state.reserve_customers(customers.size_hint().0);
        for bytes in customers {
            state.add_customer_v1(read_record::<CustomerV1>(bytes, "customer record")?)?;
        }
        // The customer and plan tables were kept as the customers were added.
        state.index_licenses();
        Ok(state)
    }

    /// Serializes the whole state: its partition record and every customer record.
    pub fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        let partition = self.partition_record()?;
        let customers = (0..self.customers.len() as u32)
            .map(|ci| encode(&self.customer_v1(ci)))
            .collect::<Result<Vec<_>, _>>()?;
        let doc: (Bytes<'_>, Vec<Bytes<'_>>) = (
            Bytes(&partition),
            customers.iter().map(|c| Bytes(c)).collect(),
        );
        encode(&doc)
    }

    /// Restores a state written by [`Self::to_bytes`] (of this or an older version).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let (v, rest) = version(bytes)?;
        let (partition, customers): (Bytes<'_>, Vec<Bytes<'_>>) = match v {
            1 => decode_all(rest, "state")?,
            found => return Err(StateError::Version { found }),
        };
        Self::from_records(partition.0, customers.iter().map(|c| c.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CoreConfig;
    use crate::event::decode;

    /// A small state with every kind of record content: licenses with extras, tickets,
    /// invites, notifications, a duplicate id, a customer-less event.
    fn sample() -> (PartitionState, CoreConfig) {
        let cfg = CoreConfig::default();
        let mut s = PartitionState::new();
        let lines = [
            r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"a","license_key":"k1","plan":"pro","domain_limit":2,"mrr_cents":900,"email":"a@x.example"}"#,
            r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"b","license_key":"k1","plan":"starter","domain_limit":1,"mrr_cents":100,"email":"b@x.example","expires_at":"2026-10-20T00:00:00Z"}"#,
            r#"{"type":"domain.added","ts":"2026-10-02T00:00:00Z","customer_id":"a","license_key":"k1","domain":"a.example"}"#,
            r#"{"type":"domain.added","ts":"2026-10-02T00:00:01Z","customer_id":"a","license_key":"k1","domain":"b.example"}"#,
            r#"{"type":"license.validated","ts":"2026-10-03T00:00:00Z","customer_id":"a","license_key":"k1","result":"rate_limited","event_id":"e1"}"#,
            r#"{"type":"license.validated","ts":"2026-10-03T00:00:01Z","customer_id":"a","license_key":"k1","result":"rate_limited","event_id":"e1"}"#,
            r#"{"type":"feature.access_denied","ts":"2026-10-03T01:00:00Z","customer_id":"a","license_key":"k1","feature":"sso"}"#,
            r#"{"type":"team.member_invited","ts":"2026-10-04T00:00:00Z","customer_id":"a"}"#,
            r#"{"type":"support.ticket_opened","ts":"2026-10-04T00:00:00Z","customer_id":"b","ticket_id":"t1","category":"cancellation"}"#,
            r#"{"type":"license.validated","ts":"2026-10-21T00:00:00Z","customer_id":"b","license_key":"k1","result":"expired","country":"DE"}"#,
            r#"{"type":"license.validated","ts":"2026-10-21T00:00:00Z","license_key":"???","result":"invalid_format"}"#,
        ];
        for l in lines {
            let e = decode(l.as_bytes()).expect("sample event");
            s.apply(&e, &cfg, &mut Vec::new());
        }
        s.record_rejected();
        (s, cfg)
    }

    fn report(s: &PartitionState, cfg: &CoreConfig) -> String {
        serde_json::to_string(&s.report(s.watermark(), cfg)).unwrap()
    }

    #[test]
    fn whole_state_and_records_restore_to_the_same_report() {
        let (s, cfg) = sample();
        assert!(s.notifications().count() >= 2, "the sample decides emails");
        let from_bytes = PartitionState::from_bytes(&s.to_bytes().unwrap()).unwrap();
        assert_eq!(report(&from_bytes, &cfg), report(&s, &cfg));
        let records: Vec<Vec<u8>> = s
            .customer_ids()
            .map(|id| s.customer_record(id).unwrap().unwrap())
            .collect();
        let partition = s.partition_record().unwrap();
        let from_records =
            PartitionState::from_records(&partition, records.iter().map(|r| &r[..])).unwrap();
        assert_eq!(report(&from_records, &cfg), report(&s, &cfg));
        assert_eq!(from_records.sizes(), s.sizes());
    }

    #[test]
    fn every_record_starts_with_the_format_version() {
        let (s, _) = sample();
        for bytes in [
            s.to_bytes().unwrap(),
            s.partition_record().unwrap(),
            s.customer_record("a").unwrap().unwrap(),
        ] {
            assert_eq!(bytes[0] as u32, FORMAT_VERSION);
        }
        assert!(s.customer_record("nobody").is_none());
    }

    #[test]
    fn an_unknown_version_is_refused_by_name() {
        let (s, _) = sample();
        let mut bytes = s.to_bytes().unwrap();
        bytes[0] = 99;
        let e = PartitionState::from_bytes(&bytes).unwrap_err();
        assert!(matches!(e, StateError::Version { found: 99 }), "{e}");
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let (s, _) = sample();
        let bytes = s.to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(
                PartitionState::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            let _ = PartitionState::from_bytes(&flipped);
        }
    }

    #[test]
    fn a_customer_present_twice_is_refused() {
        let (s, _) = sample();
        let a = s.customer_record("a").unwrap().unwrap();
        let p = s.partition_record().unwrap();
        let e = PartitionState::from_records(&p, [&a[..], &a[..]]).unwrap_err();
        assert!(e.to_string().contains("present twice"), "{e}");
    }
}
