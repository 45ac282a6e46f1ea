//! The batch fold of `keypulse replay`: each batch of lines is decoded in parts, each part
//! handing over its events already split by customer shard, then folded by shard, one
//! [`PartitionState`] per shard, with [`PartitionState::apply_ahead`] (which asks for each
//! event's records a few events before it is applied). Sharded, a batch has as many
//! threads as shards, which take its parts and then its shards as each comes free (see
//! `pool.rs`); otherwise one shard folds everything on the calling thread, by the same
//! path. The shards are kept apart, and the report is the merge of
//! their aggregates (computed in parallel, at the latest watermark of all), never of
//! their states.
//!
//! Owns the shard of a customer, the batch's decode and fold, the shards' aggregate and
//! their merge into one state (only for callers that need one). Guarantees, the same as
//! one fold's: a customer's events all go to one shard (chosen by a hash of its id, the
//! no-customer group included), in file order, and every decision for a customer depends
//! only on its own events (see `core::state`), so the merge of the shards' aggregates at
//! the watermark is the aggregate of one fold (integers equal; sums of floats may differ
//! in their last bits). The rejection summary's line numbers and [`Replay::decisions`]'
//! order are those of one fold: rejections are recorded in file order on the calling
//! thread, and each batch's decisions are put back in the order of the lines that made
//! them.

use std::thread;

use xxhash_rust::xxh3::xxh3_64;

use super::pool::Work;
use super::{LineBatch, Replay};
use crate::core::time::Micros;
use crate::core::{Aggregate, CoreConfig, PartitionState};

/// Lines per batch of a sharded replay (after its first, of the usual size).
pub(super) const BATCH_LINES: usize = 65_536;
/// Bytes after which a batch of a sharded replay stops taking lines.
pub(super) const BATCH_BYTES: usize = 32 << 20;

/// Lines per part of a batch's decode: a batch has many more parts than threads.
const DECODE_LINES: usize = 2048;

/// Batches with fewer lines than this are decoded and folded on the calling thread alone.
const PARALLEL_MIN_LINES: usize = 1024;

/// The shard of a customer id among `n`.
pub(super) fn shard_of(customer_id: Option<&str>, n: usize) -> u32 {
    (xxh3_64(customer_id.unwrap_or("").as_bytes()) % n as u64) as u32
}

