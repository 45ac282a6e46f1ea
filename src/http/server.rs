//! Serving a router over TCP, with the limits that a hostile client cannot get around.
//!
//! Owns the listeners' accept loops, their limits ([`Limits`]), their metric families
//! ([`HttpMetrics`]) and their stop ([`Server`]); each accepted connection is served by
//! `conn.rs` (hyper-util's connection builder, HTTP/1 and HTTP/2, with a `TokioTimer`, so
//! hyper's own header-read timeout fires).
//!
//! Guarantees, per listener:
//! - at most `max_connections` connections are open: the accept loop takes a permit before
//!   it accepts, so further connections wait in the kernel's listen backlog (they use no
//!   file descriptor of ours) until one closes;
//! - HTTP/1: a request head not received whole within `header_read_timeout` closes the
//!   connection (hyper; this also bounds the wait for the next request on a kept-alive
//!   connection);
//! - any connection (HTTP/1 or HTTP/2) that has not started a request within
//!   `header_read_timeout` of being accepted is closed (a half-sent preface, a silent
//!   socket);
//! - a connection that moves no byte and has no request in progress for `idle_timeout` is
//!   shut down gracefully (HTTP/2: GOAWAY), then dropped if it does not close in time;
//! - at most `max_concurrent_requests` requests run at once (the main listener); further
//!   ones wait for a slot;
//! - accept errors (e.g. `EMFILE`) never stop the loop: it backs off and logs at most one
//!   warning per 10 s per listener;
//! - on stop, the loop stops accepting, every connection is shut down gracefully, and
//!   [`Server::stop`] returns once they have closed or its deadline passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::config::HttpConfig;
use super::conn::Conn;

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See `http.header_read_timeout_ms`.
    pub header_read_timeout: Duration,
    /// See `http.idle_timeout_ms`.
    pub idle_timeout: Duration,
    /// See `http.max_connections` / `http.admin_max_connections`.
    pub max_connections: usize,
    /// See `http.max_concurrent_requests` (`None`: no cap beyond the connections').
    pub max_concurrent_requests: Option<usize>,
}

impl Limits {
    /// The main listener's limits.
    pub fn main(c: &HttpConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            max_connections: c.max_connections,
            max_concurrent_requests: Some(c.max_concurrent_requests),
        }
    }

    /// The admin listener's limits (its own small connection cap).
    pub fn admin(c: &HttpConfig) -> Self {
        Self {
            max_connections: c.admin_max_connections,
            max_concurrent_requests: None,
            ..Self::main(c)
        }
    }
}

/// The HTTP server's own metric families (registered once per registry).
#[derive(Clone)]
pub struct HttpMetrics {
    open: IntGaugeVec,
    accepted: IntCounterVec,
    pub(super) closed: IntCounterVec,
    accept_errors: IntCounterVec,
}

