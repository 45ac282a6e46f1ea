//! `keypulse demo`: the whole pipeline in one process, with nothing else installed.
//!
//! Owns the demo's outside world: librdkafka's in-process mock cluster (the embedded
//! Kafka-protocol broker), the simulator producing to it, and the settings that point the
//! real service at them (file transport into `./outbox/`, in-memory email decision log,
//! since the mock cluster cannot create compacted topics). The service itself is the same
//! code as `keypulse run` (see `main.rs`): the demo only prepares its surroundings.
//!
//! Guarantees: the history is in the topic before the service starts consuming (so the
//! service folds it as a backlog, as a replay would, and not as late events on a wall
//! clock that has moved on); the live phase stops when the demo does.

use std::path::PathBuf;

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer};

use crate::config::Config;
use crate::sim::produce::{producer, pump, pump_history, wall_micros};
use crate::sim::{SimConfig, Simulator};

/// The demo's knobs (the command line's).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Customers in the simulated base.
    pub customers: u32,
    /// Simulator seed.
    pub seed: u64,
    /// Days of history played before the live phase.
    pub history_days: u32,
    /// Live events per second.
    pub live_rate: f64,
    /// Partitions of the events topic on the mock cluster.
    pub partitions: i32,
    /// Where the `.eml` files go.
    pub outbox_dir: PathBuf,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            customers: 200,
            seed: 1,
            history_days: 60,
            live_rate: 20.0,
            partitions: 6,
            outbox_dir: PathBuf::from("outbox"),
        }
    }
}

/// The running surroundings of the demo: the mock cluster and the simulator.
///
/// Fields drop in order: the live phase's producer before the broker, so that a demo that
/// stops early does not log the producer's "all brokers down" on its way out.
pub struct Demo {
    /// The simulator's live phase, ready to run.
    pub live: LivePhase,
    /// Events sent during the history.
    pub history_events: u64,
    /// The embedded broker. Not `Send`: it stays with the caller while the live phase runs
    /// on the runtime, and must outlive it.
    pub cluster: MockCluster<'static, DefaultProducerContext>,
}

/// The simulator after its history: produces live events to the mock cluster.
pub struct LivePhase {
    producer: FutureProducer,
    simulator: Simulator,
    topic: String,
}

impl Demo {
    /// Starts the mock cluster, creates the topics, sends the simulated history, and points
    /// `config` at them.
    pub async fn prepare(config: &mut Config, opts: &DemoOptions) -> anyhow::Result<Self> {
        let cluster =
            MockCluster::new(1).context("cannot start the embedded Kafka mock cluster")?;
        let brokers = cluster.bootstrap_servers();
        let topic = config
            .kafka
            .topics
            .first()
            .cloned()
            .unwrap_or_else(|| "license-events".into());
        cluster
            .create_topic(&topic, opts.partitions, 1)
            .context("cannot create the events topic on the mock cluster")?;
        cluster
            .create_topic(&config.kafka.dead_letter_topic, 1, 1)
            .context("cannot create the dead-letter topic on the mock cluster")?;
        config.kafka.brokers = brokers.clone();
        config.kafka.topics = vec![topic.clone()];
        config.email.transport = "file".into();
        config.email.file_dir = opts.outbox_dir.clone();
        config.email.decision_log = "memory".into();
        // The mock cluster has no compaction: the demo runs at least once, rebuilding.
        config.kafka.exactly_once = false;
        std::fs::create_dir_all(&opts.outbox_dir).with_context(|| {
            format!(
                "cannot create the outbox folder {}",
                opts.outbox_dir.display()
            )
        })?;

        let sim_cfg = SimConfig {
            customers: opts.customers,
            seed: opts.seed,
            history_days: opts.history_days,
            live_rate: opts.live_rate,
            ..SimConfig::default()
        }
        .ending_at(wall_micros());
        let producer = producer(&brokers, &[])?;
        let mut simulator = Simulator::new(sim_cfg);
        let stats = pump_history(&mut simulator, &producer, &topic, std::future::pending())
            .await
            .context("cannot send the simulated history to the mock cluster")?;
        Ok(Self {
            live: LivePhase {
                producer,
                simulator,
                topic,
            },
            history_events: stats.history,
            cluster,
        })
    }
}

impl LivePhase {
    /// Runs the live phase until `shutdown` resolves (the mock cluster must stay up).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        pump(
            &mut self.simulator,
            &self.producer,
            &self.topic,
            None,
            shutdown,
            |_| {},
        )
        .await?;
        Ok(())
    }
}
