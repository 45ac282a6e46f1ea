//! The HTTP side of `keypulse run`: routes, authentication, limits, listeners.
//!
//! Routes of the main listener (`http.bind`):
//! - `GET /api/v1/report`: the report document (SPEC §3) of the latest snapshot, complete;
//!   `?as_of=RFC3339` computes it at a later instant (refused, JSON 400, before the
//!   snapshot's `as_of`: the state has no history);
//! - `GET /api/v1/summary?top=N`: the dashboard's bounded summary ([`summary`]);
//! - `GET /api/v1/customers/{id}`: one customer (health with reasons and points, licenses
//!   with their upgrade triggers, notifications), licenses paged by `limit`/`offset`;
//! - `GET /api/v1/churn-risk`, `/api/v1/upgrade-pipeline`, `/api/v1/sharing-suspects` (SPEC §8.3), `/api/v1/notifications`: the
//!   report's lists, paged ([`paging`]);
//! - `GET /metrics`, `/healthz`, `/readyz`; and the dashboard's pages ([`crate::dashboard`]);
//! - `GET /internal/v1/...`: what the group's instances ask each other ([`group`]), behind
//!   the peer token, not the user's.
//!
//! The report, the summary and the lists answer for the whole consumer group when the
//! service runs in one (SPEC §8.8: `complete`, `missing_partitions`); `?scope=local` gives
//! this instance's own share.
//!
//! The admin listener (`http.admin_bind`, optional) serves only `/healthz`, `/readyz` and
//! `/metrics`, with its own accept loop and connection cap ([`server`]).
//!
//! Guarantees: with a token configured ([`auth`]), the API answers 401 without it; the
//! probes never need it, `/metrics` only with `http.metrics_require_auth`; the dashboard's
//! static pages carry no data and stay open (they ask for the token and send it with
//! every API call). Every 4xx is a JSON body ([`error`]). Handlers read the snapshot that
//! the refresher replaces every `http.refresh_ms`; they never lock the fold.

pub mod api;
pub mod auth;
pub mod config;
mod conn;
pub mod error;
pub mod group;
pub mod paging;
pub mod server;
pub mod summary;

use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;

pub use auth::Auth;

use crate::app_state::AppState;

/// Who may call what.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The bearer token (or none).
    pub auth: Auth,
    /// Whether `/metrics` needs the token too.
    pub metrics_require_auth: bool,
    /// The instances' shared token for the internal routes (none: loopback peers only).
    pub peer_token: crate::group::PeerToken,
}

/// The API routes that the token guards (add new `/api/v1/...` routes here).
fn api_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/report", get(api::report))
        .route("/api/v1/summary", get(api::summary))
        .route("/api/v1/customers/{id}", get(api::customer))
        .route("/api/v1/churn-risk", get(api::churn_risk))
        .route("/api/v1/upgrade-pipeline", get(api::upgrade_pipeline))
        .route("/api/v1/sharing-suspects", get(api::sharing_suspects))
        .route("/api/v1/notifications", get(api::notifications))
}

/// `/healthz`, `/readyz` (always open) and `/metrics` (open unless configured).
fn probe_routes(app: Arc<AppState>, access: &Access) -> Router {
    let mut metrics = Router::new()
        .route("/metrics", get(api::metrics))
        .with_state(app.clone());
    if access.metrics_require_auth {
        metrics = metrics.route_layer(from_fn_with_state(access.auth.clone(), auth::require_token));
    }
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .with_state(app)
        .merge(metrics)
}

/// JSON answers for unknown paths and methods.
fn with_fallbacks(r: Router) -> Router {
    r.fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
}

/// The main listener's routes.
pub fn router(app: Arc<AppState>, access: &Access) -> Router {
    let api = api_routes()
        .with_state(app.clone())
        .route_layer(from_fn_with_state(access.auth.clone(), auth::require_token));
    with_fallbacks(
        probe_routes(app.clone(), access)
            .merge(api)
            .merge(group::internal_routes(app, access.peer_token.clone()))
            .merge(crate::dashboard::dashboard_routes()),
    )
}

/// The admin listener's routes: the probes and `/metrics` only.
pub fn admin_router(app: Arc<AppState>, access: &Access) -> Router {
    with_fallbacks(probe_routes(app, access))
}
