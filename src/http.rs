//! The HTTP API (axum): Prometheus metrics, the analytics API, health and readiness.
//!
//! Owns the routes:
//! - `GET /metrics`: the Prometheus text format (every `keypulse_*` family);
//! - `GET /api/v1/report`: the report document (SPEC §3) of the latest snapshot;
//!   `?as_of=RFC3339` computes it at that instant instead (one walk of the state: meant for
//!   comparing instances at the same instant, not for polling);
//! - `GET /api/v1/customers/{id}`: one customer's health score with reasons and points, its
//!   licenses and its notifications (404 for an unknown customer);
//! - `GET /api/v1/churn-risk` and `GET /api/v1/upgrade-pipeline`: those lists of the report;
//! - `GET /healthz`: 200 while the process serves;
//! - `GET /readyz`: 200 when every assigned partition has caught up with the high watermark
//!   seen at its assignment, else 503; the body lists the partitions either way.
//!
//! Guarantees: handlers read the snapshot that the refresher replaces every
//! `http.refresh_ms`; they never lock the fold. The two queries that need the state itself
//! (`?as_of=` and a customer) are messages to the fold workers, answered between batches.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::app_state::AppState;
use crate::core::time::{format_rfc3339, parse_rfc3339};

/// The routes over the shared state.
pub fn router(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/report", get(report))
        .route("/api/v1/customers/{id}", get(customer))
        .route("/api/v1/churn-risk", get(churn_risk))
        .route("/api/v1/upgrade-pipeline", get(upgrade_pipeline))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(app)
        .merge(crate::dashboard::dashboard_routes())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
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
struct ReportQuery {
    /// Compute the report at this RFC 3339 instant instead of the snapshot's.
    as_of: Option<String>,
}

async fn report(State(app): State<Arc<AppState>>, Query(q): Query<ReportQuery>) -> Response {
    let Some(raw) = q.as_of else {
        return Json(app.snapshot().report.clone()).into_response();
    };
    let Some(as_of) = parse_rfc3339(&raw) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("as_of: `{raw}` is not an RFC 3339 timestamp with an offset"),
        );
    };
    match tokio::task::spawn_blocking(move || app.report_at(as_of)).await {
        Ok(Ok(r)) => Json(r).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn customer(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let snapshot_as_of = app.snapshot().report.as_of;
    let lookup = id.clone();
    match tokio::task::spawn_blocking(move || app.customer(&lookup)).await {
        Ok(Ok(Some(view))) => Json(json!({
            "as_of": snapshot_as_of.map(format_rfc3339),
            "customer": view,
        }))
        .into_response(),
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "unknown customer"),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn churn_risk(State(app): State<Arc<AppState>>) -> Response {
    let s = app.snapshot();
    Json(json!({
        "as_of": s.report.as_of.map(format_rfc3339),
        "churn_risk": s.report.health.churn_risk,
    }))
    .into_response()
}

async fn upgrade_pipeline(State(app): State<Arc<AppState>>) -> Response {
    let s = app.snapshot();
    Json(json!({
        "as_of": s.report.as_of.map(format_rfc3339),
        "upgrade_pipeline": s.report.upgrade_pipeline,
    }))
    .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
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
