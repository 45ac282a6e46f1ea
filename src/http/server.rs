//! Serving a router over TCP, with the limits that a hostile client cannot get around.
//!
//! Owns the accept loop and the per-connection task of each listener (main and admin).
//! Connections are served by hyper-util's connection builder (HTTP/1 and HTTP/2, chosen by
//! the client's preface) with a [`TokioTimer`], so hyper's own header-read timeout fires.
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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use super::config::HttpConfig;

/// Streams per HTTP/2 connection (each one a request in progress).
const H2_MAX_STREAMS: u32 = 32;
/// How long a connection told to close may take to do so before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
    closed: IntCounterVec,
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
async fn stopped(stop: &mut watch::Receiver<bool>) {
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

/// What a connection's I/O and requests have been doing.
struct Activity {
    /// The reference for `last`.
    start: Instant,
    /// Milliseconds after `start` of the last byte read or written.
    last: AtomicU64,
    /// Requests in progress.
    in_flight: AtomicUsize,
    /// Requests started.
    started: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Ends a request's "in progress" when dropped (the response sent or the request dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that records its activity.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One accepted connection.
struct Conn {
    name: &'static str,
    router: Router,
    limits: Arc<Limits>,
    requests: Option<Arc<Semaphore>>,
    metrics: HttpMetrics,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let activity = Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
        });
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let (router, requests, act) =
            (self.router.clone(), self.requests.clone(), activity.clone());
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            act.in_flight.fetch_add(1, Ordering::Relaxed);
            act.started.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(act.clone());
            let (router, requests) = (router.clone(), requests.clone());
            async move {
                let _slot = match &requests {
                    Some(s) => s.clone().acquire_owned().await.ok(),
                    None => None,
                };
                let response = router.oneshot(req).await;
                drop(guard);
                Ok::<_, Infallible>(response.unwrap_or_else(|e| match e {}))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut stop = self.stop.clone();

        let idle = self.limits.idle_timeout;
        let first_request = self.limits.header_read_timeout;
        let mut closing: Option<Instant> = None;
        let check_every =
            (idle.min(first_request) / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        let timeout = e
                            .downcast_ref::<hyper::Error>()
                            .is_some_and(|e| e.is_timeout());
                        if timeout {
                            self.closed("header_timeout");
                        }
                        tracing::debug!(listener = self.name, %peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = stopped(&mut stop), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ = ticker.tick() => {
                    if let Some(t) = closing {
                        if t.elapsed() >= CLOSE_GRACE {
                            break;
                        }
                        continue;
                    }
                    let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
                    if activity.started.load(Ordering::Relaxed) == 0
                        && activity.start.elapsed() >= first_request
                    {
                        // Nothing asked yet: there is nothing to finish gracefully.
                        self.closed("no_request");
                        break;
                    }
                    if !busy && activity.idle_for() >= idle {
                        self.closed("idle_timeout");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                }
            }
        }
    }

    fn closed(&self, reason: &str) {
        self.metrics
            .closed
            .with_label_values(&[self.name, reason])
            .inc();
    }
}
