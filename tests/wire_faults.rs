//! Faults on the wire between `keypulse run` and the real Kafka broker, through Toxiproxy.
//!
//! The broker has listeners that advertise a proxy's address (`KEYPULSE_KAFKA_PROXIED`,
//! scripts/kafka-broker); each test starts its own Toxiproxy (`KEYPULSE_TOXIPROXY`) on its
//! own listener, so every Kafka client of the service (consumer, dead-letter producer,
//! decision log, transactions) goes through the proxy, while the test's producer writes
//! to the broker directly. One fault per test, on a service consuming a stream mid-way
//! (the `small` fixture: half folded, the other half produced paced while the fault
//! starts):
//! - refused connections for 60 s (the proxy disabled);
//! - a blackhole for 60 s (the `timeout` toxic, both ways, never closing);
//! - 500 ms of latency on every response;
//! - connections reset (the `reset_peer` toxic) for 20 s.
//!
//! Each test first proves that the service's traffic goes through the proxy (its TCP
//! connections: to the proxy, none to the broker) and that its fault happened (the
//! proxy's state, a request of the test's own through the proxy refused, unanswered, reset
//! or late, the fold stalled while messages waited), then lifts it, and asserts that the service recovered by
//! itself: the report is the fixture's, and each of its decisions arrived at the SMTP
//! sink exactly once. Nothing here depends on how the service commits (at-least-once or
//! exactly-once): only the report, the emails and the metrics are read.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::load::paced_produce;
use common::smtp::*;
use common::toxiproxy::{api_versions_round_trip, binary, proxied_slot, tcp_peers, Toxiproxy};
use serde_json::json;

const NAME: &str = "small";
/// The second half of the stream is produced over this long, from just before the fault.
const PACE: Duration = Duration::from_secs(20);
/// Time for what was already in flight when the fault started to drain.
const SETTLE: Duration = Duration::from_secs(8);
/// Bound of each wait for recovery.
const RECOVERY_LIMIT: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Refused,
    Blackhole,
    Latency,
    Reset,
}

impl Fault {
    fn slot(self) -> usize {
        self as usize
    }

    fn hold(self) -> Duration {
        match self {
            Fault::Refused | Fault::Blackhole => Duration::from_secs(60),
            Fault::Latency | Fault::Reset => Duration::from_secs(20),
        }
    }

    fn apply(self, proxy: &Toxiproxy) {
        match self {
            Fault::Refused => proxy.set_enabled(false),
            Fault::Blackhole => {
                for stream in ["upstream", "downstream"] {
                    proxy.add_toxic(
                        &format!("hole-{stream}"),
                        "timeout",
                        stream,
                        json!({"timeout": 0}),
                    );
                }
            }
            Fault::Latency => {
                proxy.add_toxic("slow", "latency", "downstream", json!({"latency": 500}))
            }
            Fault::Reset => {
                proxy.add_toxic("reset", "reset_peer", "upstream", json!({"timeout": 0}))
            }
        }
    }

    fn lift(self, proxy: &Toxiproxy) {
        match self {
            Fault::Refused => proxy.set_enabled(true),
            Fault::Blackhole => {
                proxy.remove_toxic("hole-upstream");
                proxy.remove_toxic("hole-downstream");
            }
            Fault::Latency => proxy.remove_toxic("slow"),
            Fault::Reset => proxy.remove_toxic("reset"),
        }
    }
}

fn folded(inst: &Instance) -> f64 {
    let (_, text) = inst.get_text("/metrics");
    metric_sum(&text, "keypulse_messages_folded_total", &[]).unwrap_or(0.0)
}

/// What was observed during the fault, for its proof.
struct During {
    /// Folded before the fault, SETTLE into it, and at its end.
    folded: [f64; 3],
    /// Messages the test had produced SETTLE into the fault and at its end.
    produced: [usize; 2],
}

/// Proves that the fault happened, checked while it is still on: the proxy's state, a
/// probe of the test's own through the proxy, and the service's fold (stalled while
/// messages waited, for the faults that cut the traffic; going on, for latency).
fn prove(fault: Fault, proxy: &Toxiproxy, d: &During, total: usize) {
    let [f0, f1, f2] = d.folded;
    let stalled = || {
        assert!(
            d.produced[1] > d.produced[0] || d.produced[0] as f64 > f2,
            "{fault:?}: no message waited during the fault (produced {:?}, folded {f2})",
            d.produced
        );
        assert_eq!(
            f1, f2,
            "{fault:?}: the service folded during the fault: it bypassed the proxy"
        );
        assert!(f2 < total as f64, "{fault:?}: everything folded anyway");
    };
    let state = proxy.proxy();
    let toxics: Vec<&str> = state["toxics"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["type"].as_str()).collect())
        .unwrap_or_default();
    let probe = api_versions_round_trip(&proxy.listen, Duration::from_secs(3));
    match fault {
        Fault::Refused => {
            assert_eq!(state["enabled"], json!(false));
            let err = std::net::TcpStream::connect(&proxy.listen)
                .expect_err("a connection to the disabled proxy must fail");
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
            stalled();
        }
        Fault::Blackhole => {
            assert_eq!(toxics, ["timeout", "timeout"], "{state}");
            let err = probe.expect_err("a request through the blackhole got an answer");
            assert!(
                matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the blackhole answered: {err}"
            );
            stalled();
        }
        Fault::Latency => {
            assert_eq!(toxics, ["latency"], "{state}");
            let rtt = probe.expect("a probe through the slow proxy");
            assert!(
                rtt >= Duration::from_millis(500),
                "a round trip through the proxy took {rtt:?}: no latency"
            );
            assert!(
                f2 > f0,
                "nothing folded through the slow proxy ({f0} → {f2})"
            );
        }
        Fault::Reset => {
            assert_eq!(toxics, ["reset_peer"], "{state}");
            assert!(
                probe.is_err(),
                "a request through the proxy got an answer: {probe:?}"
            );
            stalled();
        }
    }
}

