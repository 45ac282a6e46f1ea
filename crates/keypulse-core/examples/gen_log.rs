//! Deterministic event logs for `scripts/bench`, written as JSON lines to stdout.
//!
//!   gen_log fleet LICENSES PER_CUSTOMER EVENTS [SEED]
//!       every license issued and activated, then EVENTS events over 40 days, picked at
//!       random among the licenses: 90 % validations (mostly valid, 8 countries), domain
//!       additions, invitations, denied features, support tickets;
//!   gen_log memory LICENSES PER_CUSTOMER
//!       every license issued, activated on a domain and validated once (3 lines each);
//!   gen_log baseline LINES [BYTES]
//!       LINES invitations of one customer: the same reading and decoding, no state; with
//!       BYTES, padded (an ignored field) to BYTES bytes in all, the size of the log it is
//!       the baseline of.
//!
//! Customers own PER_CUSTOMER consecutive licenses. Nothing here reads a clock or a
//! random seed from outside: the same arguments write the same bytes.

use std::io::{BufWriter, Write};

#[path = "support/mod.rs"]
mod support;

use support::Rng;

/// RFC 3339 with milliseconds, `sec` seconds after 2026-08-30T00:00:00Z.
fn ts(sec: u64, ms: u64) -> String {
    const START: i64 = 1_788_048_000;
    chrono::DateTime::from_timestamp(START + sec as i64, (ms * 1_000_000) as u32)
        .expect("a time inside chrono's range")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

struct Names {
    per: u64,
}
impl Names {
    fn customer(&self, l: u64) -> String {
        format!("cus_{:08}", l / self.per)
    }
    fn key(&self, l: u64) -> String {
        format!("LK-{l:08}-{:04X}", (l * 2_654_435_761) % 65_536)
    }
}

const PLANS: [(&str, u64, u64); 3] = [
    ("starter", 3, 2900),
    ("professional", 10, 9900),
    ("business", 50, 29900),
];

fn issued(out: &mut impl Write, n: &Names, l: u64, t: u64) -> std::io::Result<()> {
    let (plan, limit, mrr) = PLANS[(l % 3) as usize];
    writeln!(
        out,
        r#"{{"type":"license.issued","ts":"{}","event_id":"i{l}","customer_id":"{}","license_key":"{}","plan":"{plan}","domain_limit":{limit},"mrr_cents":{mrr},"email":"owner{l}@customer{}.example"}}"#,
        ts(t, l % 1000),
        n.customer(l),
        n.key(l),
        l / n.per
    )
}

fn activated(out: &mut impl Write, n: &Names, l: u64, t: u64) -> std::io::Result<()> {
    writeln!(
        out,
        r#"{{"type":"license.activated","ts":"{}","event_id":"a{l}","customer_id":"{}","license_key":"{}","domain":"d0.{}.example"}}"#,
        ts(t, l % 1000),
        n.customer(l),
        n.key(l),
        n.key(l).to_ascii_lowercase()
    )
}

const RESULTS: [&str; 12] = [
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
const COUNTRIES: [&str; 8] = ["DE", "US", "GB", "FR", "BR", "IN", "JP", "AU"];

fn validated(
    out: &mut impl Write,
    n: &Names,
    l: u64,
    t: u64,
    i: u64,
    rng: &mut Rng,
) -> std::io::Result<()> {
    writeln!(
        out,
        r#"{{"type":"license.validated","ts":"{}","event_id":"v{i}","customer_id":"{}","license_key":"{}","result":"{}","domain":"d{}.{}.example","country":"{}"}}"#,
        ts(t, i % 1000),
        n.customer(l),
        n.key(l),
        RESULTS[rng.below(12) as usize],
        rng.below(3),
        n.key(l).to_ascii_lowercase(),
        COUNTRIES[rng.below(8) as usize]
    )
}

fn fleet(
    out: &mut impl Write,
    licenses: u64,
    per: u64,
    events: u64,
    seed: u64,
) -> std::io::Result<()> {
    let n = Names { per };
    let mut rng = Rng(seed | 1);
    for l in 0..licenses {
        let t = l * 86_400 / licenses.max(1);
        issued(out, &n, l, t)?;
        activated(out, &n, l, t + 600)?;
    }
    for i in 0..events {
        let l = rng.below(licenses);
        let t = 86_400 + i * (40 * 86_400) / events.max(1);
        let kind = rng.below(100);
        let (c, k) = (n.customer(l), n.key(l));
        if kind < 90 {
            validated(out, &n, l, t, i, &mut rng)?;
        } else if kind < 94 {
            writeln!(
                out,
                r#"{{"type":"domain.added","ts":"{}","event_id":"d{i}","customer_id":"{c}","license_key":"{k}","domain":"d{}.{}.example"}}"#,
                ts(t, i % 1000),
                rng.below(5),
                k.to_ascii_lowercase()
            )?;
        } else if kind < 96 {
            writeln!(
                out,
                r#"{{"type":"team.member_invited","ts":"{}","event_id":"t{i}","customer_id":"{c}"}}"#,
                ts(t, i % 1000)
            )?;
        } else if kind < 98 {
            writeln!(
                out,
                r#"{{"type":"feature.access_denied","ts":"{}","event_id":"f{i}","customer_id":"{c}","license_key":"{k}","feature":"sso"}}"#,
                ts(t, i % 1000)
            )?;
        } else {
            writeln!(
                out,
                r#"{{"type":"support.ticket_opened","ts":"{}","event_id":"s{i}","customer_id":"{c}","ticket_id":"T{i}","category":"technical"}}"#,
                ts(t, i % 1000)
            )?;
        }
    }
    Ok(())
}

fn memory(out: &mut impl Write, licenses: u64, per: u64) -> std::io::Result<()> {
    let n = Names { per };
    let mut rng = Rng(0x6d656d);
    for l in 0..licenses {
        let t = l * 86_400 / licenses.max(1);
        issued(out, &n, l, t)?;
        activated(out, &n, l, t + 600)?;
        validated(out, &n, l, t + 1200, l, &mut rng)?;
    }
    Ok(())
}

/// `lines` invitations of one customer; with `bytes` (> 0), each padded with an ignored
/// `note` field so that the log holds `bytes` bytes in all (lines of near-equal length),
/// as the log it stands beside does: the reader's batches then hold as much.
fn baseline(out: &mut impl Write, lines: u64, bytes: u64) -> std::io::Result<()> {
    // Divisions by the line count; `baseline 0` still writes no line.
    let n = lines.max(1);
    for i in 0..lines {
        let line = format!(
            r#"{{"type":"team.member_invited","ts":"{}","customer_id":"cus_base""#,
            ts(i * 86_400 / n, i % 1000)
        );
        // This line's share of `bytes` (the remainder spread over the first lines), less
        // its newline, the closing brace and the note's own framing.
        let want = bytes / n + u64::from(i < bytes % n);
        const NOTE: usize = r#","note":"""#.len();
        match (want as usize).checked_sub(line.len() + 2 + NOTE) {
            Some(pad) if bytes > 0 => writeln!(out, r#"{line},"note":"{}"}}"#, "x".repeat(pad))?,
            _ => writeln!(out, "{line}}}")?,
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i)
            .map_or(Some(default), |a| a.parse().ok())
            .unwrap_or_else(|| {
                eprintln!("gen_log: argument {i} is not a number");
                std::process::exit(2)
            })
    };
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let result = match args.first().map(String::as_str) {
        Some("fleet") => fleet(
            &mut out,
            num(1, 50_000),
            num(2, 2).max(1),
            num(3, 800_000),
            num(4, 0x5eed),
        ),
        Some("memory") => memory(&mut out, num(1, 400_000), num(2, 1).max(1)),
        Some("baseline") => baseline(&mut out, num(1, 1_200_000), num(2, 0)),
        _ => {
            eprintln!("usage: gen_log fleet LICENSES PER_CUSTOMER EVENTS [SEED] | memory LICENSES PER_CUSTOMER | baseline LINES [BYTES]");
            std::process::exit(2)
        }
    };
    if let Err(e) = result.and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("gen_log: {e}");
            std::process::exit(1);
        }
    }
}
