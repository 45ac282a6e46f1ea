//! Asking the group's members: their per-partition aggregates and their customers.
//!
//! Owns the group report ([`GroupReport`]) and the two internal answers' shapes
//! ([`PeerAggregates`], [`PeerCustomer`]). Guarantees: peers are asked in parallel, each
//! request bounded by `http.peer_timeout_ms`; a failed peer is counted
//! (`keypulse_group_peer_failures_total`) and only makes its partitions missing; an answer
//! whose member id is not the one announced at that URL is treated as a failure.

use std::sync::Arc;
use std::time::Instant;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::merge::{choose, PartitionAnswer, PartitionId};
use super::{Announcement, Group, PEER_TOKEN_HEADER};
use crate::app_state::AppState;
use crate::core::time::Micros;
use crate::core::{CustomerView, Report};
use crate::kafka::fold::ClockMode;

/// What `GET /internal/v1/aggregates` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerAggregates {
    /// The answering instance.
    pub member: String,
    /// One entry per partition it holds.
    pub partitions: Vec<PartitionAnswer>,
}

/// What `GET /internal/v1/customers/{id}` answers when the instance holds the customer.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerCustomer {
    /// The answering instance.
    pub member: String,
    /// The `as_of` of the view.
    pub as_of: Option<Micros>,
    /// The customer.
    pub customer: CustomerView,
}

/// A group-wide report.
#[derive(Debug)]
pub struct GroupReport {
    /// The merged report.
    pub report: Report,
    /// Partitions no caught-up member answered for.
    pub missing: Vec<PartitionId>,
}

impl GroupReport {
    /// Whether every partition was answered.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// The report document with `complete` and `missing_partitions` added.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.report).unwrap_or(Value::Null);
        self.mark(&mut v);
        v
    }

    /// Adds `complete` and `missing_partitions` to a JSON object.
    pub fn mark(&self, v: &mut Value) {
        if let Value::Object(m) = v {
            m.insert("complete".into(), json!(self.complete()));
            m.insert("missing_partitions".into(), json!(self.missing));
        }
    }
}

/// This instance's own per-partition answers at `as_of` (blocking: asks the workers).
pub fn local_answers(
    app: &AppState,
    as_of: Option<Micros>,
) -> anyhow::Result<Vec<PartitionAnswer>> {
    let snap = app.snapshot();
    let parts = app.partition_aggregates(as_of)?;
    Ok(parts
        .into_iter()
        .map(|p| {
            let topic = p.tp.topic.to_string();
            // Not in the snapshot yet (just assigned): not caught up.
            let caught_up = snap
                .partitions
                .iter()
                .any(|s| s.topic == topic && s.partition == p.tp.partition && s.caught_up);
            PartitionAnswer {
                topic,
                partition: p.tp.partition,
                offset: p.next,
                watermark: (p.newest_ts != i64::MIN).then_some(p.newest_ts),
                caught_up,
                aggregate: p.aggregate,
            }
        })
        .collect())
}

impl Group {
    /// The group report: at `as_of` when given, else the group's current one (served
    /// again for `http.refresh_ms`).
    pub async fn report(
        &self,
        app: Arc<AppState>,
        as_of: Option<Micros>,
    ) -> anyhow::Result<Arc<GroupReport>> {
        let mut cache = match as_of {
            None => {
                let c = self.cache.lock().await;
                if let Some((at, r)) = &*c {
                    if at.elapsed() < self.cache_for {
                        return Ok(r.clone());
                    }
                }
                Some(c)
            }
            Some(_) => None,
        };
        let peers = self.peers();
        let at = match (as_of, app.clock) {
            (Some(t), _) => Some(t),
            (None, ClockMode::Wall) => Some(crate::service::wall_now()),
            (None, ClockMode::Event) => {
                let announced = self
                    .table
                    .live(super::members::now_ms(), self.stale)
                    .iter()
                    .flat_map(|a| a.partitions.iter().filter_map(|p| p.watermark))
                    .max();
                app.snapshot().report.as_of.max(announced)
            }
        };
        // Every partition of the input topics, and any a live member announced (should
        // the metadata be behind): each must be answered for.
        let mut all = self.table.all_partitions();
        all.extend(
            super::members::holders(&self.table.live(super::members::now_ms(), self.stale))
                .into_keys(),
        );
        let mut choice = choose(&all, self.gather(&app, &peers, at).await?);
        let mut at = at;
        if as_of.is_none() && app.clock == ClockMode::Event {
            // An answer folded past the announced watermarks: ask again at the newest.
            if let Some(w) = choice.watermark().filter(|w| Some(*w) > at) {
                at = Some(w);
                choice = choose(&all, self.gather(&app, &peers, at).await?);
            }
        }
        let missing = std::mem::take(&mut choice.missing);
        if !missing.is_empty() {
            self.metrics.incomplete.inc();
        }
        let report = choice.merged(at).finish(&app.core);
        let r = Arc::new(GroupReport { report, missing });
        if let Some(c) = cache.as_mut() {
            **c = Some((Instant::now(), r.clone()));
        }
        Ok(r)
    }

