//! Every PromQL expression of the Grafana dashboard and of the Prometheus rules, run
//! against a REAL Prometheus that scrapes a REAL `keypulse run` fed with a fixture.
//!
//! - Kafka: `$KEYPULSE_TEST_BROKERS` (scripts/test starts one). Unset: the test returns
//!   early with a note, or fails when `KEYPULSE_REQUIRE_SERVICES=1`.
//! - Prometheus: Debian's binary (`$KEYPULSE_PROMETHEUS`, else `prometheus` beside
//!   `$KEYPULSE_PROMTOOL`, else `/usr/bin/prometheus`), on a free loopback port, its TSDB in
//!   a temp dir, scraping keypulse every second and loading deploy/prometheus/rules/*.yml.
//! - keypulse: `keypulse run --clock event`, configured through the environment only
//!   (unique topics and group), fed `$KEYPULSE_DEPLOY_FIXTURE` (default `noisy`) from
//!   `$KEYPULSE_FIXTURES`, each event keyed by its customer_id.
//!
//! The fixture is produced only after Prometheus has scraped keypulse once, so every
//! counter has a sample before and after the events and rate() has something to measure.
//! Once keypulse's report has counted every line and Prometheus has scraped again:
//! - every dashboard expression must return data (a non-empty result, no error);
//! - every rule must be healthy in Prometheus and its expression must evaluate without
//!   error. An alert expression is empty when it does not fire, so it is not required to
//!   return data itself: it is split at its top-level comparison and set operators
//!   (`or`, `and`, `unless`, `==`, `!=`, `>`, `<`, `>=`, `<=`, with their `bool`/`on`/
//!   `ignoring`/`group_*` modifiers), and every operand that selects a metric must return
//!   data. `sum(x) / sum(y) < 0.5` thus asks for `sum(x) / sum(y)`; the threshold `0.5`
//!   selects nothing and is skipped. (The rules' header comment states this convention.)
//!
//! No timed assertion: every wait is a bounded poll that fails with the logs when its
//! generous limit runs out; every process started here is stopped at the end.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::Value;

mod common;
use common::kafka::{lines, produce, runtime, unique};

// --- environment ---------------------------------------------------------------------

