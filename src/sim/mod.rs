//! The customer-base simulator behind `keypulse simulate` and `keypulse demo`.
//!
//! A deterministic (given [`SimConfig::seed`] and [`SimConfig::start`]) generator of SPEC §1
//! events, each with its Kafka key (the `customer_id`, or `""` for none). It plays a base
//! of [`SimConfig::customers`] customers of several archetypes (`archetype`), each scripted
//! day by day (`customer`), with noise on top (`noise`), in two phases:
//!
//! - **history**: the model days `start .. start + history_days`, in event-time order
//!   (give or take the noise), as fast as the caller takes them (or capped at
//!   [`SimConfig::history_rate`] events per second);
//! - **live**: then, without end, [`SimConfig::live_rate`] events per wall-clock second,
//!   each stamped with the *live clock*: `history_end + (now − live_start) × live_speedup`.
//!   With `live_speedup = 1` (the default) the live clock is the wall clock shifted by
//!   however long the history took to send: pick `start = now − history_days` (see
//!   [`SimConfig::ending_at`]) and live events arrive stamped "now", as a service on the
//!   wall clock expects. The model keeps going at its own pace behind the stamps: the
//!   days after the history (customers keep arriving, churners cancel, expirers renew)
//!   are played in order, as fast as the rate asks, each event stamped when it is sent.
//!
//! The caller drives it with [`Simulator::next_batch`], passing the wall clock, so the
//! simulator itself never reads a clock or sleeps (and the tests can pretend time).
//! [`Simulator::history_done`] tells when the history is out (without starting the live
//! clock), [`Simulator::skip_history`] plays it unsent; `produce` has the Kafka loops
//! (`pump_history`, `pump`) that `keypulse simulate` and the demo share.
//!
//! Guarantees: the same config gives byte-identical history lines; a customer's own
//! events keep their order in both phases (live stamps never go backwards); memory is one
//! model day of events plus the customers.

mod archetype;
mod customer;
mod noise;
pub mod produce;
mod rng;
mod wire;

use std::collections::VecDeque;

pub use archetype::{Archetype, Plan, PLANS};
pub use noise::NoiseConfig;

use crate::core::time::{Micros, DAY, SECOND};
use customer::Customer;
use rng::Rng;
use wire::Body;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Customers in the initial base (more arrive during the live phase).
    pub customers: u32,
    pub seed: u64,
    /// Model days played as history.
    pub history_days: u32,
    /// Event time at which the history starts (UTC microseconds).
    pub start: Micros,
    /// Events per wall-clock second in the live phase.
    pub live_rate: f64,
    /// Event-time seconds per wall-clock second in the live phase (1 = real time).
    pub live_speedup: f64,
    /// Cap on events per wall-clock second during the history; `None`: as fast as taken.
    pub history_rate: Option<f64>,
    pub noise: NoiseConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            customers: 200,
            seed: 1,
            history_days: 60,
            // 2026-09-01T00:00:00Z
            start: 1_788_220_800 * SECOND,
            live_rate: 50.0,
            live_speedup: 1.0,
            history_rate: None,
            noise: NoiseConfig::default(),
        }
    }
}

impl SimConfig {
    /// Sets `start` so that the history ends at `end` (typically the wall clock now).
    pub fn ending_at(mut self, end: Micros) -> Self {
        self.start = end - self.history_days as i64 * DAY;
        self
    }

    /// Where the history ends and the live phase begins (event time).
    pub fn history_end(&self) -> Micros {
        self.start + self.history_days as i64 * DAY
    }
}

/// One message to send: its Kafka key, its value, and its event time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// The `customer_id`, or `""` for an event without one.
    pub key: String,
    /// The JSON line (without newline).
    pub value: String,
    /// The event time it carries (for a malformed message, roughly).
    pub ts: Micros,
}

/// Which phase the simulator is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    History,
    Live,
}

