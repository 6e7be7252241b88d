//! The HTTP side: one router per resource of the API, and the pages, merged here into
//! the route table.

mod auth;
mod books;
mod campaigns;
mod error;
mod funds;
mod health;
mod json;
mod live;
mod openapi;
mod pages;
mod pledges;
mod sandbox;
mod streams;
mod webhooks;

pub use error::{ApiError, ErrorBody};
pub use json::{BODY_LIMIT, Json, RawBody};
pub use openapi::ApiDoc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use std::time::Instant;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// The whole route table.
pub fn router(state: AppState) -> Router {
    let mut routes = Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(funds::router())
        .merge(campaigns::router())
        .merge(streams::router())
        .merge(pledges::router())
        .merge(live::router())
        .merge(webhooks::router())
        .merge(books::router())
        .merge(pages::router(&state));
    if state.config.sandbox_payments {
        routes = routes.merge(sandbox::router());
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(pledges::cors(&state.config))
        .layer(middleware::from_fn(record_metrics))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts requests and their latency by route template, never by raw path.
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("livefund_http_requests_total", &labels).increment(1);
    metrics::histogram!("livefund_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
