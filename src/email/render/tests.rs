//! The renderer's tests: headers, escaping, refusals, cutting, replaced templates and
//! the variables of every kind.

use super::*;
use crate::core::signals::{Facts, LicenseFacts};
use crate::core::time::parse_rfc3339;

fn cfg() -> EmailConfig {
    EmailConfig {
        reply_to: Some("Support <support@example.com>".into()),
        ..EmailConfig::default()
    }
}

fn upgrade(license: &str, plan: &str) -> Notification {
    Notification {
        kind: NotificationKind::Upgrade,
        to: "owner@customer.example".into(),
        customer_id: "cus_1".into(),
        license_key: Some(license.into()),
        at: parse_rfc3339("2026-10-03T10:00:00Z").unwrap(),
        reasons: vec![
            "domain_limit_approaching".into(),
            "rate_limit_frequent".into(),
        ],
        facts: Some(Facts::Upgrade {
            plan: plan.into(),
            domains_used: 9,
            domain_limit: 10,
            rate_limited_30d: 14,
            features_denied_30d: 2,
            invites_30d: 1,
        }),
    }
}

fn churn(customer: &str) -> Notification {
    Notification {
        kind: NotificationKind::ChurnWarning,
        to: "customer-success@example.com".into(),
        customer_id: customer.into(),
        license_key: None,
        at: parse_rfc3339("2026-10-11T00:00:00Z").unwrap(),
        reasons: vec!["validation_decline".into()],
        facts: Some(Facts::ChurnWarning {
            score: 45,
            penalties: vec![
                ("inactive_7d".into(), 20),
                ("validation_decline".into(), 20),
            ],
            licenses: vec![LicenseFacts {
                license_key: "K1".into(),
                plan: "pro".into(),
                status: "active".into(),
                mrr_cents: 123456,
            }],
            mrr_cents: 123456,
        }),
    }
}

fn parts(e: &RenderedEmail) -> (String, String, String) {
    let bytes = e.to_bytes();
    let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    (
        msg.subject().unwrap_or_default().to_string(),
        msg.body_text(0).unwrap_or_default().to_string(),
        msg.body_html(0).unwrap_or_default().to_string(),
    )
}

#[test]
fn upgrade_names_its_figures_and_link() {
    let r = Renderer::new(&cfg()).unwrap();
    let e = r.render(&upgrade("LK 1/ä&x", "pro")).unwrap();
    let (subject, text, html) = parts(&e);
    assert_eq!(
        subject,
        "Your pro license is outgrowing its plan: 9 of 10 domains in use"
    );
    for s in [&text, &html] {
        assert!(s.contains("14"), "{s}");
        assert!(
            s.contains("9</strong> of 10") || s.contains("9 of 10"),
            "{s}"
        );
    }
    assert!(
        text.contains("https://example.com/upgrade?license=LK%201%2F%C3%A4%26x"),
        "{text}"
    );
    assert!(
        html.contains(
            "href=\"https:&#x2f;&#x2f;example.com&#x2f;upgrade?license=LK%201%2F%C3%A4%26x\""
        ) || html.contains("href=\"https://example.com/upgrade?license=LK%201%2F%C3%A4%26x\""),
        "{html}"
    );
    assert_eq!(e.truncated, 0);
    let raw = String::from_utf8(e.to_bytes()).unwrap();
    assert!(
        raw.contains("Reply-To: Support <support@example.com>"),
        "{raw}"
    );
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(raw.contains("X-Keypulse-Kind: upgrade"), "{raw}");
}

#[test]
fn message_id_is_stable_per_key() {
    let r = Renderer::new(&cfg()).unwrap();
    let a = r.render(&upgrade("K", "pro")).unwrap();
    let b = r.render(&upgrade("K", "pro")).unwrap();
    let c = r.render(&upgrade("K2", "pro")).unwrap();
    assert_eq!(a.message_id, b.message_id);
    assert_ne!(a.message_id, c.message_id);
    assert!(a.message_id.starts_with('<') && a.message_id.ends_with("@keypulse>"));
}

#[test]
fn churn_warning_names_score_reasons_licenses_and_mrr() {
    let r = Renderer::new(&cfg()).unwrap();
    let e = r.render(&churn("cus_9")).unwrap();
    let (subject, text, html) = parts(&e);
    assert_eq!(
        subject,
        "Churn warning: customer cus_9 (health 45/100, validation_decline)"
    );
    for s in [&text, &html] {
        assert!(s.contains("inactive_7d"), "{s}");
        assert!(s.contains("-20"), "{s}");
        assert!(s.contains("K1"), "{s}");
        assert!(s.contains("1,234.56"), "{s}");
        assert!(s.contains("validation_decline"), "{s}");
    }
}

