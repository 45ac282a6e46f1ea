//! One simulated customer: its licenses and what it does each model day.
//!
//! Owns the behaviour of the archetypes (see `super::archetype`) as day-by-day scripts:
//! purchase, activation, domains, daily validations, payments, tickets, and the turn of
//! each archetype's story (decline, growth, failed payment, expiry, downgrade). Guarantees:
//! a customer draws only from its own random stream, so what it does depends on the seed
//! and its index alone; its events within a day come out with their event times, its
//! `event_id`s are unique (`<tag>-<customer>-<seq>`), and every event it renders is
//! well-formed (noise is added elsewhere, by `super::noise`).

use super::archetype::{draw_country, timeline, Archetype, PLANS, PLAN_WEIGHTS};
use super::rng::Rng;
use super::wire::Fields;
use super::Draft;
use crate::core::time::{Micros, DAY, HOUR, SECOND};
use crate::core::ValidationResult;

const MINUTE: Micros = 60 * SECOND;
const FEATURES: [&str; 5] = [
    "sso",
    "audit_log",
    "white_label",
    "webhooks",
    "priority_support",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Expired,
    Revoked,
    Canceled,
}

#[derive(Debug, Clone)]
struct License {
    key: String,
    plan: usize,
    activate_at: Option<Micros>,
    activated_day: Option<i64>,
    domains: Vec<String>,
    domain_seq: u32,
    /// How many domains the customer means to have registered.
    target: u32,
    status: Status,
    /// Mean validations a day at full activity.
    per_day: f64,
}

impl License {
    fn limit(&self) -> u32 {
        PLANS[self.plan].domain_limit
    }
}

/// Which of a grower's habits it has.
#[derive(Debug, Clone, Copy, Default)]
struct Habits {
    rate_limits: bool,
    features: bool,
    invites: bool,
}

/// How a churner shows it is leaving.
#[derive(Debug, Clone, Copy, Default)]
struct Leaving {
    remove_domains: bool,
    delete_api_key: bool,
    cancel_ticket: bool,
    /// Keeps validating a little instead of stopping.
    trickle: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub idx: u32,
    pub id: String,
    pub arch: Archetype,
    pub join: i64,
    turn: i64,
    rng: Rng,
    tag: String,
    seq: u32,
    country: &'static str,
    licenses: Vec<License>,
    api_keys: Vec<String>,
    tickets: Vec<(String, Option<i64>)>,
    ticket_seq: u32,
    habits: Habits,
    leaving: Leaving,
    /// The archetype's second act, in days after the turn (cancel, resolve, renew,
    /// upgrade, downgrade); `None` when it does not happen.
    second_act: Option<i64>,
    /// A failed payment not yet settled.
    payment_open: bool,
    /// No more events from this customer.
    pub gone: bool,
}

impl Customer {
    /// Customer `idx` of the base; `arrival` is `None` for the initial base (placed within
    /// the `history` days) and the arrival day for one joining later.
    pub fn new(seed: u64, idx: u32, arch: Archetype, history: i64, arrival: Option<i64>) -> Self {
        let mut rng = super::rng::Rng::derive(seed, 0x1000_0000 + idx as u64);
        let (join, turn) = timeline(arch, &mut rng, history, arrival);
        let country = draw_country(&mut rng);
        let mut habits = Habits::default();
        if arch == Archetype::Grower {
            loop {
                habits.rate_limits = rng.chance(0.65);
                habits.features = rng.chance(0.6);
                habits.invites = rng.chance(0.5);
                if habits.rate_limits || habits.features || habits.invites {
                    break;
                }
            }
        }
        let mut leaving = Leaving::default();
        if arch == Archetype::Churner {
            // Rotate the main signal over the base so every kind shows up.
            match idx % 3 {
                0 => leaving.remove_domains = true,
                1 => leaving.delete_api_key = true,
                _ => leaving.cancel_ticket = true,
            }
            leaving.remove_domains |= rng.chance(0.5);
            leaving.delete_api_key |= rng.chance(0.35);
            leaving.cancel_ticket |= rng.chance(0.35);
            leaving.trickle = rng.chance(0.4);
        }
        let second_act = match arch {
            Archetype::Churner if rng.chance(0.4) => Some(rng.range(8, 17)),
            Archetype::Grower if rng.chance(0.35) => Some(rng.range(18, 32)),
            Archetype::PaymentTrouble if rng.chance(0.5) => Some(rng.range(2, 8)),
            Archetype::Expirer if rng.chance(0.55) => Some(rng.range(1, 9)),
            Archetype::Downgrader => Some(rng.range(2, 7)),
            _ => None,
        };
        Customer {
            idx,
            id: format!("cus_{idx:05}"),
            arch,
            join,
            turn,
            rng,
            tag: format!("s{:x}-{idx}", seed & 0xffff),
            seq: 0,
            country,
            licenses: Vec::new(),
            api_keys: Vec::new(),
            tickets: Vec::new(),
            ticket_seq: 0,
            habits,
            leaving,
            second_act,
            payment_open: false,
            gone: false,
        }
    }

