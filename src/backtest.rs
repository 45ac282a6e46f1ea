//! `keypulse backtest`: what other thresholds would have decided (SPEC §8.7).
//!
//! Owns the comparison of one log folded under two configurations, a baseline and a
//! candidate. The log is read once: each batch of lines is decoded once and folded under
//! both configurations, on two threads, through [`Replay::feed_decoded`], the fold of
//! `keypulse replay`. So each side's notifications are exactly those of a plain replay with
//! that configuration.
//!
//! Guarantees: it sends nothing and needs no Kafka; `by_kind` names every kind of
//! [`NotificationKind::ALL`], zeros included; `added` and `removed` are the notifications
//! decided under one side only, two being the same when kind, `customer_id`,
//! `license_key` and `at` are equal, in the report's order and form.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::config::Config;
use crate::core::report::NotificationEntry;
use crate::core::time::{format_rfc3339, Micros};
use crate::core::{CoreConfig, NotificationKind, Report};
use crate::replay::{Line, LineBatch, RejectionSummary, Replay, BATCH_BYTES, BATCH_LINES};

/// How many added and removed notifications the text summary lists.
pub const TEXT_LISTED: usize = 5;

/// The command line of `keypulse backtest` (the candidate is the global `--config`).
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The event log; `-` reads standard input.
    pub file: String,
    /// The configuration to compare against (default: the built-in defaults).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// `json` (the SPEC §8.7 document) or `text` (a short summary).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

/// Counts per kind, serialized as a map in the order of [`NotificationKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByKind(pub Vec<(NotificationKind, u64)>);

impl Serialize for ByKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (kind, n) in &self.0 {
            map.serialize_entry(kind.as_str(), n)?;
        }
        map.end()
    }
}

/// One side's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    pub notifications: u64,
    pub by_kind: ByKind,
    pub churn_risk: u64,
    pub upgrade_pipeline: u64,
}

impl Side {
    fn of(report: &Report) -> Self {
        let by_kind = NotificationKind::ALL
            .iter()
            .map(|&kind| {
                let n = report
                    .notifications
                    .iter()
                    .filter(|e| e.kind == kind)
                    .count();
                (kind, n as u64)
            })
            .collect();
        Self {
            notifications: report.notifications.len() as u64,
            by_kind: ByKind(by_kind),
            churn_risk: report.health.churn_risk.len() as u64,
            upgrade_pipeline: report.upgrade_pipeline.len() as u64,
        }
    }
}

/// The SPEC §8.7 document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backtest {
    pub baseline: Side,
    pub candidate: Side,
    /// Decided under the candidate only.
    pub added: Vec<NotificationEntry>,
    /// Decided under the baseline only.
    pub removed: Vec<NotificationEntry>,
}

type Identity<'a> = (NotificationKind, &'a str, Option<&'a str>, Micros);

fn identity(e: &NotificationEntry) -> Identity<'_> {
    (e.kind, &e.customer_id, e.license_key.as_deref(), e.at)
}

/// The entries of `of` whose identity is not in `other`, in `of`'s (the report's) order.
fn only_in(of: &[NotificationEntry], other: &[NotificationEntry]) -> Vec<NotificationEntry> {
    let other: HashSet<Identity<'_>> = other.iter().map(identity).collect();
    of.iter()
        .filter(|e| !other.contains(&identity(e)))
        .cloned()
        .collect()
}

impl Backtest {
    /// Compares two reports of the same log.
    pub fn compare(baseline: &Report, candidate: &Report) -> Self {
        Self {
            baseline: Side::of(baseline),
            candidate: Side::of(candidate),
            added: only_in(&candidate.notifications, &baseline.notifications),
            removed: only_in(&baseline.notifications, &candidate.notifications),
        }
    }