#[test]
fn event_strings_are_html_escaped() {
    let r = Renderer::new(&cfg()).unwrap();
    let e = r
        .render(&upgrade("<script>alert(1)</script>", "<b>pro</b>"))
        .unwrap();
    let (_, text, html) = parts(&e);
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(!html.contains("<b>pro"), "{html}");
    // the plain-text part shows the string as it is
    assert!(text.contains("<script>alert(1)</script>"), "{text}");
}

#[test]
fn line_breaks_in_headers_are_refused() {
    let r = Renderer::new(&cfg()).unwrap();
    let mut n = upgrade("K", "pro");
    n.to = "a@b.example\r\nBcc: victim@example.com".into();
    assert_eq!(
        r.render(&n).unwrap_err(),
        RenderError::HeaderInjection { field: "to" }
    );
    // the customer id is in the churn warning's subject
    let n = churn("cus\r\nBcc: victim@example.com");
    assert_eq!(
        r.render(&n).unwrap_err(),
        RenderError::HeaderInjection { field: "subject" }
    );
    let mut n = upgrade("K", "pro");
    n.to = "not an address".into();
    assert!(matches!(
        r.render(&n).unwrap_err(),
        RenderError::BadAddress { .. }
    ));
    // in the subject of an upgrade, the plan: refused too
    let n = upgrade("K", "pro\nBcc: x@example.com");
    assert_eq!(
        r.render(&n).unwrap_err(),
        RenderError::HeaderInjection { field: "subject" }
    );
}

#[test]
fn long_strings_are_cut_and_counted() {
    let r = Renderer::new(&cfg()).unwrap();
    let long = "x".repeat(5000);
    let e = r.render(&upgrade(&long, "pro")).unwrap();
    assert_eq!(e.truncated, 1);
    let (_, text, _) = parts(&e);
    assert!(text.contains(&format!("{}…", "x".repeat(199))), "{text}");
    // the link keeps the whole key, so that it still works
    assert!(text.contains(&format!("license={long}")));
}

#[test]
fn a_folder_replaces_templates_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("upgrade.subject.txt"),
        "Time to grow, {{ customer_id }}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("upgrade.html"),
        "<p>{{ plan }} at {{ domains_used }}/{{ domain_limit }}</p>",
    )
    .unwrap();
    let c = EmailConfig {
        templates_dir: Some(dir.path().to_path_buf()),
        ..cfg()
    };
    let r = Renderer::new(&c).unwrap();
    let e = r.render(&upgrade("K", "<pro>")).unwrap();
    let (subject, text, html) = parts(&e);
    assert_eq!(subject, "Time to grow, cus_1");
    assert!(html.contains("<p>&lt;pro&gt; at 9/10</p>"), "{html}");
    // not replaced: the built-in text part
    assert!(text.contains("Rate-limit hits"), "{text}");
}

#[test]
fn a_broken_replacement_fails_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("renewal.txt"), "{{ no_such_variable }}").unwrap();
    let c = EmailConfig {
        templates_dir: Some(dir.path().to_path_buf()),
        ..cfg()
    };
    let e = Renderer::new(&c).unwrap_err().to_string();
    assert!(e.contains("renewal.txt"), "{e}");
    std::fs::write(dir.path().join("renewal.txt"), "{% if %}").unwrap();
    let e = Renderer::new(&c).unwrap_err().to_string();
    assert!(e.contains("renewal.txt"), "{e}");
}

#[test]
fn renewal_names_license_and_expiry() {
    let r = Renderer::new(&cfg()).unwrap();
    let n = Notification {
        kind: NotificationKind::Renewal,
        to: "a@b.example".into(),
        customer_id: "c".into(),
        license_key: Some("K9".into()),
        at: parse_rfc3339("2026-10-03T10:00:00Z").unwrap(),
        reasons: vec!["expired".into()],
        facts: Some(Facts::Renewal {
            plan: "team".into(),
            expires_at: Some("2026-09-30T00:00:00Z".into()),
        }),
    };
    let e = r.render(&n).unwrap();
    let (subject, text, html) = parts(&e);
    assert_eq!(
        subject,
        "Your team license has expired (2026-09-30): renew to keep it working"
    );
    for s in [&text, &html] {
        assert!(
            s.contains("K9") && s.contains("2026-09-30T00:00:00Z"),
            "{s}"
        );
    }
    assert!(
        text.contains("https://example.com/renew?license=K9"),
        "{text}"
    );
}

