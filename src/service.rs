//! `keypulse run`: the wiring of the service (config → consumer, fold workers, HTTP,
//! snapshot refresher and ticker, shutdown).
//!
//! Owns the service's threads and their order of start and stop:
//! 1. the HTTP listeners are bound first (a port in use fails at once, naming `http.bind`
//!    or `http.admin_bind`), after the bearer token (if any) is read;
//! 2. the dead-letter producer and `kafka.fold_workers` fold workers start;
//! 3. the consumer checks that a broker answers (else fails within
//!    `kafka.connect_timeout_ms`, naming `kafka.brokers`), subscribes, and its poll thread
//!    starts;
//! 4. the refresher recomputes the served [`Snapshot`](crate::app_state::Snapshot) every `http.refresh_ms`: in wall-clock
//!    mode it first moves every caught-up partition's clock to now (so midnights pass with
//!    no event), then merges the workers' aggregates into the report and the gauges;
//! 5. the group view (SPEC §8.8, [`crate::group`]): the members topic is created if
//!    missing and the members thread announces this instance and reads the others;
//! 6. HTTP serves the snapshot, and the group's answers.
//!
//! Shutdown ([`Service::shutdown`]) stops HTTP, writes this instance's tombstone to the
//! members topic, cancels a restore under way, stops consuming, folds what was polled,
//! commits it, and leaves the group. Guarantees: the HTTP handlers never lock the fold; the
//! report and gauges are computed at most once per refresh, never per event.
//!
//! The pieces: this file holds the service, its start and its shutdown; `refresh.rs` the
//! snapshot refresher.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::app_state::{AppState, Snapshot};
use crate::config::Config;
use crate::core::time::Micros;
use crate::core::Aggregate;
use crate::http::server::{HttpMetrics, Limits, Server};
use crate::kafka::client::ClientSettings;
use crate::kafka::consumer::{self, PollEnd, PollSettings, Router};
use crate::kafka::dlq::DeadLetter;
use crate::kafka::fold::{ClockMode, Worker, WorkerShared};
use crate::metrics::Metrics;
use crate::sink::DecisionSink;

mod refresh;
use refresh::refresh_loop;

/// Options of `keypulse run` that are not configuration.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Wall clock (default) or event time.
    pub clock: ClockMode,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            clock: ClockMode::Wall,
        }
    }
}

/// Microseconds since the epoch, now.
pub fn wall_now() -> Micros {
    chrono::Utc::now().timestamp_micros()
}

/// A running service.
pub struct Service {
    /// Where HTTP listens.
    addr: SocketAddr,
    /// Shared with the handlers.
    app: Arc<AppState>,
    /// Tells the poll thread and the refresher to stop, and cancels a restore under way
    /// (exactly-once mode), which would otherwise hold the poll thread for up to
    /// `kafka.restore_timeout_ms`.
    stop: Arc<AtomicBool>,
    /// The poll thread (it stops the workers on its way out).
    poll_thread: Option<std::thread::JoinHandle<()>>,
    /// The fold workers.
    worker_threads: Vec<std::thread::JoinHandle<()>>,
    /// The snapshot refresher.
    refresher: Option<std::thread::JoinHandle<()>>,
    /// Where the admin listener listens, if any.
    admin_addr: Option<SocketAddr>,
    /// The HTTP listeners.
    http: Option<Server>,
    /// Set when the consumer stopped on a fatal error.
    failed: tokio::sync::watch::Receiver<Option<String>>,
    /// The group view (SPEC §8.8).
    group: Option<Arc<crate::group::Group>>,
}

