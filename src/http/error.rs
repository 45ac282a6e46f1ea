//! JSON error answers and the extractors whose rejections are JSON too.
//!
//! Owns [`json_error`], the router's fallbacks (404 for an unknown path, 405 for a known
//! path with another method) and [`Params`] / [`PathParam`], which read the query string
//! and a path segment like axum's `Query` / `Path` but answer a bad one with a JSON 400.
//!
//! Guarantees: every 4xx that keypulse's handlers produce has a JSON body
//! `{"error": "...", ...}`. (Malformed HTTP that hyper refuses before any handler runs,
//! e.g. a broken request line or an oversized head, gets hyper's own empty answer.)

use axum::extract::{FromRequestParts, OriginalUri, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

/// `{"error": message}` with `status`.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A bad request parameter: answered as a JSON 400 with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        json_error(StatusCode::BAD_REQUEST, self.0)
    }
}

/// The fallback for unknown paths: a JSON 404 naming the path.
pub async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not found", "path": uri.path() })),
    )
        .into_response()
}

/// The fallback for a known path asked with another method: a JSON 405.
pub async fn method_not_allowed(OriginalUri(uri): OriginalUri) -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "error": "method not allowed", "path": uri.path() })),
    )
        .into_response()
}

/// The query string read into `T`; a bad one is a JSON 400 saying what is wrong.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| Params(q))
            .map_err(|e| {
                json_error(
                    StatusCode::BAD_REQUEST,
                    format!("bad query string: {}", e.body_text()),
                )
            })
    }
}

/// One path parameter as a string; a bad one is a JSON 400.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| PathParam(p))
            .map_err(|e| {
                json_error(
                    StatusCode::BAD_REQUEST,
                    format!("bad path: {}", e.body_text()),
                )
            })
    }
}
