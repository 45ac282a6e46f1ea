//! A Toxiproxy server (`KEYPULSE_TOXIPROXY`, built by scripts/ensure-tools) in front of
//! one of the broker's proxied listeners (`KEYPULSE_KAFKA_PROXIED`, see
//! scripts/kafka-broker), driven through its HTTP API; a raw Kafka request to time a
//! round trip through it; the TCP peers of a process.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The proxy's name in the server.
pub const PROXY: &str = "kafka";

fn need(test: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ => {
            if std::env::var("KEYPULSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("{test}: {var} is not set but KEYPULSE_REQUIRE_SERVICES=1");
            }
            eprintln!("note: {test} skipped: {var} is not set (run scripts/test)");
            None
        }
    }
}

/// The `slot`-th proxied listener: (address the proxy listens on, which the broker
/// advertises; the broker's real listener, the proxy's upstream).
pub fn proxied_slot(test: &str, slot: usize) -> Option<(String, String)> {
    let all = need(test, "KEYPULSE_KAFKA_PROXIED")?;
    let pair = all.split(',').nth(slot).unwrap_or_else(|| {
        panic!(
            "{test}: KEYPULSE_KAFKA_PROXIED has no slot {slot}: {all:?} (KEYPULSE_KAFKA_PROXIES)"
        )
    });
    let (listen, upstream) = pair
        .split_once('>')
        .unwrap_or_else(|| panic!("{test}: bad KEYPULSE_KAFKA_PROXIED entry {pair:?}"));
    Some((listen.to_string(), upstream.to_string()))
}

pub fn binary(test: &str) -> Option<PathBuf> {
    need(test, "KEYPULSE_TOXIPROXY").map(PathBuf::from)
}

/// A Toxiproxy server of the test's own with one proxy, [`PROXY`]; killed when dropped.
pub struct Toxiproxy {
    child: Child,
    api: String,
    http: reqwest::blocking::Client,
    pub listen: String,
}

/// The proxy's byte counters (`toxiproxy_proxy_{received,sent}_bytes_total`). Toxiproxy
/// 2.5 adds a connection's bytes when the connection ends: they count closed connections
/// only, so they are figures, not a live proof.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bytes {
    /// From the clients, into the proxy.
    pub received_up: f64,
    /// From the proxy to the broker.
    pub sent_up: f64,
    /// From the broker, into the proxy.
    pub received_down: f64,
    /// From the proxy to the clients.
    pub sent_down: f64,
}

impl Toxiproxy {
    /// Starts the server on a free API port and creates the proxy `listen` → `upstream`.
    pub fn start(bin: &std::path::Path, listen: &str, upstream: &str) -> Toxiproxy {
        let port = super::smtp::free_port();
        let child = Command::new(bin)
            .args([
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
                "-proxy-metrics",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let t = Toxiproxy {
            child,
            api: format!("http://127.0.0.1:{port}"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            listen: listen.to_string(),
        };
        super::kafka::wait_for("the Toxiproxy API", Duration::from_secs(20), || {
            t.http
                .get(t.url("/version"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        });
        t.call(
            reqwest::Method::POST,
            "/proxies",
            Some(json!({"name": PROXY, "listen": listen, "upstream": upstream, "enabled": true})),
        );
        t
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .unwrap_or_else(|e| panic!("toxiproxy {method} {path}: {e}"));
        let status = r.status();
        let text = r.text().unwrap_or_default();
        assert!(
            status.is_success(),
            "toxiproxy {method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Enables or disables the proxy (disabled: every connection closed, new ones refused).
    pub fn set_enabled(&self, enabled: bool) {
        self.call(
            reqwest::Method::POST,
            &format!("/proxies/{PROXY}"),
            Some(json!({ "enabled": enabled })),
        );
    }

    /// The proxy as the API shows it (`enabled`, `toxics`, ...).
    pub fn proxy(&self) -> Value {
        self.call(reqwest::Method::GET, &format!("/proxies/{PROXY}"), None)
    }

    /// Adds a toxic of `kind` on `stream` (`upstream`: to the broker, `downstream`: to the
    /// clients) for every connection, present and future.
    pub fn add_toxic(&self, name: &str, kind: &str, stream: &str, attributes: Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/proxies/{PROXY}/toxics"),
            Some(
                json!({"name": name, "type": kind, "stream": stream, "toxicity": 1.0,
                        "attributes": attributes}),
            ),
        );
    }

    pub fn remove_toxic(&self, name: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/proxies/{PROXY}/toxics/{name}"),
            None,
        );
    }

    /// The proxy's byte counters now.
    pub fn bytes(&self) -> Bytes {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .and_then(|r| r.text())
            .expect("toxiproxy /metrics");
        let m = |name: &str, dir: &str| {
            super::smtp::metric_sum(&text, name, &[&format!("direction=\"{dir}\"")]).unwrap_or(0.0)
        };
        Bytes {
            received_up: m("toxiproxy_proxy_received_bytes_total", "upstream"),
            sent_up: m("toxiproxy_proxy_sent_bytes_total", "upstream"),
            received_down: m("toxiproxy_proxy_received_bytes_total", "downstream"),
            sent_down: m("toxiproxy_proxy_sent_bytes_total", "downstream"),
        }
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one Kafka `ApiVersions` v0 request to `addr` on a new connection and returns
/// the time until its whole response arrived (an error after `wait` without one).
pub fn api_versions_round_trip(addr: &str, wait: Duration) -> std::io::Result<Duration> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(wait))?;
    let client_id = b"keypulse-probe";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // api_key: ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // api_version
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation_id
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut req = (body.len() as i32).to_be_bytes().to_vec();
    req.extend_from_slice(&body);
    let t0 = Instant::now();
    s.write_all(&req)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let n = i32::from_be_bytes(len).max(0) as usize;
    let mut resp = vec![0u8; n];
    s.read_exact(&mut resp)?;
    let elapsed = t0.elapsed();
    if resp.get(..4) != Some(&7i32.to_be_bytes()[..]) {
        return Err(std::io::Error::other("unexpected correlation id"));
    }
    Ok(elapsed)
}

/// The remote addresses of the established TCP connections of process `pid` (`ss`).
pub fn tcp_peers(pid: u32) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .expect("run ss (package iproute2)");
    let marker = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&marker))
        .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
        .collect()
}
