//! `keypulse simulate`: the simulator pointed at a Kafka topic.
//!
//! Owns the producing side: the command's arguments ([`SimulateArgs`]), an rdkafka
//! `FutureProducer` set up for throughput, and the loop ([`pump`]) that takes batches
//! from a [`Simulator`] as they fall due and sends each one keyed by its customer id
//! (`""` for none). The demo can reuse [`pump`] with its own producer (e.g. on the mock
//! cluster). Guarantees: every message handed to the producer is awaited before [`pump`]
//! returns, and a delivery failure is an error, not a silent loss; a full local queue
//! waits instead of failing; the shutdown future stops the loop between two batches.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::kafka::client::{ClientSettings, Role};
use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::{NoiseConfig, SimConfig, Simulator};
use crate::core::time::{parse_rfc3339, Micros};

/// Messages in flight (handed to the producer, delivery not yet confirmed) at most.
const IN_FLIGHT: usize = 20_000;

/// The arguments of `keypulse simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KEYPULSE_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Topic to produce to.
    #[arg(long, default_value = "license-events")]
    pub topic: String,
    /// Events per second once the history is out (the live phase).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Customers in the initial base.
    #[arg(long, default_value_t = 200)]
    pub customers: u32,
    /// Random seed: the same seed (and --start) gives the same events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Days of history played first, as fast as the broker takes them.
    #[arg(long, default_value_t = 60)]
    pub history_days: u32,
    /// Event time at which the history starts (RFC 3339); default: so that the history
    /// ends now.
    #[arg(long)]
    pub start: Option<String>,
    /// Event-time seconds per wall-clock second in the live phase (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Cap on events per second during the history (default: no cap).
    #[arg(long)]
    pub history_rate: Option<f64>,
    /// Stop after this many events (history and live together).
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Send the history only, then exit (no live phase).
    #[arg(long, conflicts_with = "live_only")]
    pub history_only: bool,
    /// Skip the history (it is still played, unsent) and send the live phase only: with
    /// the same --seed and --customers, it carries on from a `--history-only` run.
    #[arg(long)]
    pub live_only: bool,
    /// No duplicates, reordering, invalid or malformed messages.
    #[arg(long)]
    pub clean: bool,
    /// Write the history as JSON lines to this file (`-`: standard output) instead of
    /// producing to Kafka (at most --max-events lines; no live phase).
    #[arg(long, value_name = "PATH")]
    pub jsonl: Option<String>,
    /// Extra producer settings, `key=value` (librdkafka names); repeatable.
    #[arg(long = "producer-config", value_name = "KEY=VALUE")]
    pub producer_config: Vec<String>,
}

impl SimulateArgs {
    /// The simulator configuration these arguments ask for, with `now` as the wall clock.
    pub fn sim_config(&self, now: Micros) -> anyhow::Result<SimConfig> {
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            bail!("--rate must be a finite number >= 0");
        }
        if !(self.speedup > 0.0 && self.speedup.is_finite()) {
            bail!("--speedup must be a finite number > 0");
        }
        if self.customers == 0 {
            bail!("--customers must be at least 1");
        }
        let cfg = SimConfig {
            customers: self.customers,
            seed: self.seed,
            history_days: self.history_days,
            live_rate: self.rate,
            live_speedup: self.speedup,
            history_rate: self.history_rate,
            noise: if self.clean {
                NoiseConfig::none()
            } else {
                NoiseConfig::default()
            },
            ..SimConfig::default()
        };
        Ok(match &self.start {
            Some(s) => SimConfig {
                start: parse_rfc3339(s)
                    .with_context(|| format!("--start {s:?} is not an RFC 3339 timestamp"))?,
                ..cfg
            },
            None => cfg.ending_at(now),
        })
    }
}

/// What a run sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceStats {
    pub history: u64,
    pub live: u64,
}

impl ProduceStats {
    pub fn total(&self) -> u64 {
        self.history + self.live
    }
}

/// The wall clock, in microseconds since the epoch.
pub fn wall_micros() -> Micros {
    crate::core::time::from_datetime(chrono::Utc::now())
}

/// A producer tuned for bulk sends (batching, lz4, idempotence), plus `extra` settings.
pub fn producer(brokers: &str, extra: &[(String, String)]) -> anyhow::Result<FutureProducer> {
    let cc = ClientSettings::new(brokers, "keypulse-simulate", extra).build(
        Role::Producer,
        &[
            ("linger.ms", "20"),
            ("batch.num.messages", "10000"),
            ("batch.size", "1000000"),
            ("compression.type", "lz4"),
            ("enable.idempotence", "true"),
            ("queue.buffering.max.messages", "200000"),
            ("message.timeout.ms", "60000"),
        ],
        &[],
    );
    cc.create().context("cannot create the Kafka producer")
}

/// Creates `topic` with `partitions` partitions (replication 1) unless it exists.
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientSettings::new(brokers, "keypulse-simulate", &[])
            .admin()
            .create()
            .context("cannot create the Kafka admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .context("CreateTopics failed")?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("cannot create topic {t}: {e}"),
        }
    }
    Ok(())
}

async fn settle(f: DeliveryFuture) -> anyhow::Result<()> {
    match f.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(anyhow::Error::new(e).context("a message was not delivered")),
        Err(_) => bail!("the producer dropped a message"),
    }
}

