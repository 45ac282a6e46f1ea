//! Helpers of the tests that run `keypulse run` with real email: the SMTP sink
//! (scripts/smtp_sink.py) as a child process that can be stopped and restarted on its port,
//! the Message-IDs it received, the `[email]` config pointing at it, the check that every
//! decision of a report arrived exactly once, and Prometheus text parsing.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use keypulse::core::Notification;
use keypulse::email::render::message_id;
use mail_parser::MessageParser;
use serde_json::Value;

/// The sink command (`KEYPULSE_SMTP_SINK`, split on whitespace). Without it: a panic when
/// `KEYPULSE_REQUIRE_SERVICES=1`, else `None` after a note.
pub fn sink_command(test: &str) -> Option<Vec<String>> {
    match std::env::var("KEYPULSE_SMTP_SINK") {
        Ok(c) if !c.trim().is_empty() => Some(c.split_whitespace().map(String::from).collect()),
        _ => {
            if std::env::var("KEYPULSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: KEYPULSE_SMTP_SINK is not set but KEYPULSE_REQUIRE_SERVICES=1");
            }
            eprintln!("note: {test} skipped: KEYPULSE_SMTP_SINK is not set (run scripts/test)");
            None
        }
    }
}

/// A running smtp_sink.py writing to `dir`; killed when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
}

impl Sink {
    /// Starts the sink on `port` (0: any free port) and waits for its `LISTENING` line.
    pub fn start(cmd: &[String], dir: &Path, port: u16) -> Sink {
        Self::start_with(cmd, dir, port, &[])
    }

    /// As [`Self::start`], with extra arguments for the sink (e.g. `--reply-4xx`).
    pub fn start_with(cmd: &[String], dir: &Path, port: u16, extra: &[&str]) -> Sink {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the SMTP sink");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("sink stdout"))
            .read_line(&mut line)
            .expect("read the sink's LISTENING line");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the sink: {line:?}"));
        Sink { child, port }
    }

    /// A sink started otherwise (e.g. the TLS sink of `email_e2e`), listening on `port`.
    pub fn adopt(child: Child, port: u16) -> Sink {
        Sink { child, port }
    }

    /// Kills the sink: its port refuses connections from now on.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `[email]` sections of a `keypulse run` config sending to the sink on `port`, with
/// short retry delays (an outage ends in seconds, not minutes).
pub fn email_toml(port: u16) -> String {
    format!(
        "[email]\ntransport = \"smtp\"\nretry_initial_ms = 200\nretry_max_ms = 2000\n\
         max_attempts = 8\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         security = \"plain\"\ntimeout_secs = 5\n"
    )
}

/// The Message-IDs of the messages in the sink's folder, in the order received.
pub fn received_ids(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.ends_with(".eml") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let raw = std::fs::read(dir.join(&n)).expect("eml");
            let msg = MessageParser::default()
                .parse(&raw)
                .unwrap_or_else(|| panic!("{n}: the message does not parse"));
            let mid = msg
                .message_id()
                .unwrap_or_else(|| panic!("{n}: no Message-ID"));
            format!("<{mid}>")
        })
        .collect()
}

/// The Message-IDs of a report's `notifications` (one per decision), checked distinct.
pub fn report_ids(report: &Value) -> BTreeSet<String> {
    let ns: Vec<Notification> = serde_json::from_value(report["notifications"].clone())
        .expect("the report's notifications");
    let ids: BTreeSet<String> = ns
        .iter()
        .map(|n| message_id(&n.idempotency_key()))
        .collect();
    assert_eq!(
        ids.len(),
        ns.len(),
        "two decisions of the report share a key"
    );
    ids
}

/// Asserts that the sink received each of the report's decisions exactly once and
/// nothing else.
pub fn assert_each_once(context: &str, report: &Value, received: &[String]) {
    let want = report_ids(report);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in received {
        *seen.entry(id.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(dups.is_empty(), "{context}: sent more than once: {dups:?}");
    let unexpected: Vec<_> = seen.keys().filter(|k| !want.contains(**k)).collect();
    assert!(
        unexpected.is_empty(),
        "{context}: emails of no decision in the report: {unexpected:?}"
    );
    let missing: Vec<_> = want
        .iter()
        .filter(|k| !seen.contains_key(k.as_str()))
        .collect();
    assert!(missing.is_empty(), "{context}: never arrived: {missing:?}");
}

/// The sum of every series of metric `name` in a Prometheus text exposition whose labels
/// contain all of `labels` (e.g. `outcome="sent"`); `None` if there is no such series.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (lbl, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue;
        };
        if !labels.iter().all(|l| lbl.split(',').any(|x| x == *l)) {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>() {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
