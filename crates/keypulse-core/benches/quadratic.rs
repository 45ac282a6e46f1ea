//! The quadratic-cost bench (issue 13): does one event cost more when the state it
//! touches has grown? Not a timed test: it prints figures, and exits non-zero only when
//! asked to check them (`--check`).
//!
//! For each shape it folds N events (decode + apply) into a fresh state, at N = 10 k and
//! N = 1 M, three times each, and prints the median time per event and the ratio
//! (1 M / 10 k), which should stay at or below 2×:
//! - `domains`: N distinct `domain.added` on one license;
//! - `event_ids`: N events with distinct `event_id`s in one customer, all inside the
//!   de-duplication horizon;
//! - `tickets`: N distinct `support.ticket_opened` in one customer, none closed;
//! - `licenses`: N `license.issued` with distinct keys in one customer (each changes its
//!   MRR: SPEC §8.2's movements count the customer's paying licenses, never sum them);
//! - `upgrade_watch`: N/2 licenses in one customer, each issued with a limit of 1 and then
//!   activated on its own domain, so each has `domain_limit_approaching` and lacks one
//!   trigger: SPEC §5 checks every one after each event, and `watch.rs` must not walk them;
//! - `expiries`: N licenses in one customer, each issued a day after the one before with an
//!   expiry in 9999, so every event runs the customer's daily check (SPEC §8.5's reminders),
//!   which `expiring.rs` must not answer by reading every license;
//! - `emails`: N/2 licenses without an email, one customer each, then N/2 re-issues of the
//!   first license with an email of 2 KB, two texts in turn: each change leaves the old
//!   text behind as garbage, and compacting the email buffer (`state/emails.rs`) must not
//!   walk every license as often as that happens;
//! - `recipients`: N/4 licenses in one customer, each issued with an email and validated
//!   `expired` (a renewal each, whose recipient is read from its license: `state/kept.rs`),
//!   then N/2 re-issues of the first license with two emails in turn: each change gives
//!   the customer's kept notifications their own copy of their recipient, and must not
//!   look at every one of them each time.
//!
//! Only `event_ids` carries event ids, so that each shape's last column (the state's own
//! estimate of its bytes, per item, at the large N) is that structure's alone.
//!
//! Run: `cargo bench -p keypulse-core --bench quadratic` (or `scripts/bench-quadratic`);
//! it lives in the core crate so that it builds without librdkafka. Arguments:
//! `--small N --large N` to change the sizes, `--only SHAPE`, `--check`.

use std::time::Instant;

use keypulse_core::{decode, CoreConfig, PartitionState};

