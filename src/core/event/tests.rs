//! The decoder's tests: every reason and field, the wire's corner cases, borrowing.

use super::*;
use crate::time::parse_rfc3339;

#[test]
fn reject_reason_index_matches_all() {
    for (i, r) in RejectReason::ALL.into_iter().enumerate() {
        assert_eq!(r.index(), i);
    }
}

fn reason(line: &str) -> (RejectReason, Option<&'static str>) {
    let r = decode(line.as_bytes()).unwrap_err();
    (r.reason, r.field)
}

#[test]
fn decodes_an_issue_with_offset_time() {
    let e = decode(br#"{"type":"license.issued","ts":"2026-10-01T11:00:00+02:00","customer_id":"c1","license_key":"K1","plan":"starter","domain_limit":3,"mrr_cents":2900,"email":null,"extra":{"a":[1,2]}}"#).unwrap();
    assert_eq!(e.customer_id.as_deref(), Some("c1"));
    assert_eq!(e.ts, parse_rfc3339("2026-10-01T09:00:00Z").unwrap());
    match e.kind {
        EventKind::Issued {
            domain_limit,
            mrr_cents,
            email,
            ..
        } => {
            assert_eq!((domain_limit, mrr_cents, email), (3, 2900, None));
        }
        other => panic!("wrong kind {other:?}"),
    }
}

#[test]
fn rejects_with_typed_reasons() {
    assert_eq!(reason("not json"), (RejectReason::NotJson, None));
    assert_eq!(reason("[1,2,3]"), (RejectReason::NotObject, None));
    assert_eq!(reason(r#"{"a":1} x"#), (RejectReason::NotJson, None));
    assert_eq!(
        reason(r#"{"ts":"2026-10-25T10:00:00Z","customer_id":"c5"}"#),
        (RejectReason::MissingField, Some("type"))
    );
    assert_eq!(
        reason(r#"{"type":5}"#),
        (RejectReason::WrongType, Some("type"))
    );
    assert_eq!(
        reason(r#"{"type":"license.exploded","ts":"2026-10-25T10:00:00Z"}"#),
        (RejectReason::UnknownType, Some("type"))
    );
    assert_eq!(
        reason(r#"{"type":"payment.failed","ts":"yesterday","customer_id":"c"}"#),
        (RejectReason::BadTimestamp, Some("ts"))
    );
    assert_eq!(
        reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00","customer_id":"c"}"#),
        (RejectReason::BadTimestamp, Some("ts"))
    );
    assert_eq!(
        reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":""}"#),
        (RejectReason::EmptyField, Some("customer_id"))
    );
    assert_eq!(
        reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z"}"#),
        (RejectReason::MissingField, Some("customer_id"))
    );
    assert_eq!(
        reason(
            r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","event_id":7}"#
        ),
        (RejectReason::WrongType, Some("event_id"))
    );
    let issued = |limit: &str| {
        format!(
            r#"{{"type":"license.issued","ts":"2026-10-25T10:00:00Z","customer_id":"c","license_key":"k","plan":"p","domain_limit":{limit},"mrr_cents":1}}"#
        )
    };
    assert_eq!(
        reason(&issued("-1")),
        (RejectReason::WrongType, Some("domain_limit"))
    );
    assert_eq!(
        reason(&issued("3.0")),
        (RejectReason::WrongType, Some("domain_limit"))
    );
    assert_eq!(
        reason(&issued("1e2")),
        (RejectReason::WrongType, Some("domain_limit"))
    );
    assert_eq!(
        reason(&issued("\"3\"")),
        (RejectReason::WrongType, Some("domain_limit"))
    );
    assert_eq!(
        reason(&issued("null")),
        (RejectReason::MissingField, Some("domain_limit"))
    );
    assert!(decode(issued("18446744073709551615").as_bytes()).is_ok());
    assert_eq!(
        reason(
            r#"{"type":"license.validated","ts":"2026-10-25T10:00:00Z","customer_id":"c","license_key":"k","result":"maybe"}"#
        ),
        (RejectReason::UnknownResult, Some("result"))
    );
    assert_eq!(
        reason(
            r#"{"type":"support.ticket_opened","ts":"2026-10-25T10:00:00Z","customer_id":"c","ticket_id":"t","category":"rage"}"#
        ),
        (RejectReason::UnknownCategory, Some("category"))
    );
}

#[test]
fn invalid_format_needs_no_customer_but_others_do() {
    let ok = decode(br#"{"type":"license.validated","ts":"2026-10-25T11:00:00Z","license_key":"???","result":"invalid_format","country":"BR"}"#).unwrap();
    assert_eq!(ok.customer_id, None);
    assert_eq!(
        reason(
            r#"{"type":"license.validated","ts":"2026-10-25T11:00:00Z","license_key":"k","result":"valid"}"#
        ),
        (RejectReason::MissingField, Some("customer_id"))
    );
}

#[test]
fn escaped_strings_are_owned_and_exact() {
    let e = decode(
        br#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c\u00e9\n"}"#,
    )
    .unwrap();
    assert_eq!(e.customer_id.as_deref(), Some("c\u{e9}\n"));
}

#[test]
fn leap_second_is_a_bad_timestamp() {
    assert_eq!(
        reason(r#"{"type":"payment.failed","ts":"2016-12-31T23:59:60Z","customer_id":"c"}"#),
        (RejectReason::BadTimestamp, Some("ts"))
    );
}

#[test]
fn unreadable_values_are_not_json() {
    let line = r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","domain_limit":1e400}"#;
    assert_eq!(reason(line), (RejectReason::NotJson, None));
    let line = r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","email":"\ud800"}"#;
    assert_eq!(reason(line), (RejectReason::NotJson, None));
    // ...but in an unknown field, skipped unread, as before.
    for x in ["1e400", r#""\ud800""#] {
        let line = format!(
            r#"{{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c","x":{x}}}"#
        );
        assert!(decode(line.as_bytes()).is_ok(), "{line}");
    }
}

#[test]
fn bytes_that_are_not_utf8_are_not_json_wherever_they_are() {
    let base = r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"c""#;
    let ok = format!("{base},\"x\":\"ab\"}}");
    assert!(decode(ok.as_bytes()).is_ok());
    // In an ignored field, a known field, a key, and between tokens.
    for (at, bad) in [
        (",\"x\":\"a", &b"\xff\xfe\"}"[..]),
        (",\"email\":\"a", b"\xc3\"}"),
        (",\"", b"\xed\xa0\x80\":1}"),
        ("", b" \x80}"),
    ] {
        let mut line = format!("{base}{at}").into_bytes();
        line.extend_from_slice(bad);
        assert_eq!(
            decode(&line).map_err(|r| (r.reason, r.field)),
            Err((RejectReason::NotJson, None)),
            "{}",
            String::from_utf8_lossy(&line)
        );
    }
}

#[test]
fn integers_read_exactly_at_every_length() {
    let limit_of = |text: &str| match decode(issued(text, "0").as_bytes()).map(|e| e.kind) {
        Ok(EventKind::Issued { domain_limit, .. }) => Ok(domain_limit),
        Ok(other) => panic!("wrong kind {other:?}"),
        Err(r) => Err(r.reason),
    };
    for n in [
        0u64,
        7,
        10,
        999,
        1_000_000_007,
        9_999_999_999_999_999_999,
        u64::MAX,
    ] {
        assert_eq!(limit_of(&n.to_string()), Ok(n), "{n}");
    }
    // One past u64 is not an integer the event can hold; leading zeros are not JSON.
    assert_eq!(
        limit_of("18446744073709551616"),
        Err(RejectReason::WrongType)
    );
    assert_eq!(limit_of("007"), Err(RejectReason::NotJson));
    assert_eq!(limit_of("1e2"), Err(RejectReason::WrongType));
}

#[test]
fn truncated_json_is_not_json() {
    for line in ["[", "[1,", "{", "{\"type\":", "[1,2", "\"abc", "-"] {
        assert_eq!(reason(line), (RejectReason::NotJson, None), "{line}");
    }
    for line in ["[]", "[1,2,3]", "1", "\"abc\"", "null", "true", "-0"] {
        assert_eq!(reason(line), (RejectReason::NotObject, None), "{line}");
    }
}

fn issued(limit: &str, mrr: &str) -> String {
    format!(
        r#"{{"type":"license.issued","ts":"2026-10-25T10:00:00Z","customer_id":"c","license_key":"k","plan":"p","domain_limit":{limit},"mrr_cents":{mrr}}}"#
    )
}

#[test]
fn minus_zero_is_the_integer_zero() {
    let line = issued("-0", " -0 ");
    let e = decode(line.as_bytes()).unwrap();
    match e.kind {
        EventKind::Issued {
            domain_limit,
            mrr_cents,
            ..
        } => assert_eq!((domain_limit, mrr_cents), (0, 0)),
        other => panic!("wrong kind {other:?}"),
    }
    for bad in ["-0.0", "-0e0", "-0E1", "-1", "0.0", "\"-0\""] {
        assert_eq!(
            reason(&issued(bad, "0")),
            (RejectReason::WrongType, Some("domain_limit")),
            "{bad}"
        );
    }
    // `-0` where a string is asked is still the wrong type.
    assert_eq!(
        reason(r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":-0}"#),
        (RejectReason::WrongType, Some("customer_id"))
    );
}

#[test]
fn a_repeated_key_counts_its_last_occurrence() {
    let e = decode(br#"{"type":"payment.failed","type":"payment.succeeded","ts":"2026-10-25T10:00:00Z","customer_id":"a","customer_id":"b"}"#).unwrap();
    assert_eq!(e.kind, EventKind::PaymentSucceeded);
    assert_eq!(e.customer_id.as_deref(), Some("b"));
    // The last occurrence counts even when an earlier one was valid and it is not.
    assert_eq!(
        reason(
            r#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","ts":"soon","customer_id":"c"}"#
        ),
        (RejectReason::BadTimestamp, Some("ts"))
    );
    // ... and an earlier invalid one is forgotten.
    let line = issued("3", "1").replace(
        r#""domain_limit":3"#,
        r#""domain_limit":"x","domain_limit":3"#,
    );
    let e = decode(line.as_bytes()).unwrap();
    assert!(matches!(
        e.kind,
        EventKind::Issued {
            domain_limit: 3,
            ..
        }
    ));
}

#[test]
fn too_large_is_never_parsed() {
    let line = issued("1", "1");
    assert!(decode_bounded(line.as_bytes(), line.len()).is_ok());
    let r = decode_bounded(line.as_bytes(), line.len() - 1).unwrap_err();
    assert_eq!((r.reason, r.field), (RejectReason::TooLarge, None));
    // Not parsed: garbage of that size is too large, not `not_json`.
    let r = decode_bounded(&[0xff; 100], 64).unwrap_err();
    assert_eq!(r.reason, RejectReason::TooLarge);
}

#[test]
fn strings_keep_their_escapes_and_borrow_otherwise() {
    let e = decode(br#"{"type":"payment.failed","ts":"2026-10-25T10:00:00Z","customer_id":"plain","event_id":"a\"b"}"#).unwrap();
    assert!(matches!(e.customer_id, Some(Cow::Borrowed("plain"))));
    assert_eq!(e.event_id.as_deref(), Some("a\"b"));
}
