//! The decoder measurement of issue 10: `serde_json`, `sonic-rs` and `simd-json`, each
//! decoding the same lines into the same borrowed struct (`BareEvent`, the decode floor's),
//! side by side, with keypulse's own full decode (`keypulse_core::decode`: every SPEC §1
//! check and rejection reason) beside them. A measurement, not a test.
//!
//!   cargo run --release -p keypulse-core --example gen_log -- fleet 50000 2 750000 > fleet.jsonl
//!   cargo run --release -p keypulse-core --example decode_compare -- fleet.jsonl [ROUNDS]
//!
//! Each round times one pass of every decoder over every line, in turn (so that a busy
//! machine slows them alike); prints the median seconds per decoder over ROUNDS (default
//! 5), nanoseconds per line and the speed over `serde_json`. `simd-json` decodes in
//! place: each line is first copied into a scratch buffer (as a replay holding its batch
//! could avoid; the copy is timed, a few percent of its cost).
//!
//! It also says where the three disagree on accepting a line: over the file, and over a
//! few hand-made lines (escapes, lone surrogates, bad UTF-8, odd numbers, trailing bytes),
//! since adopting one would have to keep every SPEC §1 rejection exact.

use std::hint::black_box;
use std::time::Instant;

#[path = "support/mod.rs"]
mod support;

use support::BareEvent;

type Decoder = fn(&[&[u8]], &mut Vec<u8>, &mut simd_json::Buffers) -> usize;

fn with_serde_json(lines: &[&[u8]], _: &mut Vec<u8>, _: &mut simd_json::Buffers) -> usize {
    lines
        .iter()
        .filter(|l| black_box(serde_json::from_slice::<BareEvent<'_>>(l)).is_ok())
        .count()
}

fn with_sonic_rs(lines: &[&[u8]], _: &mut Vec<u8>, _: &mut simd_json::Buffers) -> usize {
    lines
        .iter()
        .filter(|l| black_box(sonic_rs::from_slice::<BareEvent<'_>>(l)).is_ok())
        .count()
}

fn with_simd_json(lines: &[&[u8]], buf: &mut Vec<u8>, bufs: &mut simd_json::Buffers) -> usize {
    let mut ok = 0;
    for l in lines {
        buf.clear();
        buf.extend_from_slice(l);
        if black_box(simd_json::serde::from_slice_with_buffers::<BareEvent<'_>>(
            buf, bufs,
        ))
        .is_ok()
        {
            ok += 1;
        }
    }
    ok
}

fn with_keypulse(lines: &[&[u8]], _: &mut Vec<u8>, _: &mut simd_json::Buffers) -> usize {
    lines
        .iter()
        .filter(|l| black_box(keypulse_core::decode(l)).is_ok())
        .count()
}

const DECODERS: [(&str, Decoder); 4] = [
    ("serde_json", with_serde_json),
    ("sonic-rs", with_sonic_rs),
    ("simd-json", with_simd_json),
    ("keypulse full decode (serde_json)", with_keypulse),
];

/// Whether each of the three (serde_json, sonic-rs, simd-json) accepts `line`.
fn accepts(line: &[u8]) -> [bool; 3] {
    let mut buf = line.to_vec();
    [
        serde_json::from_slice::<BareEvent<'_>>(line).is_ok(),
        sonic_rs::from_slice::<BareEvent<'_>>(line).is_ok(),
        simd_json::serde::from_slice::<BareEvent<'_>>(&mut buf).is_ok(),
    ]
}

/// Hand-made lines where JSON decoders are known to differ.
fn tricky() -> Vec<(&'static str, Vec<u8>)> {
    let ev =
        |rest: &str| format!(r#"{{"type":"license.validated","ts":"2026-10-01T10:00:00Z"{rest}}}"#);
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![
        ("plain", ev("")),
        ("escaped quote", ev(r#","country":"F\"R""#)),
        ("\\u escape", ev(r#","country":"\u0046R""#)),
        ("surrogate pair", ev(r#","country":"\ud83d\ude00""#)),
        ("lone leading surrogate", ev(r#","country":"\ud800""#)),
        ("lone trailing surrogate", ev(r#","country":"\udc00""#)),
        ("bad escape", ev(r#","country":"\x41""#)),
        ("raw control char", ev(",\"country\":\"F\tR\"")),
        ("negative number", ev(r#","domain_limit":-1"#)),
        ("float number", ev(r#","domain_limit":1.0"#)),
        ("exponent number", ev(r#","domain_limit":1e3"#)),
        ("2^64", ev(r#","domain_limit":18446744073709551616"#)),
        ("leading zero", ev(r#","domain_limit":01"#)),
        ("duplicate key", ev(r#","country":"FR","country":"DE""#)),
        ("string for number", ev(r#","domain_limit":"3""#)),
        ("null for string", ev(r#","country":null"#)),
        ("trailing comma", ev(",")),
        ("trailing bytes", format!("{} x", ev(""))),
        ("two objects", format!("{}{}", ev(""), ev(""))),
        (
            "deep nesting",
            ev(&format!(",\"x\":{}{}", "[".repeat(200), "]".repeat(200))),
        ),
        ("top-level array", "[1]".to_string()),
        ("empty", String::new()),
    ]
    .into_iter()
    .map(|(n, s)| (n, s.into_bytes()))
    .collect();
    let mut bad_utf8 = ev(r#","country":"FR""#).into_bytes();
    let at = bad_utf8.len() - 3;
    bad_utf8[at] = 0xff;
    out.push(("invalid UTF-8 in a string", bad_utf8));
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: decode_compare FILE [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(5).max(1);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("decode_compare: cannot read {path}: {e}");
        std::process::exit(1);
    });
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect();
    let mean = bytes.len() / lines.len().max(1);
    println!(
        "{path}: {} lines, {mean} bytes/line; {rounds} rounds",
        lines.len()
    );

    let (mut buf, mut bufs) = (Vec::new(), simd_json::Buffers::new(4096));
    let mut times = vec![Vec::new(); DECODERS.len()];
    let mut decoded = vec![0; DECODERS.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in DECODERS.iter().enumerate() {
            let t = Instant::now();
            decoded[i] = f(&lines, &mut buf, &mut bufs);
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    let median = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    println!(
        "{:<34} {:>9} {:>9} {:>8} {:>10}  all rounds (s)",
        "decoder", "median s", "ns/line", "vs serde", "decoded"
    );
    for (i, (name, _)) in DECODERS.iter().enumerate() {
        let all: Vec<String> = times[i].iter().map(|t| format!("{t:.4}")).collect();
        println!(
            "{name:<34} {:>9.4} {:>9.1} {:>7.2}x {:>10}  {}",
            medians[i],
            medians[i] * 1e9 / lines.len().max(1) as f64,
            medians[0] / medians[i],
            decoded[i],
            all.join(" ")
        );
    }

    let names = ["serde_json", "sonic-rs", "simd-json"];
    let mut differ = 0;
    for l in &lines {
        let a = accepts(l);
        if a[1] != a[0] || a[2] != a[0] {
            differ += 1;
        }
    }
    println!("lines of the file where sonic-rs or simd-json accept differently from serde_json: {differ}");
    println!(
        "hand-made lines (accepted?): {:<28} {}",
        "",
        names.join(" ")
    );
    for (name, line) in tricky() {
        let a = accepts(&line);
        let mark = if a[1] != a[0] || a[2] != a[0] {
            "  <- differs"
        } else {
            ""
        };
        println!("  {name:<54} {:<10} {:<8} {:<9}{mark}", a[0], a[1], a[2]);
    }
}
