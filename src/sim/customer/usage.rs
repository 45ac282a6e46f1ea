//! The daily use of a customer's licenses: activation, domains, and the validations of
//! the day, as busy as the archetype's story and the weekday make it.
//!
//! Guarantees: draws only from the customer's own random stream; validations of a day
//! fall within that day; domain names are unique per customer and license.

use super::{Customer, Status, MINUTE};
use crate::core::time::{Micros, DAY, SECOND};
use crate::core::ValidationResult;
use crate::sim::archetype::{draw_country, Archetype};
use crate::sim::Draft;

impl Customer {
    /// How busy the customer's licenses are on day `d` (1 = its usual self).
    fn intensity(&self, d: i64, activated_day: i64) -> f64 {
        let since = d - self.turn;
        let weekend = if d.rem_euclid(7) >= 5 { 0.75 } else { 1.0 };
        let level = match self.arch {
            Archetype::Churner if since >= 0 => {
                if self.leaving.trickle {
                    0.15
                } else {
                    (1.0 - (since + 1) as f64 / 4.0).max(0.0)
                }
            }
            Archetype::SlowOnboarder => (0.2 + 0.08 * (d - activated_day) as f64).min(1.0),
            Archetype::Expirer if since >= 0 && self.second_act.is_none() => {
                if since > 12 {
                    0.0
                } else {
                    0.6
                }
            }
            Archetype::PaymentTrouble if since >= 15 && self.second_act.is_none() => {
                if since > 19 {
                    0.0
                } else {
                    0.5
                }
            }
            _ => 1.0,
        };
        level * weekend
    }

    pub(super) fn license_day(&mut self, i: usize, d: i64, t0: Micros, out: &mut Vec<Draft>) {
        let end = t0 + DAY;
        let mut from = t0;
        if self.licenses[i].activated_day.is_none() {
            match self.licenses[i].activate_at {
                Some(at) if at < end => {
                    let at = at.max(t0);
                    let domain = self.add_domain_name(i);
                    let key = self.licenses[i].key.clone();
                    let f = self
                        .ev("license.activated")
                        .str("license_key", &key)
                        .str("domain", &domain);
                    self.push(out, at, f);
                    self.licenses[i].activated_day = Some(d);
                    let tv = at + self.rng.range(30 * SECOND, 20 * MINUTE);
                    self.validation(i, tv, ValidationResult::Valid.as_str(), Some(domain), out);
                    from = at;
                }
                _ => return,
            }
        }
        let l = &self.licenses[i];
        if matches!(l.status, Status::Canceled) {
            return;
        }
        let activated_day = l.activated_day.unwrap_or(d);
        // Domains drift towards the target: one added or removed a day, at most.
        if l.status == Status::Active {
            let used = l.domains.len() as u32;
            let grow_p = if self.arch == Archetype::Grower && d >= self.turn {
                0.8
            } else {
                0.35
            };
            if used < l.target.min(l.limit()) && self.rng.chance(grow_p) {
                let t = self.rng.range(from, end);
                let domain = self.add_domain_name(i);
                let key = self.licenses[i].key.clone();
                let f = self
                    .ev("domain.added")
                    .str("license_key", &key)
                    .str("domain", &domain);
                self.push(out, t, f);
            } else if used > l.target.max(1) && self.rng.chance(0.85) {
                let t = self.rng.range(from, end);
                let domain = self.licenses[i].domains.pop().unwrap_or_default();
                let key = self.licenses[i].key.clone();
                let f = self
                    .ev("domain.removed")
                    .str("license_key", &key)
                    .str("domain", &domain);
                self.push(out, t, f);
            }
        }
        let l = &self.licenses[i];
        let n = self
            .rng
            .poisson(l.per_day * self.intensity(d, activated_day));
        let (rl_p, mm_p) = match self.arch {
            Archetype::DomainSharer => (0.03, 0.22),
            Archetype::Grower => (0.01, 0.004),
            _ => (0.004, 0.004),
        };
        for _ in 0..n {
            let t = self.rng.range(from, end);
            let result = match self.licenses[i].status {
                Status::Expired => ValidationResult::Expired.as_str(),
                Status::Revoked => ValidationResult::Revoked.as_str(),
                _ => {
                    let x = self.rng.f64();
                    if x < rl_p {
                        ValidationResult::RateLimited.as_str()
                    } else if x < rl_p + mm_p {
                        ValidationResult::DomainMismatch.as_str()
                    } else {
                        ValidationResult::Valid.as_str()
                    }
                }
            };
            let domain = if result == ValidationResult::DomainMismatch.as_str() {
                Some(format!(
                    "site{}.shared{}.example",
                    self.rng.range(0, 40),
                    self.idx
                ))
            } else if self.licenses[i].domains.is_empty() {
                None
            } else {
                Some(self.rng.pick(&self.licenses[i].domains).clone())
            };
            self.validation(i, t, result, domain, out);
        }
        // A grower over its rate limit.
        if self.arch == Archetype::Grower
            && self.habits.rate_limits
            && d >= self.turn
            && self.licenses[i].status == Status::Active
        {
            for _ in 0..self.rng.poisson(0.9) {
                let t = self.rng.range(from, end);
                let domain = self.licenses[i].domains.first().cloned();
                self.validation(i, t, ValidationResult::RateLimited.as_str(), domain, out);
            }
        }
    }

    fn add_domain_name(&mut self, i: usize) -> String {
        let l = &mut self.licenses[i];
        l.domain_seq += 1;
        let name = format!("app{}-{}.customer{}.example", l.domain_seq, i, self.idx);
        l.domains.push(name.clone());
        name
    }

    fn validation(
        &mut self,
        i: usize,
        t: Micros,
        result: &str,
        domain: Option<String>,
        out: &mut Vec<Draft>,
    ) {
        let home = match self.arch {
            Archetype::DomainSharer => 0.45,
            _ => 0.88,
        };
        let country = if self.rng.chance(home) {
            self.country
        } else {
            draw_country(&mut self.rng)
        };
        let key = self.licenses[i].key.clone();
        let f = self
            .ev("license.validated")
            .str("license_key", &key)
            .str("result", result)
            .opt_str("domain", domain.as_deref())
            .str("country", country);
        self.push(out, t, f);
    }
}