fn ts(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(1_788_000_000_000 + ms as i64)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

const ISSUE: &str = r#"{"type":"license.issued","ts":"2026-08-29T00:00:00.000Z","event_id":"issue","customer_id":"cus_hostile","license_key":"LK-HOSTILE","plan":"business","domain_limit":1000000,"mrr_cents":29900,"email":"owner@hostile.example"}"#;

/// The `n` lines of one shape (after a `license.issued` that they all build on).
fn lines(shape: &str, n: u64) -> Vec<String> {
    let mut v = vec![ISSUE.to_string()];
    for i in 0..n {
        // 1 ms apart: 1 M events span 17 minutes, inside the de-duplication horizon
        let t = ts(1_000 + i);
        v.push(match shape {
            "domains" => format!(
                r#"{{"type":"domain.added","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-HOSTILE","domain":"site-{i}.hostile.example"}}"#
            ),
            "event_ids" => format!(
                r#"{{"type":"team.member_invited","ts":"{t}","event_id":"e{i}","customer_id":"cus_hostile"}}"#
            ),
            "tickets" => format!(
                r#"{{"type":"support.ticket_opened","ts":"{t}","customer_id":"cus_hostile","ticket_id":"T-{i}","category":"technical"}}"#
            ),
            "licenses" => format!(
                r#"{{"type":"license.issued","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-{i:08}","plan":"starter","domain_limit":3,"mrr_cents":2900,"email":"owner{i}@hostile.example"}}"#
            ),
            "upgrade_watch" if i % 2 == 0 => format!(
                r#"{{"type":"license.issued","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-{i:08}","plan":"starter","domain_limit":1,"mrr_cents":2900,"email":"owner{i}@hostile.example"}}"#
            ),
            "upgrade_watch" => format!(
                r#"{{"type":"license.activated","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-{:08}","domain":"site-{i}.hostile.example"}}"#,
                i - 1
            ),
            "expiries" => {
                let day = chrono::DateTime::from_timestamp(1_788_000_000 + i as i64 * 86_400, 0)
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%SZ");
                format!(
                    r#"{{"type":"license.issued","ts":"{day}","customer_id":"cus_hostile","license_key":"LK-{i:08}","plan":"starter","domain_limit":3,"mrr_cents":2900,"email":"owner{i}@hostile.example","expires_at":"9999-01-01T00:00:00Z"}}"#
                )
            }
            "emails" if i < n / 2 => format!(
                r#"{{"type":"license.issued","ts":"{t}","customer_id":"cus_{i:08}","license_key":"LK-{i:08}","plan":"starter","domain_limit":3,"mrr_cents":2900}}"#
            ),
            "emails" => format!(
                r#"{{"type":"license.issued","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-HOSTILE","plan":"business","domain_limit":1000000,"mrr_cents":29900,"email":"{}@hostile.example"}}"#,
                ["a", "b"][i as usize % 2].repeat(2048)
            ),
            "recipients" if i < n / 2 && i % 2 == 0 => format!(
                r#"{{"type":"license.issued","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-{i:08}","plan":"starter","domain_limit":3,"mrr_cents":2900,"email":"owner{i}@hostile.example"}}"#
            ),
            "recipients" if i < n / 2 => format!(
                r#"{{"type":"license.validated","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-{:08}","result":"expired"}}"#,
                i - 1
            ),
            "recipients" => format!(
                r#"{{"type":"license.issued","ts":"{t}","customer_id":"cus_hostile","license_key":"LK-00000000","plan":"starter","domain_limit":3,"mrr_cents":2900,"email":"{}@hostile.example"}}"#,
                ["a", "b"][i as usize % 2]
            ),
            _ => unreachable!("unknown shape {shape}"),
        });
    }
    v
}

/// Folds `lines`; returns the seconds per event after the first line, and the state.
fn fold(lines: &[String], cfg: &CoreConfig) -> (f64, PartitionState) {
    let mut state = PartitionState::new();
    let mut out = Vec::new();
    let first = decode(lines[0].as_bytes()).expect("valid line");
    state.apply(&first, cfg, &mut out);
    let start = Instant::now();
    for l in &lines[1..] {
        let e = decode(l.as_bytes()).expect("valid line");
        state.apply(&e, cfg, &mut out);
        out.clear();
    }
    let secs = start.elapsed().as_secs_f64();
    (secs / (lines.len() - 1) as f64, state)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let small: u64 = arg(&args, "--small").map_or(10_000, |s| s.parse().expect("--small N"));
    let large: u64 = arg(&args, "--large").map_or(1_000_000, |s| s.parse().expect("--large N"));
    let only = arg(&args, "--only");
    let check = args.iter().any(|a| a == "--check");
    let cfg = CoreConfig::default();
    println!("quadratic-cost bench: median of 3 folds, decode + apply, ns per event");
    println!(
        "{:<10} {:>12} {:>12} {:>7} {:>16}",
        "shape",
        format!("N={small}"),
        format!("N={large}"),
        "ratio",
        "state B/item"
    );
    let mut worst: f64 = 0.0;
    for shape in [
        "domains",
        "event_ids",
        "tickets",
        "licenses",
        "upgrade_watch",
        "expiries",
        "emails",
        "recipients",
    ] {
        let skip = match only.as_deref() {
            Some(o) => o != shape,
            None => false,
        };
        if skip {
            continue;
        }
        let mut per = Vec::new();
        let mut bytes_per_item = 0.0;
        for n in [small, large] {
            let input = lines(shape, n);
            let base = PartitionState::new();
            let mut times = Vec::new();
            for _ in 0..3 {
                let (t, state) = fold(&input, &cfg);
                times.push(t);
                if n == large {
                    bytes_per_item =
                        (state.approx_bytes() as f64 - base.approx_bytes() as f64) / n as f64;
                }
            }
            per.push(median(times));
        }
        let ratio = per[1] / per[0];
        worst = worst.max(ratio);
        println!(
            "{shape:<10} {:>12.0} {:>12.0} {:>6.2}x {:>16.1}",
            per[0] * 1e9,
            per[1] * 1e9,
            ratio,
            bytes_per_item
        );
    }
    if check && worst > 2.0 {
        eprintln!("FAIL: a shape's cost per event grew {worst:.2}x (> 2x)");
        std::process::exit(1);
    }
}