fn require_services() -> bool {
    std::env::var("KEYPULSE_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// A note when a service is missing and not required; a panic when it is required.
fn missing(what: &str) {
    if require_services() {
        panic!("deploy_promql: {what}, but KEYPULSE_REQUIRE_SERVICES=1");
    }
    eprintln!("note: deploy_promql skipped: {what} (run scripts/test)");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures_dir() -> PathBuf {
    match std::env::var("KEYPULSE_FIXTURES") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo().join("../shared/fixtures"),
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("KEYPULSE_PROMETHEUS") {
        if !p.is_empty() {
            return Some(PathBuf::from(p));
        }
    }
    if let Ok(t) = std::env::var("KEYPULSE_PROMTOOL") {
        if let Some(dir) = Path::new(&t).parent() {
            let p = dir.join("prometheus");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = PathBuf::from("/usr/bin/prometheus");
    p.is_file().then_some(p)
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// --- Kafka ---------------------------------------------------------------------------

fn create_topics(brokers: &str, topics: &[NewTopic<'_>]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let res = runtime()
        .block_on(admin.create_topics(
            topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create_topics");
    for r in res {
        if let Err((t, e)) = r {
            panic!("cannot create topic {t}: {e}");
        }
    }
}

// --- child processes -----------------------------------------------------------------

/// A child process with its output in a file; stopped (TERM, then KILL) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child, log }
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(n)..].join("\n")
    }

    /// Panics with the log if the process has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                self.log_tail(60)
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `f` every 200 ms until it returns `Some`, at most `limit`, checking that the
/// processes are alive; panics with `what` and their logs otherwise.
/// Waits until `readyz` answers 200 (checking that `keypulse` is still alive).
fn wait_ready(what: &str, limit: Duration, keypulse: &mut Proc, readyz: &str) {
    wait_for(what, limit, &mut [keypulse], || {
        let r = http().get(readyz).send().ok()?;
        (r.status().as_u16() == 200).then_some(())
    });
}

fn wait_for<T>(
    what: &str,
    limit: Duration,
    procs: &mut [&mut Proc],
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let t0 = Instant::now();
    loop {
        for p in procs.iter_mut() {
            p.check_alive();
        }
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > limit {
            let logs: Vec<String> = procs
                .iter()
                .map(|p| format!("--- {} log tail:\n{}", p.name, p.log_tail(40)))
                .collect();
            panic!(
                "gave up after {limit:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// --- Prometheus API ------------------------------------------------------------------

struct Prom {
    base: String,
}

/// The outcome of one instant query: the number of series (or 1 for a scalar), or an error.
impl Prom {
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let r = http()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .map_err(|e| format!("request failed: {e}"))?;
        let status = r.status().as_u16();
        let body: Value = r
            .json()
            .map_err(|e| format!("HTTP {status}, not JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "HTTP {status}: {} {}",
                body["errorType"], body["error"]
            ));
        }
        let data = &body["data"];
        match data["resultType"].as_str() {
            Some("vector") | Some("matrix") => {
                Ok(data["result"].as_array().cloned().unwrap_or_default())
            }
            Some("scalar") | Some("string") => Ok(vec![data["result"].clone()]),
            other => Err(format!("unexpected resultType {other:?}")),
        }
    }

    fn rules(&self) -> Value {
        let body: Value = http()
            .get(format!("{}/api/v1/rules", self.base))
            .send()
            .and_then(|r| r.json())
            .expect("GET /api/v1/rules");
        assert_eq!(body["status"], "success", "/api/v1/rules: {body}");
        body
    }
}

/// The value of a vector sample or a scalar, as f64.
fn sample_value(v: &Value) -> Option<f64> {
    let pair = v.get("value").unwrap_or(v);
    pair.get(1)?.as_str()?.parse().ok()
}

// --- PromQL operands -----------------------------------------------------------------

const LABEL_LIST_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: [&str; 14] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
];
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// The index just past the string literal that starts at `i` (`"`, `'` or a backtick).
fn skip_string(s: &[u8], i: usize) -> usize {
    let q = s[i];
    let mut j = i + 1;
    while j < s.len() && s[j] != q {
        if s[j] == b'\\' && q != b'`' {
            j += 1;
        }
        j += 1;
    }
    (j + 1).min(s.len())
}

/// The index of the bracket closing the one that opens at `i`.
fn matching(s: &[u8], i: usize) -> usize {
    let mut depth = 0i32;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            b'"' | b'\'' | b'`' => {
                j = skip_string(s, j);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
        j += 1;
    }
    s.len()
}

fn strip_outer_parens(mut e: &str) -> &str {
    loop {
        e = e.trim();
        let b = e.as_bytes();
        if b.first() == Some(&b'(') && matching(b, 0) == b.len() - 1 {
            e = &e[1..e.len() - 1];
        } else {
            return e;
        }
    }
}

/// The last top-level (outside any bracket or string) occurrence of one of `ops`:
/// (start, length). Word operators need word boundaries.
fn last_top_level(e: &str, ops: &[&str]) -> Option<(usize, usize)> {
    let s = e.as_bytes();
    let mut depth = 0i32;
    let mut found = None;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i = skip_string(s, i);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 => {
                if is_ident_start(c) && (i == 0 || !is_ident(s[i - 1])) {
                    let mut j = i;
                    while j < s.len() && is_ident(s[j]) {
                        j += 1;
                    }
                    if ops.contains(&&e[i..j]) {
                        found = Some((i, j - i));
                    }
                    i = j;
                    continue;
                }
                for op in ["==", "!=", ">=", "<=", ">", "<"] {
                    if e[i..].starts_with(op) {
                        if ops.contains(&op) {
                            found = Some((i, op.len()));
                        }
                        i += op.len() - 1;
                        break;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// Strips the `bool`, `on(...)`, `ignoring(...)`, `group_left(...)`, `group_right(...)`
/// modifiers that follow a binary operator.
fn strip_modifiers(mut e: &str) -> &str {
    loop {
        e = e.trim_start();
        let b = e.as_bytes();
        let mut j = 0;
        while j < b.len() && is_ident(b[j]) {
            j += 1;
        }
        let word = &e[..j];
        if word == "bool" {
            e = &e[j..];
        } else if ["on", "ignoring", "group_left", "group_right"].contains(&word) {
            let rest = e[j..].trim_start();
            if rest.starts_with('(') {
                let close = matching(rest.as_bytes(), 0);
                e = &rest[(close + 1).min(rest.len())..];
            } else {
                e = rest;
            }
        } else {
            return e;
        }
    }
}

/// The operands of `e` below its comparison and set operators (see the module doc).
fn operands(e: &str, out: &mut Vec<String>) {
    let e = strip_outer_parens(e);
    for ops in [
        &["or"][..],
        &["and", "unless"][..],
        &["==", "!=", ">=", "<=", ">", "<"][..],
    ] {
        if let Some((at, len)) = last_top_level(e, ops) {
            operands(&e[..at], out);
            operands(strip_modifiers(&e[at + len..]), out);
            return;
        }
    }
    out.push(e.to_string());
}

/// The metric names `e` selects (not functions, keywords or label names).
fn metric_names(e: &str) -> Vec<String> {
    let s = e.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    let mut label_list_next = false;
    while i < s.len() {
        let c = s[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i = skip_string(s, i);
                continue;
            }
            // label matchers and range/subquery durations
            b'{' | b'[' => {
                i = matching(s, i) + 1;
                continue;
            }
            b'(' if label_list_next => {
                i = matching(s, i) + 1;
                label_list_next = false;
                continue;
            }
            _ if c.is_ascii_digit() || c == b'.' => {
                // a number or a duration: skip it whole
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.') {
                    i += 1;
                }
                continue;
            }
            _ if is_ident_start(c) => {
                let start = i;
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
                let word = &e[start..i];
                let rest = e[i..].trim_start();
                let next_word: String = rest
                    .bytes()
                    .take_while(|b| is_ident(*b))
                    .map(char::from)
                    .collect();
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    label_list_next = LABEL_LIST_KEYWORDS.contains(&lower.as_str());
                } else if rest.starts_with('(')
                    || (AGGREGATIONS.contains(&lower.as_str())
                        && (next_word == "by" || next_word == "without"))
                {
                    // a function or an aggregation
                } else {
                    names.push(word.to_string());
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

// --- the expressions -----------------------------------------------------------------

/// Every `expr` of every dashboard JSON under deploy/grafana/dashboards, with its panel title.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(v: &Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let title = m.get("title").and_then(Value::as_str).unwrap_or(title);
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr", Value::String(e)) => out.push((title.to_string(), e.clone())),
                        _ => walk(x, title, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, title, out)),
            _ => {}
        }
    }
    let dir = repo().join("deploy/grafana/dashboards");
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/grafana/dashboards")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        walk(&v, "dashboard", &mut out);
    }
    assert!(!out.is_empty(), "no expression found in {}", dir.display());
    out
}

fn rule_files() -> Vec<PathBuf> {
    let dir = repo().join("deploy/prometheus/rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/prometheus/rules")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files
}

/// How many `- alert:` and `- record:` entries the rule files have (to check that
/// Prometheus loaded them all).
fn rule_counts_in_files() -> (usize, usize) {
    let (mut alerts, mut records) = (0, 0);
    for f in rule_files() {
        for l in std::fs::read_to_string(f).unwrap().lines() {
            let t = l.trim_start();
            if t.starts_with("- alert:") {
                alerts += 1;
            } else if t.starts_with("- record:") {
                records += 1;
            }
        }
    }
    (alerts, records)
}

// --- the test ------------------------------------------------------------------------

#[test]
fn operands_split_at_comparisons_and_set_operators() {
    let mut out = Vec::new();
    operands(
        "sum(keypulse_licenses_activated) / sum(keypulse_licenses_issued) < 0.5",
        &mut out,
    );
    assert_eq!(
        out,
        [
            "sum(keypulse_licenses_activated) / sum(keypulse_licenses_issued)",
            "0.5"
        ]
    );
    out.clear();
    operands(
        "(count(up{job=\"keypulse\"} == 1) or vector(0)) == 0",
        &mut out,
    );
    assert_eq!(out, ["count(up{job=\"keypulse\"} == 1)", "vector(0)", "0"]);
    out.clear();
    operands(
        "sum by (topic) (a) > 1000 and sum by (topic) (deriv(a[10m])) > 0",
        &mut out,
    );
    assert_eq!(
        out,
        [
            "sum by (topic) (a)",
            "1000",
            "sum by (topic) (deriv(a[10m]))",
            "0"
        ]
    );
    out.clear();
    operands(
        "(x / ignoring (result) group_left () y) > 0.05 + 2 * (z) and on () sum(w) > bool 0.1",
        &mut out,
    );
    assert_eq!(
        out,
        [
            "x / ignoring (result) group_left () y",
            "0.05 + 2 * (z)",
            "sum(w)",
            "0.1"
        ]
    );
    assert_eq!(
        metric_names(
            "sum by (plan) (rate(keypulse_validations_total{result!=\"valid\"}[5m] offset 1h)) \
             / ignoring (result) group_left () max(up) or vector(0)"
        ),
        ["keypulse_validations_total", "up"]
    );
    assert!(metric_names("vector(0)").is_empty());
    assert!(metric_names("0.05").is_empty());
    assert!(metric_names("1e3").is_empty());
}

#[test]
fn every_dashboard_and_rule_expression_returns_data() {
    let Some(brokers) = std::env::var("KEYPULSE_TEST_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        missing("KEYPULSE_TEST_BROKERS is not set");
        return;
    };
    let Some(prometheus) = prometheus_binary() else {
        missing("no prometheus binary (Debian package prometheus)");
        return;
    };
    let fixture = std::env::var("KEYPULSE_DEPLOY_FIXTURE").unwrap_or_else(|_| "noisy".to_string());
    let events_path = fixtures_dir().join(format!("{fixture}.events.jsonl"));
    let events = std::fs::read(&events_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", events_path.display()));
    let lines = lines(&events);

    let dir = tempfile::tempdir().unwrap();

    // Kafka: the events topic (6 partitions, as in docker-compose), its dead letters and the
    // compacted notifications topic, all unique to this run.
    let topic = unique("deploy-events");
    let dlq = format!("{topic}.dlq");
    let notifications = format!("{topic}.notifications");
    let group = unique("deploy-group");
    create_topics(
        &brokers,
        &[
            NewTopic::new(&topic, 6, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
            NewTopic::new(&notifications, 3, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact"),
        ],
    );

    // keypulse run --clock event, configured by the environment only.
    let http_port = free_port();
    let keypulse_addr = format!("127.0.0.1:{http_port}");
    let outbox = dir.path().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keypulse"));
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYPULSE__") || k == "KEYPULSE_CONFIG" {
            cmd.env_remove(k);
        }
    }
    cmd.args(["run", "--clock", "event"])
        .current_dir(dir.path())
        .env("KEYPULSE__KAFKA__BROKERS", &brokers)
        .env("KEYPULSE__KAFKA__TOPICS", format!("[\"{topic}\"]"))
        .env("KEYPULSE__KAFKA__GROUP_ID", &group)
        .env("KEYPULSE__KAFKA__DEAD_LETTER_TOPIC", &dlq)
        .env("KEYPULSE__KAFKA__NOTIFICATIONS_TOPIC", &notifications)
        .env("KEYPULSE__HTTP__BIND", &keypulse_addr)
        .env("KEYPULSE__HTTP__REFRESH_MS", "200")
        .env("KEYPULSE__EMAIL__TRANSPORT", "file")
        .env("KEYPULSE__EMAIL__FILE_DIR", &outbox)
        .env("KEYPULSE__LOG__FORMAT", "json")
        .env("RUST_LOG", "info,librdkafka=warn");
    let mut keypulse = Proc::spawn("keypulse", cmd, dir.path().join("keypulse.log"));
    let kp = |path: &str| format!("http://{keypulse_addr}{path}");

    wait_ready(
        "keypulse /readyz 200",
        Duration::from_secs(180),
        &mut keypulse,
        &kp("/readyz"),
    );

    // Prometheus: scrape every second, evaluate the rules every second.
    let prom_port = free_port();
    let rules: Vec<String> = rule_files()
        .iter()
        .map(|p| format!("  - {}\n", p.display()))
        .collect();
    assert!(
        !rules.is_empty(),
        "no rule files in deploy/prometheus/rules"
    );
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{}\
             scrape_configs:\n  - job_name: keypulse\n    static_configs:\n      \
             - targets: ['{keypulse_addr}']\n",
            rules.concat()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&prometheus);
    cmd.arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg("--log.level=warn")
        .current_dir(dir.path());
    let mut prom_proc = Proc::spawn("prometheus", cmd, dir.path().join("prometheus.log"));
    let prom = Prom {
        base: format!("http://127.0.0.1:{prom_port}"),
    };

    wait_for(
        "Prometheus /-/ready",
        Duration::from_secs(60),
        &mut [&mut prom_proc, &mut keypulse],
        || {
            let r = http().get(format!("{}/-/ready", prom.base)).send().ok()?;
            (r.status().as_u16() == 200).then_some(())
        },
    );
    // one scrape of the empty service first: every counter then has a sample from before
    // the events, so rate() and increase() measure the fold
    wait_for(
        "Prometheus to scrape keypulse (up == 1)",
        Duration::from_secs(60),
        &mut [&mut prom_proc, &mut keypulse],
        || {
            let r = prom.query("up{job=\"keypulse\"} == 1").ok()?;
            (!r.is_empty()).then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));

    produce(&brokers, &topic, &lines);
    eprintln!("produced {} events of {fixture} to {topic}", lines.len());

    // keypulse has counted every line (applied + rejected + duplicates), and is ready
    let expected = lines.len() as u64;
    let mut last = Value::Null;
    wait_for(
        "keypulse to fold every event",
        Duration::from_secs(300),
        &mut [&mut keypulse, &mut prom_proc],
        || {
            let r = http().get(kp("/api/v1/report")).send().ok()?;
            let v: Value = r.json().ok()?;
            let e = &v["events"];
            let n = e["applied"].as_u64()? + e["rejected"].as_u64()? + e["duplicates"].as_u64()?;
            last = e.clone();
            (n >= expected).then_some(())
        },
    );
    eprintln!("keypulse folded the fixture: {last}");
    wait_ready(
        "keypulse /readyz 200 after the fold",
        Duration::from_secs(120),
        &mut keypulse,
        &kp("/readyz"),
    );
    // ... and Prometheus has scraped it since (after at least one gauge refresh)
    let folded_at = now_secs();
    wait_for(
        "a Prometheus scrape after the fold",
        Duration::from_secs(60),
        &mut [&mut prom_proc, &mut keypulse],
        || {
            let r = prom.query("timestamp(up{job=\"keypulse\"})").ok()?;
            let t = r.first().and_then(sample_value)?;
            (t > folded_at + 1.0).then_some(())
        },
    );

    // Prometheus loaded every rule of the files and evaluated each one without error
    let (alerts_in_files, records_in_files) = rule_counts_in_files();
    let loaded = wait_for(
        "every rule evaluated once",
        Duration::from_secs(60),
        &mut [&mut prom_proc],
        || {
            let body = prom.rules();
            let rules: Vec<Value> = body["data"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            rules
                .iter()
                .all(|r| r["health"] != "unknown" && r["lastEvaluation"].is_string())
                .then_some(rules)
        },
    );
    let alerts: Vec<&Value> = loaded.iter().filter(|r| r["type"] == "alerting").collect();
    let records: Vec<&Value> = loaded.iter().filter(|r| r["type"] == "recording").collect();
    assert_eq!(
        (alerts.len(), records.len()),
        (alerts_in_files, records_in_files),
        "Prometheus loaded a different number of alerts/recording rules than the files hold"
    );
    assert!(!alerts.is_empty(), "no alert rule loaded");

    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut nan_only = Vec::new();

    // 1. the dashboard: each expression returns data
    let dash = dashboard_exprs();
    for (title, expr) in &dash {
        match prom.query(expr) {
            Ok(r) if !r.is_empty() => {
                if r.iter().all(|s| sample_value(s).is_some_and(f64::is_nan)) {
                    nan_only.push(format!("{title}: {expr}"));
                }
                report.push(format!("ok    {:>3} series  [{title}] {expr}", r.len()));
            }
            Ok(_) => failures.push(format!("dashboard [{title}]: empty result: {expr}")),
            Err(e) => failures.push(format!("dashboard [{title}]: {e}: {expr}")),
        }
    }

    // 2. the rules: healthy; the whole expression evaluates; each metric-selecting operand
    //    of an alert (or a recording rule's whole expression) returns data
    let mut operands_checked = 0;
    for r in &loaded {
        let name = r["name"].as_str().unwrap_or("?").to_string();
        let query = r["query"].as_str().unwrap_or_default().to_string();
        if r["health"] != "ok" {
            failures.push(format!(
                "rule {name}: health {} ({}): {query}",
                r["health"], r["lastError"]
            ));
        }
        match prom.query(&query) {
            Ok(res) => report.push(format!(
                "ok    {:>3} series  [rule {name}, whole expression{}] {query}",
                res.len(),
                if r["type"] == "alerting" {
                    ", empty = not firing"
                } else {
                    ""
                }
            )),
            Err(e) => failures.push(format!("rule {name}: {e}: {query}")),
        }
        let parts = if r["type"] == "alerting" {
            let mut v = Vec::new();
            operands(&query, &mut v);
            v
        } else {
            vec![query.clone()]
        };
        let mut selecting = 0;
        for part in parts {
            if metric_names(&part).is_empty() {
                continue; // a threshold or a constant such as vector(0)
            }
            selecting += 1;
            operands_checked += 1;
            match prom.query(&part) {
                Ok(res) if !res.is_empty() => report.push(format!(
                    "ok    {:>3} series  [rule {name}, operand] {part}",
                    res.len()
                )),
                Ok(_) => failures.push(format!("rule {name}: operand is empty: {part}")),
                Err(e) => failures.push(format!("rule {name}: operand: {e}: {part}")),
            }
        }
        if selecting == 0 {
            failures.push(format!(
                "rule {name}: no operand selects a metric, nothing proves it can fire: {query}"
            ));
        }
    }

    let metrics_seen: BTreeSet<String> = dash
        .iter()
        .flat_map(|(_, e)| metric_names(e))
        .chain(
            loaded
                .iter()
                .flat_map(|r| metric_names(r["query"].as_str().unwrap_or_default())),
        )
        .collect();
    eprintln!("{}", report.join("\n"));
    eprintln!(
        "{} dashboard expressions, {} rules ({} alerts), {} alert operands, {} distinct \
         metrics, fixture {fixture} ({} events)",
        dash.len(),
        loaded.len(),
        alerts.len(),
        operands_checked,
        metrics_seen.len(),
        lines.len()
    );
    if !nan_only.is_empty() {
        eprintln!(
            "note: {} dashboard expression(s) returned only NaN (a ratio of rates over a \
             window without change):\n  {}",
            nan_only.len(),
            nan_only.join("\n  ")
        );
    }
    if !failures.is_empty() {
        panic!(
            "{} expression(s) returned no data or an error:\n  {}\n--- keypulse log tail:\n{}\n\
             --- prometheus log tail:\n{}",
            failures.len(),
            failures.join("\n  "),
            keypulse.log_tail(30),
            prom_proc.log_tail(30)
        );
    }
    drop(prom_proc);
    drop(keypulse);
}
