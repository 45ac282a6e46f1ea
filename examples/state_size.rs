//! Prints the fold state's size per customer, per license, per registered domain and per
//! remembered `event_id`, by the state's own estimate (`PartitionState::approx_bytes`, the
//! figure behind `keypulse_state_bytes` and `keypulse_state_partition_bytes`).
//!
//! Each figure is a difference between two replays that differ only in the thing
//! measured, divided by how many there are:
//!
//!   cargo run --release --example state_size [N]      (N customers, default 100000)

use keypulse::core::CoreConfig;
use keypulse::replay::Replay;

const TS: &str = "2026-10-01T10:00:00Z";

fn bytes_of(lines: impl Iterator<Item = String>) -> usize {
    let cfg = CoreConfig::default();
    let mut r = Replay::new();
    for l in lines {
        r.feed_line(l.as_bytes(), &cfg);
    }
    r.approx_bytes()
}

fn payment(c: u64, id: Option<u64>) -> String {
    let id = id.map_or(String::new(), |i| format!(r#","event_id":"e{i}""#));
    format!(r#"{{"type":"payment.failed","ts":"{TS}","customer_id":"cus_{c:08}"{id}}}"#)
}

fn issued(c: u64, l: u64) -> String {
    format!(
        r#"{{"type":"license.issued","ts":"{TS}","customer_id":"cus_{c:08}","license_key":"LK-{c:08}-{l:02}","plan":"pro","domain_limit":5,"mrr_cents":4900,"email":"owner{c}@example.com"}}"#
    )
}

fn domain(d: u64) -> String {
    format!(
        r#"{{"type":"domain.added","ts":"{TS}","customer_id":"cus_00000000","license_key":"LK-00000000-00","domain":"d{d}.example.com"}}"#
    )
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let per = |a: usize, b: usize, k: u64| (b as f64 - a as f64) / k as f64;

    let none = bytes_of(std::iter::empty());
    let customers = bytes_of((0..n).map(|c| payment(c, None)));
    let one_license = bytes_of((0..n).flat_map(|c| [payment(c, None), issued(c, 0)]));
    let two_licenses =
        bytes_of((0..n).flat_map(|c| [payment(c, None), issued(c, 0), issued(c, 1)]));
    // 16 ids per customer (within the de-duplication horizon), past any inline capacity.
    const IDS: u64 = 16;
    let ids = bytes_of((0..n).flat_map(|c| {
        std::iter::once(payment(c, None)).chain((0..IDS).map(move |i| payment(c, Some(i))))
    }));
    let m = n.min(100_000);
    let no_domains = bytes_of(std::iter::once(issued(0, 0)));
    let domains = bytes_of(std::iter::once(issued(0, 0)).chain((0..m).map(domain)));

    println!("state estimate (PartitionState::approx_bytes), {n} customers:");
    println!(
        "  per customer (no license)      {:>8.0} B",
        per(none, customers, n)
    );
    println!(
        "  per license (the 1st of each)  {:>8.0} B",
        per(customers, one_license, n)
    );
    println!(
        "  per license (the 2nd of each)  {:>8.0} B",
        per(one_license, two_licenses, n)
    );
    println!(
        "  per remembered event_id ({IDS} a customer) {:>5.1} B",
        per(customers, ids, n * IDS)
    );
    println!(
        "  per registered domain ({m} on one license) {:>5.1} B",
        per(no_domains, domains, m)
    );
}
