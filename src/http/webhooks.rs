//! `POST /api/v1/webhooks/payments`: the payment provider's signed deliveries. The raw
//! body is verified before it is parsed; the answer is 2xx only once the event's effect
//! is committed.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde::Serialize;
use std::time::Duration;

use super::{ApiError, RawBody};
use crate::ledger::{Outcome, record_invalid};
use crate::payments::PaymentEvent;
use crate::payments::signature::{self, HEADER};
use crate::state::AppState;

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
        (status = 200, description = "Committed (or a replay of a committed event); a signed body that cannot be understood is recorded as an `invalid_event` exception", body = Receipt),
        (status = 401, description = "bad_signature: nothing recorded", body = super::ErrorBody),
        (status = 413, description = "payload_too_large", body = super::ErrorBody),
        (status = 503, description = "unavailable: nothing committed, deliver again", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "webhook", skip_all, fields(event_id, pledge_id, outcome))]
async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::Json<Receipt>, ApiError> {
    verify(&state, &headers, &body)?;
    let event = match understand(&body) {
        Ok(event) => event,
        Err(reason) => {
            let event_id = record_invalid(&state.db, &body, &reason).await?;
            return Ok(receipt(event_id, &Outcome::Exception("invalid_event")));
        }
    };
    let event_id = event.event_id.clone();
    let span = tracing::Span::current();
    span.record("event_id", tracing::field::display(&event_id));
    span.record("pledge_id", tracing::field::display(&event.pledge_id));
    let settled = tokio::time::timeout(SETTLE_TIMEOUT, state.ledger.settle(event, body)).await;
    let outcome = match settled {
        Ok(Ok(outcome)) => outcome,
        // Not committed, or not known to be: the provider delivers again, and a
        // replay of a committed event changes nothing.
        Ok(Err(_)) | Err(_) => return Err(ApiError::Unavailable("the ledger")),
    };
    Ok(receipt(event_id, &outcome))
}

/// The longest a delivery waits for its commit before it is answered 503.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The event a signed body carries, or why it carries none.
fn understand(body: &[u8]) -> Result<PaymentEvent, String> {
    let event: PaymentEvent = super::json::parse(body).map_err(|e| e.to_string())?;
    let event = event.normalized();
    event.check().map_err(|invalid| invalid.to_string())?;
    Ok(event)
}

fn receipt(event_id: String, outcome: &Outcome) -> axum::Json<Receipt> {
    tracing::Span::current().record("outcome", outcome.word());
    metrics::counter!("livefund_webhooks_total", "outcome" => outcome.word()).increment(1);
    axum::Json(Receipt {
        received: true,
        event_id,
        outcome: outcome.word(),
        exception: match outcome {
            Outcome::Exception(kind) => Some(kind),
            _ => None,
        },
    })
}

fn verify(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<(), ApiError> {
    let header = headers.get(HEADER).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    signature::verify(header, body, &state.config.webhook_secrets, now).map_err(|e| {
        metrics::counter!("livefund_webhooks_total", "outcome" => "bad_signature").increment(1);
        ApiError::BadSignature(e.to_string())
    })
}
