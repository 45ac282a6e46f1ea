//! Cache hints for a fold that knows its next events: the records an event will read are
//! asked for a few events ahead, so that their memory loads overlap the events before.
//!
//! Owns [`PartitionState::hint_ahead`], the hints given before each event of a run
//! (the event, the text it borrows from its line, the customer record, its licenses,
//! their boxed parts, each some events ahead), and [`PartitionState::apply_ahead`], which
//! applies a run of events with them.
//! With many customers the fold's time goes to cache misses on the customer and license
//! records (each in a vector too large for the caches), and one event's misses cannot
//! overlap another's: each `apply` is too long for the processor to look past. These
//! hints let a caller ask for them early. Guarantees: a hint changes nothing (it reads
//! the index and the records, and never writes), so the state, the decisions and the
//! report are the same with or without it; it costs a hash and a probe of the index.

use super::PartitionState;
use crate::config::CoreConfig;
use crate::event::Event;
use crate::signals::Notification;

/// How many events ahead the event itself is asked for (the fold reads the events in
/// order, but they were decoded on another thread, into memory no longer cached here).
const EVENT_AHEAD: usize = 48;
/// How many events ahead the bytes of the event's text (its customer id, event id,
/// license key, country, ...) are asked for.
const TEXT_AHEAD: usize = 32;
/// How many events ahead a customer's record is asked for.
const CUSTOMER_AHEAD: usize = 16;
/// How many events ahead the records found through the customer are asked for (its
/// record having been asked for `CUSTOMER_AHEAD - RECORDS_AHEAD` events before).
const RECORDS_AHEAD: usize = 8;
/// How many events ahead the boxed parts of those records are asked for.
const EXTRAS_AHEAD: usize = 3;
/// The customers found at the second stage, kept for the third (more than
/// `RECORDS_AHEAD - EXTRAS_AHEAD`, so that a slot is read before it is written again).
const FOUND: usize = 8;

/// Bytes of one cache line.
const LINE: usize = 64;

/// Asks the processor to start loading the cache lines of the `bytes` at `p` (a hint:
/// it never faults and never changes memory).
#[inline(always)]
fn hint(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    for off in (0..bytes).step_by(LINE) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint; it reads nothing architecturally and never faults,
        // whatever the address (`wrapping_add` keeps the pointer arithmetic defined).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// Hints the whole of `*r`.
#[inline(always)]
fn hint_record<T>(r: &T) {
    hint((r as *const T).cast(), std::mem::size_of::<T>());
}

/// Hints the first and last lines of a slice (a binary search starts in the middle, but
/// the short slices here span one or two lines).
#[inline(always)]
fn hint_slice<T>(s: &[T]) {
    let bytes = std::mem::size_of_val(s);
    if bytes > 0 {
        let p: *const u8 = s.as_ptr().cast();
        hint(p, 1);
        hint(p.wrapping_add(bytes - 1), 1);
    }
}

/// Hints the bytes of the strings the fold reads of an event: its customer id, event id,
/// license key, and per type the country, domain, plan and email. Those it borrows from
/// its line lie within the line, so one span of a few cache lines covers them all
/// ([`text_span`]); a string the decoder had to copy (one with escapes) lies elsewhere,
/// and is hinted on its own.
#[inline(always)]
fn hint_text(ev: &Event<'_>) {
    if let Some((p, bytes)) = text_span(ev, |s| hint_slice(s.as_bytes())) {
        hint(p, bytes);
    }
}

/// The span of whole cache lines that holds every string `ev` borrows among those the fold
/// reads (none when it borrows none, or when they span more than [`TEXT_MAX`] bytes, which
/// one line of a log never does); `owned` gets each of them the decoder had to copy.
#[inline(always)]
fn text_span(ev: &Event<'_>, mut owned: impl FnMut(&str)) -> Option<(*const u8, usize)> {
    use crate::event::EventKind as K;
    use std::borrow::Cow;
    let (mut first, mut lo, mut hi) = (std::ptr::null::<u8>(), usize::MAX, 0usize);
    let mut add = |s: Option<&Cow<'_, str>>| match s {
        Some(Cow::Borrowed(s)) => {
            let p = s.as_ptr() as usize;
            if p < lo {
                (first, lo) = (s.as_ptr(), p);
            }
            hi = hi.max(p + s.len());
        }
        Some(Cow::Owned(s)) => owned(s),
        None => {}
    };
    add(ev.customer_id.as_ref());
    add(ev.event_id.as_ref());
    add(ev.kind.license_key_text());
    match &ev.kind {
        K::Validated {
            domain, country, ..
        } => {
            add(domain.as_ref());
            add(country.as_ref());
        }
        K::Issued { plan, email, .. } => {
            add(Some(plan));
            add(email.as_ref());
        }
        K::Activated { domain, .. } => add(domain.as_ref()),
        K::DomainAdded { domain, .. } | K::DomainRemoved { domain, .. } => add(Some(domain)),
        _ => {}
    }
    let back = lo % LINE;
    (hi > lo && hi - lo <= TEXT_MAX).then(|| (first.wrapping_sub(back), hi - lo + back))
}