/// An event before it is stamped and sent.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    /// Model event time.
    pub ts: Micros,
    pub key: String,
    pub body: Body,
    /// Tie-break for equal times: customer index and sequence, so sorting is deterministic.
    pub tie: u64,
}

/// The generator; see the module documentation.
#[derive(Debug)]
pub struct Simulator {
    cfg: SimConfig,
    customers: Vec<Customer>,
    /// The next model day to generate (0 = the day starting at `start`).
    next_day: i64,
    queue: VecDeque<Draft>,
    arrivals: f64,
    phase: Phase,
    history_started: Option<Micros>,
    live_started: Option<Micros>,
    emitted_history: u64,
    emitted_live: u64,
    last_stamp: Micros,
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Self {
        let n = cfg.customers.max(1);
        let mut deck_rng = Rng::derive(cfg.seed, 1);
        let deck = archetype::deck(n as usize, &mut deck_rng);
        let history = cfg.history_days as i64;
        let customers = deck
            .into_iter()
            .enumerate()
            .map(|(i, a)| Customer::new(cfg.seed, i as u32, a, history, None))
            .collect();
        Simulator {
            last_stamp: cfg.history_end(),
            cfg,
            customers,
            next_day: 0,
            queue: VecDeque::new(),
            arrivals: 0.0,
            phase: Phase::History,
            history_started: None,
            live_started: None,
            emitted_history: 0,
            emitted_live: 0,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Events sent so far: (history, live).
    pub fn emitted(&self) -> (u64, u64) {
        (self.emitted_history, self.emitted_live)
    }

    /// Every customer so far, with its archetype.
    pub fn customers(&self) -> impl Iterator<Item = (&str, Archetype)> {
        self.customers.iter().map(|c| (c.id.as_str(), c.arch))
    }

    /// Plays the next model day into the queue.
    fn generate_day(&mut self) {
        let d = self.next_day;
        self.next_day += 1;
        let history = self.cfg.history_days as i64;
        if d >= history {
            // The base keeps growing after the history: about half the initial base per
            // history length.
            let mut rng = Rng::derive(self.cfg.seed, 0x2000_0000 + d as u64);
            self.arrivals += self.cfg.customers.max(1) as f64 * 0.5 / history.max(1) as f64;
            while self.arrivals >= 1.0 {
                self.arrivals -= 1.0;
                let idx = self.customers.len() as u32;
                let arch = Archetype::draw(&mut rng);
                self.customers
                    .push(Customer::new(self.cfg.seed, idx, arch, history, Some(d)));
            }
        }
        let t0 = self.cfg.start + d * DAY;
        let mut drafts = Vec::new();
        for c in &mut self.customers {
            c.day(d, t0, &mut drafts);
        }
        let mut rng = Rng::derive(self.cfg.seed, 0x3000_0000 + d as u64);
        let ids: Vec<&str> = self
            .customers
            .iter()
            .filter(|c| c.join <= d && c.has_licenses())
            .map(|c| c.id.as_str())
            .collect();
        noise::add_strays(&mut drafts, &ids, t0, d, &mut rng, &self.cfg.noise);
        drafts.sort_by_key(|x| (x.ts, x.tie));
        noise::shuffle_and_repeat(&mut drafts, &mut rng, &self.cfg.noise);
        self.queue.extend(drafts);
    }

    fn front(&mut self) -> &Draft {
        // A model day may be empty (few customers): keep playing until one is not.
        while self.queue.is_empty() {
            self.generate_day();
        }
        &self.queue[0]
    }

    /// How many more events may go out at wall-clock `now`.
    /// Also makes sure the queue holds the next event. In the live phase, the first call
    /// starts the live clock.
    fn allowance(&mut self, now: Micros) -> u64 {
        self.history_done();
        match self.phase {
            Phase::History => match self.cfg.history_rate {
                None => u64::MAX,
                Some(rate) => {
                    let since = now - *self.history_started.get_or_insert(now);
                    paced(since, rate).saturating_sub(self.emitted_history)
                }
            },
            Phase::Live => {
                let since = now - *self.live_started.get_or_insert(now);
                paced(since, self.cfg.live_rate).saturating_sub(self.emitted_live)
            }
        }
    }

    /// Up to `max` events that are due at wall-clock `now` (microseconds). The history is
    /// due at once (or at `history_rate`); live events at `live_rate`. An empty batch means
    /// nothing is due yet: wait until [`Simulator::next_due`].
    pub fn next_batch(&mut self, max: usize, now: Micros) -> Vec<SimEvent> {
        let mut out = Vec::new();
        let phase = self.phase;
        while out.len() < max {
            // A batch never mixes phases, and one that ends the history does not start the
            // live clock: the next call does.
            self.history_done();
            if (self.phase != phase && !out.is_empty()) || self.allowance(now) == 0 {
                break;
            }
            let Some(d) = self.queue.pop_front() else {
                break; // unreachable: allowance() filled the queue
            };
            match self.phase {
                Phase::History => {
                    self.emitted_history += 1;
                    out.push(SimEvent {
                        key: d.key,
                        value: d.body.render(d.ts),
                        ts: d.ts,
                    });
                }
                Phase::Live => {
                    self.emitted_live += 1;
                    let since = now - self.live_started.unwrap_or(now);
                    let stamp =
                        self.cfg.history_end() + (since as f64 * self.cfg.live_speedup) as i64;
                    self.last_stamp = self.last_stamp.max(stamp);
                    out.push(SimEvent {
                        key: d.key,
                        value: d.body.render(self.last_stamp),
                        ts: self.last_stamp,
                    });
                }
            }
        }
        out
    }

    /// Whether every history event has been taken (the next one is live). Does not
    /// start the live clock: that starts with the first [`Simulator::next_batch`] after.
    /// Also makes sure the queue holds the next event.
    pub fn history_done(&mut self) -> bool {
        let next_ts = self.front().ts;
        if self.phase == Phase::History && next_ts >= self.cfg.history_end() {
            self.phase = Phase::Live;
        }
        self.phase == Phase::Live
    }

    /// Drops what is left of the history unsent (the model still plays it, so the live
    /// phase continues the same story); returns how many events were skipped. For a
    /// second process that carries on live after another one sent the history.
    pub fn skip_history(&mut self) -> u64 {
        let mut n = 0;
        while !self.history_done() {
            self.queue.pop_front();
            n += 1;
        }
        n
    }

    /// The wall-clock instant at which the next event is due (`now` if one is due now).
    pub fn next_due(&mut self, now: Micros) -> Micros {
        if self.allowance(now) > 0 {
            return now;
        }
        let (started, emitted, rate) = match self.phase {
            Phase::History => (
                self.history_started.unwrap_or(now),
                self.emitted_history,
                self.cfg.history_rate.unwrap_or(f64::INFINITY),
            ),
            Phase::Live => (
                self.live_started.unwrap_or(now),
                self.emitted_live,
                self.cfg.live_rate,
            ),
        };
        if rate <= 0.0 {
            return now + 3_600 * SECOND;
        }
        // Not earlier than the next microsecond: nothing is due now.
        (started + ((emitted as f64 / rate) * SECOND as f64).ceil() as Micros).max(now + 1)
    }

    /// The whole history at once (for tests and files), ignoring `history_rate`.
    pub fn history(cfg: SimConfig) -> Vec<SimEvent> {
        let mut sim = Simulator::new(cfg);
        let end = sim.cfg.history_end();
        let mut out = Vec::new();
        while sim.front().ts < end {
            if let Some(d) = sim.queue.pop_front() {
                sim.emitted_history += 1;
                out.push(SimEvent {
                    key: d.key,
                    value: d.body.render(d.ts),
                    ts: d.ts,
                });
            }
        }
        out
    }
}

/// Events allowed after `since` microseconds at `rate` a second (one at once, to start).
fn paced(since: Micros, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    (since.max(0) as f64 / SECOND as f64 * rate).floor() as u64 + 1
}
