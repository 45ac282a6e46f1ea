//! Tests of the kept form of a notification (`kept.rs`): it gives back what was decided,
//! follows its license and plan through merges, and keeps a recipient read from its
//! license through a change of that license's email.

use super::*;

const KEYS: [&str; 5] = [
    "LK-1",
    "LK-a-license-key-longer-than-twenty-four-bytes",
    "K",
    "LK-4",
    "LK-5",
];

/// A state whose customer `cus_1` (position 0) holds the licenses of `KEYS`, in order.
fn state() -> PartitionState {
    let mut s = PartitionState::new();
    let ci = s.customer_index("cus_1");
    for key in KEYS {
        s.license_index(ci, key, 0);
    }
    s
}

fn sample(reasons: &[&str], key: Option<&str>) -> Notification {
    Notification {
        kind: NotificationKind::Upgrade,
        to: "owner@customer.example".into(),
        customer_id: "cus_1".into(),
        license_key: key.map(str::to_string),
        at: 1_788_048_000_123_456,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        facts: Some(Facts::Renewal {
            plan: "starter".into(),
            expires_at: None,
        }),
    }
}

/// `n` kept by customer 0 of `s`, and given back (with and without its figures).
fn round_trip(s: &mut PartitionState, n: &Notification) -> (Kept, Notification, Notification) {
    let kept = s.kept_form(0, n.clone());
    let names = s.names(&s.customers[0]);
    let (full, bare) = (
        kept.notification(&names, true),
        kept.notification(&names, false),
    );
    (kept, full, bare)
}

#[test]
fn gives_back_what_it_kept() {
    let mut s = state();
    let triggers: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
    for (reasons, key) in [
        (vec!["expired"], Some(KEYS[0])),
        (triggers.clone(), Some(KEYS[1])),
        (vec!["validation_decline"], None),
        (
            vec![
                Spec8Reason::Revoked.as_str(),
                Spec8Reason::PaymentFailed.as_str(),
            ],
            Some(KEYS[2]),
        ),
        (vec!["not a code name", "expired"], Some(KEYS[4])),
        (vec!["expired"; CODES_MAX + 1], Some(KEYS[3])),
        (vec![], None),
    ] {
        let n = sample(&reasons, key);
        let (kept, full, bare) = round_trip(&mut s, &n);
        assert_eq!(full, n, "{reasons:?}");
        let position = key.map(|k| KEYS.iter().position(|x| *x == k).unwrap() as u32);
        assert_eq!(kept.license, position.unwrap_or(NO_LICENSE));
        let mut without = n.clone();
        without.facts = None;
        assert_eq!(bare, without);
    }
}

#[test]
fn gives_back_the_figures_it_kept() {
    let renewal = |plan: &str, expires_at: Option<&str>| {
        Some(Facts::Renewal {
            plan: plan.into(),
            expires_at: expires_at.map(str::to_string),
        })
    };
    let long_plan = "p".repeat(40);
    let cases = [
        // (figures, held inline as a renewal)
        (renewal("starter", None), true),
        (renewal("professional", Some("2026-10-01T00:00:00Z")), true),
        (
            renewal("starter", Some(&format_rfc3339(1_788_048_000_123_456))),
            true,
        ),
        // not as `format_rfc3339` writes it: kept as given
        (renewal("starter", Some("2026-10-01T02:00:00+02:00")), false),
        (renewal("starter", Some("not a time")), false),
        // any plan name: it is a position in the state's names
        (renewal(&long_plan, None), true),
        (
            Some(Facts::RevokedUse {
                plan: "starter".into(),
                status: "revoked".into(),
                payment_failed: true,
            }),
            false,
        ),
        (None, false),
    ];
    let mut s = state();
    for (facts, inline) in cases {
        let mut n = sample(&["expired"], Some("K"));
        n.kind = NotificationKind::Renewal;
        n.facts = facts;
        let (kept, full, _) = round_trip(&mut s, &n);
        assert_eq!(full, n);
        assert_eq!(
            matches!(kept.facts, KeptFacts::Renewal { .. }),
            inline,
            "{n:?}"
        );
    }
}

