//! Expiry reminders in the fold (SPEC §8.5): the `expiring_soon` part of the daily check.
//!
//! Owns [`PartitionState::remind_expiries`], run for every range of midnights a
//! customer's daily check covers (the midnights its events pass, and the wall-clock
//! ticks). Guarantees: nothing changes between the midnights of one range, so each
//! license's first firing midnight is computed directly (`expiry::first_reminder_day`):
//! the cost is one look at each of the customer's licenses (for a customer with many, only
//! at those its expiry index says are due: `expiring.rs`), however many midnights pass;
//! it runs whether or not the customer ever validated, and reads no license of a customer
//! none of whose licenses was ever given an expiry.

use super::PartitionState;
use crate::codes::{NotificationKind, Spec8Reason, Status};
use crate::config::CoreConfig;
use crate::expiry::{first_reminder_day, CheckRun};
use crate::signals::{Facts, Notification};
use crate::time::{format_rfc3339, midnight, Day, Micros, NEVER};

impl PartitionState {
    /// Sets the expiry of license `li` (`NEVER` for none). Every change of an expiry goes
    /// through here, so that its customer's `may_expire` holds.
    pub(super) fn set_expiry(&mut self, li: u32, expires_at: Micros) {
        let l = &mut self.licenses[li as usize];
        let old = std::mem::replace(&mut l.expires_at, expires_at);
        if expires_at != NEVER {
            self.customers[l.customer as usize].may_expire = true;
        }
        self.relist_expiry(li, old);
    }

    /// Decides the `expiring_soon` of customer `ci` over the midnights `first..=last`.
    pub(super) fn remind_expiries(
        &mut self,
        ci: u32,
        first: Day,
        last: Day,
        run: CheckRun,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let c = &self.customers[ci as usize];
        if c.active_licenses == 0 || !c.may_expire {
            return;
        }
        // A customer with many licenses reads only those its index says are due
        // (`expiring.rs`); the tests' reference reads them all.
        #[cfg(test)]
        let indexed = !tests::walk_only();
        #[cfg(not(test))]
        let indexed = true;
        let notice = cfg.notify.expiry_notice_days;
        if let Some(due) = indexed
            .then(|| self.take_due_expiries(ci, last, notice))
            .flatten()
        {
            for li in due {
                self.remind_expiry(ci, li, first, last, run, cfg, out);
            }
            return;
        }
        for i in 0..self.customers[ci as usize].licenses.len() {
            let li = self.customers[ci as usize].licenses[i];
            self.remind_expiry(ci, li, first, last, run, cfg, out);
        }
    }

    /// Decides the `expiring_soon` of license `li` over the midnights `first..=last`.
    #[allow(clippy::too_many_arguments)]
    fn remind_expiry(
        &mut self,
        ci: u32,
        li: u32,
        first: Day,
        last: Day,
        run: CheckRun,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let l = &self.licenses[li as usize];
        if l.expires_at == NEVER || l.status != Status::Active {
            return;
        }
        let Some(email) = self.email_of(li) else {
            return;
        };
        let reminded = l.license8().map_or(NEVER, |r| r.reminded_expiry);
        if reminded == l.expires_at {
            return; // once per license and expiry
        }
        let notice = cfg.notify.expiry_notice_days;
        let Some(day) = first_reminder_day(l.expires_at, notice, first, last, run) else {
            return;
        };
        let n = Notification {
            kind: NotificationKind::ExpiringSoon,
            to: email.to_string(),
            customer_id: self.customers[ci as usize].id.to_string(),
            license_key: Some(l.key().to_string()),
            at: midnight(day),
            reasons: vec![Spec8Reason::ExpiringSoon.as_str().to_string()],
            facts: Some(Facts::ExpiringSoon {
                plan: self.plan_of(l).to_string(),
                expires_at: format_rfc3339(l.expires_at),
            }),
        };
        let expiry = l.expires_at;
        self.license8_mut(li).reminded_expiry = expiry;
        self.push_decision(ci, n, out);
    }
}

#[cfg(test)]
#[path = "reminders_tests.rs"]
mod tests;
