//! The built-in dashboard: static pages embedded in the binary, no CDN, no build step.
//!
//! Owns the assets (`index.html`, `customer.html`, `app.js`, `app.css`, all hand-written in
//! this folder and compiled in with `include_str!`) and their routes. The pages read the
//! live service's JSON API: `/` draws the bounded `/api/v1/summary` (never the whole
//! report) and the customer page draws `/api/v1/customers/{id}` (its first 50 licenses);
//! both refresh every 5 s, and sign in with a bearer token when the API answers 401.
//! Every chart is an element with `data-chart="NAME"` that gets `data-rendered="true"`
//! once drawn with data (`scripts/check-dashboard` checks that in a headless Chromium).
//!
//! Guarantees: the routes need no state and no file system, so [`dashboard_routes`] merges
//! into any axum router (`Router<S>` for any state `S`); every asset is served with its
//! content type and `Cache-Control: no-cache`, so a new binary's assets show at once.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub const INDEX_HTML: &str = include_str!("index.html");
pub const CUSTOMER_HTML: &str = include_str!("customer.html");
pub const APP_JS: &str = include_str!("app.js");
pub const APP_CSS: &str = include_str!("app.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
}

async fn index() -> impl IntoResponse {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn customer() -> impl IntoResponse {
    asset("text/html; charset=utf-8", CUSTOMER_HTML)
}

async fn app_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The dashboard's routes: `/` (and `/index.html`), the customer page at
/// `/customer.html?id=ID` and `/customers/{id}`, and `/assets/app.js`, `/assets/app.css`.
/// Merge it into the service's router: `router.merge(dashboard_routes())`.
pub fn dashboard_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/customer.html", get(customer))
        .route("/customers/{id}", get(customer))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_name_only_embedded_assets() {
        for page in [INDEX_HTML, CUSTOMER_HTML] {
            assert!(page.contains("/assets/app.js") && page.contains("/assets/app.css"));
            assert!(
                !page.contains("http://") && !page.contains("https://"),
                "no CDN"
            );
        }
        assert!(!APP_JS.contains("https://") && !APP_CSS.contains("https://"));
        // Every chart of the overview names itself for the headless check.
        for chart in [
            "mrr",
            "licenses-by-plan",
            "activation",
            "churn-risk",
            "upgrade-pipeline",
            "countries",
            "errors",
            "dav",
            "ttfv",
            "utilization",
            "emails",
        ] {
            assert!(
                INDEX_HTML.contains(&format!("data-chart=\"{chart}\"")),
                "{chart}"
            );
        }
    }
}
