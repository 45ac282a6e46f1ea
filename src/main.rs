//! The `keypulse` binary: command-line parsing and wiring, nothing else.

use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use keypulse::config::Config;
use keypulse::replay::Replay;

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
    /// Produce a simulated customer base to a Kafka topic: ~60 days of history as fast as
    /// the broker takes it, then live events at --rate (see docs/DEMO.md).
    Simulate(keypulse::sim::produce::SimulateArgs),
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
        Command::Simulate(args) => keypulse::sim::produce::simulate_command(args),
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
    let mut replay = Replay::new();
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
    let mut out = std::io::stdout().lock();
    if compact {
        serde_json::to_writer(&mut out, &report)?;
    } else {
        serde_json::to_writer_pretty(&mut out, &report)?;
    }
    writeln!(out)?;
    eprint!("{}", replay.rejections);
    Ok(())
}
