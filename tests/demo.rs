//! `keypulse demo` end to end (issue 5): the embedded broker, the simulator, the real
//! service, the dashboard in headless Chromium, and, after 60 seconds of demo, emails of
//! all three kinds in the outbox folder, churn risk and upgrade candidates in the report,
//! and `/metrics` passing `promtool check metrics`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{binary, client, unsafe_kill, wait_for};
use mail_parser::{MessageParser, MimeHeaders};

fn required() -> bool {
    std::env::var("KEYPULSE_REQUIRE_SERVICES").as_deref() == Ok("1")
}

fn tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The kinds of the `.eml` files in `dir`, each checked to be a multipart message with a
/// text and an HTML part and the headers an email needs.
fn email_kinds(dir: &Path) -> Vec<String> {
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(dir).expect("outbox folder") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("eml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let msg = MessageParser::default()
            .parse(&bytes[..])
            .unwrap_or_else(|| panic!("{path:?} does not parse"));
        assert!(
            msg.subject().is_some_and(|s| !s.is_empty()),
            "{path:?}: no subject"
        );
        assert!(
            msg.from().is_some() && msg.to().is_some(),
            "{path:?}: no From/To"
        );
        assert!(
            msg.date().is_some() && msg.message_id().is_some(),
            "{path:?}: no Date/Message-ID"
        );
        let ct = msg.content_type().expect("content type");
        assert_eq!(
            (ct.ctype(), ct.subtype()),
            ("multipart", Some("alternative")),
            "{path:?}: not multipart/alternative"
        );
        assert!(
            msg.body_text(0).is_some_and(|t| !t.is_empty()),
            "{path:?}: no text part"
        );
        assert!(
            msg.body_html(0).is_some_and(|t| !t.is_empty()),
            "{path:?}: no html part"
        );
        let kind = msg
            .header("X-Keypulse-Kind")
            .and_then(|h| h.as_text())
            .unwrap_or_default()
            .to_string();
        kinds.push(kind);
    }
    kinds
}

#[test]
fn the_demo_runs_the_whole_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keypulse.toml");
    std::fs::write(
        &config,
        "[http]\nbind = \"127.0.0.1:0\"\nrefresh_ms = 500\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(binary())
        .current_dir(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["demo", "--customers", "150", "--rate", "30"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keypulse demo");
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("dashboard") {
                let _ = tx.send(url.trim().trim_end_matches('/').to_string());
            }
            l.lock().unwrap().push(line);
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "the demo printed no dashboard URL within 120 s; log:\n{}",
                log.lock().unwrap().join("\n")
            )
        });
    wait_for("/readyz 200", Duration::from_secs(120), || {
        let r = client().get(format!("{base}/readyz")).send().ok()?;
        (r.status().as_u16() == 200).then_some(())
    });

    // the dashboard, in a real browser
    match tool("KEYPULSE_CHROMIUM", "chromium") {
        Some(chromium) => {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let shots = root.join("target/screenshots/demo");
            let status = Command::new(root.join("scripts/check-dashboard"))
                .arg(&base)
                .arg("--out")
                .arg(&shots)
                .env("KEYPULSE_CHROMIUM", &chromium)
                .status()
                .expect("run scripts/check-dashboard");
            assert!(
                status.success(),
                "scripts/check-dashboard failed against the demo"
            );
        }
        None if required() => panic!("chromium not found and KEYPULSE_REQUIRE_SERVICES=1"),
        None => eprintln!("note: chromium not found; skipping the browser check"),
    }

    // let the demo run for a minute, as a newcomer would
    let minute = Duration::from_secs(60);
    if let Some(left) = minute.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the demo exited early; log:\n{}",
        log.lock().unwrap().join("\n")
    );

    let report: serde_json::Value = client()
        .get(format!("{base}/api/v1/report"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        report["events"]["applied"].as_u64().unwrap() > 10_000,
        "{}",
        report["events"]
    );
    assert!(report["events"]["rejected"].as_u64().unwrap() > 0);
    assert!(
        !report["health"]["churn_risk"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no churn-risk customers"
    );
    assert!(
        !report["upgrade_pipeline"].as_array().unwrap().is_empty(),
        "no upgrade candidates"
    );

    let kinds = email_kinds(&dir.path().join("outbox"));
    for kind in ["upgrade", "renewal", "churn_warning"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "no {kind} email among {} in the outbox",
            kinds.len()
        );
    }

    let metrics = client()
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    match tool("KEYPULSE_PROMTOOL", "promtool") {
        Some(promtool) => {
            let mut p = Command::new(promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(p.stdin.as_mut().unwrap(), metrics.as_bytes()).unwrap();
            drop(p.stdin.take());
            let out = p.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None if required() => panic!("promtool not found and KEYPULSE_REQUIRE_SERVICES=1"),
        None => eprintln!("note: promtool not found; skipping the metrics check"),
    }
    assert!(metrics.contains("keypulse_emails_total{kind=\"upgrade\",outcome=\"sent\"}"));

    // Ctrl-C stops it cleanly
    unsafe_kill(child.id(), "INT");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the demo did not stop within 10 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the demo exited with {status}");
}