fn run(test: &str, fault: Fault) {
    let Some(brokers) = brokers(test) else {
        return;
    };
    let Some(sink_cmd) = sink_command(test) else {
        return;
    };
    let Some(bin) = binary(test) else {
        return;
    };
    let Some((listen, upstream)) = proxied_slot(test, fault.slot()) else {
        return;
    };
    let topic = unique(&format!("wire-{fault:?}").to_lowercase());
    create_topic(&brokers, &topic, 6);
    let events = common::fixture_events(NAME);
    let all = lines(&events);
    let total = all.len();
    let half = total / 2;
    produce(&brokers, &topic, &all[..half]);
    let rest: Vec<Vec<u8>> = all[half..].iter().map(|l| l.to_vec()).collect();

    let mail_dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&sink_cmd, mail_dir.path(), 0);
    let proxy = Toxiproxy::start(&bin, &listen, &upstream);
    let config = format!(
        "{}{}",
        config_toml(
            &listen,
            &topic,
            &format!("{topic}-g"),
            &format!("{topic}.dlq"),
            &format!("notifications_topic = \"{topic}.notifications\""),
        ),
        email_toml(sink.port)
    );
    let mut inst = Instance::start(&format!("{fault:?}"), &config);
    inst.wait_ready(Duration::from_secs(120));
    wait_for("the first half folded", Duration::from_secs(120), || {
        (folded(&inst) >= half as f64).then_some(())
    });
    // Every Kafka connection of the service goes to the proxy, none to the broker.
    let peers = tcp_peers(inst.child.id());
    let broker_ports: Vec<String> = [&brokers, &upstream]
        .iter()
        .filter_map(|a| a.rsplit(':').next().map(|p| format!(":{p}")))
        .collect();
    assert!(
        peers.contains(&listen),
        "{fault:?}: no connection of the service to the proxy {listen}: {peers:?}"
    );
    assert!(
        !peers
            .iter()
            .any(|p| broker_ports.iter().any(|b| p.ends_with(b))),
        "{fault:?}: the service is connected to the broker directly: {peers:?}"
    );

    // The rest of the stream flows while the fault starts.
    let produced = Arc::new(AtomicUsize::new(0));
    let producer = paced_produce(brokers.clone(), topic.clone(), rest, PACE, produced.clone());
    std::thread::sleep(Duration::from_secs(2));
    let f0 = folded(&inst);
    let log_at_fault = inst.log.lock().unwrap().len();
    fault.apply(&proxy);
    let fault_at = Instant::now();
    eprintln!("{fault:?}: on for {:?}", fault.hold());
    std::thread::sleep(SETTLE);
    let f1 = folded(&inst);
    let p1 = half + produced.load(Ordering::SeqCst);
    std::thread::sleep(fault.hold().saturating_sub(fault_at.elapsed()));
    let f2 = folded(&inst);
    let p2 = half + produced.load(Ordering::SeqCst);
    let during = During {
        folded: [f0, f1, f2],
        produced: [p1, p2],
    };
    prove(fault, &proxy, &during, total);
    let client_errors = inst.log.lock().unwrap()[log_at_fault..]
        .iter()
        .filter(|l| l.contains("\"librdkafka\""))
        .count();
    let held = fault_at.elapsed();
    fault.lift(&proxy);
    let lifted_at = Instant::now();
    eprintln!("{fault:?}: lifted");
    producer.join().expect("the producer");

    // Recovery, by itself: the fixture's report, each decision emailed once.
    let expected = common::fixture_report(NAME);
    let want = report_ids(&expected).len();
    let report = wait_for("the fixture's report", RECOVERY_LIMIT, || {
        if let Ok(Some(status)) = inst.child.try_wait() {
            panic!(
                "{fault:?}: keypulse exited ({status}); log tail:\n{}",
                inst.log_tail(40)
            );
        }
        let (status, r) = inst.get("/api/v1/report");
        (status == 200 && common::diff(&expected, &r).is_empty()).then_some(r)
    });
    let exact_in = lifted_at.elapsed();
    wait_for("every decision emailed", RECOVERY_LIMIT, || {
        let (_, text) = inst.get_text("/metrics");
        let depth = metric_sum(&text, "keypulse_outbox_depth", &[]).unwrap_or(-1.0);
        (received_ids(mail_dir.path()).len() >= want && depth == 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let got = received_ids(mail_dir.path());
    assert_each_once(&format!("{fault:?}"), &report, &got);
    let end = proxy.bytes();
    eprintln!(
        "{fault:?} for {held:?}: folded {f0} at the start, {f1} after {SETTLE:?}, {f2} at \
         the end (of {total}; {p2} produced); {client_errors} librdkafka log lines during \
         the fault; recovered to the exact report {exact_in:?} after the fault, {} emails, \
         each once; {} bytes through the proxy (closed connections)",
        got.len(),
        end.sent_up + end.sent_down
    );
    inst.stop(Duration::from_secs(30));
    sink.stop();
}

#[test]
fn refused_connections_for_60_s_then_exact() {
    run("refused_connections_for_60_s_then_exact", Fault::Refused);
}

#[test]
fn a_blackhole_for_60_s_then_exact() {
    run("a_blackhole_for_60_s_then_exact", Fault::Blackhole);
}

#[test]
fn latency_of_500_ms_then_exact() {
    run("latency_of_500_ms_then_exact", Fault::Latency);
}

#[test]
fn reset_connections_then_exact() {
    run("reset_connections_then_exact", Fault::Reset);
}
