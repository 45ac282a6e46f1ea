//! The per-event effects: how each event type changes customers, licenses and figures.
//!
//! Owns [`PartitionState::fold_effect`] (SPEC §1's table of effects) and the license
//! changes it shares: domains, status and MRR, plan changes. Guarantees: a status change
//! away from `active` books the license's MRR out, a return books it in, and a plan change
//! on an active license books the difference; events older than the window change state
//! but no windowed figure.

use super::index::domain_hash;
use super::terms::Terms;
use super::PartitionState;
use crate::codes::{ChurnSignal, Status};
use crate::config::CoreConfig;
use crate::event::{Event, EventKind, TicketCategory, ValidationResult};
use crate::signals::Notification;
use crate::time::{day_of, Day, Micros, NEVER};

impl PartitionState {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fold_effect(
        &mut self,
        ci: u32,
        ev: &Event<'_>,
        day: Day,
        floor: Day,
        in_window: bool,
        cfg: &CoreConfig,
        out: &mut Vec<Notification>,
    ) {
        let ts = ev.ts;
        let mut churn_signal: Option<ChurnSignal> = None;
        let mut check_upgrade = true;
        // The license the event is about, checked for an upgrade; and whether it is an
        // invite that turned `team_growth` on (`watch.rs`).
        let mut own: Option<u32> = None;
        let mut team_on = false;
        match &ev.kind {
            EventKind::Issued {
                license_key,
                plan,
                domain_limit,
                mrr_cents,
                email,
                expires_at,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                let plan = self.plan_index(plan);
                self.licenses[li as usize].mark_issued(ts);
                self.set_email(li, email.as_deref());
                // An issue without `expires_at` clears the expiry (SPEC §8.5).
                self.set_expiry(li, expires_at.unwrap_or(NEVER));
                self.change_subscription(li, plan, *domain_limit, *mrr_cents, day);
                self.set_status(li, Status::Active, day);
                own = Some(li);
            }
            EventKind::Activated {
                license_key,
                domain,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                let l = &mut self.licenses[li as usize];
                if l.first_activation == NEVER || ts < l.first_activation {
                    l.first_activation = ts;
                }
                if let Some(d) = domain {
                    self.add_domain(li, d);
                }
                own = Some(li);
            }
            EventKind::Validated {
                license_key,
                result,
                country,
                domain,
            } => {
                if in_window {
                    if let Some(stats) = self.day_stats(day, cfg) {
                        stats.by_result[result.index()] += 1;
                        if let Some(country) = country {
                            stats.countries.add(country, 1);
                        }
                    }
                }
                if *result == ValidationResult::InvalidFormat {
                    check_upgrade = false;
                } else {
                    let (li, _) = self.license_index(ci, license_key, ts);
                    own = Some(li);
                    let l = &mut self.licenses[li as usize];
                    if l.last_validation == NEVER || ts > l.last_validation {
                        l.last_validation = ts;
                    }
                    if *result == ValidationResult::Valid
                        && (l.first_valid == NEVER || ts < l.first_valid)
                    {
                        l.first_valid = ts;
                    }
                    if in_window {
                        let fresh = l.validated_days.mark(day);
                        if fresh {
                            if let Some(stats) = self.day_stats(day, cfg) {
                                stats.dav += 1;
                            }
                        }
                        self.customers[ci as usize].validations.add(day, 1, floor);
                        if *result == ValidationResult::RateLimited {
                            self.licenses[li as usize]
                                .extras_mut()
                                .rate_limited
                                .add(day, 1, floor);
                        }
                    }
                    match result {
                        ValidationResult::Expired => self.decide_renewal(li, ts, cfg, out),
                        ValidationResult::Revoked => self.on_revoked_validation(li, ts, cfg, out),
                        ValidationResult::DomainMismatch => {
                            let d = domain.as_deref();
                            self.on_domain_mismatch(li, day, d, floor, in_window, ts, cfg, out);
                        }
                        _ => {}
                    }
                }
            }
            EventKind::Renewed {
                license_key,
                expires_at,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                if let Some(e) = expires_at {
                    self.set_expiry(li, *e);
                }
                self.set_status(li, Status::Active, day);
                own = Some(li);
            }
            EventKind::Expired { license_key } => {
                own = Some(self.end_license(ci, license_key, ts, Status::Expired, day))
            }
            EventKind::Revoked { license_key } => {
                own = Some(self.end_license(ci, license_key, ts, Status::Revoked, day))
            }
            EventKind::SubscriptionCanceled { license_key } => {
                own = Some(self.end_license(ci, license_key, ts, Status::Canceled, day))
            }
            EventKind::SubscriptionChanged {
                license_key,
                plan,
                domain_limit,
                mrr_cents,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                let plan = self.plan_index(plan);
                self.change_subscription(li, plan, *domain_limit, *mrr_cents, day);
                own = Some(li);
            }
            EventKind::DomainAdded {
                license_key,
                domain,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                self.add_domain(li, domain);
                own = Some(li);
            }
            EventKind::DomainRemoved {
                license_key,
                domain,
            } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                self.licenses[li as usize]
                    .domains
                    .remove(domain_hash(domain));
                own = Some(li);
                churn_signal = Some(ChurnSignal::DomainDeactivation);
            }
            EventKind::ApiKeyCreated { .. } => {}
            EventKind::ApiKeyDeleted { .. } => churn_signal = Some(ChurnSignal::ApiKeyDeletion),
            EventKind::DowngradeInquiry => churn_signal = Some(ChurnSignal::DowngradeInquiry),
            EventKind::TicketOpened {
                ticket_id,
                category,
            } => {
                self.customers[ci as usize]
                    .extras_mut()
                    .open_tickets
                    .open(ticket_id);
                if *category == TicketCategory::Cancellation {
                    churn_signal = Some(ChurnSignal::CancellationTicket);
                }
            }
            EventKind::TicketClosed { ticket_id } => {
                self.customers[ci as usize]
                    .extras_mut()
                    .open_tickets
                    .close(ticket_id);
            }
            EventKind::PaymentFailed => {
                self.customers[ci as usize].payment_failed = true;
                churn_signal = Some(ChurnSignal::PaymentFailed);
            }
            EventKind::PaymentSucceeded => self.customers[ci as usize].payment_failed = false,
            EventKind::MemberInvited => {
                if in_window {
                    let c = &mut self.customers[ci as usize];
                    let clock_day = day_of(c.clock);
                    let invites = &mut c.extras_mut().invites;
                    invites.add(day, 1, floor);
                    team_on = Self::invite_turned_team_on(invites, day, clock_day, cfg);
                }
            }
            EventKind::FeatureDenied { license_key, .. } => {
                let (li, _) = self.license_index(ci, license_key, ts);
                own = Some(li);
                if in_window {
                    self.licenses[li as usize]
                        .extras_mut()
                        .features_denied
                        .add(day, 1, floor);
                }
            }
        }
        if let Some(signal) = churn_signal {
            self.decide_churn(ci, signal, ts, cfg, out);
        }
        if check_upgrade {
            self.check_upgrades(ci, own, team_on, ts, cfg, out);
        }
    }

    pub(super) fn add_domain(&mut self, li: u32, domain: &str) {
        self.licenses[li as usize]
            .domains
            .insert(domain_hash(domain));
    }

    /// Moves the license to an ended `status`; returns it.
    pub(super) fn end_license(
        &mut self,
        ci: u32,
        key: &str,
        ts: Micros,
        status: Status,
        day: Day,
    ) -> u32 {
        let (li, _) = self.license_index(ci, key, ts);
        self.set_status(li, status, day);
        li
    }

    /// Moves a license to `status`, booking its MRR in or out of the total.
    pub(super) fn set_status(&mut self, li: u32, status: Status, day: Day) {
        let l = &mut self.licenses[li as usize];
        let was_active = l.status == Status::Active;
        let now_active = status == Status::Active;
        l.status = status;
        let mrr = self.terms.get(l.terms).mrr_cents as i128;
        let paying = (mrr > 0) as u32;
        let c = &mut self.customers[l.customer as usize];
        match (was_active, now_active) {
            (true, false) => {
                c.active_licenses -= 1;
                c.paying_licenses = c.paying_licenses.saturating_sub(paying);
                self.mrr.book(day, -mrr);
            }
            (false, true) => {
                c.active_licenses += 1;
                c.paying_licenses += paying;
                self.mrr.book(day, mrr);
                self.relist_active(li);
            }
            _ => {}
        }
    }

    /// Changes plan, limit and price, booking the difference when the license is active.
    pub(super) fn change_subscription(
        &mut self,
        li: u32,
        plan: u32,
        limit: u64,
        mrr: u64,
        day: Day,
    ) {
        let l = &mut self.licenses[li as usize];
        let old = self.terms.get(l.terms).mrr_cents;
        let delta = mrr as i128 - old as i128;
        let was_paying = old > 0;
        l.terms = self.terms.replace(
            l.terms,
            Terms {
                plan,
                domain_limit: limit,
                mrr_cents: mrr,
            },
        );
        if l.status == Status::Active {
            let c = &mut self.customers[l.customer as usize];
            c.paying_licenses =
                (c.paying_licenses + (mrr > 0) as u32).saturating_sub(was_paying as u32);
            self.mrr.book(day, delta);
        }
    }
}
