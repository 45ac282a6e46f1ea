//! The snapshot refresher: every `http.refresh_ms` it recomputes the served
//! [`Snapshot`] from the fold workers.
//!
//! Guarantees: in wall-clock mode it first moves every caught-up partition's clock to now
//! (so midnights pass with no event); it reads readiness and positions before the
//! aggregate, so the snapshot includes at least everything folded up to them; the report
//! and gauges are computed at most once per refresh, never per event, and the HTTP
//! handlers never lock the fold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app_state::{AppState, PartitionStatus, Snapshot};
use crate::kafka::consumer::Router;
use crate::kafka::fold::ClockMode;

use super::wall_now;

pub(super) fn refresh_loop(
    app: Arc<AppState>,
    router: Arc<Router>,
    stop: Arc<AtomicBool>,
    every: Duration,
) {
    let mut next = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        next = now + every;
        if let Err(e) = refresh_once(&app, &router) {
            if stop.load(Ordering::Acquire) {
                break;
            }
            tracing::warn!(error = %e, "snapshot refresh failed");
        }
    }
}

fn refresh_once(app: &AppState, router: &Router) -> anyhow::Result<()> {
    let now = wall_now();
    // Read readiness and positions first: the aggregate below then includes at least
    // everything folded up to them.
    let ready = router.ready();
    let parts = router.partitions();
    if app.clock == ClockMode::Wall {
        app.advance_workers(now)?;
    }
    let newest_ts = || {
        parts
            .iter()
            .map(|p| p.newest_ts.load(Ordering::Acquire))
            .filter(|t| *t != i64::MIN)
            .max()
    };
    let mut newest = newest_ts();
    let mut as_of = match app.clock {
        ClockMode::Wall => Some(now),
        ClockMode::Event => newest,
    };
    let (mut agg, mut sizes) = app.aggregate(as_of)?;
    if app.clock == ClockMode::Event {
        // Events folded between reading the watermark and aggregating would be counted at
        // an `as_of` older than their own `ts`: recompute at the new watermark (a couple of
        // times at most; under a steady stream the report may trail by one refresh).
        for _ in 0..2 {
            let again = newest_ts();
            if again == newest {
                break;
            }
            newest = again;
            as_of = again;
            (agg, sizes) = app.aggregate(as_of)?;
        }
    }
    let [customers, licenses, bytes] = sizes;
    let report = agg.clone().finish(&app.core);
    let m = &app.metrics;
    m.set_business_gauges(&agg, &report);
    m.state_customers.set(customers as i64);
    m.state_licenses.set(licenses as i64);
    m.state_bytes.set(bytes as i64);
    m.assigned_partitions.set(parts.len() as i64);
    m.ready.set(ready as i64);
    if let Some(t) = newest {
        m.event_time_lag_seconds
            .set(((now - t) as f64 / 1e6).max(0.0));
    }
    let partitions = parts
        .iter()
        .map(|p| PartitionStatus {
            topic: p.tp.topic.to_string(),
            partition: p.tp.partition,
            caught_up: p.caught_up.load(Ordering::Acquire),
            position: p.position(),
            target: p.target.load(Ordering::Acquire),
            path: p.path().as_str(),
            watermark: Some(p.newest_ts.load(Ordering::Acquire)).filter(|t| *t != i64::MIN),
        })
        .collect();
    let snapshot = Arc::new(Snapshot {
        report: Arc::new(report),
        ready,
        partitions,
    });
    app.set_snapshot(snapshot);
    Ok(())
}
