//! One simulated customer: its licenses and what it does each model day.
//!
//! Owns the behaviour of the archetypes (see `super::archetype`) as day-by-day scripts:
//! purchase, activation, domains, daily validations, payments, tickets, and the turn of
//! each archetype's story (decline, growth, failed payment, expiry, downgrade). Guarantees:
//! a customer draws only from its own random stream, so what it does depends on the seed
//! and its index alone; its events within a day come out with their event times, its
//! `event_id`s are unique (`<tag>-<customer>-<seq>`), and every event it renders is
//! well-formed (noise is added elsewhere, by `super::noise`).
//!
//! The pieces: this file holds the customer, its licenses, its day and the events it
//! renders; `story.rs` its first day and each archetype's story; `usage.rs` the daily
//! use of each license (activation, domains, validations).

use super::archetype::{draw_country, timeline, Archetype, PLANS};
use super::rng::Rng;
use super::wire::Fields;
use super::Draft;
use crate::core::time::{Micros, DAY, SECOND};

mod story;
mod usage;

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
            .retain(|(_, close)| close.is_none_or(|c| c > d));
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

    /// Whether it has bought anything yet (strays only name customers that have).
    pub fn has_licenses(&self) -> bool {
        !self.licenses.is_empty()
    }
}
