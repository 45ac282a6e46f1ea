//! The `keypulse` binary: command-line parsing and wiring, nothing else.

use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use std::sync::Arc;

use keypulse::config::Config;
use keypulse::demo::{Demo, DemoOptions};
use keypulse::kafka::fold::ClockMode;
use keypulse::metrics::Metrics;
use keypulse::replay::Replay;
use keypulse::service::{RunOptions, Service};
use keypulse::sink::DeferredSink;

/// License telemetry into growth decisions.
#[derive(Debug, Parser)]
#[command(name = "keypulse", version, about)]
struct Cli {
    /// Configuration file (TOML). Environment variables `KEYPULSE__SECTION__KEY` override it.
    #[arg(long, global = true, env = "KEYPULSE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fold a JSONL event log and print the report as JSON.
    Replay {
        /// The event log; `-` reads standard input.
        file: String,
        /// Print the report on one line instead of indented.
        #[arg(long)]
        compact: bool,
    },
    /// Run the service: consume Kafka, fold, serve HTTP (metrics, API, health).
    Run {
        /// `wall` (default): as_of is the wall clock and time moves on with no event;
        /// `event`: as_of is the newest event time, as in replay (backfills, tests).
        #[arg(long, value_enum, default_value_t = ClockArg::Wall)]
        clock: ClockArg,
        /// Log format (overrides `log.format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// Decide and log emails, send nothing (and record nothing durably).
        #[arg(long)]
        dry_run: bool,
    },
    /// The whole pipeline in one process: an embedded Kafka-protocol broker, the
    /// simulator, the service, the dashboard on http.bind, emails as .eml files.
    Demo {
        /// Customers in the simulated base.
        #[arg(long, default_value_t = 200)]
        customers: u32,
        /// Simulator seed (the same seed gives the same history).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days of history played before the live phase.
        #[arg(long, default_value_t = 60)]
        history_days: u32,
        /// Live events per second after the history.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Folder of the emails (.eml files).
        #[arg(long, default_value = "outbox")]
        outbox: PathBuf,
        /// Log format (overrides `log.format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Produce a simulated customer base to a Kafka topic: ~60 days of history as fast as
    /// the broker takes it, then live events at --rate (see docs/DEMO.md).
    Simulate(keypulse::sim::produce::SimulateArgs),
    /// What the thresholds of --config (the candidate) would have decided on FILE, next to
    /// the baseline's (SPEC §8.7). Sends nothing, needs no Kafka.
    Backtest(keypulse::backtest::BacktestArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ClockArg {
    Wall,
    Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keypulse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Replay { file, compact } => replay(&config, &file, compact),
        Command::Run {
            clock,
            log_format,
            dry_run,
        } => {
            let mut config = config;
            if dry_run {
                config.email.transport = "none".into();
                config.email.decision_log = "memory".into();
            }
            init_logging(log_format, &config)?;
            let clock = match clock {
                ClockArg::Wall => ClockMode::Wall,
                ClockArg::Event => ClockMode::Event,
            };
            runtime()?.block_on(run_service(config, clock, None))
        }
        Command::Demo {
            customers,
            seed,
            history_days,
            rate,
            outbox,
            log_format,
        } => {
            let mut config = config;
            init_logging(log_format, &config)?;
            let opts = DemoOptions {
                customers,
                seed,
                history_days,
                live_rate: rate,
                outbox_dir: outbox,
                ..DemoOptions::default()
            };
            runtime()?.block_on(async move {
                eprintln!("keypulse demo: starting the embedded broker and sending {history_days} days of history for {customers} customers...");
                // A signal during the upload stops the demo at once, with a message: the
                // service has not started, there is nothing to fold or commit yet. The
                // watcher is a task of its own, so it answers even while the upload keeps
                // this thread busy.
                let mut signals = Signals::new()?;
                let watcher = tokio::spawn(async move {
                    let signal = signals.recv().await;
                    eprintln!("keypulse demo: {signal} while sending the history: stopped before the service started");
                    std::process::exit(0);
                });
                let demo = Demo::prepare(&mut config, &opts).await;
                watcher.abort();
                let demo = demo?;
                eprintln!("keypulse demo: {} history events sent; starting the service", demo.history_events);
                run_service(config, ClockMode::Wall, Some((demo, opts))).await
            })
        }
        Command::Simulate(args) => keypulse::sim::produce::simulate_command(args),
        Command::Backtest(args) => {
            keypulse::backtest::command(args, cli.config.as_deref(), &config)
        }
    }
}

/// The async runtime of the service (two workers: the fold runs on its own threads).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("keypulse-rt")
        .build()
        .context("cannot start the async runtime")
}

/// The email outbox, once its durable decision log is loaded.
async fn start_outbox(
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<Arc<keypulse::email::Outbox>> {
    let log = keypulse::email::build_log(config)
        .await
        .context("cannot open the email decision log (kafka.notifications_topic)")?;
    keypulse::email::Outbox::start(config, metrics.registry(), log)
        .await
        .context("cannot start the email outbox")
}

/// `tracing` to standard error, as text or one JSON object per line. The filter is
/// `RUST_LOG` when set and not empty (an invalid one is an error, never ignored), else
/// `log.level` (checked with the rest of the config). Text has ANSI colours only when
/// standard error is a terminal.
fn init_logging(format: Option<LogFormat>, config: &Config) -> anyhow::Result<()> {
    let json = match format {
        Some(f) => f == LogFormat::Json,
        None => config.log.format == "json",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&v)
            // `{e}` only: the parse error's source repeats its message.
            .map_err(|e| anyhow::anyhow!("RUST_LOG: `{v}` is not a tracing filter: {e}"))?,
        _ => keypulse::config::log_filter(&config.log.level)
            .map_err(|e| anyhow::anyhow!("config key `log.level`: {e}"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}

/// Runs the service until a signal (or a fatal Kafka error); with `demo`, also the
/// simulator's live phase, and prints where to look.
async fn run_service(
    config: Config,
    clock: ClockMode,
    demo: Option<(Demo, DemoOptions)>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new().context("cannot register the metrics")?);
    // The service starts first (it fails fast on a bad http.bind or kafka.brokers); its
    // decisions wait in the deferred sink until the outbox has loaded its log.
    let deferred = Arc::new(DeferredSink::new());
    let email_config = config.clone();
    let service = Service::start(
        config,
        RunOptions { clock },
        deferred.clone(),
        metrics.clone(),
    )
    .await?;
    let outbox = match start_outbox(&email_config, &metrics).await {
        Ok(o) => o,
        Err(e) => {
            let _ = service.shutdown().await;
            return Err(e);
        }
    };
    deferred.attach(outbox.clone());
    let (stop_live, live_stopped) = tokio::sync::watch::channel(false);
    let live = demo.map(|(demo, opts)| {
        let base = format!("http://{}", service.local_addr());
        eprintln!(
            "\nkeypulse demo is running (Ctrl-C stops it):\n  dashboard  {base}/\n  metrics    {base}/metrics\n  report     {base}/api/v1/report\n  emails     {}/\n",
            opts.outbox_dir.display()
        );
        let mut stopped = live_stopped.clone();
        let task = tokio::spawn(demo.live.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (demo.cluster, task)
    });
    let signal = tokio::select! {
        s = wait_for_signal() => s?,
        e = service.failed() => {
            // A fatal Kafka error: stop what can be stopped, exit non-zero.
            let _ = service.shutdown().await;
            outbox.shutdown(std::time::Duration::from_secs(3)).await;
            anyhow::bail!("{e}");
        }
    };
    tracing::info!(
        signal,
        "shutting down: stop consuming, fold and commit what was polled"
    );
    // A second signal exits at once; whatever happens, exit within 10 s.
    tokio::spawn(async {
        if let Ok(s) = wait_for_signal().await {
            eprintln!("keypulse: second {s}: exiting at once");
            std::process::exit(130);
        }
    });
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_millis(9_500));
        eprintln!("keypulse: shutdown did not finish within 9.5 s: exiting");
        std::process::exit(1);
    });
    let _ = stop_live.send(true);
    let cluster = match live {
        Some((cluster, task)) => {
            let _ = task.await;
            Some(cluster)
        }
        None => None,
    };
    service.shutdown().await?;
    outbox.shutdown(std::time::Duration::from_secs(3)).await;
    drop(cluster); // the embedded broker goes last
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn wait_for_signal() -> anyhow::Result<&'static str> {
    Ok(Signals::new()?.recv().await)
}

/// SIGTERM and SIGINT handlers: installed when created, so a signal that comes before
/// [`Signals::recv`] is awaited is kept, not fatal.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// The name of the next signal.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn replay(config: &Config, file: &str, compact: bool) -> anyhow::Result<()> {
    let (reader, size): (Box<dyn Read>, Option<u64>) = if file == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = match size {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {bytes}/{total_bytes} {bar:40} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    // The report only: no second copy of every notification. A pipe is read ahead of the
    // folds, so that its writer never waits for them.
    let mut replay = Replay::new().without_decisions();
    if file == "-" {
        replay = replay.reading_ahead();
    }
    replay
        .feed_reader(
            BufReader::with_capacity(1 << 20, reader),
            &config.core,
            |bytes| {
                if let Some(b) = &bar {
                    b.set_position(bytes);
                }
            },
        )
        .with_context(|| format!("cannot read {file}"))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = replay.report(&config.core);
    // Stdout is line-buffered: a compact report is one line of megabytes, which would go
    // out in a thousand-byte write each.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if compact {
        serde_json::to_writer(&mut out, &report)?;
    } else {
        serde_json::to_writer_pretty(&mut out, &report)?;
    }
    writeln!(out)?;
    out.flush()?;
    eprint!("{}", replay.rejections);
    // The process exits next, and nothing in the state needs its destructor: freeing every
    // record one by one (6 % of a replay's CPU on the fleet log) is work the OS does at once.
    std::mem::forget(report);
    std::mem::forget(replay);
    Ok(())
}
