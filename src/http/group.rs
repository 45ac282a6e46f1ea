//! The HTTP side of group-wide answers (SPEC §8.8): `?scope=`, and the internal endpoint
//! the instances ask each other on.
//!
//! Owns:
//! - [`Scope`]: `?scope=group` (the default when the service runs in a group) or
//!   `?scope=local` (this instance's own share, today's answer);
//! - the internal routes, outside the user's token: `GET /internal/v1/aggregates?as_of_us=N`
//!   (this instance's aggregates at `as_of`, one per partition, each with its folded offset,
//!   watermark and catch-up) and `GET /internal/v1/customers/{id}` (the customer if held
//!   here, else 404).
//!
//! Guarantees: the internal routes need the peer token in `x-keypulse-peer-token`
//! (compared in constant time); with no peer token configured they answer loopback peers
//! only. A refusal is a JSON 403 (the user's 401 is for the user's token).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::error::{json_error, Params, PathParam};
use crate::app_state::AppState;
use crate::group::peers::{local_answers, GroupReport, PeerAggregates, PeerCustomer};
use crate::group::{PeerToken, PEER_TOKEN_HEADER};

/// Which answer a request wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole consumer group (the default).
    #[default]
    Group,
    /// This instance's own partitions.
    Local,
}

/// The group report for a request of `scope`: `None` when the answer is local (asked
/// for, or the service runs without a group).
pub async fn group_report(
    app: &Arc<AppState>,
    scope: Option<Scope>,
    as_of: Option<i64>,
) -> Option<Result<Arc<GroupReport>, Response>> {
    let g = app.group.as_ref()?;
    if scope == Some(Scope::Local) {
        return None;
    }
    Some(
        g.report(app.clone(), as_of)
            .await
            .map_err(|e| json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    )
}

/// The internal routes, guarded by the peer token.
pub fn internal_routes(app: Arc<AppState>, token: PeerToken) -> Router {
    Router::new()
        .route("/internal/v1/aggregates", get(aggregates))
        .route("/internal/v1/customers/{id}", get(customer))
        .with_state(app)
        .route_layer(from_fn_with_state(token, require_peer))
}

async fn require_peer(State(token): State<PeerToken>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let given = req.headers().get(PEER_TOKEN_HEADER).map(|v| v.as_bytes());
    if token.allows(given, peer) {
        next.run(req).await
    } else {
        json_error(
            StatusCode::FORBIDDEN,
            if token.enabled() {
                "the internal endpoint needs the peer token"
            } else {
                "the internal endpoint answers loopback peers only when no peer token is configured"
            },
        )
    }
}

/// Query of `/internal/v1/aggregates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatesQuery {
    /// The instant, in microseconds since the epoch (none: before any event).
    as_of_us: Option<i64>,
}

async fn aggregates(
    State(app): State<Arc<AppState>>,
    Params(q): Params<AggregatesQuery>,
) -> Response {
    let Some(member) = app.group.as_ref().map(|g| g.id.clone()) else {
        return json_error(StatusCode::NOT_FOUND, "not running in a group");
    };
    let a = app.clone();
    match tokio::task::spawn_blocking(move || local_answers(&a, q.as_of_us)).await {
        Ok(Ok(partitions)) => Json(PeerAggregates { member, partitions }).into_response(),
        Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn customer(State(app): State<Arc<AppState>>, PathParam(id): PathParam) -> Response {
    let Some(member) = app.group.as_ref().map(|g| g.id.clone()) else {
        return json_error(StatusCode::NOT_FOUND, "not running in a group");
    };
    let as_of = app.snapshot().report.as_of;
    let a = app.clone();
    match tokio::task::spawn_blocking(move || a.customer(&id)).await {
        Ok(Ok(Some(customer))) => Json(PeerCustomer {
            member,
            as_of,
            customer,
        })
        .into_response(),
        Ok(Ok(None)) => json_error(StatusCode::NOT_FOUND, "not held here"),
        Ok(Err(e)) => json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
