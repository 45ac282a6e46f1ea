//! A customer's scripted turns: its first day ([`Customer::onboard`]: purchase, API keys)
//! and each archetype's story ([`Customer::story`]: decline, growth, failed payment,
//! expiry, downgrade, and their second acts).
//!
//! Guarantees: draws only from the customer's own random stream; every event it renders
//! is well-formed.

use super::{Customer, License, Status, FEATURES, MINUTE};
use crate::core::time::{Micros, DAY, HOUR};
use crate::sim::archetype::{Archetype, PLANS, PLAN_WEIGHTS};
use crate::sim::Draft;

impl Customer {
    pub(super) fn onboard(&mut self, t0: Micros, out: &mut Vec<Draft>) {
        let n = match self.arch {
            Archetype::NeverActivating => 1,
            _ => [1, 1, 1, 1, 1, 1, 1, 2, 2, 3][self.rng.range(0, 10) as usize],
        };
        let main_plan = self.rng.weighted(&PLAN_WEIGHTS);
        let issued = t0 + self.rng.range(6 * HOUR, 20 * HOUR);
        let email_p = match self.arch {
            Archetype::Grower | Archetype::Expirer => 0.97,
            _ => 0.85,
        };
        for i in 0..n {
            let plan = if i == 0 {
                main_plan
            } else {
                self.rng.range(0, main_plan as i64 + 1) as usize
            };
            let email = self
                .rng
                .chance(email_p)
                .then(|| format!("owner{i}@customer{}.example", self.idx));
            let suffix: String = (0..4)
                .map(|_| {
                    let c = self.rng.range(0, 36) as u8;
                    (if c < 10 { b'0' + c } else { b'A' + c - 10 }) as char
                })
                .collect();
            let key = format!("LK-{:05}-{i}-{suffix}", self.idx);
            let util = match self.arch {
                Archetype::Healthy => self.rng.uniform(0.25, 0.75),
                Archetype::SlowOnboarder => self.rng.uniform(0.1, 0.4),
                Archetype::Grower => self.rng.uniform(0.4, 0.7),
                Archetype::DomainSharer => self.rng.uniform(0.1, 0.3),
                Archetype::Downgrader => self.rng.uniform(0.05, 0.18),
                _ => self.rng.uniform(0.25, 0.65),
            };
            let limit = PLANS[plan].domain_limit;
            let target = ((util * limit as f64).round() as u32).clamp(1, limit);
            let per_day = ((3.0 + 1.2 * target as f64).min(36.0)) * self.rng.uniform(0.7, 1.3);
            let delay = match self.arch {
                Archetype::NeverActivating => None,
                Archetype::SlowOnboarder => {
                    Some((self.turn - self.join) * DAY + self.rng.range(0, 12 * HOUR))
                }
                _ => Some(match self.rng.range(0, 100) {
                    0..=54 => self.rng.range(2 * MINUTE, 55 * MINUTE),
                    55..=84 => self.rng.range(HOUR, 23 * HOUR),
                    85..=96 => self.rng.range(DAY, 6 * DAY),
                    _ => self.rng.range(7 * DAY, 10 * DAY),
                }),
            };
            let ti = issued + i as i64 * self.rng.range(MINUTE, 30 * MINUTE);
            let expires = match self.arch {
                Archetype::Expirer => {
                    Some(t0 + (self.turn - self.join) * DAY + self.rng.range(0, HOUR))
                }
                _ => self.rng.chance(0.5).then_some(ti + 365 * DAY),
            };
            let mut f = self
                .ev("license.issued")
                .str("license_key", &key)
                .str("plan", PLANS[plan].name)
                .num("domain_limit", limit as u64)
                .num("mrr_cents", PLANS[plan].mrr_cents)
                .opt_str("email", email.as_deref());
            if let Some(e) = expires {
                f = f.ts("expires_at", e);
            }
            self.push(out, ti, f);
            self.licenses.push(License {
                key,
                plan,
                activate_at: delay.map(|d| ti + d),
                activated_day: None,
                domains: Vec::new(),
                domain_seq: 0,
                target,
                status: Status::Active,
                per_day,
            });
        }
        let t = issued + self.rng.range(MINUTE, 10 * MINUTE);
        let f = self.ev("payment.succeeded");
        self.push(out, t, f);
        if self.arch != Archetype::NeverActivating {
            let t = issued + self.rng.range(5 * MINUTE, 3 * HOUR);
            self.new_api_key(t, out);
        }
    }