/// The most bytes [`text_span`] spans (a log line's text spans far less).
const TEXT_MAX: usize = 16 * LINE;

/// The hints in flight over a run of events: the customers found at the second stage,
/// kept for the third. One per run, handed to [`PartitionState::hint_ahead`] at each event.
#[derive(Debug, Default)]
pub struct Lookahead {
    found: [Option<u32>; FOUND],
}

/// The customer id of `events[k]`, if there is such an event (`""` for none, as the fold).
fn id_at<'e>(events: &'e [&Event<'_>], k: usize) -> Option<&'e str> {
    events
        .get(k)
        .map(|e| e.customer_id.as_deref().unwrap_or(""))
}

impl PartitionState {
    /// Applies `events` in order, exactly as [`PartitionState::apply`] one by one would,
    /// asking for each event's records some events before it is applied. `made` gets
    /// each notification decided, with the position in `events` of the event that made
    /// it, in decision order.
    pub fn apply_ahead(
        &mut self,
        events: &[&Event<'_>],
        cfg: &CoreConfig,
        mut made: impl FnMut(usize, Notification),
    ) {
        let mut ahead = Lookahead::default();
        let mut out = Vec::new();
        for (k, ev) in events.iter().enumerate() {
            self.hint_ahead(&mut ahead, events, k);
            self.apply(ev, cfg, &mut out);
            for n in out.drain(..) {
                made(k, n);
            }
        }
    }

    /// To be called just before `events[k]` is applied, for `k` = 0, 1, 2, … in turn
    /// (the events the caller will apply, in order): asks for the records of the events
    /// ahead of it, each at its stage's distance. Only hints: the caller may apply other
    /// events between, skip some, or stop, and nothing but speed changes.
    pub fn hint_ahead(&self, ahead: &mut Lookahead, events: &[&Event<'_>], k: usize) {
        // Each stage for the event at its distance; the first call also gives the nearer
        // events the stages that no earlier call gave them.
        let at = |distance: usize| {
            let to = k.saturating_add(distance);
            (if k == 0 { 0 } else { to })..=to
        };
        for e in at(EVENT_AHEAD).filter_map(|p| events.get(p)) {
            hint_record(*e);
        }
        for e in at(TEXT_AHEAD).filter_map(|p| events.get(p)) {
            hint_text(e);
        }
        for c in at(CUSTOMER_AHEAD).filter_map(|p| id_at(events, p)) {
            self.prefetch_customer(c);
        }
        for p in at(RECORDS_AHEAD) {
            if let Some(c) = id_at(events, p) {
                ahead.found[p % FOUND] = self.prefetch_records(c);
            }
        }
        if let Some(ci) = ahead.found[(k + EXTRAS_AHEAD) % FOUND].take() {
            self.prefetch_extras(ci);
        }
    }

    /// First stage, for an event some way ahead: starts loading the record of every
    /// customer the index holds under the hash of `customer_id` (most often exactly the
    /// one; the id is not compared, so nothing waits for memory).
    fn prefetch_customer(&self, customer_id: &str) {
        let h = self.index.hasher.hash_one(customer_id);
        let customers = &self.customers;
        let _ = self.index.customers.find(h, |&j| {
            if let Some(c) = customers.get(j as usize) {
                hint_record(c);
            }
            false
        });
    }

    /// Second stage, for a nearer event whose customer record was hinted before: finds
    /// the customer and starts loading its licenses' records (when it has few enough to
    /// be found by a scan), its days of validations and its remembered ids. Returns the
    /// customer's position, for the third stage.
    fn prefetch_records(&self, customer_id: &str) -> Option<u32> {
        let ci = self.find_customer(customer_id)?;
        let c = &self.customers[ci as usize];
        if let Some(own) = c.licenses.inline() {
            for &li in own {
                if let Some(l) = self.licenses.get(li as usize) {
                    hint_record(l);
                }
            }
        }
        hint_slice(c.validations.days());
        hint_slice(c.seen_ids.packed_words());
        Some(ci)
    }

    /// Third stage, for a still nearer event whose license records were hinted before:
    /// starts loading the boxed parts of the customer and of those licenses.
    fn prefetch_extras(&self, ci: u32) {
        let Some(c) = self.customers.get(ci as usize) else {
            return;
        };
        if let Some(e) = &c.extras {
            hint_record(&**e);
        }
        if let Some(own) = c.licenses.inline() {
            for &li in own {
                if let Some(e) = self
                    .licenses
                    .get(li as usize)
                    .and_then(|l| l.extras.as_ref())
                {
                    hint_record(&**e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;

    /// Lines over many customers (some with more licenses than a scan finds), days apart
    /// so that midnights run, with duplicates, events without a customer, validations of
    /// every kind and domains beyond the limits (so that upgrades and churn are decided).
    fn lines(n: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..n)
            .map(|i| {
                // Six events in a row for one license of one customer.
                let m = i / 6;
                let c = (m * 7919) % 29;
                let k = m % (if c % 5 == 0 { 9 } else { 2 });
                let day = 1 + i / 40;
                let (h, id) = (i % 24, i % 503);
                match i % 6 {
                    0 => format!(
                        r#"{{"type":"license.issued","ts":"2026-10-{day:02}T{h:02}:00:00Z","event_id":"e{id}","customer_id":"c{c}","license_key":"k{k}","plan":"pro","domain_limit":2,"mrr_cents":{},"email":"a{c}@example.com"}}"#,
                        100 * (i % 3)
                    ),
                    1 => format!(
                        r#"{{"type":"license.activated","ts":"2026-10-{day:02}T{h:02}:00:00Z","event_id":"e{id}","customer_id":"c{c}","license_key":"k{k}","domain":"d{}.example"}}"#,
                        m % 4
                    ),
                    2 => format!(
                        r#"{{"type":"license.validated","ts":"2026-10-{day:02}T{h:02}:00:00Z","license_key":"x","result":"invalid_format","country":"DE"}}"#
                    ),
                    _ => format!(
                        r#"{{"type":"license.validated","ts":"2026-10-{day:02}T{h:02}:00:00Z","event_id":"e{id}","customer_id":"c{c}","license_key":"k{k}","result":"{}","domain":"d{}.example","country":"FR"}}"#,
                        ["valid", "rate_limited", "domain_mismatch"][i % 3],
                        i % 5
                    ),
                }
            })
            .collect();
        // Every 50th line comes again at once: a duplicate of its customer.
        for i in (49..n).step_by(50) {
            v[i] = v[i - 1].clone();
        }
        v
    }

    #[test]
    fn applying_ahead_is_applying_one_by_one() {
        let mut cfg = CoreConfig::default();
        cfg.upgrade.rate_limited_more_than = 1;
        for n in [0, 1, 5, EVENT_AHEAD + 1, 1200] {
            let text = lines(n);
            let events: Vec<Event<'_>> = text
                .iter()
                .map(|l| decode(l.as_bytes()).unwrap_or_else(|e| panic!("{l}: {e:?}")))
                .collect();
            let refs: Vec<&Event<'_>> = events.iter().collect();
            let (mut one, mut ahead) = (PartitionState::new(), PartitionState::new());
            let (mut made_one, mut out) = (Vec::new(), Vec::new());
            for (k, ev) in events.iter().enumerate() {
                one.apply(ev, &cfg, &mut out);
                made_one.extend(out.drain(..).map(|x| (k, x)));
            }
            let mut made_ahead = Vec::new();
            ahead.apply_ahead(&refs, &cfg, |k, x| made_ahead.push((k, x)));
            assert_eq!(made_one, made_ahead, "{n} events");
            assert_eq!(
                one.to_bytes().unwrap(),
                ahead.to_bytes().unwrap(),
                "{n} events"
            );
            assert_eq!(one.counts(), ahead.counts());
            if n == 1200 {
                // Decisions at events and at midnights, for several customers.
                let kinds: std::collections::BTreeSet<_> = made_one
                    .iter()
                    .map(|(_, x)| format!("{:?}", x.kind))
                    .collect();
                let whom: std::collections::BTreeSet<_> =
                    made_one.iter().map(|(_, x)| &x.customer_id).collect();
                assert!(kinds.len() >= 2 && whom.len() >= 3, "{kinds:?} {whom:?}");
                assert!(one.counts().duplicates > 0);
            }
        }
    }

    /// The span covers every string the fold reads of the event, from the start of its
    /// first cache line, and nothing far beyond the line; a copied string is handed over
    /// on its own instead.
    #[test]
    fn the_text_span_covers_what_the_fold_reads() {
        let line = r#"{"type":"license.validated","ts":"2026-10-01T10:00:00Z","event_id":"e1","customer_id":"c1","license_key":"k1","result":"valid","domain":"d.example","country":"FR"}"#;
        let ev = decode(line.as_bytes()).unwrap();
        let mut copied = Vec::new();
        let (p, bytes) = text_span(&ev, |s| copied.push(s.to_string())).unwrap();
        assert!(copied.is_empty(), "{copied:?}");
        assert_eq!(p as usize % LINE, 0);
        let (start, end) = (p as usize, p as usize + bytes);
        let within = |s: &str| start <= s.as_ptr() as usize && s.as_ptr() as usize + s.len() <= end;
        let crate::event::EventKind::Validated {
            license_key,
            domain,
            country,
            ..
        } = &ev.kind
        else {
            panic!("{:?}", ev.kind)
        };
        for s in [
            ev.customer_id.as_deref().unwrap(),
            ev.event_id.as_deref().unwrap(),
            license_key,
            domain.as_deref().unwrap(),
            country.as_deref().unwrap(),
        ] {
            assert!(within(s), "{s} outside the span");
        }
        // From the line's first field read (the event id) to its last (the country).
        let base = line.as_ptr() as usize;
        assert!(start <= base + line.find("e1").unwrap());
        assert!(end >= base + line.find("FR").unwrap() + 2);
        assert!(end <= base + line.len() && start >= base - base % LINE);

        // An escaped customer id is copied by the decoder: handed over, not spanned.
        let escaped = line.replace(r#""c1""#, r#""c\u0031""#);
        let ev = decode(escaped.as_bytes()).unwrap();
        let mut copied = Vec::new();
        let (p, bytes) = text_span(&ev, |s| copied.push(s.to_string())).unwrap();
        assert_eq!(copied, ["c1"]);
        assert!(p as usize + bytes <= escaped.as_ptr() as usize + escaped.len());

        // Strings further apart than the bound (an ignored field between them) get no span.
        let apart = line.replace(
            r#""result""#,
            &format!(r#""note":"{}","result""#, "x".repeat(TEXT_MAX)),
        );
        let ev = decode(apart.as_bytes()).unwrap();
        assert!(text_span(&ev, |_| ()).is_none());
    }
}