/// Runs `f` on each item, the first on the calling thread and the others on threads of
/// their own (or all on the calling thread when `parallel` is false); results in order.
fn run_all<T: Send, R: Send>(items: Vec<T>, parallel: bool, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if !parallel {
        return items.into_iter().map(f).collect();
    }
    thread::scope(|s| {
        let f = &f;
        let mut items = items.into_iter();
        let first = items.next();
        let handles: Vec<_> = items.map(|item| s.spawn(move || f(item))).collect();
        let mut out = Vec::with_capacity(handles.len() + 1);
        out.extend(first.map(f));
        for h in handles {
            out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

/// Decodes and folds one batch into `replay`'s shards, running `meanwhile` (the read of
/// the next batch) on the calling thread first. The batch's lines are decoded in parts of
/// [`DECODE_LINES`], then each shard folds the events of its customers, in file order,
/// with [`PartitionState::apply_ahead`]; as many threads as there are shards take the
/// parts and then the shards as each comes free (see `pool.rs`), the calling thread among
/// them once `meanwhile` returns. The threads run when `parallel`, else all runs on the
/// calling thread (`meanwhile` first). Blank and rejected lines are counted into `replay`,
/// in file order, and the batch's decisions appended to `replay.decisions` in the order of
/// their lines.
pub(super) fn feed(
    replay: &mut Replay,
    batch: &LineBatch,
    cfg: &CoreConfig,
    parallel: bool,
    meanwhile: impl FnOnce(),
) {
    let n = replay.states.len();
    let parallel = parallel && n > 1 && batch.spans.len() >= PARALLEL_MIN_LINES;
    let keep = replay.keep_decisions;
    let work = Work::new(batch, &mut replay.states, cfg, keep, DECODE_LINES);
    if parallel {
        thread::scope(|s| {
            let work = &work;
            let others: Vec<_> = (1..n).map(|w| s.spawn(move || work.run(w))).collect();
            meanwhile();
            work.run(0);
            for h in others {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            }
        });
    } else {
        meanwhile();
        work.run(0);
    }
    let (decoded, mut made) = work.finish();
    let first = replay.lines + 1;
    for &(i, reason) in decoded.iter().flat_map(|d| &d.rejected) {
        replay.states[0].record_rejected();
        replay.rejections.record(reason, first + i as u64);
    }
    replay.lines += batch.spans.len() as u64;
    // Stable: a line's decisions come from one shard, already in their order.
    made.sort_by_key(|(i, _)| *i);
    replay.decisions.extend(made.into_iter().map(|(_, n)| n));
}

/// The merge of the aggregates of `states` (disjoint customers) at `as_of`, each computed
/// on a thread of its own.
pub(super) fn aggregate(
    states: &[PartitionState],
    as_of: Option<Micros>,
    cfg: &CoreConfig,
) -> Aggregate {
    let parts = run_all(states.iter().collect(), states.len() > 1, |s| {
        s.aggregate(as_of, cfg)
    });
    let mut parts = parts.into_iter();
    let mut all = parts.next().unwrap_or_default();
    for a in parts {
        all.merge(a);
    }
    all
}

/// The one state of every shard's customers.
pub(super) fn merge(states: Vec<PartitionState>) -> PartitionState {
    let mut states = states.into_iter();
    let mut merged = states.next().unwrap_or_default();
    for s in states {
        merged.merge(s);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::BATCH_LINES;

    /// A log of several batches: customers (and events without one) interleaved, with
    /// duplicates (a payment's id comes back for its customer every 407 lines), blank, malformed and too-large lines spread over the batches.
    fn log() -> String {
        let mut out = String::new();
        for i in 0..(BATCH_LINES * 3 + 77) {
            let c = i % 37;
            let day = 1 + i / 900;
            let line = match i % 11 {
                0 => format!(
                    r#"{{"type":"license.issued","ts":"2026-10-{day:02}T10:00:00Z","event_id":"e{i}","customer_id":"c{c}","license_key":"k{c}-{}","plan":"pro","domain_limit":2,"mrr_cents":{},"email":"a{c}@example.com"}}"#,
                    i % 3,
                    1000 + c
                ),
                1 => format!(
                    r#"{{"type":"license.validated","ts":"2026-10-{day:02}T11:00:00Z","result":"invalid_format","country":"DE"}}"#
                ),
                2 => "not json".to_string(),
                3 => String::new(),
                4 => format!(r#"{{"pad":"{}"}}"#, "x".repeat(600)),
                5 => format!(
                    r#"{{"type":"payment.failed","ts":"2026-10-{day:02}T12:00:00Z","event_id":"p{}","customer_id":"c{c}"}}"#,
                    i % (37 * 11)
                ),
                _ => format!(
                    r#"{{"type":"license.validated","ts":"2026-10-{day:02}T1{}:00:00Z","event_id":"v{i}","customer_id":"c{c}","license_key":"k{c}-{}","result":"{}","domain":"d{}.example","country":"FR"}}"#,
                    i % 10,
                    i % 3,
                    ["valid", "expired", "domain_mismatch"][i % 3],
                    i % 5
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    #[test]
    fn shards_fold_as_one_thread() {
        let cfg = CoreConfig {
            max_event_bytes: 400,
            dedup_horizon_secs: 7 * 86_400,
            ..CoreConfig::default()
        };
        let text = log();
        let fold = |threads: usize| {
            let mut r = Replay::new();
            r.feed_reader_on(text.as_bytes(), &cfg, threads, |_| {})
                .unwrap();
            r
        };
        let one = fold(1);
        assert!(one.sizes().0 >= 37, "{:?}", one.sizes());
        assert!(one.rejections.by_reason.len() >= 2);
        assert!(one.counts().duplicates > 0);
        for threads in [2, 5] {
            let many = fold(threads);
            assert_eq!(many.report(&cfg), one.report(&cfg), "{threads} threads");
            assert_eq!(many.rejections, one.rejections);
            assert_eq!(many.decisions, one.decisions);
            assert_eq!(many.counts(), one.counts());
            assert_eq!(many.sizes(), one.sizes());
            assert_eq!(many.watermark(), one.watermark());
            // The shards are kept (the report merged their aggregates, not their states);
            // merged into one state, they report the same.
            assert_eq!(many.states().len(), threads);
            let as_of = many.watermark();
            let merged = many.into_state();
            assert_eq!(merged.report(as_of, &cfg), one.report(&cfg));
        }
    }

    #[test]
    fn a_sharded_replay_folds_on_by_customer_shard() {
        let cfg = CoreConfig {
            max_event_bytes: 400,
            ..CoreConfig::default()
        };
        let text = log();
        let (head, tail) = text.split_at(text.len() / 2);
        let cut = head.rfind('\n').map_or(0, |i| i + 1);
        let (head, tail) = (&text[..cut], format!("{}{tail}", &head[cut..]));
        let mut one = Replay::new();
        one.feed_reader_on(text.as_bytes(), &cfg, 1, |_| {})
            .unwrap();
        let mut many = Replay::new();
        many.feed_reader_on(head.as_bytes(), &cfg, 3, |_| {})
            .unwrap();
        assert_eq!(many.states().len(), 3);
        for line in tail.lines() {
            many.feed_line(line.as_bytes(), &cfg);
        }
        assert_eq!(many.states().len(), 3);
        assert_eq!(many.report(&cfg), one.report(&cfg));
        assert_eq!(many.rejections, one.rejections);
        assert_eq!(many.decisions, one.decisions);
        let merged = many.state_mut().report(one.watermark(), &cfg);
        assert_eq!(many.states().len(), 1);
        assert_eq!(merged, one.report(&cfg));
    }

    #[test]
    fn a_replay_without_decisions_reports_the_same() {
        let cfg = CoreConfig {
            max_event_bytes: 400,
            ..CoreConfig::default()
        };
        let text = log();
        for threads in [1, 2] {
            let mut with = Replay::new();
            with.feed_reader_on(text.as_bytes(), &cfg, threads, |_| {})
                .unwrap();
            let mut without = Replay::new().without_decisions();
            without
                .feed_reader_on(text.as_bytes(), &cfg, threads, |_| {})
                .unwrap();
            for line in text.lines().take(50) {
                without.feed_line(line.as_bytes(), &cfg);
                with.feed_line(line.as_bytes(), &cfg);
            }
            assert!(!with.decisions.is_empty());
            assert!(without.decisions.is_empty());
            assert_eq!(without.report(&cfg), with.report(&cfg));
            assert_eq!(without.rejections, with.rejections);
        }
    }

    /// A log of several sharded batches (so that reads overlap folds), one event a line.
    fn long_log() -> String {
        let lines = BATCH_LINES + 2 * super::BATCH_LINES + 999;
        let line = |i: usize| {
            format!(
                r#"{{"type":"license.validated","ts":"2026-10-{:02}T10:00:00Z","event_id":"v{i}","customer_id":"c{}","license_key":"k{}","result":"valid","domain":"d.example","country":"FR"}}"#,
                1 + i / 6000,
                i % 101,
                i % 303
            )
        };
        (0..lines).map(line).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn reads_overlap_folds_with_the_same_answers_and_progress() {
        let cfg = CoreConfig::default();
        let text = long_log();
        let fold = |threads: usize, ahead: bool| {
            let (mut r, mut progress) = (Replay::new(), Vec::new());
            if ahead {
                r = r.reading_ahead();
            }
            r.feed_reader_on(text.as_bytes(), &cfg, threads, |b| progress.push(b))
                .unwrap();
            (r, progress)
        };
        let (one, _) = fold(1, false);
        for ahead in [false, true] {
            let (two, progress) = fold(2, ahead);
            assert_eq!(two.states().len(), 2);
            assert_eq!(two.report(&cfg), one.report(&cfg));
            assert_eq!(two.decisions, one.decisions);
            assert_eq!(two.counts(), one.counts());
            // Once per batch folded, in order, through the last byte.
            assert_eq!(progress.len(), 4, "{progress:?}");
            assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
            assert_eq!(progress.last(), Some(&(text.len() as u64)));
        }
    }

    #[test]
    fn a_read_error_is_returned_once_the_batches_before_it_are_folded() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let cfg = CoreConfig::default();
        let text = long_log();
        // The input breaks 10 lines into the third batch of a sharded replay (the first
        // has BATCH_LINES lines, the second super::BATCH_LINES, a multiple of it).
        let whole = BATCH_LINES + super::BATCH_LINES;
        let cut = text.match_indices('\n').nth(whole + 9).map(|(i, _)| i + 1);
        let cut = cut.expect("a long log");
        for (threads, ahead) in [(1, false), (2, false), (2, true)] {
            let input = std::io::Read::chain(&text.as_bytes()[..cut], Broken);
            let mut r = Replay::new();
            if ahead {
                r = r.reading_ahead();
            }
            let err = r
                .feed_reader_on(std::io::BufReader::new(input), &cfg, threads, |_| {})
                .unwrap_err();
            assert_eq!(err.to_string(), "disk gone");
            assert_eq!(r.states().len(), threads);
            assert_eq!(r.counts().applied, whole as u64, "{threads} threads");
        }
    }

    #[test]
    fn every_customer_has_one_shard() {
        for n in 1..6 {
            for id in [None, Some(""), Some("c1"), Some("cus_000042")] {
                let s = shard_of(id, n);
                assert!((s as usize) < n);
                assert_eq!(s, shard_of(id, n));
            }
            assert_eq!(shard_of(None, n), shard_of(Some(""), n));
        }
    }
}