/// A merge renumbers plan names and a customer's list may grow in front: the kept
/// notification follows both.
#[test]
fn follows_its_plan_and_license_when_they_move() {
    let mut s = state();
    let mut n = sample(&["expired"], Some(KEYS[1]));
    n.kind = NotificationKind::Renewal;
    let mut kept = s.kept_form(0, n.clone());
    // Plan names renumbered: "starter" moves to the end of a longer list.
    let old = s.plan_index("starter") as usize;
    let mut plans: Vec<Box<str>> = vec!["a".into(), "b".into()];
    let mut map: Vec<u32> = Vec::new();
    for (i, p) in s.plans.iter().enumerate() {
        map.push(plans.len() as u32);
        plans.push(p.clone());
        assert_eq!(i == old, &**p == "starter");
    }
    kept.renumber_plan(&map);
    // Two licenses put in front of the customer's list.
    kept.shift_license(2);
    let own: Vec<u32> = [6, 5]
        .into_iter()
        .chain(s.customers[0].licenses.iter().copied())
        .collect();
    let mut licenses = s.licenses.clone();
    licenses.extend(s.licenses[..2].iter().cloned());
    let names = Names {
        customer_id: "cus_1",
        own: &own,
        licenses: &licenses,
        plans: &plans,
        emails: &s.emails,
    };
    assert_eq!(kept.notification(&names, true), n);
}

/// A recipient that is its license's email is read from the license, and stays what it
/// was when the license's email changes later.
#[test]
fn a_recipient_read_from_its_license_outlives_a_change_of_email() {
    let mut s = state();
    let li = s.find_license(0, KEYS[0]).unwrap();
    s.set_email(li, Some("first@x.example"));
    let to = |to: &str| Notification {
        to: to.into(),
        ..sample(&["expired"], Some(KEYS[0]))
    };
    let kept = |s: &PartitionState| -> Vec<String> {
        s.notifications_of(&s.customers[0], true)
            .map(|n| n.to)
            .collect()
    };
    let borrowed = |s: &PartitionState| -> Vec<bool> {
        s.customers[0]
            .kept()
            .iter()
            .map(|k| k.to.is_none())
            .collect()
    };
    let mut out = Vec::new();
    s.push_decision(0, to("first@x.example"), &mut out);
    s.push_decision(0, to("team@x.example"), &mut out);
    assert_eq!(borrowed(&s), [true, false]);
    // Another license's first email: nothing reads it yet, so nothing is copied.
    let other = s.find_license(0, KEYS[1]).unwrap();
    s.set_email(other, Some("other@x.example"));
    assert_eq!(borrowed(&s), [true, false]);
    s.set_email(li, Some("second@x.example"));
    s.push_decision(0, to("second@x.example"), &mut out);
    assert_eq!(borrowed(&s), [false, false, true]);
    assert_eq!(
        kept(&s),
        ["first@x.example", "team@x.example", "second@x.example"]
    );
    // The same email again changes nothing; none at all leaves the kept one its own.
    s.set_email(li, Some("second@x.example"));
    assert_eq!(borrowed(&s), [false, false, true]);
    s.set_email(li, None);
    assert_eq!(borrowed(&s), [false, false, false]);
    assert_eq!(
        kept(&s),
        ["first@x.example", "team@x.example", "second@x.example"]
    );
    assert_eq!(
        out.iter().map(|n| n.to.clone()).collect::<Vec<_>>(),
        kept(&s)
    );
}

#[test]
fn code_names_are_coded_and_others_are_not() {
    let mut s = state();
    let coded = s.kept_form(
        0,
        sample(&["domain_limit_approaching", "team_growth"], None),
    );
    assert!(matches!(coded.reasons, Reasons::Codes { len: 2, .. }));
    let other = s.kept_form(0, sample(&["domain_limit_approaching", "typo"], None));
    assert!(matches!(other.reasons, Reasons::Strings(_)));
    // A name in two enums (the same string) has one code, its first position, and
    // that code gives the name back.
    let names: Vec<_> = reason_names().collect();
    assert!(names.len() <= u8::MAX as usize);
    for name in &names {
        let k = s.kept_form(0, sample(&[name], None));
        assert!(matches!(k.reasons, Reasons::Codes { len: 1, .. }), "{name}");
        assert_eq!(k.reasons.to_strings(), vec![name.to_string()]);
    }
}

#[test]
fn is_smaller_than_a_notification() {
    let (kept, full) = (size_of::<Kept>(), size_of::<Notification>());
    eprintln!("Kept {kept} Notification {full}");
    assert!(kept < full, "Kept {kept} >= Notification {full}");
    // A budget, as the records' (memory.rs): growing it must be a decision.
    // Issue 10: 104 -> 64 by naming the license by its position in the customer's
    // list and a renewal's plan by its position in the state's plan names.
    assert!(kept <= 64, "Kept grew: {kept}");
}
