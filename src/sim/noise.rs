//! What makes the simulated stream as messy as a real one: repeated `event_id`s, neighbours
//! swapped in arrival order, `invalid_format` validations (some without a customer), and a
//! few malformed messages (not JSON, cut short, unknown type, bad timestamp, missing field,
//! negative number).
//!
//! Owns the noise rates ([`NoiseConfig`]) and applies them to one model day of drafts at a
//! time. Guarantees: draws only from the day's own random stream (deterministic); a
//! duplicate is a byte-identical copy placed 1–3 messages after the original, so the fold
//! (which remembers ids for an hour of the customer's clock) recognises it; a swap moves an
//! event by one place only.

use super::rng::Rng;
use super::wire::{Body, Fields};
use super::Draft;
use crate::core::time::{format_rfc3339, Micros, DAY};
use crate::core::ValidationResult;

/// Noise rates, each per generated event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseConfig {
    /// Share of events sent twice.
    pub duplicate: f64,
    /// Share of events swapped with their successor.
    pub reorder: f64,
    /// `invalid_format` validations added, per event.
    pub invalid_format: f64,
    /// Malformed messages added, per event.
    pub malformed: f64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig {
            duplicate: 0.004,
            reorder: 0.01,
            invalid_format: 0.004,
            malformed: 0.0004,
        }
    }
}

impl NoiseConfig {
    /// A clean stream.
    pub fn none() -> Self {
        NoiseConfig {
            duplicate: 0.0,
            reorder: 0.0,
            invalid_format: 0.0,
            malformed: 0.0,
        }
    }
}

/// Adds `invalid_format` validations and malformed messages to the day starting at `t0`.
/// `ids` are the customers that exist that day.
pub(crate) fn add_strays(
    drafts: &mut Vec<Draft>,
    ids: &[&str],
    t0: Micros,
    day: i64,
    rng: &mut Rng,
    cfg: &NoiseConfig,
) {
    let n = drafts.len() as f64;
    let invalid = rng.poisson(n * cfg.invalid_format);
    let malformed = rng.poisson(n * cfg.malformed);
    let mut seq = 0u64;
    for _ in 0..invalid {
        seq += 1;
        let t = t0 + rng.range(0, DAY);
        let customer = if ids.is_empty() || rng.chance(0.4) {
            None
        } else {
            Some(*rng.pick(ids))
        };
        let key = match rng.range(0, 4) {
            0 => format!("LK-{}", rng.range(0, 1000)),
            1 => "lk_????".to_string(),
            2 => format!("{:x}", rng.next_u64()),
            _ => "undefined".to_string(),
        };
        let f = Fields::new("license.validated")
            .str("event_id", &format!("inv-{day}-{seq}"))
            .opt_str("customer_id", customer)
            .str("license_key", &key)
            .str("result", ValidationResult::InvalidFormat.as_str())
            .str("country", super::archetype::draw_country(rng));
        drafts.push(Draft {
            ts: t,
            key: customer.unwrap_or("").to_string(),
            body: f.body(),
            tie: u64::MAX - 10_000 + seq,
        });
    }
    for _ in 0..malformed {
        seq += 1;
        let t = t0 + rng.range(0, DAY);
        let ts = format_rfc3339(t);
        let customer = if ids.is_empty() { "" } else { *rng.pick(ids) };
        let (key, line) = match rng.range(0, 6) {
            0 => ("", "license.validated LK-1 valid".to_string()),
            1 => (
                customer,
                format!(
                    "{{\"type\":\"license.validated\",\"ts\":\"{ts}\",\"customer_id\":\"{customer}\",\"lic"
                ),
            ),
            2 => (
                customer,
                format!(
                    "{{\"type\":\"license.teleported\",\"ts\":\"{ts}\",\"customer_id\":\"{customer}\"}}"
                ),
            ),
            3 => (
                customer,
                format!(
                    "{{\"type\":\"payment.succeeded\",\"ts\":\"yesterday\",\"customer_id\":\"{customer}\"}}"
                ),
            ),
            4 => (
                customer,
                format!(
                    "{{\"type\":\"license.activated\",\"ts\":\"{ts}\",\"customer_id\":\"{customer}\"}}"
                ),
            ),
            _ => (
                customer,
                format!(
                    "{{\"type\":\"license.issued\",\"ts\":\"{ts}\",\"customer_id\":\"{customer}\",\"license_key\":\"LK-X\",\"plan\":\"starter\",\"domain_limit\":3,\"mrr_cents\":-2900}}"
                ),
            ),
        };
        drafts.push(Draft {
            ts: t,
            key: key.to_string(),
            body: Body::Raw(line),
            tie: u64::MAX - 10_000 + seq,
        });
    }
}

/// Swaps some neighbours, then sends some events twice.
pub(crate) fn shuffle_and_repeat(drafts: &mut Vec<Draft>, rng: &mut Rng, cfg: &NoiseConfig) {
    if cfg.reorder > 0.0 {
        let mut i = 0;
        while i + 1 < drafts.len() {
            if rng.chance(cfg.reorder) {
                drafts.swap(i, i + 1);
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    if cfg.duplicate > 0.0 {
        let mut out = Vec::with_capacity(drafts.len() + drafts.len() / 64);
        let mut pending: Vec<(usize, Draft)> = Vec::new();
        for (i, d) in drafts.drain(..).enumerate() {
            let repeat = matches!(d.body, Body::Event { .. }) && rng.chance(cfg.duplicate);
            let copy = repeat.then(|| d.clone());
            out.push(d);
            while let Some(pos) = pending.iter().position(|(at, _)| *at <= i) {
                out.push(pending.remove(pos).1);
            }
            if let Some(c) = copy {
                pending.push((i + rng.range(1, 4) as usize, c));
            }
        }
        out.extend(pending.into_iter().map(|(_, d)| d));
        *drafts = out;
    }
}
