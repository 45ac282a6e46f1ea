//! The handlers of the JSON API and the probes.
//!
//! Owns what each route answers (the routes themselves are assembled in `http/mod.rs`):
//! the report, the bounded summary, one customer, the paged lists, `/metrics`,
//! `/healthz` and `/readyz`. Guarantees: every list answer is paged (`limit` ≤
//! `paging::MAX_LIMIT`) and says its `total`; every 4xx is JSON; handlers read the
//! snapshot and never lock the fold (the state queries are messages to the workers).
//! Running in a group, the report, the summary and the lists are the group's (SPEC §8.8,
//! `http/group.rs`), with `complete` and `missing_partitions`; `?scope=local` gives the
//! snapshot's; a customer not held here is asked of the other members.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::{json_error, Params, PathParam};
use super::group::{group_report, Scope};
use super::paging::PageQuery;
use super::summary::{summary as summarize, SummaryQuery, DEFAULT_TOP, MAX_TOP};
use crate::app_state::AppState;
use crate::core::time::{format_rfc3339, parse_rfc3339};
use crate::core::Report;

/// The handlers' state.
pub type App = State<Arc<AppState>>;

pub async fn metrics(State(app): App) -> Response {
    let text = tokio::task::spawn_blocking(move || app.metrics.encode())
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Query of `/api/v1/report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Compute the report at this RFC 3339 instant (not before the snapshot's `as_of`).
    as_of: Option<String>,
    /// `group` (default) or `local` (SPEC §8.8).
    scope: Option<Scope>,
}

/// A group answer as JSON, or the error response.
async fn group_json(
    app: &Arc<AppState>,
    scope: Option<Scope>,
    as_of: Option<i64>,
) -> Option<Response> {
    Some(match group_report(app, scope, as_of).await? {
        Ok(g) => Json(g.to_json()).into_response(),
        Err(e) => e,
    })
}

pub async fn report(State(app): App, Params(q): Params<ReportQuery>) -> Response {
    let Some(raw) = q.as_of else {
        if let Some(r) = group_json(&app, q.scope, None).await {
            return r;
        }
        return Json(app.snapshot().report.clone()).into_response();
    };
    let Some(as_of) = parse_rfc3339(&raw) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            format!("as_of: `{raw}` is not an RFC 3339 timestamp with an offset"),
        );
    };
    // The state holds every event folded so far: a report at an earlier instant would
    // count events from its future. Refuse it rather than answer a false history.
    if let Some(data) = app.snapshot().report.as_of {
        if as_of < data {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": "as_of: before the data (the state already holds later \
                              events; keypulse keeps no history to report from)",
                    "as_of": format_rfc3339(as_of),
                    "earliest": format_rfc3339(data),
                })),
            )
                .into_response();
        }
    }
    if let Some(r) = group_json(&app, q.scope, Some(as_of)).await {
        return r;
    }
    match tokio::task::spawn_blocking(move || app.report_at(as_of)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn summary(State(app): App, Params(q): Params<SummaryQuery>) -> Response {
    let top = q.top.unwrap_or(DEFAULT_TOP);
    if top > MAX_TOP {
        return json_error(
            StatusCode::BAD_REQUEST,
            format!("top: {top} is above the maximum {MAX_TOP}"),
        );
    }
    match group_report(&app, q.scope, None).await {
        Some(Ok(g)) => {
            let mut v = summarize(&g.report, top);
            g.mark(&mut v);
            Json(v).into_response()
        }
        Some(Err(e)) => e,
        None => Json(summarize(&app.snapshot().report, top)).into_response(),
    }
}

pub async fn customer(
    State(app): App,
    PathParam(id): PathParam,
    Params(q): Params<PageQuery>,
) -> Response {
    let page = match q.page() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let snapshot_as_of = app.snapshot().report.as_of;
    let lookup = id.clone();
    let a = app.clone();
    match tokio::task::spawn_blocking(move || a.customer(&lookup)).await {
        Ok(Ok(Some(view))) => customer_page(&page, view, snapshot_as_of),
        Ok(Ok(None)) => {
            // Held by another member? Ask them all (never guess by partitioner).
            let mut body = json!({ "error": "unknown customer", "customer_id": id });
            if let (Some(g), false) = (&app.group, q.scope == Some(Scope::Local)) {
                let (found, all_answered) = g.customer(&id).await;
                if let Some(c) = found {
                    return customer_page(&page, c.customer, c.as_of);
                }
                body["complete"] = json!(all_answered);
            }
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
        Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// One customer's answer, its licenses paged.
fn customer_page(
    page: &super::paging::Page,
    mut view: crate::core::CustomerView,
    as_of: Option<i64>,
) -> Response {
    let (licenses, notifications) = (view.licenses.len(), view.notifications.len());
    view.licenses = page.slice(&view.licenses).to_vec();
    view.notifications
        .drain(..notifications.saturating_sub(page.limit));
    let mut body = page.meta(licenses);
    body["as_of"] = json!(as_of.map(format_rfc3339));
    body["total_notifications"] = json!(notifications);
    body["customer"] = json!(view);
    Json(body).into_response()
}

/// One page of a list of the report (the group's unless `?scope=local`): `{"as_of",
/// key: [...], "total", ...}`, with `complete` and `missing_partitions` for the group's.
pub async fn list_page<T: Serialize>(
    app: &Arc<AppState>,
    q: &PageQuery,
    key: &str,
    list: fn(&Report) -> &[T],
) -> Response {
    let page = match q.page() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match group_report(app, q.scope, None).await {
        Some(Ok(g)) => {
            let l = list(&g.report);
            let mut body = page.meta(l.len());
            body["as_of"] = json!(g.report.as_of.map(format_rfc3339));
            body[key] = json!(page.slice(l));
            g.mark(&mut body);
            Json(body).into_response()
        }
        Some(Err(e)) => e,
        None => {
            let s = app.snapshot();
            page.answer(s.report.as_of.map(format_rfc3339), key, list(&s.report))
        }
    }
}

pub async fn churn_risk(State(app): App, Params(q): Params<PageQuery>) -> Response {
    list_page(&app, &q, "churn_risk", |r| &r.health.churn_risk).await
}

pub async fn upgrade_pipeline(State(app): App, Params(q): Params<PageQuery>) -> Response {
    list_page(&app, &q, "upgrade_pipeline", |r| &r.upgrade_pipeline).await
}

pub async fn sharing_suspects(State(app): App, Params(q): Params<PageQuery>) -> Response {
    list_page(&app, &q, "sharing_suspects", |r| &r.sharing_suspects).await
}

pub async fn notifications(State(app): App, Params(q): Params<PageQuery>) -> Response {
    list_page(&app, &q, "notifications", |r| &r.notifications).await
}

pub async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

pub async fn readyz(State(app): App) -> Response {
    let s = app.snapshot();
    let status = if s.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "ready": s.ready, "partitions": s.partitions })),
    )
        .into_response()
}