    /// A short human summary: counts baseline → candidate, and the first `listed` added
    /// and removed notifications.
    pub fn text(&self, listed: usize) -> String {
        let mut out = String::new();
        let mut row = |name: &str, b: u64, c: u64| {
            let change = c as i128 - b as i128;
            out.push_str(&format!("  {name:<18} {b:>9} → {c:<9} ({change:+})\n"));
        };
        for ((kind, b), (_, c)) in self
            .baseline
            .by_kind
            .0
            .iter()
            .zip(&self.candidate.by_kind.0)
        {
            row(kind.as_str(), *b, *c);
        }
        row(
            "notifications",
            self.baseline.notifications,
            self.candidate.notifications,
        );
        row(
            "churn_risk",
            self.baseline.churn_risk,
            self.candidate.churn_risk,
        );
        row(
            "upgrade_pipeline",
            self.baseline.upgrade_pipeline,
            self.candidate.upgrade_pipeline,
        );
        let mut text = format!("baseline → candidate\n{out}");
        for (title, list) in [("added", &self.added), ("removed", &self.removed)] {
            text.push_str(&format!("{title}: {}", list.len()));
            if list.len() > listed {
                text.push_str(&format!(" (first {listed})"));
            }
            text.push('\n');
            for e in list.iter().take(listed) {
                text.push_str(&format!(
                    "  {}  {:<14} {}  {}  [{}]\n",
                    format_rfc3339(e.at),
                    e.kind.as_str(),
                    e.customer_id,
                    e.license_key.as_deref().unwrap_or("-"),
                    e.reasons.join(", ")
                ));
            }
        }
        text
    }
}

/// Folds every line of `input` under both configurations: each batch is read and decoded
/// once, then folded under the baseline on a second thread while this one folds it under
/// the candidate. Returns the two replays (baseline, candidate).
pub fn fold_both(
    mut input: impl BufRead,
    baseline: &CoreConfig,
    candidate: &CoreConfig,
) -> std::io::Result<(Replay, Replay)> {
    let mut base = Replay::new();
    let mut cand = Replay::new();
    let mut batch = LineBatch::default();
    while batch.fill(&mut input, BATCH_LINES, BATCH_BYTES)? {
        let lines: Vec<Line<'_>> = batch.lines().map(Line::decode).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                for line in &lines {
                    base.feed_decoded(line, baseline);
                }
            });
            for line in &lines {
                cand.feed_decoded(line, candidate);
            }
        });
    }
    Ok((base, cand))
}

/// Folds `input` under both configurations and compares the reports; also returns the
/// rejected lines (the same under both: rejection does not depend on the configuration).
pub fn run(
    input: impl BufRead,
    baseline: &CoreConfig,
    candidate: &CoreConfig,
) -> std::io::Result<(Backtest, RejectionSummary)> {
    let (base, cand) = fold_both(input, baseline, candidate)?;
    let (base_report, cand_report) = std::thread::scope(|s| {
        let b = s.spawn(|| base.report(baseline));
        let c = cand.report(candidate);
        (b.join(), c)
    });
    let base_report = base_report.unwrap_or_else(|p| std::panic::resume_unwind(p));
    Ok((
        Backtest::compare(&base_report, &cand_report),
        base.rejections,
    ))
}

