//! The "decode floor" of `scripts/bench`: a bare `serde_json` decode of every line of a
//! log into a borrowed struct, on one core, with no validation and no fold. What
//! `keypulse replay` is compared with: a replay at the floor folds as fast as this only
//! parses.
//!
//!   cargo run --release -p keypulse-core --example decode_floor -- FILE
//!
//! Reads the whole file, then decodes line by line; prints `lines=`, `decoded=` and
//! `decode_secs=` (the decode alone; `scripts/bench` times the whole process).

use std::hint::black_box;
use std::time::Instant;

#[path = "support/mod.rs"]
mod support;

use support::BareEvent;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: decode_floor FILE");
        std::process::exit(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("decode_floor: cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    let (mut lines, mut decoded) = (0u64, 0u64);
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if black_box(serde_json::from_slice::<BareEvent<'_>>(line)).is_ok() {
            decoded += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("lines={lines} decoded={decoded} decode_secs={secs:.4}");
}
