//! The SMTP server down for a while under `keypulse run`, against the real Kafka broker
//! and the real SMTP sink (scripts/smtp_sink.py): a paced producer keeps sending the
//! `noisy` fixture's events (they decide emails all along) before, during and after an
//! outage of the SMTP server (killed: its port refuses connections).
//!
//! Asserts that the outage was real (no email arrived, the mailer retried, decisions
//! were taken meanwhile), that the fold never waited for the mailer (`/readyz` answered
//! 200 at every sample and the fold kept up with the producer during the outage), and that
//! after recovery the report is the fixture's and every decision in it arrived exactly
//! once (Message-IDs, which derive from the idempotency keys), nothing else.
//!
//! The outage lasts `KEYPULSE_SMTP_OUTAGE_SECS` (default 60, as in CI); `scripts/soak`
//! runs this same test with 600 s. It prints its figures on stderr (`--nocapture`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::*;
use common::load::paced_produce;
use common::smtp::*;

const NAME: &str = "noisy";
/// SMTP is up this long before the outage and the producer goes on this long after it.
const LEAD: Duration = Duration::from_secs(10);

fn outage() -> Duration {
    let secs = std::env::var("KEYPULSE_SMTP_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs.max(5))
}

/// One scrape of the figures the test follows.
#[derive(Debug, Clone, Copy)]
struct Sample {
    folded: f64,
    decided: f64,
    sent: f64,
    retried: f64,
    ready: bool,
}

fn sample(inst: &Instance) -> Sample {
    let (_, text) = inst.get_text("/metrics");
    let m = |name: &str, labels: &[&str]| metric_sum(&text, name, labels).unwrap_or(0.0);
    let ready = client()
        .get(inst.url("/readyz"))
        .timeout(Duration::from_secs(5))
        .send()
        .map(|r| r.status().as_u16() == 200)
        .unwrap_or(false);
    Sample {
        folded: m("keypulse_messages_folded_total", &[]),
        decided: m("keypulse_notifications_decided_total", &[]),
        sent: m("keypulse_emails_total", &["outcome=\"sent\""]),
        retried: m("keypulse_emails_total", &["outcome=\"retried\""]),
        ready,
    }
}

#[test]
fn smtp_down_while_events_flow_then_each_decision_delivered_once() {
    let test = "smtp_down_while_events_flow_then_each_decision_delivered_once";
    let Some(brokers) = brokers(test) else {
        return;
    };
    let Some(sink_cmd) = sink_command(test) else {
        return;
    };
    let outage = outage();
    let topic = unique("smtp-outage");
    create_topic(&brokers, &topic, 6);
    let mail_dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(&sink_cmd, mail_dir.path(), 0);
    let port = sink.port;
    let config = format!(
        "{}{}",
        config_toml(
            &brokers,
            &topic,
            &format!("{topic}-g"),
            &format!("{topic}.dlq"),
            &format!("notifications_topic = \"{topic}.notifications\""),
        ),
        email_toml(port)
    );
    let mut inst = Instance::start("smtp outage", &config);
    inst.wait_ready(Duration::from_secs(120));

    let events = common::fixture_events(NAME);
    let all: Vec<Vec<u8>> = lines(&events).iter().map(|l| l.to_vec()).collect();
    let total = all.len();
    let produced = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let producer = paced_produce(
        brokers.clone(),
        topic.clone(),
        all,
        LEAD + outage + LEAD,
        produced.clone(),
    );

    // SMTP up for LEAD, then down for `outage`, sampled every second.
    std::thread::sleep(LEAD);
    // Stop it between two emails (the outbox empty), so that no email is cut between the
    // sink's writing it and the client's reading the 250: SMTP has no idempotent
    // submission, and such an email would rightly be sent again.
    let idle_by = Instant::now() + Duration::from_secs(10);
    while Instant::now() < idle_by {
        let (_, text) = inst.get_text("/metrics");
        if metric_sum(&text, "keypulse_outbox_depth", &[]) == Some(0.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sink.stop();
    eprintln!("SMTP down for {outage:?}");
    let down_at = Instant::now();
    let before = sample(&inst);
    let produced_before = produced.load(Ordering::SeqCst);
    let mut samples = 0usize;
    let mut not_ready = 0usize;
    let mut produced_mid = None;
    while down_at.elapsed() < outage {
        std::thread::sleep(Duration::from_secs(1));
        let s = sample(&inst);
        samples += 1;
        if !s.ready {
            not_ready += 1;
        }
        if produced_mid.is_none() && down_at.elapsed() >= outage / 2 {
            produced_mid = Some(produced.load(Ordering::SeqCst));
        }
        assert!(
            inst.child.try_wait().unwrap().is_none(),
            "keypulse exited during the outage; log tail:\n{}",
            inst.log_tail(30)
        );
    }
    let during = sample(&inst);
    let received_down = received_ids(mail_dir.path()).len();
    let produced_end = produced.load(Ordering::SeqCst);
    // SMTP comes back on the same port.
    let sink = Sink::start(&sink_cmd, mail_dir.path(), port);
    let up_at = Instant::now();
    eprintln!("SMTP up again");

    // The outage was real: decisions were taken, the mailer retried, nothing was sent.
    assert!(
        during.decided > before.decided,
        "no decision during the outage ({} → {}): the outage proves nothing",
        before.decided,
        during.decided
    );
    assert!(
        during.retried > before.retried,
        "the mailer never retried during the outage"
    );
    assert!(
        during.sent <= before.sent + 4.0,
        "emails counted sent while SMTP was down: {} → {}",
        before.sent,
        during.sent
    );
    // The fold never waited: ready throughout, and by the outage's end it had folded at
    // least what was produced by its middle.
    assert_eq!(
        not_ready, 0,
        "/readyz not 200 in {not_ready}/{samples} samples"
    );
    let produced_mid = produced_mid.unwrap_or(produced_end);
    assert!(
        during.folded >= produced_mid as f64,
        "the fold fell behind while SMTP was down: folded {} < produced by mid-outage {}",
        during.folded,
        produced_mid
    );

    producer.join().expect("the producer");
    let produced_all = t0.elapsed();
    assert_eq!(produced.load(Ordering::SeqCst), total);
    eprintln!("{total} events produced in {produced_all:?}");

    // After recovery: the fixture's report, and each of its decisions delivered once.
    let expected = common::fixture_report(NAME);
    let want = report_ids(&expected).len();
    let report = wait_for("the fixture's report", Duration::from_secs(120), || {
        let (status, r) = inst.get("/api/v1/report");
        (status == 200 && common::diff(&expected, &r).is_empty()).then_some(r)
    });
    wait_for("every decision delivered", Duration::from_secs(120), || {
        let (_, text) = inst.get_text("/metrics");
        let depth = metric_sum(&text, "keypulse_outbox_depth", &[]).unwrap_or(-1.0);
        (received_ids(mail_dir.path()).len() >= want && depth == 0.0).then_some(())
    });
    let delivered_in = up_at.elapsed();
    // A little longer, so that a late duplicate would show.
    std::thread::sleep(Duration::from_secs(3));
    let got = received_ids(mail_dir.path());
    assert_each_once("after the SMTP outage", &report, &got);
    let end = sample(&inst);

    eprintln!(
        "SMTP outage {outage:?}: {total} events produced over {produced_all:?} \
         ({produced_before} before the outage, {} during it; {} emails received before \
         it); during the outage: {} messages folded, {} decisions taken, {} retries, \
         /readyz 200 in {}/{samples} samples; after recovery: {} emails delivered in \
         {delivered_in:?}, {} in all ({} decisions in the report), no duplicate; \
         sent counter {}",
        produced_end - produced_before,
        received_down,
        during.folded - before.folded,
        during.decided - before.decided,
        during.retried - before.retried,
        samples - not_ready,
        got.len() - received_down,
        got.len(),
        want,
        end.sent
    );
    inst.stop(Duration::from_secs(15));
    sink.stop();
}