    /// An event of this customer, with its `event_id` and `customer_id`.
    fn ev(&mut self, ty: &'static str) -> Fields {
        self.seq += 1;
        Fields::new(ty)
            .str("event_id", &format!("{}-{}", self.tag, self.seq))
            .str("customer_id", &self.id)
    }

    fn push(&self, out: &mut Vec<Draft>, ts: Micros, f: Fields) {
        out.push(Draft {
            ts,
            key: self.id.clone(),
            body: f.body(),
            tie: ((self.idx as u64) << 32) | self.seq as u64,
        });
    }

    fn at(&mut self, t0: Micros) -> Micros {
        t0 + self.rng.range(0, DAY)
    }

    /// Everything this customer does on model day `d`, which starts at `t0`.
    pub fn day(&mut self, d: i64, t0: Micros, out: &mut Vec<Draft>) {
        if self.gone || d < self.join {
            return;
        }
        let age = d - self.join;
        if age == 0 {
            self.onboard(t0, out);
        } else if age % 30 == 0 && !self.payment_open {
            let t = self.at(t0);
            let f = self.ev("payment.succeeded");
            self.push(out, t, f);
        }
        self.story(d, t0, out);
        for i in 0..self.licenses.len() {
            self.license_day(i, d, t0, out);
        }
        let closing: Vec<String> = self
            .tickets
            .iter()
            .filter(|(_, close)| *close == Some(d))
            .map(|(id, _)| id.clone())
            .collect();
        for id in closing {
            let t = self.at(t0);
            let f = self.ev("support.ticket_closed").str("ticket_id", &id);
            self.push(out, t, f);
        }
        self.tickets
            .retain(|(_, close)| close.map_or(true, |c| c > d));
    }

    fn onboard(&mut self, t0: Micros, out: &mut Vec<Draft>) {
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

    fn new_api_key(&mut self, t: Micros, out: &mut Vec<Draft>) {
        let id = format!("ak_{}_{}", self.idx, self.api_keys.len());
        let f = self.ev("api_key.created").str("api_key_id", &id);
        self.push(out, t, f);
        self.api_keys.push(id);
    }

    fn open_ticket(&mut self, t: Micros, category: &str, close: Option<i64>, out: &mut Vec<Draft>) {
        self.ticket_seq += 1;
        let id = format!("T-{}-{}", self.idx, self.ticket_seq);
        let f = self
            .ev("support.ticket_opened")
            .str("ticket_id", &id)
            .str("category", category);
        self.push(out, t, f);
        self.tickets.push((id, close));
    }

    fn license_event(&mut self, i: usize, ty: &'static str, t: Micros, out: &mut Vec<Draft>) {
        let key = self.licenses[i].key.clone();
        let f = self.ev(ty).str("license_key", &key);
        self.push(out, t, f);
    }

    fn change_plan(&mut self, i: usize, plan: usize, t: Micros, out: &mut Vec<Draft>) {
        self.licenses[i].plan = plan;
        let key = self.licenses[i].key.clone();
        let f = self
            .ev("subscription.changed")
            .str("license_key", &key)
            .str("plan", PLANS[plan].name)
            .num("domain_limit", PLANS[plan].domain_limit as u64)
            .num("mrr_cents", PLANS[plan].mrr_cents);
        self.push(out, t, f);
    }

    /// The archetype's own events on day `d`.
    fn story(&mut self, d: i64, t0: Micros, out: &mut Vec<Draft>) {
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
                if self.second_act.is_none() && since == 15 && self.idx % 2 == 0 {
                    let t = self.at(t0);
                    for i in 0..self.licenses.len() {
                        self.license_event(i, "license.revoked", t, out);
                        self.licenses[i].status = Status::Revoked;
                    }
                }
                if self.second_act.is_none() && since == 22 && self.idx % 2 == 0 {
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

    fn license_day(&mut self, i: usize, d: i64, t0: Micros, out: &mut Vec<Draft>) {
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

    /// Whether it has bought anything yet (strays only name customers that have).
    pub fn has_licenses(&self) -> bool {
        !self.licenses.is_empty()
    }
}
