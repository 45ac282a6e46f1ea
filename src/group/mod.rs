//! One answer from any instance (SPEC §8.8): the group's members, the peer token, and
//! the group-wide report.
//!
//! Owns [`Group`]: this instance's view of its consumer group ([`members`]), the shared
//! peer token, the HTTP client that asks peers for their per-partition aggregates, and the
//! merge of those with this instance's own ([`merge`]); [`start`] wires it into
//! `keypulse run`. Guarantees:
//! - every live member is asked in parallel, each with `http.peer_timeout_ms`; a member
//!   that fails or times out only makes its partitions missing;
//! - all members are asked at one `as_of`: the wall clock, or under `--clock event` the
//!   newest watermark the members announced (asked again, once, when an answer shows a
//!   newer one);
//! - an answer is `complete` only when every partition of the input topics was answered by
//!   a caught-up member; otherwise it lists `missing_partitions` and bumps
//!   `keypulse_group_incomplete_answers_total`. It is never silently short.

pub mod members;
pub mod merge;
pub mod peers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use subtle::ConstantTimeEq;

use crate::config::{Config, ConfigError};
use crate::http::config::HttpConfig;
use crate::kafka::client::ClientSettings;
use crate::metrics::Metrics;

pub use members::{Announcement, MemberTable};
pub use merge::{PartitionAnswer, PartitionId};

/// The header that carries the peer token.
pub const PEER_TOKEN_HEADER: &str = "x-keypulse-peer-token";

/// The instances' shared secret (never logged; `Debug` redacts it).
#[derive(Clone, Default)]
pub struct PeerToken(Option<Arc<[u8]>>);

impl std::fmt::Debug for PeerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "PeerToken(<redacted>)"
        } else {
            "PeerToken(none)"
        })
    }
}

impl PeerToken {
    /// Reads `http.peer_token_env`, else `http.peer_token_file`; none configured: `None`
    /// inside (the internal endpoint then answers loopback peers only).
    pub fn from_config(
        c: &HttpConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw = match env(&c.peer_token_env) {
            Some(v) => v,
            None => match &c.peer_token_file {
                Some(path) => std::fs::read_to_string(path).map_err(|e| ConfigError::Key {
                    key: "http.peer_token_file".into(),
                    problem: format!("cannot read {}: {}", path.display(), e.kind()),
                })?,
                None => return Ok(Self(None)),
            },
        };
        let t = raw.trim();
        if t.len() < crate::http::auth::MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Key {
                key: "http.peer_token_env / http.peer_token_file".into(),
                problem: format!(
                    "the peer token must be at least {} visible ASCII characters",
                    crate::http::auth::MIN_TOKEN_LEN
                ),
            });
        }
        Ok(Self(Some(t.as_bytes().into())))
    }

    /// A token given directly (tests).
    pub fn with_token(t: &str) -> Self {
        Self(Some(t.as_bytes().into()))
    }

    /// Whether a token is configured.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether a request from `peer` carrying `given` may use the internal endpoint:
    /// the token compared in constant time, or, with none configured, a loopback peer.
    pub fn allows(&self, given: Option<&[u8]>, peer: Option<std::net::SocketAddr>) -> bool {
        match &self.0 {
            Some(t) => given.is_some_and(|g| bool::from(g.ct_eq(t))),
            None => peer.is_some_and(|p| p.ip().is_loopback()),
        }
    }

    /// The token's text, for requests to peers.
    fn header_value(&self) -> Option<&[u8]> {
        self.0.as_deref()
    }
}

/// The group's metric families (no member id as a label).
#[derive(Clone)]
pub struct GroupMetrics {
    /// Live members seen, this instance excluded.
    pub peers: IntGauge,
    /// Time of one request to a peer.
    pub peer_seconds: Histogram,
    /// Failed requests to peers (unreachable, timeout, refused, malformed).
    pub peer_failures: IntCounter,
    /// Group answers marked incomplete.
    pub incomplete: IntCounter,
}

impl GroupMetrics {
    /// Registers `keypulse_group_*` in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let peers = IntGauge::new(
            "keypulse_group_peers",
            "Live members of the consumer group seen in the members topic, this instance excluded.",
        )?;
        let peer_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "keypulse_group_peer_request_seconds",
                "Time of one request for a peer's aggregates or customer.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let peer_failures = IntCounter::new(
            "keypulse_group_peer_failures_total",
            "Requests to peers that failed (unreachable, timed out, refused, malformed).",
        )?;
        let incomplete = IntCounter::new(
            "keypulse_group_incomplete_answers_total",
            "Group-wide answers marked \"complete\": false (a partition unheld, restoring, or its member unreachable).",
        )?;
        registry.register(Box::new(peers.clone()))?;
        registry.register(Box::new(peer_seconds.clone()))?;
        registry.register(Box::new(peer_failures.clone()))?;
        registry.register(Box::new(incomplete.clone()))?;
        Ok(Self {
            peers,
            peer_seconds,
            peer_failures,
            incomplete,
        })
    }
}

