//! What the benches share: the "bare serde_json" decode baseline (`BareEvent`) and the
//! deterministic generator of their logs (`Rng`, xorshift). Included with `#[path]` by
//! `benches/fold.rs` (root crate) and by `decode_floor` and `gen_log` (this crate's
//! examples), so the decode floor of `scripts/bench` and the criterion bench measure the
//! same struct. Not an example of its own (a folder without `main.rs`).
#![allow(dead_code)]

use std::borrow::Cow;

use serde::Deserialize;

/// The event's fields as a plain serde struct: the baseline "bare serde_json" decode.
#[allow(dead_code)]
#[derive(Deserialize)]
pub struct BareEvent<'a> {
    #[serde(borrow, rename = "type")]
    ty: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    customer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    license_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    plan: Option<Cow<'a, str>>,
    domain_limit: Option<u64>,
    mrr_cents: Option<u64>,
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
    #[serde(borrow)]
    domain: Option<Cow<'a, str>>,
    #[serde(borrow)]
    result: Option<Cow<'a, str>>,
    #[serde(borrow)]
    country: Option<Cow<'a, str>>,
}

/// A small deterministic generator (xorshift), so every run folds the same log.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