    /// The archetype's own events on day `d`.
    pub(super) fn story(&mut self, d: i64, t0: Micros, out: &mut Vec<Draft>) {
        let since = d - self.turn;
        let act2 = self.second_act.is_some_and(|a| a == since);
        match self.arch {
            Archetype::Healthy | Archetype::DomainSharer => {
                if since == 0 && self.rng.chance(0.3) {
                    let close = d + self.rng.range(1, 4);
                    let t = self.at(t0);
                    self.open_ticket(t, "technical", Some(close), out);
                }
                if since > 0 && self.rng.chance(0.02) {
                    let t = self.at(t0);
                    let f = self.ev("team.member_invited");
                    self.push(out, t, f);
                }
            }
            Archetype::SlowOnboarder => {
                if d == self.join + 1 && self.rng.chance(0.5) {
                    let t = self.at(t0);
                    self.open_ticket(t, "technical", Some(self.turn), out);
                }
            }
            Archetype::NeverActivating => {
                if since == 0 && self.rng.chance(0.4) {
                    let t = self.at(t0);
                    self.open_ticket(t, "technical", None, out);
                }
            }
            Archetype::Churner => {
                if since == 1 && self.leaving.remove_domains {
                    for l in &mut self.licenses {
                        l.target = 0;
                    }
                }
                if since == 2 && self.leaving.delete_api_key {
                    for k in std::mem::take(&mut self.api_keys) {
                        let t = self.at(t0);
                        let f = self.ev("api_key.deleted").str("api_key_id", &k);
                        self.push(out, t, f);
                    }
                }
                if since == 3 && self.leaving.cancel_ticket {
                    let t = self.at(t0);
                    self.open_ticket(t, "cancellation", None, out);
                }
                if act2 {
                    let t = self.at(t0);
                    for i in 0..self.licenses.len() {
                        if self.licenses[i].status == Status::Active {
                            self.license_event(i, "subscription.canceled", t, out);
                            self.licenses[i].status = Status::Canceled;
                        }
                    }
                    self.gone = true;
                }
            }
            Archetype::Grower => {
                if since == 0 {
                    for l in &mut self.licenses {
                        let limit = l.limit() as f64;
                        l.target = ((limit * self.rng.uniform(0.85, 1.0)).ceil() as u32).max(1);
                    }
                }
                if since >= 0 {
                    if self.habits.invites && self.rng.chance(0.18) {
                        let t = self.at(t0);
                        let f = self.ev("team.member_invited");
                        self.push(out, t, f);
                    }
                    if self.habits.features {
                        for i in 0..self.licenses.len() {
                            if self.licenses[i].activated_day.is_none() {
                                continue;
                            }
                            for _ in 0..self.rng.poisson(0.3) {
                                let t = self.at(t0);
                                let feature = *self.rng.pick(&FEATURES);
                                let key = self.licenses[i].key.clone();
                                let f = self
                                    .ev("feature.access_denied")
                                    .str("license_key", &key)
                                    .str("feature", feature);
                                self.push(out, t, f);
                            }
                        }
                    }
                }
                if act2 && self.licenses[0].plan + 1 < PLANS.len() {
                    let t = self.at(t0);
                    let plan = self.licenses[0].plan + 1;
                    self.change_plan(0, plan, t, out);
                }
            }
            Archetype::PaymentTrouble => {
                if since == 0 {
                    let t = self.at(t0);
                    let f = self.ev("payment.failed");
                    self.push(out, t, f);
                    self.payment_open = true;
                    self.open_ticket(t + 20 * MINUTE, "billing", None, out);
                }
                if act2 {
                    let t = self.at(t0);
                    let f = self.ev("payment.succeeded");
                    self.push(out, t, f);
                    self.payment_open = false;
                    for tk in &mut self.tickets {
                        tk.1 = Some(d + 1);
                    }
                }
                if self.second_act.is_none() && since == 4 {
                    let t = self.at(t0);
                    let f = self.ev("payment.failed");
                    self.push(out, t, f);
                }
                if self.second_act.is_none() && since == 15 && self.idx.is_multiple_of(2) {
                    let t = self.at(t0);
                    for i in 0..self.licenses.len() {
                        self.license_event(i, "license.revoked", t, out);
                        self.licenses[i].status = Status::Revoked;
                    }
                }
                if self.second_act.is_none() && since == 22 && self.idx.is_multiple_of(2) {
                    self.gone = true;
                }
            }
            Archetype::Expirer => {
                if since == 0 {
                    let t = t0 + self.rng.range(0, 2 * HOUR);
                    for i in 0..self.licenses.len() {
                        self.license_event(i, "license.expired", t, out);
                        self.licenses[i].status = Status::Expired;
                    }
                }
                if act2 {
                    let t = self.at(t0);
                    for i in 0..self.licenses.len() {
                        let key = self.licenses[i].key.clone();
                        let f = self
                            .ev("license.renewed")
                            .str("license_key", &key)
                            .ts("expires_at", t + 365 * DAY);
                        self.push(out, t, f);
                        self.licenses[i].status = Status::Active;
                    }
                }
                if self.second_act.is_none() && since == 21 {
                    self.gone = true;
                }
            }
            Archetype::Downgrader => {
                if since == 0 {
                    let t = self.at(t0);
                    let f = self.ev("plan.downgrade_inquiry");
                    self.push(out, t, f);
                }
                if act2 {
                    let t = self.at(t0);
                    if let Some(i) = self.licenses.iter().position(|l| l.plan > 0) {
                        let plan = self.licenses[i].plan - 1;
                        self.change_plan(i, plan, t, out);
                        let l = &mut self.licenses[i];
                        l.target = l.target.min(l.limit());
                    } else if self.licenses.len() > 1 {
                        let i = self.licenses.len() - 1;
                        self.license_event(i, "subscription.canceled", t, out);
                        self.licenses[i].status = Status::Canceled;
                    }
                }
            }
        }
    }
}