/// `keypulse backtest FILE --config CANDIDATE.toml [--baseline BASELINE.toml]`: the
/// candidate is `candidate` (loaded from `candidate_path`, which must be given). The
/// environment overrides apply to both sides, so the comparison shows what the files
/// change. Prints the document (or the summary) on stdout, the rejected lines on stderr.
pub fn command(
    args: BacktestArgs,
    candidate_path: Option<&Path>,
    candidate: &Config,
) -> anyhow::Result<()> {
    if candidate_path.is_none() {
        anyhow::bail!("backtest needs the candidate configuration: --config CANDIDATE.toml");
    }
    let baseline =
        Config::load(args.baseline.as_deref()).with_context(|| match &args.baseline {
            Some(p) => format!("baseline configuration {}", p.display()),
            None => "baseline configuration (the defaults)".to_string(),
        })?;
    let file = args.file.as_str();
    let reader: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?)
    };
    let (backtest, rejections) = run(
        BufReader::with_capacity(1 << 20, reader),
        &baseline.core,
        &candidate.core,
    )
    .with_context(|| format!("cannot read {file}"))?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &backtest)?;
            writeln!(out)?;
        }
        Format::Text => out.write_all(backtest.text(TEXT_LISTED).as_bytes())?,
    }
    eprint!("{rejections}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = concat!(
        r#"{"event_id":"e1","type":"license.issued","ts":"2026-11-01T10:00:00Z","customer_id":"c1","license_key":"k1","plan":"pro","email":"a@example.com","domain_limit":5,"mrr_cents":1000}"#,
        "\n",
        r#"{"event_id":"e2","type":"payment.failed","ts":"2026-11-02T10:00:00Z","customer_id":"c1"}"#,
        "\n\nnot json\n",
        r#"{"event_id":"e3","type":"license.validated","ts":"2026-11-03T10:00:00Z","customer_id":"c1","license_key":"k1","result":"expired"}"#,
        "\r\n",
    );

    fn folded(cfg: &CoreConfig) -> Report {
        let mut r = Replay::new();
        r.feed_reader(LOG.as_bytes(), cfg, |_| {}).unwrap();
        r.report(cfg)
    }

    #[test]
    fn both_folds_equal_plain_replays() {
        let base = CoreConfig::default();
        let mut cand = CoreConfig::default();
        cand.notify.team_address = "other@example.com".into();
        let (b, c) = fold_both(LOG.as_bytes(), &base, &cand).unwrap();
        let (rb, rc) = (folded(&base), folded(&cand));
        assert_eq!(b.report(&base), rb);
        assert_eq!(c.report(&cand), rc);
        assert!(!rb.notifications.is_empty());
        assert_eq!(b.rejections.total(), 1);
        // the rejected line keeps its line number (blank lines counted)
        assert_eq!(
            b.rejections.by_reason.values().next().unwrap().1,
            vec![4u64]
        );
    }

    #[test]
    fn differences_are_by_identity_and_counts_by_kind() {
        let base = CoreConfig::default();
        let (bt, _) = run(LOG.as_bytes(), &base, &base).unwrap();
        assert!(bt.added.is_empty() && bt.removed.is_empty());
        assert_eq!(bt.baseline, bt.candidate);
        assert_eq!(bt.baseline.by_kind.0.len(), NotificationKind::ALL.len());
        let report = folded(&base);
        let mut fewer = report.clone();
        let gone = fewer.notifications.remove(0);
        let mut moved = report.clone();
        moved.notifications[0].reasons = vec!["other".into()]; // same identity
        let bt = Backtest::compare(&report, &fewer);
        assert_eq!(bt.removed, vec![gone.clone()]);
        assert!(bt.added.is_empty());
        assert_eq!(bt.candidate.notifications + 1, bt.baseline.notifications);
        let bt = Backtest::compare(&fewer, &report);
        assert_eq!(bt.added, vec![gone]);
        assert!(Backtest::compare(&report, &moved).added.is_empty());
        // each part of the identity counts on its own
        type Change = fn(&mut NotificationEntry);
        let changes: [Change; 4] = [
            |e| {
                e.kind = NotificationKind::ALL
                    .into_iter()
                    .find(|k| *k != e.kind)
                    .unwrap()
            },
            |e| e.customer_id.push('x'),
            |e| e.license_key = Some("other-key".into()),
            |e| e.at += 1,
        ];
        for change in changes {
            let mut other = report.clone();
            change(&mut other.notifications[0]);
            let bt = Backtest::compare(&report, &other);
            assert_eq!(bt.added, vec![other.notifications[0].clone()]);
            assert_eq!(bt.removed, vec![report.notifications[0].clone()]);
        }
        let text = bt.text(1);
        assert!(text.contains("added: 1"), "{text}");
        assert!(text.contains("removed: 0"), "{text}");
    }
}