/// This instance's view of its group.
pub struct Group {
    /// This instance's id.
    pub id: String,
    /// The member table.
    pub table: Arc<MemberTable>,
    /// The peer token.
    pub token: PeerToken,
    /// Members silent for longer are ignored.
    pub stale: Duration,
    /// Each request to a peer gives up after this.
    pub timeout: Duration,
    /// How long a computed group answer is served again.
    pub cache_for: Duration,
    /// Metrics.
    pub metrics: GroupMetrics,
    /// The HTTP client for peers.
    client: reqwest::Client,
    /// The latest group answer (see [`peers`]).
    cache: tokio::sync::Mutex<Option<(std::time::Instant, Arc<peers::GroupReport>)>>,
    /// Stops the members thread.
    stop: Arc<AtomicBool>,
    /// The members thread.
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Group {
    /// A group view (the members thread is attached with [`Group::attach`]).
    pub fn new(
        id: String,
        token: PeerToken,
        stale: Duration,
        timeout: Duration,
        cache_for: Duration,
        metrics: GroupMetrics,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self {
            id,
            table: Arc::new(MemberTable::default()),
            token,
            stale,
            timeout,
            cache_for,
            metrics,
            client,
            cache: tokio::sync::Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
            thread: std::sync::Mutex::new(None),
        })
    }

    /// The flag that stops the members thread.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Keeps the members thread, to be joined by [`Group::stop`].
    pub fn attach(&self, t: std::thread::JoinHandle<()>) {
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    /// Stops the members thread (it writes this instance's tombstone) and waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    /// The live members other than this instance.
    pub fn peers(&self) -> Vec<Announcement> {
        let mut v = self.table.live(members::now_ms(), self.stale);
        v.retain(|a| a.id != self.id);
        self.metrics.peers.set(v.len() as i64);
        v
    }
}

/// `http.advertised_url`, or `http://` and the bound address (the host's name in place of
/// an unspecified address such as 0.0.0.0).
pub fn advertised_url(config: &Config, addr: SocketAddr) -> String {
    if let Some(u) = &config.http.advertised_url {
        return u.trim_end_matches('/').to_string();
    }
    if addr.ip().is_unspecified() {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        format!("http://{host}:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// The group view of SPEC §8.8: creates the members topic if missing (a failure is
/// logged: the group answers then stay incomplete, the service runs on).
pub async fn start(
    config: &Config,
    clients: &ClientSettings,
    token: PeerToken,
    addr: SocketAddr,
    metrics: &Metrics,
) -> anyhow::Result<Arc<Group>> {
    let k = &config.kafka;
    let topic = k.members_topic_name();
    if let Err(e) = members::ensure_topic(clients, &topic).await {
        tracing::warn!(error = %e, "the members topic is not available: group answers will be incomplete");
    }
    let gm =
        GroupMetrics::register(metrics.registry()).context("cannot register the group metrics")?;
    let id = crate::kafka::instance::instance_id(k, &config.http.bind);
    let g = Group::new(
        id,
        token,
        Duration::from_millis(k.members_stale_ms),
        Duration::from_millis(config.http.peer_timeout_ms),
        Duration::from_millis(config.http.refresh_ms),
        gm,
    )?;
    tracing::info!(member = %g.id, url = %advertised_url(config, addr), members_topic = %topic, peer_token = g.token.enabled(), "group member");
    Ok(Arc::new(g))
}

impl Group {
    /// Starts the members thread (announcing this instance, reading the others).
    pub fn spawn_members(
        &self,
        config: &Config,
        clients: &ClientSettings,
        addr: SocketAddr,
        app: Arc<crate::app_state::AppState>,
    ) -> anyhow::Result<()> {
        let k = &config.kafka;
        let settings = members::MembersSettings {
            clients: clients.clone(),
            topic: k.members_topic_name(),
            group_id: k.group_id.clone(),
            inputs: k.topics.clone(),
            id: self.id.clone(),
            url: advertised_url(config, addr),
            interval: Duration::from_millis(k.members_interval_ms),
        };
        let t = members::spawn(settings, self.table.clone(), app, self.stop_flag())
            .context("cannot start the members thread (kafka.members_topic)")?;
        self.attach(t);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_peer_token_is_compared_and_without_one_only_loopback_passes() {
        let lo: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let far: std::net::SocketAddr = "10.0.0.7:5000".parse().unwrap();
        let open = PeerToken::default();
        assert!(open.allows(None, Some(lo)));
        assert!(!open.allows(None, Some(far)));
        assert!(!open.allows(Some(b"anything-at-all-here"), Some(far)));
        assert!(!open.allows(None, None));
        let t = PeerToken::with_token("a-shared-secret-0123");
        assert!(t.allows(Some(b"a-shared-secret-0123"), Some(far)));
        assert!(!t.allows(Some(b"a-shared-secret-0124"), Some(lo)));
        assert!(!t.allows(None, Some(lo)));
        assert!(!format!("{t:?}").contains("secret"));
    }

    #[test]
    fn peer_token_and_group_keys_are_checked() {
        let c = Config::from_toml("").unwrap();
        let short = PeerToken::from_config(&c.http, |_| Some("short".into()));
        let e = short.unwrap_err().to_string();
        assert!(e.contains("peer_token") && !e.contains("short"), "{e}");
        assert!(!PeerToken::from_config(&c.http, |_| None).unwrap().enabled());
        assert_eq!(c.kafka.members_topic_name(), "keypulse.members");
        for (text, key) in [
            (
                "[kafka]\nmembers_interval_ms = 5\n",
                "kafka.members_interval_ms",
            ),
            (
                "[kafka]\nmembers_interval_ms = 5000\nmembers_stale_ms = 4000\n",
                "kafka.members_stale_ms",
            ),
            ("[kafka]\nmembers_topic = \"a b\"\n", "kafka.members_topic"),
            (
                "[http]\nadvertised_url = \"10.0.0.1:9464\"\n",
                "http.advertised_url",
            ),
            ("[http]\npeer_timeout_ms = 0\n", "http.peer_timeout_ms"),
        ] {
            let e = Config::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