    /// Every member's per-partition answers at `as_of`, this instance's included.
    async fn gather(
        &self,
        app: &Arc<AppState>,
        peers: &[Announcement],
        as_of: Option<Micros>,
    ) -> anyhow::Result<Vec<(String, PartitionAnswer)>> {
        let q = as_of.map_or_else(String::new, |t| format!("?as_of_us={t}"));
        let asks: Vec<_> = peers
            .iter()
            .map(|p| {
                let url = format!("{}/internal/v1/aggregates{q}", p.url.trim_end_matches('/'));
                let id = p.id.clone();
                let fut = self.ask::<PeerAggregates>(url);
                async move { (id, fut.await) }
            })
            .collect();
        let a = app.clone();
        let local = tokio::task::spawn_blocking(move || local_answers(&a, as_of));
        let mut out = Vec::new();
        let answers = join_all(asks).await;
        for p in local.await?? {
            out.push((self.id.clone(), p));
        }
        for (id, r) in answers {
            match r {
                Some(Some(a)) if a.member == id => {
                    out.extend(a.partitions.into_iter().map(|p| (id.clone(), p)));
                }
                Some(Some(_)) => {
                    self.metrics.peer_failures.inc();
                    tracing::warn!(member = %id, "a peer answered with another member id");
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// GET `url` from a peer: `Some(Some(body))` on 200, `Some(None)` on 404, `None` on a
    /// failure (counted).
    async fn ask<T: serde::de::DeserializeOwned>(&self, url: String) -> Option<Option<T>> {
        let t0 = Instant::now();
        let mut req = self.client.get(&url);
        if let Some(t) = self.token.header_value() {
            req = req.header(PEER_TOKEN_HEADER, t);
        }
        let res = async {
            let r = req.send().await.map_err(|e| e.to_string())?;
            match r.status().as_u16() {
                200 => r.json::<T>().await.map(Some).map_err(|e| e.to_string()),
                404 => Ok(None),
                s => Err(format!("status {s}")),
            }
        }
        .await;
        self.metrics
            .peer_seconds
            .observe(t0.elapsed().as_secs_f64());
        match res {
            Ok(v) => Some(v),
            Err(e) => {
                self.metrics.peer_failures.inc();
                tracing::warn!(url = %url, error = %e, "a peer did not answer");
                None
            }
        }
    }

    /// Asks every peer for customer `id`, in parallel. Returns the holder's answer (the
    /// smallest member id if several hold it, as in a hand-off) and whether every peer
    /// answered.
    pub async fn customer(&self, id: &str) -> (Option<PeerCustomer>, bool) {
        let path = utf8_percent_encode(id, NON_ALPHANUMERIC).to_string();
        let asks: Vec<_> = self
            .peers()
            .into_iter()
            .map(|p| {
                let url = format!(
                    "{}/internal/v1/customers/{path}",
                    p.url.trim_end_matches('/')
                );
                let fut = self.ask::<PeerCustomer>(url);
                async move { (p.id, fut.await) }
            })
            .collect();
        let mut all_answered = true;
        let mut found: Option<PeerCustomer> = None;
        for (member, r) in join_all(asks).await {
            match r {
                None => all_answered = false,
                Some(None) => {}
                Some(Some(c)) if c.member == member => {
                    if found.as_ref().is_none_or(|f| c.member < f.member) {
                        found = Some(c);
                    }
                }
                Some(Some(_)) => all_answered = false,
            }
        }
        (found, all_answered)
    }
}

/// Runs the futures concurrently, answers in their order.
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
