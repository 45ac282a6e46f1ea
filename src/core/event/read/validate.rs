//! The checks of an event's fields, from the raw fields found to a typed [`Event`].
//!
//! Guarantees: every field is checked for presence, type and value, in a fixed order, and
//! the first problem found becomes the rejection, naming its reason and field; `null` in
//! an optional field is the same as its absence; fields foreign to the type are ignored.

use std::borrow::Cow;

use super::super::reject::reject;
use super::super::{
    Event, EventKind, RejectReason, Rejection, TicketCategory, ValidationResult, EVENT_TYPES,
};
use super::{Raw, RawEvent};
use crate::time::{parse_rfc3339, Micros};

fn req_str<'a>(v: Option<Raw<'a>>, field: &'static str) -> Result<Cow<'a, str>, Rejection> {
    match v {
        None | Some(Raw::Null) => Err(reject(RejectReason::MissingField, field)),
        Some(Raw::Str(s)) if s.is_empty() => Err(reject(RejectReason::EmptyField, field)),
        Some(Raw::Str(s)) => Ok(s),
        Some(_) => Err(reject(RejectReason::WrongType, field)),
    }
}

fn opt_str<'a>(v: Option<Raw<'a>>, field: &'static str) -> Result<Option<Cow<'a, str>>, Rejection> {
    match v {
        None | Some(Raw::Null) => Ok(None),
        Some(Raw::Str(s)) => Ok(Some(s)),
        Some(_) => Err(reject(RejectReason::WrongType, field)),
    }
}

fn req_uint(v: Option<Raw<'_>>, field: &'static str) -> Result<u64, Rejection> {
    match v {
        None | Some(Raw::Null) => Err(reject(RejectReason::MissingField, field)),
        Some(Raw::Unsigned(n)) => Ok(n),
        Some(_) => Err(reject(RejectReason::WrongType, field)),
    }
}

fn ts_of(s: &str, field: &'static str) -> Result<Micros, Rejection> {
    parse_rfc3339(s).ok_or(reject(RejectReason::BadTimestamp, field))
}

fn opt_ts(v: Option<Raw<'_>>, field: &'static str) -> Result<Option<Micros>, Rejection> {
    match opt_str(v, field)? {
        None => Ok(None),
        Some(s) => ts_of(&s, field).map(Some),
    }
}

impl<'a> RawEvent<'a> {
    pub(super) fn validate(&mut self) -> Result<Event<'a>, Rejection> {
        let ty = req_str(self.type_.take(), "type")?;
        let type_index = EVENT_TYPES
            .iter()
            .position(|t| *t == ty)
            .ok_or(reject(RejectReason::UnknownType, "type"))?;
        let ts = ts_of(&req_str(self.ts.take(), "ts")?, "ts")?;
        let event_id = opt_str(self.event_id.take(), "event_id")?;
        let customer_raw = self.customer_id.take();
        let mut customer_optional = false;
        let kind = self.kind(type_index, &mut customer_optional)?;
        let customer_id = if customer_optional {
            opt_str(customer_raw, "customer_id")?
        } else {
            Some(req_str(customer_raw, "customer_id")?)
        };
        Ok(Event {
            ts,
            event_id,
            customer_id,
            kind,
        })
    }

    fn kind(
        &mut self,
        type_index: usize,
        customer_optional: &mut bool,
    ) -> Result<EventKind<'a>, Rejection> {
        let key = |s: &mut Self| req_str(s.license_key.take(), "license_key");
        Ok(match type_index {
            0 => EventKind::Issued {
                license_key: key(self)?,
                plan: req_str(self.plan.take(), "plan")?,
                domain_limit: req_uint(self.domain_limit.take(), "domain_limit")?,
                mrr_cents: req_uint(self.mrr_cents.take(), "mrr_cents")?,
                email: opt_str(self.email.take(), "email")?,
                expires_at: opt_ts(self.expires_at.take(), "expires_at")?,
            },
            1 => EventKind::Activated {
                license_key: key(self)?,
                domain: opt_str(self.domain.take(), "domain")?,
            },
            2 => {
                let license_key = key(self)?;
                let result = req_str(self.result.take(), "result")?;
                let result = ValidationResult::parse(&result)
                    .ok_or(reject(RejectReason::UnknownResult, "result"))?;
                *customer_optional = result == ValidationResult::InvalidFormat;
                EventKind::Validated {
                    license_key,
                    result,
                    domain: opt_str(self.domain.take(), "domain")?,
                    country: opt_str(self.country.take(), "country")?,
                }
            }
            3 => EventKind::Renewed {
                license_key: key(self)?,
                expires_at: opt_ts(self.expires_at.take(), "expires_at")?,
            },
            4 => EventKind::Expired {
                license_key: key(self)?,
            },
            5 => EventKind::Revoked {
                license_key: key(self)?,
            },
            6 => EventKind::SubscriptionChanged {
                license_key: key(self)?,
                plan: req_str(self.plan.take(), "plan")?,
                domain_limit: req_uint(self.domain_limit.take(), "domain_limit")?,
                mrr_cents: req_uint(self.mrr_cents.take(), "mrr_cents")?,
            },
            7 => EventKind::SubscriptionCanceled {
                license_key: key(self)?,
            },
            8 => EventKind::DomainAdded {
                license_key: key(self)?,
                domain: req_str(self.domain.take(), "domain")?,
            },
            9 => EventKind::DomainRemoved {
                license_key: key(self)?,
                domain: req_str(self.domain.take(), "domain")?,
            },
            10 => EventKind::ApiKeyCreated {
                api_key_id: req_str(self.api_key_id.take(), "api_key_id")?,
            },
            11 => EventKind::ApiKeyDeleted {
                api_key_id: req_str(self.api_key_id.take(), "api_key_id")?,
            },
            12 => EventKind::DowngradeInquiry,
            13 => {
                let ticket_id = req_str(self.ticket_id.take(), "ticket_id")?;
                let category = req_str(self.category.take(), "category")?;
                EventKind::TicketOpened {
                    ticket_id,
                    category: TicketCategory::parse(&category)
                        .ok_or(reject(RejectReason::UnknownCategory, "category"))?,
                }
            }
            14 => EventKind::TicketClosed {
                ticket_id: req_str(self.ticket_id.take(), "ticket_id")?,
            },
            15 => EventKind::PaymentFailed,
            16 => EventKind::PaymentSucceeded,
            17 => EventKind::MemberInvited,
            _ => EventKind::FeatureDenied {
                license_key: key(self)?,
                feature: req_str(self.feature.take(), "feature")?,
            },
        })
    }
}
