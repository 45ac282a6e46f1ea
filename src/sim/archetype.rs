//! Who the simulated customers are: the archetypes, their share of the base, the plans
//! and the countries they validate from, and when each archetype's story turns.
//!
//! Owns the mix. Guarantees: [`deck`] gives every archetype at least one customer once the
//! base has at least [`Archetype::ALL`]`.len()` customers, and otherwise shares follow
//! [`Archetype::weight`]; [`timeline`] places history customers so that, at the end of the
//! history, their story is visible in the report (churners mid-decline, expirers past
//! expiry, growers near their limits, ...).

use super::rng::Rng;

/// The kinds of customer the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Archetype {
    /// Activates within hours, validates every day, pays, grows a little.
    Healthy,
    /// Activates days after the purchase, then ramps up slowly.
    SlowOnboarder,
    /// Buys and never activates.
    NeverActivating,
    /// Healthy, then declines: validations fade, domains removed, API key deleted, a
    /// cancellation ticket; some cancel.
    Churner,
    /// Near the domain limit, rate limited, clicks locked features, invites teammates; some
    /// upgrade.
    Grower,
    /// A failed payment (and a billing ticket); about half pay later, some get revoked.
    PaymentTrouble,
    /// Uses one license on many unregistered domains from many countries.
    DomainSharer,
    /// The license expires; validations then fail `expired`; about half renew.
    Expirer,
    /// Asks about a cheaper plan, then moves down.
    Downgrader,
}

impl Archetype {
    pub const ALL: [Archetype; 9] = [
        Archetype::Healthy,
        Archetype::SlowOnboarder,
        Archetype::NeverActivating,
        Archetype::Churner,
        Archetype::Grower,
        Archetype::PaymentTrouble,
        Archetype::DomainSharer,
        Archetype::Expirer,
        Archetype::Downgrader,
    ];

    /// Relative share of the base.
    pub fn weight(self) -> u32 {
        match self {
            Archetype::Healthy => 36,
            Archetype::SlowOnboarder => 8,
            Archetype::NeverActivating => 6,
            Archetype::Churner => 10,
            Archetype::Grower => 14,
            Archetype::PaymentTrouble => 6,
            Archetype::DomainSharer => 5,
            Archetype::Expirer => 9,
            Archetype::Downgrader => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Archetype::Healthy => "healthy",
            Archetype::SlowOnboarder => "slow_onboarder",
            Archetype::NeverActivating => "never_activating",
            Archetype::Churner => "churner",
            Archetype::Grower => "grower",
            Archetype::PaymentTrouble => "payment_trouble",
            Archetype::DomainSharer => "domain_sharer",
            Archetype::Expirer => "expirer",
            Archetype::Downgrader => "downgrader",
        }
    }

    /// One archetype drawn by weight (for customers who arrive during the live phase).
    pub fn draw(rng: &mut Rng) -> Archetype {
        let w: Vec<u32> = Self::ALL.iter().map(|a| a.weight()).collect();
        Self::ALL[rng.weighted(&w)]
    }
}

/// The archetypes of the first `n` customers: shares by weight (largest remainder), every
/// archetype at least once when `n` allows, shuffled by `rng`.
pub fn deck(n: usize, rng: &mut Rng) -> Vec<Archetype> {
    let total: u32 = Archetype::ALL.iter().map(|a| a.weight()).sum();
    let min = usize::from(n >= Archetype::ALL.len());
    let mut counts: Vec<(Archetype, usize, f64)> = Archetype::ALL
        .iter()
        .map(|a| {
            let exact = n as f64 * a.weight() as f64 / total as f64;
            (*a, (exact.floor() as usize).max(min), exact.fract())
        })
        .collect();
    let mut sum: usize = counts.iter().map(|c| c.1).sum();
    // Hand out what is left by largest remainder, or take back from the largest shares.
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|a, b| counts[*b].2.total_cmp(&counts[*a].2).then(a.cmp(b)));
    let mut i = 0;
    while sum < n {
        counts[order[i % order.len()]].1 += 1;
        sum += 1;
        i += 1;
    }
    while sum > n {
        let biggest = (0..counts.len()).max_by_key(|j| counts[*j].1).unwrap_or(0);
        counts[biggest].1 -= 1;
        sum -= 1;
    }
    let mut deck: Vec<Archetype> = counts
        .iter()
        .flat_map(|(a, k, _)| std::iter::repeat_n(*a, *k))
        .collect();
    rng.shuffle(&mut deck);
    deck
}

