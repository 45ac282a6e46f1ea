//! Merging two states over disjoint customers into one.
//!
//! Owns [`PartitionState::merge`]. Guarantees: the merged state holds every customer,
//! license, decision and per-day figure of both, with license and plan indexes remapped,
//! each license's terms interned in this state's table, and each record indexed as it
//! moves in (room for them reserved first: no index rebuilt,
//! no vector doubled), so its report equals the report of one state that folded both
//! partitions.

use super::PartitionState;

impl PartitionState {
    /// Moves every customer of `other` into this state. The two must hold disjoint
    /// customers (as two partitions do); per-day figures and the MRR book add up.
    pub fn merge(&mut self, mut other: PartitionState) {
        // Their emails move into this state's buffer first (only the live ones).
        self.emails.absorb(
            &other.emails,
            other.licenses.iter_mut().map(|l| &mut l.email),
        );
        let lic_base = self.licenses.len() as u32;
        let plan_map: Vec<u32> = other.plans.iter().map(|p| self.plan_index(p)).collect();
        self.reserve_records(other.customers.len(), other.licenses.len());
        let mut customer_map = Vec::with_capacity(other.customers.len());
        for mut c in other.customers {
            for li in c.licenses.iter_mut() {
                *li += lic_base;
            }
            if let Some(w) = c.watch_mut() {
                w.shift(lic_base);
            }
            if let Some(e) = c.extras.as_deref_mut() {
                e.expiring = None; // derived: built again at its next daily check
                for k in &mut e.notifications {
                    k.renumber_plan(&plan_map);
                }
            }
            if let Some(existing) = self.find_customer(&c.id) {
                // Only the no-customer group may be on both sides (it owns no license):
                // keep the later clock and every remembered id.
                let mine = &mut self.customers[existing as usize];
                mine.clock = mine.clock.max(c.clock);
                mine.seen_ids.absorb(c.seen_ids);
                let ahead = mine.licenses.len() as u32;
                mine.licenses.extend(c.licenses);
                mine.active_licenses += c.active_licenses;
                mine.paying_licenses += c.paying_licenses;
                mine.may_expire |= c.may_expire;
                // Its decisions stay with it (it has none today: they need a license).
                if let Some(theirs) = c.extras.filter(|e| !e.notifications.is_empty()) {
                    let theirs = theirs.notifications.into_iter().map(|mut k| {
                        k.shift_license(ahead);
                        k
                    });
                    mine.extras_mut().notifications.extend(theirs);
                }
                customer_map.push(existing);
                continue;
            }
            customer_map.push(self.insert_customer(c));
        }
        for &ci in &customer_map {
            self.dirty.mark(ci);
        }
        for mut l in other.licenses {
            let mut terms = other.terms.get(l.terms);
            terms.plan = plan_map[terms.plan as usize];
            l.terms = self.terms.intern(terms);
            l.customer = customer_map[l.customer as usize];
            self.push_license(l);
        }
        for (day, s) in other.days {
            let mine = self.days.entry(day).or_default();
            for (a, b) in mine.by_result.iter_mut().zip(s.by_result) {
                *a += b;
            }
            mine.dav += s.dav;
            for (k, v) in s.countries.iter() {
                mine.countries.add(k, v);
            }
        }
        self.mrr.current += other.mrr.current;
        self.mrr.base += other.mrr.base;
        self.mrr.base_through = self.mrr.base_through.max(other.mrr.base_through);
        for (d, v) in other.mrr.days {
            *self.mrr.days.entry(d).or_insert(0) += v;
        }
        self.counts += other.counts;
        self.movements.merge(other.movements);
        self.max_day = self.max_day.max(other.max_day);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CoreConfig;
    use crate::event::decode;
    use crate::signals::Notification;

    fn fold(lines: &[&str]) -> PartitionState {
        let mut s = PartitionState::new();
        for l in lines {
            let e = decode(l.as_bytes()).expect("sample event");
            s.apply(&e, &CoreConfig::default(), &mut Vec::new());
        }
        s
    }

    /// A kept notification names its plan and license by position (`kept.rs`): moved into
    /// a state whose plan names are numbered otherwise, it still reads as it did.
    #[test]
    fn kept_notifications_read_the_same_after_a_merge() {
        let a = fold(&[
            r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"a","license_key":"k1","plan":"pro","domain_limit":2,"mrr_cents":900}"#,
            r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"a","license_key":"k2","plan":"team","domain_limit":2,"mrr_cents":900}"#,
        ]);
        let b = fold(&[
            r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"b","license_key":"k0","plan":"starter","domain_limit":1,"mrr_cents":100}"#,
            r#"{"type":"license.issued","ts":"2026-10-01T00:00:00Z","customer_id":"b","license_key":"k1","plan":"starter","domain_limit":1,"mrr_cents":100,"email":"b@x.example","expires_at":"2026-10-20T00:00:00Z"}"#,
            r#"{"type":"license.validated","ts":"2026-10-21T00:00:00Z","customer_id":"b","license_key":"k1","result":"expired"}"#,
        ]);
        let want: Vec<Notification> = b.notifications().collect();
        assert_eq!(want.len(), 1);
        assert_eq!(want[0].license_key.as_deref(), Some("k1"));
        assert!(format!("{:?}", want[0].facts).contains("starter"));
        let mut merged = a;
        merged.merge(b);
        assert_ne!(&*merged.plans[0], "starter", "the plans are numbered anew");
        let got: Vec<Notification> = merged.notifications().collect();
        assert_eq!(got, want);
    }
}
