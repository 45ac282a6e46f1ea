//! The simulator's history, folded with `keypulse::replay::Replay` (no Kafka), shows what
//! the demo promises: churn-risk customers, upgrade candidates, emails of all three kinds,
//! rejected and duplicate events; and a seed gives the same lines every time.

use std::collections::BTreeMap;

use keypulse::core::CoreConfig;
use keypulse::replay::Replay;
use keypulse::sim::{Phase, SimConfig, SimEvent, Simulator};

fn config(customers: u32, seed: u64) -> SimConfig {
    SimConfig {
        customers,
        seed,
        ..SimConfig::default()
    }
}

fn fold(events: &[SimEvent]) -> serde_json::Value {
    let cfg = CoreConfig::default();
    let mut replay = Replay::new();
    for e in events {
        replay.feed_line(e.value.as_bytes(), &cfg);
    }
    serde_json::to_value(replay.report(&cfg)).unwrap()
}

#[test]
fn history_shows_every_signal_and_email_kind() {
    let events = Simulator::history(config(150, 7));
    let report = fold(&events);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for n in report["notifications"].as_array().unwrap() {
        *kinds
            .entry(n["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    eprintln!(
        "{} events; events {}; notifications {kinds:?}; churn_risk {}; upgrade_pipeline {}; \
         health {}; mrr {}; ttfv {}; licenses {}",
        events.len(),
        report["events"],
        report["health"]["churn_risk"].as_array().unwrap().len(),
        report["upgrade_pipeline"].as_array().unwrap().len(),
        report["health"]["bands"],
        report["mrr"],
        report["ttfv"],
        report["licenses"],
    );
    for kind in ["upgrade", "renewal", "churn_warning"] {
        assert!(
            kinds.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} email: {kinds:?}"
        );
    }
    assert!(!report["health"]["churn_risk"]
        .as_array()
        .unwrap()
        .is_empty());
    for c in report["health"]["churn_risk"].as_array().unwrap() {
        assert!(c["score"].as_u64().unwrap() < 50);
    }
    assert!(!report["upgrade_pipeline"].as_array().unwrap().is_empty());
    assert!(report["events"]["rejected"].as_u64().unwrap() > 0);
    assert!(report["events"]["duplicates"].as_u64().unwrap() > 0);
    assert!(report["mrr"]["current_cents"].as_i64().unwrap() > 0);
    assert!(report["dav"]["today"].as_u64().unwrap() > 0);
    // Every key is the event's customer_id (or "" when it has none / is not JSON).
    for e in &events {
        let id = serde_json::from_str::<serde_json::Value>(&e.value)
            .ok()
            .and_then(|v| v["customer_id"].as_str().map(String::from));
        if let Some(id) = id {
            assert_eq!(e.key, id, "{}", e.value);
        }
    }
}

#[test]
fn a_seed_gives_the_same_lines_and_another_seed_others() {
    let a = Simulator::history(config(40, 11));
    let b = Simulator::history(config(40, 11));
    let c = Simulator::history(config(40, 12));
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn live_phase_follows_the_rate_and_the_live_clock() {
    let cfg = SimConfig {
        history_days: 10,
        customers: 30,
        live_rate: 100.0,
        ..SimConfig::default()
    };
    let end = cfg.history_end();
    let history = Simulator::history(cfg.clone()).len();
    let mut sim = Simulator::new(cfg);
    let t = 5_000_000_000_000i64; // any wall clock
    let mut n = 0;
    loop {
        let batch = sim.next_batch(1000, t);
        if batch.is_empty() || sim.phase() == Phase::Live && batch[0].ts >= end {
            n += batch.iter().filter(|e| e.ts < end).count();
            break;
        }
        n += batch.len();
    }
    assert_eq!(n, history);
    // 2.5 s later: about 250 more live events (the first batch of live took 1).
    let live: Vec<SimEvent> = sim.next_batch(100_000, t + 2_500_000);
    assert_eq!(sim.phase(), Phase::Live);
    let (_, emitted_live) = sim.emitted();
    assert_eq!(emitted_live, 251, "live events: {}", live.len());
    assert!(live.iter().all(|e| e.ts >= end && e.ts <= end + 2_500_000));
    assert!(live.windows(2).all(|w| w[0].ts <= w[1].ts));
    assert!(sim.next_batch(10, t + 2_500_000).is_empty());
    assert_eq!(sim.next_due(t + 2_500_000), t + 2_510_000);
}

#[test]
fn live_phase_never_stalls_across_model_days() {
    // A small base: model days after the history are short, so the queue runs dry often.
    let cfg = SimConfig {
        history_days: 5,
        customers: 20,
        live_rate: 500.0,
        ..SimConfig::default()
    };
    let mut sim = Simulator::new(cfg);
    let mut now = 1_000_000_000_000i64;
    assert!(!sim.next_batch(usize::MAX, now).is_empty());
    for _ in 0..5_000 {
        now += 2_000; // 2 ms: one event due each time at 500/s
        let due = sim.next_due(now);
        let batch = sim.next_batch(100, now);
        assert_eq!(batch.is_empty(), due > now, "due {due} now {now}");
    }
    assert!(sim.emitted().1 >= 4_999, "{:?}", sim.emitted());
}

#[test]
fn simulate_jsonl_writes_the_history_that_replay_folds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.jsonl");
    let bin = env!("CARGO_BIN_EXE_keypulse");
    let st = std::process::Command::new(bin)
        .args(["simulate", "--customers", "30", "--seed", "4"])
        .args(["--start", "2026-09-01T00:00:00Z", "--jsonl"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&file).unwrap();
    let cfg = SimConfig {
        customers: 30,
        seed: 4,
        ..SimConfig::default()
    };
    let expected: Vec<String> = Simulator::history(cfg)
        .into_iter()
        .map(|e| e.value)
        .collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    let out = std::process::Command::new(bin)
        .args(["replay", "--compact"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["as_of"].as_str().map(|s| &s[..10]),
        Some("2026-10-30")
    );
}

#[test]
fn skipping_the_history_carries_on_with_the_same_live_events() {
    let cfg = SimConfig {
        history_days: 8,
        customers: 25,
        live_rate: 1000.0,
        ..SimConfig::default()
    };
    let now = 7_000_000_000_000i64;
    let mut a = Simulator::new(cfg.clone());
    while !a.history_done() {
        a.next_batch(1000, now);
    }
    let mut b = Simulator::new(cfg.clone());
    assert_eq!(b.skip_history() as usize, Simulator::history(cfg).len());
    // Neither has started its live clock yet: the first live call starts it (one event),
    // one second later 1000 more are due.
    let mut la = a.next_batch(10_000, now + 5_000_000);
    let mut lb = b.next_batch(10_000, now + 5_000_000);
    assert_eq!((la.len(), lb.len()), (1, 1));
    la.extend(a.next_batch(10_000, now + 6_000_000));
    lb.extend(b.next_batch(10_000, now + 6_000_000));
    assert_eq!(la.len(), 1001);
    assert_eq!(la, lb);
}
