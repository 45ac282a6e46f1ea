//! Helpers of the Kafka and HTTP tests: the broker from the environment, topics, producing
//! fixtures keyed by customer, and the `keypulse run` binary as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

/// The test broker (`KEYPULSE_TEST_BROKERS`). Without it: a panic when
/// `KEYPULSE_REQUIRE_SERVICES=1`, else `None` after a note (the test then returns early).
pub fn brokers(test: &str) -> Option<String> {
    match std::env::var("KEYPULSE_TEST_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            if std::env::var("KEYPULSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: KEYPULSE_TEST_BROKERS is not set but KEYPULSE_REQUIRE_SERVICES=1");
            }
            eprintln!("note: {test} skipped: KEYPULSE_TEST_BROKERS is not set (run scripts/test)");
            None
        }
    }
}

/// A name unique to this test run.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("kp-{name}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates a topic and waits until it is there.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let rt = runtime();
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .expect("create_topics");
    for r in res {
        if let Err((t, e)) = r {
            panic!("cannot create topic {t}: {e}");
        }
    }
}

/// The message key of an event line: its `customer_id` when it is a string, else "".
pub fn key_of(line: &[u8]) -> String {
    serde_json::from_slice::<Value>(line)
        .ok()
        .and_then(|v| v.get("customer_id")?.as_str().map(String::from))
        .unwrap_or_default()
}

/// The non-blank lines of a JSONL file.
pub fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect()
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Produces `lines` in order, each keyed by its customer, and waits for every delivery.
pub fn produce(brokers: &str, topic: &str, lines: &[&[u8]]) {
    let p = producer(brokers);
    let rt = runtime();
    rt.block_on(async {
        for chunk in lines.chunks(5000) {
            let mut futures = Vec::with_capacity(chunk.len());
            for line in chunk {
                let key = key_of(line);
                let mut record = FutureRecord::to(topic).key(&key).payload(*line);
                loop {
                    match p.send_result(record) {
                        Ok(f) => {
                            futures.push(f);
                            break;
                        }
                        Err((e, r)) => {
                            record = r;
                            // queue full: wait for some deliveries
                            eprintln!("produce: {e}; waiting");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            for f in futures {
                f.await
                    .expect("delivery future")
                    .map_err(|(e, _)| e)
                    .expect("delivery");
            }
        }
    });
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// A `keypulse run` child process.
pub struct Instance {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
    pub dir: tempfile::TempDir,
    pub name: String,
}

/// The config file of an instance.
pub fn config_toml(brokers: &str, topic: &str, group: &str, dlq: &str, extra: &str) -> String {
    format!(
        "[kafka]\nbrokers = \"{brokers}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{group}\"\n\
         dead_letter_topic = \"{dlq}\"\ncommit_interval_ms = 500\n{extra}\n\
         [http]\nbind = \"127.0.0.1:0\"\nrefresh_ms = 200\n[log]\nformat = \"json\"\n"
    )
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_keypulse"))
}

impl Instance {
    /// Starts `keypulse run --clock event` with this config and waits for it to listen.
    pub fn start(name: &str, config: &str) -> Instance {
        Self::start_with(name, config, &["--clock", "event"])
    }

    pub fn start_with(name: &str, config: &str, args: &[&str]) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keypulse.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&path)
            .arg("run")
            .args(args)
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keypulse");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "listening" {
                        let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                    }
                }
                l.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name}: keypulse did not start listening within 60 s; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Instance {
            child,
            addr,
            log,
            dir,
            name: name.to_string(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET a path: status and body as JSON (or as a string value).
    pub fn get(&self, path: &str) -> (u16, Value) {
        get(&self.url(path))
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        let r = client().get(self.url(path)).send().expect("http get");
        let status = r.status().as_u16();
        (status, r.text().unwrap_or_default())
    }

    /// Waits until `/readyz` is 200, at most `limit`; panics with the log otherwise.
    pub fn wait_ready(&mut self, limit: Duration) {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}: keypulse exited ({status}) while waiting for /readyz; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if let Ok(r) = client().get(self.url("/readyz")).send() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if t0.elapsed() > limit {
                let (s, body) = self.get("/readyz");
                panic!(
                    "{}: /readyz not 200 within {:?} (last: {s} {body}); log tail:\n{}",
                    self.name,
                    limit,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn log_tail(&self, n: usize) -> String {
        let l = self.log.lock().unwrap();
        l[l.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then asserts a clean exit within `limit`; panics with the exit status
    /// and the log's tail otherwise (a bare `assert!(...success())` said neither).
    pub fn stop(&mut self, limit: Duration) {
        let t0 = Instant::now();
        let status = self.terminate(limit);
        eprintln!("{}: {status} {:?} after SIGTERM", self.name, t0.elapsed());
        if !status.success() {
            // The reader thread may still hold the last lines.
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            status.success(),
            "{}: exited with {status} after SIGTERM; log tail:\n{}",
            self.name,
            self.log_tail(60)
        );
    }

    /// SIGTERM, then wait for the exit (at most `limit`); the exit status.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        unsafe_kill(self.child.id(), "TERM");
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "{}: did not exit within {:?} of SIGTERM; log tail:\n{}",
                    self.name,
                    limit,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sends a signal with the `kill` command (no libc dependency in the tests).
pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn get(url: &str) -> (u16, Value) {
    let r = client()
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Polls `f` until it returns `Some`, at most `limit`; panics with `what` otherwise.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
