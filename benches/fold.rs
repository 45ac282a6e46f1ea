//! Decode + fold throughput against bare serde_json decoding of the same lines, and the
//! state's bytes per license at 1 M licenses (issue 2).
//!
//! Run: `cargo bench --bench fold`. The log is generated here, deterministically: a
//! realistic mix (mostly validations, some lifecycle, domain and support events) over
//! 100 k licenses, 1.2 M lines of about 200–250 bytes.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keypulse::core::{decode, CoreConfig, PartitionState};
use support::{BareEvent, Rng};

#[path = "../crates/keypulse-core/examples/support/mod.rs"]
mod support;

fn ts(sec: u64) -> String {
    chrono::DateTime::from_timestamp(1_788_000_000 + sec as i64, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Issues `licenses` licenses (two per customer), then spreads `events` events over 40 days.
fn generate(licenses: u64, events: u64, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut lines = Vec::with_capacity((licenses * 2 + events) as usize);
    let plans = ["starter", "professional", "business"];
    for l in 0..licenses {
        let c = l / 2;
        let t = l * 5 % 86_400;
        lines.push(format!(
            r#"{{"type":"license.issued","ts":"{}","event_id":"i{l}","customer_id":"cus_{c:07}","license_key":"LK-{l:08}-{:04X}","plan":"{}","domain_limit":{},"mrr_cents":{},"email":"owner{l}@customer{c}.example"}}"#,
            ts(t),
            l % 65_536,
            plans[(l % 3) as usize],
            [3, 10, 50][(l % 3) as usize],
            [2900, 9900, 29900][(l % 3) as usize]
        ));
        lines.push(format!(
            r#"{{"type":"license.activated","ts":"{}","event_id":"a{l}","customer_id":"cus_{c:07}","license_key":"LK-{l:08}-{:04X}","domain":"d0.lk-{l:08}.example"}}"#,
            ts(t + 600),
            l % 65_536
        ));
    }
    let results = [
        "valid",
        "valid",
        "valid",
        "valid",
        "valid",
        "valid",
        "valid",
        "valid",
        "expired",
        "domain_mismatch",
        "rate_limited",
        "invalid_format",
    ];
    let countries = ["DE", "US", "GB", "FR", "BR", "IN", "JP", "AU"];
    for i in 0..events {
        let l = rng.below(licenses);
        let c = l / 2;
        let t = 86_400 + i * (40 * 86_400) / events;
        let kind = rng.below(100);
        let line = if kind < 90 {
            format!(
                r#"{{"type":"license.validated","ts":"{}","event_id":"v{i}","customer_id":"cus_{c:07}","license_key":"LK-{l:08}-{:04X}","result":"{}","domain":"d{}.lk-{l:08}.example","country":"{}"}}"#,
                ts(t),
                l % 65_536,
                results[rng.below(12) as usize],
                rng.below(3),
                countries[rng.below(8) as usize]
            )
        } else if kind < 94 {
            format!(
                r#"{{"type":"domain.added","ts":"{}","event_id":"d{i}","customer_id":"cus_{c:07}","license_key":"LK-{l:08}-{:04X}","domain":"d{}.lk-{l:08}.example"}}"#,
                ts(t),
                l % 65_536,
                rng.below(5)
            )
        } else if kind < 96 {
            format!(
                r#"{{"type":"team.member_invited","ts":"{}","event_id":"t{i}","customer_id":"cus_{c:07}"}}"#,
                ts(t)
            )
        } else if kind < 98 {
            format!(
                r#"{{"type":"feature.access_denied","ts":"{}","event_id":"f{i}","customer_id":"cus_{c:07}","license_key":"LK-{l:08}-{:04X}","feature":"sso"}}"#,
                ts(t),
                l % 65_536
            )
        } else {
            format!(
                r#"{{"type":"support.ticket_opened","ts":"{}","event_id":"s{i}","customer_id":"cus_{c:07}","ticket_id":"T{i}","category":"technical"}}"#,
                ts(t)
            )
        };
        lines.push(line);
    }
    lines
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn fold_all(lines: &[String], cfg: &CoreConfig) -> PartitionState {
    let mut state = PartitionState::new();
    let mut out = Vec::new();
    for l in lines {
        match decode(l.as_bytes()) {
            Ok(e) => {
                state.apply(&e, cfg, &mut out);
            }
            Err(_) => state.record_rejected(),
        }
        out.clear();
    }
    state
}

fn throughput(c: &mut Criterion) {
    let lines = generate(100_000, 1_000_000, 0x5eed);
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    eprintln!(
        "log: {} lines, {:.0} bytes/line",
        lines.len(),
        bytes as f64 / lines.len() as f64
    );
    let cfg = CoreConfig::default();
    let mut g = c.benchmark_group("events");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("serde_json_bare_decode", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(serde_json::from_str::<BareEvent<'_>>(l).ok());
            }
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(decode(l.as_bytes()).ok());
            }
        })
    });
    g.bench_function("decode_and_fold", |b| {
        b.iter(|| black_box(fold_all(&lines, &cfg)))
    });
    g.finish();
}

/// Not a timing: prints the state's bytes per license at 1 M licenses, measured both as
/// the growth of the process's resident memory and as the state's own estimate.
fn memory(_c: &mut Criterion) {
    let licenses = 1_000_000u64;
    let lines = generate(licenses, 1_000_000, 0xfeed);
    let cfg = CoreConfig::default();
    let before = rss_bytes();
    let state = fold_all(&lines, &cfg);
    let after = rss_bytes();
    let (customers, lic) = state.sizes();
    eprintln!(
        "memory: {lic} licenses, {customers} customers: RSS growth {:.0} B/license, state estimate {:.0} B/license",
        after.saturating_sub(before) as f64 / lic as f64,
        state.approx_bytes() as f64 / lic as f64
    );
    black_box(state);
}

criterion_group!(benches, memory, throughput);
criterion_main!(benches);
