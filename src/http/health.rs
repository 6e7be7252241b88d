//! Health, readiness and metrics.

use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use std::time::Duration;

/// How long a readiness probe waits for each backend.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok` or `unavailable`.
    postgres: &'static str,
    redis: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Up")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 only while PostgreSQL and Redis both answer; 503 otherwise.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Both backends answer", body = Readiness),
        (status = 503, description = "A backend does not answer", body = Readiness),
    )
)]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let postgres = async {
        sqlx::query_scalar::<_, i32>("select 1")
            .fetch_one(&state.db)
            .await
            .is_ok()
    };
    let redis = async {
        let mut conn = state.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    };
    let (pg_ok, redis_ok) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, postgres),
        tokio::time::timeout(PROBE_TIMEOUT, redis)
    );
    let word = |ok: Result<bool, _>| {
        if ok.unwrap_or(false) {
            "ok"
        } else {
            "unavailable"
        }
    };
    let body = Readiness {
        postgres: word(pg_ok),
        redis: word(redis_ok),
    };
    let status = if body.postgres == "ok" && body.redis == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