/// Sends the simulator's events to `topic` as they fall due, until `max_events` are sent
/// (if given) or `shutdown` completes; then waits for every delivery. `on_progress` is
/// called after each batch.
pub async fn pump(
    sim: &mut Simulator,
    producer: &FutureProducer,
    topic: &str,
    max_events: Option<u64>,
    shutdown: impl Future<Output = ()>,
    on_progress: impl FnMut(&Simulator),
) -> anyhow::Result<ProduceStats> {
    pump_inner(
        sim,
        producer,
        topic,
        max_events,
        false,
        shutdown,
        on_progress,
    )
    .await
}

/// Sends what is left of the history (at `history_rate`, if set) and returns once every
/// message of it is delivered, without starting the live phase; a later [`pump`] on the
/// same simulator carries on live. For the demo: have the history in the topic *before*
/// the service starts consuming, so that it catches up on a backlog rather than tailing
/// the history as it is written (a caught-up service on the wall clock moves its
/// customers' clocks to now, SPEC §2 and §5, which makes the rest of their history late:
/// duplicates are no longer recognised and decisions differ from a replay).
pub async fn pump_history(
    sim: &mut Simulator,
    producer: &FutureProducer,
    topic: &str,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<ProduceStats> {
    pump_inner(sim, producer, topic, None, true, shutdown, |_| {}).await
}

async fn pump_inner(
    sim: &mut Simulator,
    producer: &FutureProducer,
    topic: &str,
    max_events: Option<u64>,
    history_only: bool,
    shutdown: impl Future<Output = ()>,
    mut on_progress: impl FnMut(&Simulator),
) -> anyhow::Result<ProduceStats> {
    tokio::pin!(shutdown);
    let mut in_flight: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut sent = 0u64;
    'outer: loop {
        let left = max_events.map_or(u64::MAX, |m| m.saturating_sub(sent));
        if left == 0 || (history_only && sim.history_done()) {
            break;
        }
        let now = wall_micros();
        let batch = sim.next_batch(left.min(2048) as usize, now);
        if batch.is_empty() {
            let wait = (sim.next_due(now) - now).clamp(1_000, 1_000_000) as u64;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(Duration::from_micros(wait)) => {}
            }
            continue;
        }
        for ev in batch {
            loop {
                let record = FutureRecord::to(topic).key(&ev.key).payload(&ev.value);
                match producer.send_result(record) {
                    Ok(f) => {
                        in_flight.push_back(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        match in_flight.pop_front() {
                            Some(f) => settle(f).await?,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => {
                        return Err(
                            anyhow::Error::new(e).context("cannot hand a message to the producer")
                        )
                    }
                }
            }
            sent += 1;
            while in_flight.len() > IN_FLIGHT {
                if let Some(f) = in_flight.pop_front() {
                    settle(f).await?;
                }
            }
        }
        on_progress(sim);
        tokio::select! {
            biased;
            _ = &mut shutdown => break 'outer,
            _ = std::future::ready(()) => {}
        }
    }
    for f in in_flight {
        settle(f).await?;
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing the producer")?;
    let (history, live) = sim.emitted();
    Ok(ProduceStats { history, live })
}

/// Writes the history (at most `max` lines) as JSONL to `path` (`-`: stdout).
fn write_jsonl(cfg: SimConfig, path: &str, max: Option<u64>) -> anyhow::Result<()> {
    use std::io::Write;
    let out: Box<dyn Write> = if path == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?)
    };
    let mut out = std::io::BufWriter::new(out);
    let events = Simulator::history(cfg);
    let n = max.map_or(events.len(), |m| (m as usize).min(events.len()));
    for e in &events[..n] {
        writeln!(out, "{}", e.value)?;
    }
    out.flush()
        .with_context(|| format!("cannot write {path}"))?;
    Ok(())
}

/// `keypulse simulate`: runs until `--max-events` or Ctrl-C, printing progress to stderr.
pub fn simulate_command(args: SimulateArgs) -> anyhow::Result<()> {
    let cfg = args.sim_config(wall_micros())?;
    if let Some(path) = &args.jsonl {
        return write_jsonl(cfg, path, args.max_events);
    }
    let extra = args
        .producer_config
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--producer-config {kv:?}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if let Some(p) = args.partitions {
            ensure_topic(&args.brokers, &args.topic, p).await?;
        }
        let producer = producer(&args.brokers, &extra)?;
        let mut sim = Simulator::new(cfg);
        if args.live_only {
            let skipped = sim.skip_history();
            eprintln!("keypulse simulate: skipped {skipped} history events (--live-only)");
        }
        eprintln!(
            "keypulse simulate: {} customers, seed {}, {} days of history from {}, then {} events/s, to topic {}",
            args.customers,
            args.seed,
            args.history_days,
            crate::core::time::format_rfc3339(sim.config().start),
            args.rate,
            args.topic
        );
        let started = Instant::now();
        let mut last_report = Instant::now();
        let mut announced_live = false;
        let stats = pump_inner(
            &mut sim,
            &producer,
            &args.topic,
            args.max_events,
            args.history_only,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            |sim| {
                let (h, l) = sim.emitted();
                if !announced_live && l > 0 {
                    announced_live = true;
                    if h > 0 {
                        eprintln!(
                            "keypulse simulate: history sent: {h} events in {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    eprintln!(
                        "keypulse simulate: live at {} events/s",
                        sim.config().live_rate
                    );
                }
                if last_report.elapsed() >= Duration::from_secs(10) {
                    last_report = Instant::now();
                    eprintln!("keypulse simulate: sent {h} history + {l} live events");
                }
            },
        )
        .await?;
        eprintln!(
            "keypulse simulate: done: {} events ({} history, {} live) in {:.1} s",
            stats.total(),
            stats.history,
            stats.live,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })
}