/// A plan of the simulated product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub name: &'static str,
    pub domain_limit: u32,
    pub mrr_cents: u64,
}

pub const PLANS: [Plan; 4] = [
    Plan {
        name: "starter",
        domain_limit: 3,
        mrr_cents: 2_900,
    },
    Plan {
        name: "professional",
        domain_limit: 10,
        mrr_cents: 9_900,
    },
    Plan {
        name: "business",
        domain_limit: 25,
        mrr_cents: 29_900,
    },
    Plan {
        name: "enterprise",
        domain_limit: 100,
        mrr_cents: 99_900,
    },
];

/// How often each plan is bought.
pub const PLAN_WEIGHTS: [u32; 4] = [42, 33, 19, 6];

/// Countries validations come from (ISO 3166-1 alpha-2), with a weight each.
pub const COUNTRIES: [(&str, u32); 14] = [
    ("US", 30),
    ("DE", 14),
    ("GB", 11),
    ("FR", 8),
    ("IN", 8),
    ("BR", 6),
    ("CA", 6),
    ("NL", 5),
    ("JP", 5),
    ("AU", 4),
    ("ES", 4),
    ("SE", 3),
    ("PL", 3),
    ("SG", 3),
];

pub fn draw_country(rng: &mut Rng) -> &'static str {
    let w: Vec<u32> = COUNTRIES.iter().map(|c| c.1).collect();
    COUNTRIES[rng.weighted(&w)].0
}

/// When a customer joins and when its story turns, in model days from the start.
///
/// `history` is the number of history days; `arrival` is `None` for a customer of the
/// initial base (placed within the history so that its story shows at the history's end)
/// and `Some(day)` for one arriving later (its story then unfolds after `day`).
pub fn timeline(arch: Archetype, rng: &mut Rng, history: i64, arrival: Option<i64>) -> (i64, i64) {
    let h = history.max(1);
    if let Some(day) = arrival {
        let turn = day
            + match arch {
                Archetype::Churner => rng.range(18, 35),
                Archetype::Grower => rng.range(3, 10),
                Archetype::PaymentTrouble => rng.range(8, 30),
                Archetype::Expirer => rng.range(20, 40),
                Archetype::Downgrader => rng.range(12, 30),
                _ => rng.range(5, 20),
            };
        return (day, turn);
    }
    let early = |rng: &mut Rng, last: i64| {
        if rng.chance(0.45) {
            rng.range(0, 7.min(last.max(1)))
        } else {
            rng.range(0, last.max(1))
        }
    };
    let (join, turn) = match arch {
        Archetype::Healthy | Archetype::DomainSharer => {
            let j = early(rng, h - 1);
            (j, j + rng.range(5, 20))
        }
        Archetype::SlowOnboarder => {
            let j = rng.range(0, (h - 3).max(1));
            (j, j + rng.range(2, 13))
        }
        Archetype::NeverActivating => {
            let j = if rng.chance(0.7) {
                rng.range(0, (h - 32).max(1))
            } else {
                rng.range(0, h)
            };
            (j, j + 3)
        }
        Archetype::Churner => {
            let t = rng.range(h - 16, h - 5).max(1);
            ((t - rng.range(14, 35)).max(0), t)
        }
        Archetype::Grower => {
            let j = rng.range(0, (h - 25).max(1));
            (j, j + rng.range(3, 10))
        }
        Archetype::PaymentTrouble => {
            let t = rng.range(h - 20, h - 2).max(1);
            ((t - rng.range(10, 40)).max(0), t)
        }
        Archetype::Expirer => {
            let t = rng.range(h - 25, h - 4).max(1);
            ((t - rng.range(15, 45)).max(0), t)
        }
        Archetype::Downgrader => {
            let t = rng.range(h - 20, h - 3).max(1);
            ((t - rng.range(10, 40)).max(0), t)
        }
    };
    (join, turn.max(join + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deck_has_every_archetype_and_the_right_size() {
        for n in [9usize, 10, 57, 200, 1000] {
            let d = deck(n, &mut Rng::new(3));
            assert_eq!(d.len(), n);
            for a in Archetype::ALL {
                assert!(d.contains(&a), "{n}: {a:?} missing");
            }
        }
        assert_eq!(deck(4, &mut Rng::new(3)).len(), 4);
    }
}