fn spec8(kind: NotificationKind, to: &str, reasons: &[&str], facts: Facts) -> Notification {
    Notification {
        kind,
        to: to.into(),
        customer_id: "cus_8".into(),
        license_key: Some("LK-8".into()),
        at: parse_rfc3339("2026-10-13T10:00:00Z").unwrap(),
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        facts: Some(facts),
    }
}

#[test]
fn key_sharing_names_license_customer_domains_and_counts() {
    let r = Renderer::new(&cfg()).unwrap();
    let domains: Vec<String> = (0..10).map(|i| format!("d{i}.<x>.example")).collect();
    let n = spec8(
        NotificationKind::KeySharing,
        "customer-success@example.com",
        &["domain_mismatch"],
        Facts::KeySharing {
            plan: "pro".into(),
            domains,
            distinct_domains: 14,
            mismatches: 37,
            window_days: 30,
        },
    );
    let (subject, text, html) = parts(&r.render(&n).unwrap());
    assert!(
        subject.contains("LK-8") && subject.contains("cus_8"),
        "{subject}"
    );
    assert!(subject.contains("14"), "{subject}");
    for s in [&text, &html] {
        assert!(s.contains("14") && s.contains("37"), "{s}");
        assert!(s.contains("the first 10 of 14"), "{s}");
    }
    assert!(text.contains("d0.<x>.example") && text.contains("d9.<x>.example"));
    assert!(html.contains("d0.&lt;x&gt;.example"), "{html}");
}

#[test]
fn revoked_use_names_the_payment_state() {
    let r = Renderer::new(&cfg()).unwrap();
    let n = |failed| {
        spec8(
            NotificationKind::RevokedUse,
            "customer-success@example.com",
            &["revoked"],
            Facts::RevokedUse {
                plan: "pro".into(),
                status: "revoked".into(),
                payment_failed: failed,
            },
        )
    };
    let (subject, text, html) = parts(&r.render(&n(true)).unwrap());
    assert!(
        subject.contains("LK-8") && subject.contains("payment failed"),
        "{subject}"
    );
    for s in [&text, &html] {
        assert!(
            s.contains("cus_8") && s.contains("latest payment failed"),
            "{s}"
        );
    }
    let (subject, text, _) = parts(&r.render(&n(false)).unwrap());
    assert!(!subject.contains("payment failed"), "{subject}");
    assert!(text.contains("no failed payment"), "{text}");
}

#[test]
fn expiring_soon_names_plan_expiry_and_renewal_link() {
    let r = Renderer::new(&cfg()).unwrap();
    let n = spec8(
        NotificationKind::ExpiringSoon,
        "owner@customer.example",
        &["expiring_soon"],
        Facts::ExpiringSoon {
            plan: "team".into(),
            expires_at: "2026-10-20T12:00:00Z".into(),
        },
    );
    let (subject, text, html) = parts(&r.render(&n).unwrap());
    assert_eq!(
        subject,
        "Your team license expires on 2026-10-20: renew to keep it working"
    );
    for s in [&text, &html] {
        assert!(
            s.contains("LK-8") && s.contains("2026-10-20T12:00:00Z"),
            "{s}"
        );
    }
    assert!(
        text.contains("https://example.com/renew?license=LK-8"),
        "{text}"
    );
    assert!(html.contains("<a href="), "{html}");
}

#[test]
fn every_kind_has_templates_and_renders_from_the_fold() {
    // Every decision the fold makes on the v2 edge log renders (none is refused).
    let r = Renderer::new(&cfg()).unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/v2/edge2.events.jsonl"),
    )
    .unwrap();
    let cfg = crate::core::CoreConfig::default();
    let mut replay = crate::replay::Replay::new();
    replay.feed_reader(text.as_bytes(), &cfg, |_| {}).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for n in &replay.decisions {
        r.render(n)
            .unwrap_or_else(|e| panic!("{}: {e}", n.kind.as_str()));
        kinds.insert(n.kind.as_str());
    }
    for k in ["key_sharing", "revoked_use", "expiring_soon"] {
        assert!(kinds.contains(k), "{kinds:?}");
    }
    for k in NotificationKind::ALL {
        assert_eq!(names_of(k)[0], format!("{}.subject.txt", k.as_str()));
    }
}

#[test]
fn money() {
    assert_eq!(format_money(0), "0.00");
    assert_eq!(format_money(123456), "1,234.56");
    assert_eq!(format_money(-100000005), "-1,000,000.05");
}
