//! Viewers' pledges over HTTP: `POST /api/v1/pledges` and `GET /api/v1/pledges/{id}`.

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{ApiError, Json};
use crate::config::Config;
use crate::domain::{PledgeFields, Slug};
use crate::pledges::{Accepted, PledgeView};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/pledges", post(create))
        .route("/api/v1/pledges/{pledge_id}", get(show))
}

/// Lets browser pages from the allowed Origins call the pledge and read APIs (CORS),
/// so an overlay served elsewhere can pledge. Operator calls stay closed to browsers:
/// `Authorization` is not an allowed header.
pub fn cors(config: &Config) -> CorsLayer {
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// Refuses a browser request from an Origin that is not allowed (CONTRACT §2).
pub fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => Ok(()),
        Some(Ok(origin)) if state.config.origin_allowed(origin) => Ok(()),
        Some(_) => Err(ApiError::Forbidden("this Origin is not allowed")),
    }
}

/// Pledge to a stream. 201 for a new pledge; 200 with the first answer when the same
/// idempotency key comes again with the same body.
#[utoipa::path(
    post, path = "/api/v1/pledges", tag = "viewer",
    request_body = PledgeFields,
    responses(
        (status = 201, description = "Accepted, pending payment", body = Accepted),
        (status = 200, description = "The first answer to this idempotency key", body = Accepted),
        (status = 400, description = "Malformed JSON or unknown field", body = super::ErrorBody),
        (status = 403, description = "Origin not allowed", body = super::ErrorBody),
        (status = 404, description = "No such stream", body = super::ErrorBody),
        (status = 409, description = "idempotency_conflict, campaign_closed or campaign_not_live", body = super::ErrorBody),
        (status = 422, description = "amount_out_of_range, currency_mismatch, unknown_designation or invalid_request", body = super::ErrorBody),
        (status = 429, description = "rate_limited", body = super::ErrorBody),
        (status = 503, description = "unavailable", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "pledge", skip_all, fields(peer = %peer))]
async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(fields): Json<PledgeFields>,
) -> Result<(StatusCode, axum::Json<Accepted>), ApiError> {
    check_origin(&state, &headers)?;
    if !state.pledge_rate.allow(peer.ip()) {
        metrics::counter!("livefund_pledges_refused_total", "code" => "rate_limited").increment(1);
        return Err(ApiError::RateLimited);
    }
    let Some(stream) = fields.stream.as_deref() else {
        return Err(ApiError::BadRequest {
            message: "missing field `stream`".into(),
            field: Some("stream".into()),
        });
    };
    let not_found = || ApiError::not_found("stream", stream);
    let slug = Slug::parse("stream", stream).map_err(|_| not_found())?;
    let stream = state.catalog.stream(&slug).await?.ok_or_else(not_found)?;
    let accepted = state.pledges.pledge(&stream, &fields).await?;
    let status = if accepted.replay {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(accepted)))
}

/// A pledge's status; the pledge id is the viewer's capability to read it.
#[utoipa::path(
    get, path = "/api/v1/pledges/{pledge_id}", tag = "viewer",
    params(("pledge_id" = String, Path, description = "The pledge id")),
    responses(
        (status = 200, description = "The pledge", body = PledgeView),
        (status = 404, description = "No such pledge", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "read_pledge", skip_all, fields(pledge_id = %pledge_id))]
async fn show(
    State(state): State<AppState>,
    Path(pledge_id): Path<String>,
) -> Result<axum::Json<PledgeView>, ApiError> {
    let not_found = || ApiError::NotFound("no such pledge".into());
    let id: uuid::Uuid = pledge_id.parse().map_err(|_| not_found())?;
    let pledge = state.pledges.find(&id).await?.ok_or_else(not_found)?;
    Ok(axum::Json(pledge))
}
