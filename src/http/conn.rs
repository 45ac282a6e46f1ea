//! One accepted connection: served by hyper-util's connection builder (HTTP/1 and HTTP/2)
//! with a tokio timer, watched for the limits that hyper alone does not enforce.
//!
//! Owns [`Conn`] (its task), the activity record of its socket and requests, and the
//! socket wrapper that keeps that record. Guarantees: hyper's header-read timeout fires
//! (HTTP/1); a connection that starts no request within that same time is dropped; one
//! that moves no byte with no request in progress for the idle timeout is shut down
//! gracefully, then dropped after a grace period; a stop shuts it down gracefully; each
//! closing for a limit is counted by reason.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use super::server::{stopped, HttpMetrics, Limits};

/// Streams per HTTP/2 connection (each one a request in progress).
const H2_MAX_STREAMS: u32 = 32;
/// How long a connection told to close may take to do so before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
pub(super) struct Conn {
    pub(super) name: &'static str,
    pub(super) router: Router,
    pub(super) limits: Arc<Limits>,
    pub(super) requests: Option<Arc<Semaphore>>,
    pub(super) metrics: HttpMetrics,
    pub(super) stop: watch::Receiver<bool>,
}

impl Conn {
    pub(super) async fn serve(self, stream: TcpStream, peer: SocketAddr) {
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
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // Who is asking (the internal routes answer only loopback without a peer token).
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
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