impl Service {
    /// Starts the service: binds HTTP, connects to Kafka, starts the threads.
    pub async fn start(
        config: Config,
        opts: RunOptions,
        sink: Arc<dyn DecisionSink>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Service> {
        let access = crate::http::Access {
            auth: crate::http::Auth::from_config(&config.http, |k| std::env::var(k).ok())?,
            metrics_require_auth: config.http.metrics_require_auth,
            peer_token: crate::group::PeerToken::from_config(&config.http, |k| {
                std::env::var(k).ok()
            })?,
        };
        let listener = tokio::net::TcpListener::bind(&config.http.bind)
            .await
            .with_context(|| format!("cannot listen on http.bind = `{}`", config.http.bind))?;
        let addr = listener.local_addr()?;
        let admin_listener = match &config.http.admin_bind {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("cannot listen on http.admin_bind = `{a}`"))?,
            ),
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        let http_metrics = HttpMetrics::register(metrics.registry())
            .context("cannot register the HTTP metrics")?;
        let k = config.kafka.clone();
        let core = Arc::new(config.core.clone());

        let clients = ClientSettings::from_config(&k);
        let dlq = Arc::new(
            DeadLetter::new(&clients, &k.dead_letter_topic, metrics.clone())
                .context("cannot create the dead-letter producer (check kafka.properties)")?,
        );
        let shared = WorkerShared {
            cfg: core.clone(),
            sink: sink.clone(),
            dlq: dlq.clone(),
            metrics: metrics.clone(),
        };
        let mut senders = Vec::new();
        let mut worker_threads = Vec::new();
        for i in 0..k.fold_workers {
            let (tx, rx) = mpsc::sync_channel(k.worker_queue_batches);
            worker_threads.push(Worker::spawn(i, shared.clone(), rx)?);
            senders.push(tx);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let eos = if k.exactly_once {
            let e = crate::kafka::eos::connect(&config, &clients, metrics.registry(), stop.clone())
                .await;
            match e {
                Ok(e) => Some(Arc::new(e)),
                Err(e) => {
                    drop(senders);
                    return Err(e.context("exactly-once mode (kafka.exactly_once) cannot start"));
                }
            }
        } else {
            tracing::warn!("kafka.exactly_once = false: at-least-once mode, every assigned partition is rebuilt from its first offset");
            None
        };
        let router = Arc::new(Router::new(
            senders.clone(),
            metrics.clone(),
            dlq,
            Duration::from_millis(k.ready_settle_ms),
            sink.clone(),
            eos,
        ));
        let connect_timeout = Duration::from_millis(k.connect_timeout_ms);
        let r = router.clone();
        let kc = k.clone();
        let consumer =
            match tokio::task::spawn_blocking(move || consumer::connect(&kc, r, connect_timeout))
                .await?
            {
                Ok(c) => c,
                Err(e) => {
                    drop(senders);
                    drop(router);
                    return Err(e);
                }
            };
        tracing::info!(brokers = %k.brokers, topics = ?k.topics, group = %k.group_id, "subscribed");

        let poll_stop = stop.clone();
        let settings = PollSettings {
            commit_interval: Duration::from_millis(k.commit_interval_ms),
            default_protocol: !k.properties.contains_key("group.protocol"),
        };
        let (failed_tx, failed) = tokio::sync::watch::channel(None::<String>);
        let poll_thread = std::thread::Builder::new()
            .name("kafka-poll".into())
            .spawn(move || {
                if let PollEnd::Fatal(e) = consumer::poll_loop(consumer, poll_stop, &settings) {
                    let _ = failed_tx.send(Some(e));
                }
            })?;

        let first = Snapshot {
            report: Arc::new(
                Aggregate {
                    as_of: (opts.clock == ClockMode::Wall).then(wall_now),
                    ..Default::default()
                }
                .finish(&core),
            ),
            ready: false,
            partitions: Vec::new(),
        };
        let group = Some(
            crate::group::start(&config, &clients, access.peer_token.clone(), addr, &metrics)
                .await?,
        );
        let mut app = AppState::new(first, metrics.clone(), senders, core, opts.clock);
        if let Some(g) = &group {
            app = app.with_group(g.clone());
        }
        let app = Arc::new(app);
        if let Some(g) = &group {
            g.spawn_members(&config, &clients, addr, app.clone())?;
        }
        let refresh = Duration::from_millis(config.http.refresh_ms);
        let (ra, rr, rs) = (app.clone(), router.clone(), stop.clone());
        let refresher = std::thread::Builder::new()
            .name("refresh".into())
            .spawn(move || refresh_loop(ra, rr, rs, refresh))?;

        let mut http = Server::new();
        http.spawn(
            "main",
            listener,
            crate::http::router(app.clone(), &access),
            Limits::main(&config.http),
            http_metrics.clone(),
        );
        crate::http::auth::warn_if_exposed(&access.auth, "http.bind", addr);
        if let Some(l) = admin_listener {
            http.spawn(
                "admin",
                l,
                crate::http::admin_router(app.clone(), &access),
                Limits::admin(&config.http),
                http_metrics,
            );
        }
        tracing::info!(
            addr = %addr,
            admin_addr = %admin_addr.map_or_else(|| "none".to_string(), |a| a.to_string()),
            auth = access.auth.enabled(),
            clock = ?opts.clock,
            "listening"
        );
        Ok(Service {
            addr,
            app,
            stop,
            poll_thread: Some(poll_thread),
            worker_threads,
            refresher: Some(refresher),
            admin_addr,
            http: Some(http),
            failed,
            group,
        })
    }

    /// Where HTTP listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the admin listener (`/healthz`, `/readyz`, `/metrics`) listens, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Resolves when the consumer has stopped on a fatal error (with the error).
    pub async fn failed(&self) -> String {
        let mut rx = self.failed.clone();
        loop {
            if let Some(e) = rx.borrow().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The poll thread ended without a failure: never resolve.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The state HTTP serves.
    pub fn app(&self) -> &Arc<AppState> {
        &self.app
    }

    /// Stops HTTP and consuming, folds and commits what was polled, leaves the group.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let http = self.http.take();
        if let Some(h) = &http {
            h.signal_stop();
        }
        self.stop.store(true, Ordering::Release);
        let poll = self.poll_thread.take();
        let refresher = self.refresher.take();
        let workers = std::mem::take(&mut self.worker_threads);
        let group = self.group.take();
        tokio::task::spawn_blocking(move || {
            // The tombstone first: the others stop asking this instance at once.
            if let Some(g) = group {
                g.stop();
            }
            if let Some(t) = poll {
                let _ = t.join();
            }
            if let Some(t) = refresher {
                let _ = t.join();
            }
            for t in workers {
                let _ = t.join();
            }
        })
        .await?;
        if let Some(h) = http {
            if !h.stop(Duration::from_secs(2)).await {
                tracing::warn!("http connections still open at shutdown");
            }
        }
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = &self.http {
            h.signal_stop();
        }
    }
}