impl HttpMetrics {
    /// Registers `keypulse_http_*` in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGaugeVec::new(
            Opts::new(
                "keypulse_http_open_connections",
                "Open HTTP connections, by listener (main, admin).",
            ),
            &["listener"],
        )?;
        let accepted = IntCounterVec::new(
            Opts::new(
                "keypulse_http_connections_total",
                "HTTP connections accepted, by listener.",
            ),
            &["listener"],
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "keypulse_http_connections_closed_total",
                "HTTP connections closed by the server for a limit, by listener and reason \
                 (header_timeout, idle_timeout, no_request).",
            ),
            &["listener", "reason"],
        )?;
        let accept_errors = IntCounterVec::new(
            Opts::new(
                "keypulse_http_accept_errors_total",
                "Failed accepts (e.g. too many open files), by listener.",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(accepted.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        registry.register(Box::new(accept_errors.clone()))?;
        Ok(Self {
            open,
            accepted,
            closed,
            accept_errors,
        })
    }
}

/// Running listeners; [`Server::stop`] ends them.
pub struct Server {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// A server with no listener yet.
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// Starts serving `router` on `listener` (named `name` in logs and metrics).
    pub fn spawn(
        &mut self,
        name: &'static str,
        listener: TcpListener,
        router: Router,
        limits: Limits,
        metrics: HttpMetrics,
    ) {
        let stop = self.stop.subscribe();
        self.tasks.push(tokio::spawn(accept_loop(
            name, listener, router, limits, metrics, stop,
        )));
    }

    /// Tells every listener to stop (without waiting).
    pub fn signal_stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops accepting, shuts every connection down gracefully, and waits for them (at
    /// most `limit`). Returns whether everything closed in time.
    pub async fn stop(self, limit: Duration) -> bool {
        self.signal_stop();
        let all = futures_join(self.tasks);
        tokio::time::timeout(limit, all).await.is_ok()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves once `stop` says so (or its sender is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

async fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: HttpMetrics,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let requests = limits
        .max_concurrent_requests
        .map(|n| Arc::new(Semaphore::new(n)));
    let limits = Arc::new(limits);
    let mut last_warning: Option<Instant> = None;
    let mut suppressed = 0u64;
    let open = metrics.open.with_label_values(&[name]);
    open.set(0);
    loop {
        // A permit first: while the cap is reached, nothing is accepted.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    metrics.accept_errors.with_label_values(&[name]).inc();
                    let due = match last_warning {
                        None => true,
                        Some(t) => t.elapsed() >= Duration::from_secs(10),
                    };
                    if due {
                        tracing::warn!(listener = name, error = %e, suppressed, "accept failed; backing off");
                        last_warning = Some(Instant::now());
                        suppressed = 0;
                    } else {
                        suppressed += 1;
                    }
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        metrics.accepted.with_label_values(&[name]).inc();
        open.inc();
        let conn = Conn {
            name,
            router: router.clone(),
            limits: limits.clone(),
            requests: requests.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
        let open = open.clone();
        tokio::spawn(async move {
            conn.serve(stream, peer).await;
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    // Wait for every connection to hand its permit back.
    let _ = connections
        .acquire_many(limits.max_connections as u32)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Serves a one-route router with these limits; its address and metrics registry.
    async fn serve(limits: Limits) -> (SocketAddr, Registry, Server) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry).unwrap();
        let mut server = Server::new();
        let router = Router::new().route("/", get(|| async { "hi" }));
        server.spawn("main", listener, router, limits, metrics);
        (addr, registry, server)
    }

    fn closed(registry: &Registry, reason: &str) -> u64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "keypulse_http_connections_closed_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == reason))
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// Reads until the server closes the connection (EOF or reset), at most `limit`.
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 1024];
        tokio::time::timeout(limit, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await
        .is_ok()
    }

    fn limits(header_ms: u64, idle_ms: u64, max_connections: usize) -> Limits {
        Limits {
            header_read_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            max_connections,
            max_concurrent_requests: Some(4),
        }
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_is_closed() {
        let (addr, registry, server) = serve(limits(10_000, 300, 8)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
        // Kept alive, then idle: closed long before the 10 s header timeout.
        assert!(closed_within(&mut s, Duration::from_secs(5)).await);
        assert_eq!(closed(&registry, "idle_timeout"), 1);
        assert!(server.stop(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn half_a_request_line_or_a_silent_http2_preface_is_cut_off() {
        let (addr, registry, server) = serve(limits(400, 60_000, 8)).await;
        let mut h1 = TcpStream::connect(addr).await.unwrap();
        h1.write_all(b"GET / HT").await.unwrap();
        let mut h2 = TcpStream::connect(addr).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        assert!(closed_within(&mut h1, Duration::from_secs(5)).await);
        assert!(closed_within(&mut h2, Duration::from_secs(5)).await);
        assert_eq!(
            closed(&registry, "header_timeout") + closed(&registry, "no_request"),
            2
        );
        assert!(server.stop(Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn beyond_the_cap_a_connection_waits_for_a_slot() {
        let (addr, _registry, server) = serve(limits(2000, 60_000, 1)).await;
        let mut hog = TcpStream::connect(addr).await.unwrap();
        hog.write_all(b"GET / HT").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Queued behind the hog (in the backlog), answered once the hog is timed out.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 100];
        let early = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
        assert!(early.is_err(), "answered while the only slot was taken");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("200 OK"));
        assert!(server.stop(Duration::from_secs(5)).await);
    }
}
