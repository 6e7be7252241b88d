//! `POST /api/v1/webhooks/payments`: the payment provider's signed deliveries. The raw
//! body is verified before it is parsed; the answer is 2xx only once the event's effect
//! is committed.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde::Serialize;

use super::{ApiError, RawBody};
use crate::AppState;
use crate::ledger::Outcome;
use crate::payments::PaymentEvent;
use crate::payments::signature::{self, HEADER};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/webhooks/payments", post(receive))
}

/// The answer to a delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    received: bool,
    event_id: String,
    /// `gift`, `refund`, `failed`, `ignored` (a replay or a second event for a
    /// transaction), `test`, or `exception` (recorded for reconciliation, not counted).
    outcome: &'static str,
    /// For an exception, its kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    exception: Option<&'static str>,
}

/// Receive a payment provider's event.
#[utoipa::path(
    post, path = "/api/v1/webhooks/payments", tag = "provider",
    request_body = PaymentEvent,
    params(("Livefund-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<raw body>\")>")),
    responses(
        (status = 200, description = "Committed (or a replay of a committed event)", body = Receipt),
        (status = 400, description = "Signed, but not a valid event", body = super::ErrorBody),
        (status = 401, description = "bad_signature: nothing recorded", body = super::ErrorBody),
        (status = 413, description = "payload_too_large", body = super::ErrorBody),
        (status = 503, description = "unavailable: nothing committed, deliver again", body = super::ErrorBody),
    )
)]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::Json<Receipt>, ApiError> {
    verify(&state, &headers, &body)?;
    let event: PaymentEvent = super::json::parse(&body)?;
    event.check().map_err(|invalid| ApiError::BadRequest {
        message: invalid.to_string(),
        field: Some(invalid.field),
    })?;
    let event_id = event.event_id.clone();
    let outcome = state
        .settler
        .settle(event)
        .await
        .map_err(|_| ApiError::Unavailable("the ledger"))?;
    metrics::counter!("livefund_webhooks_total", "outcome" => outcome.word()).increment(1);
    Ok(axum::Json(Receipt {
        received: true,
        event_id,
        outcome: outcome.word(),
        exception: match outcome {
            Outcome::Exception(kind) => Some(kind),
            _ => None,
        },
    }))
}

fn verify(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(), ApiError> {
    let header = headers.get(HEADER).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    signature::verify(header, body, &state.config.webhook_secrets, now).map_err(|e| {
        metrics::counter!("livefund_webhooks_total", "outcome" => "bad_signature").increment(1);
        ApiError::BadSignature(e.to_string())
    })
}
