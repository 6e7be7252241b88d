//! The sandbox provider's checkout actions (mounted only with sandbox payments on):
//! `POST /sandbox/checkout/{pledge_id}/pay`, `.../fail` and `.../refund`. Each sends the
//! service the same signed webhook a real provider would, over HTTP, and answers with
//! the event sent and the webhook's reply.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::pledges::check_origin;
use super::{ApiError, RawBody};
use crate::domain::Invalid;
use crate::domain::PledgeStatus;
use crate::payments::PaymentEvent;
use crate::pledges::PledgeView;
use crate::sandbox::{Delivery, SandboxError, SandboxProvider};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandbox/checkout/{pledge_id}/pay", post(pay))
        .route("/sandbox/checkout/{pledge_id}/fail", post(fail))
        .route("/sandbox/checkout/{pledge_id}/refund", post(refund))
}

/// What the sandbox sent and what the webhook answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SandboxDelivery {
    /// The event delivered, exactly as signed and sent.
    event: PaymentEvent,
    /// The webhook's final HTTP status (after any retries).
    webhook_status: u16,
    /// The webhook's answer: its receipt, or its error body.
    #[schema(value_type = Object)]
    webhook_response: serde_json::Value,
}

impl From<Delivery> for SandboxDelivery {
    fn from(d: Delivery) -> Self {
        Self {
            event: d.event,
            webhook_status: d.status,
            webhook_response: d.body,
        }
    }
}

/// An optional refund body; without it (or without `amount`) the whole pledge is refunded.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units to refund, from 1 up to the pledge's amount.
    amount: Option<i64>,
}

/// Pay the pledge in full (`payment.succeeded`, fee 0.6 %).
#[utoipa::path(
    post, path = "/sandbox/checkout/{pledge_id}/pay", tag = "sandbox",
    params(("pledge_id" = String, Path, description = "The pledge id")),
    responses(
        (status = 200, description = "Delivered; the webhook's answer is included", body = SandboxDelivery),
        (status = 403, description = "Origin not allowed", body = super::ErrorBody),
        (status = 404, description = "No such pledge, or sandbox payments are off", body = super::ErrorBody),
        (status = 409, description = "The pledge is not pending", body = super::ErrorBody),
        (status = 502, description = "unavailable: the webhook kept failing or did not answer", body = super::ErrorBody),
        (status = 503, description = "unavailable: the pledge could not be read", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "sandbox_pay", skip_all, fields(pledge_id = %pledge_id))]
async fn pay(
    State(state): State<AppState>,
    Path(pledge_id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<SandboxDelivery>, ApiError> {
    check_origin(&state, &headers)?;
    let pledge = pledge(&state, &pledge_id).await?;
    require(&pledge, PledgeStatus::Pending, "paid")?;
    let delivery = provider(&state)?.pay(&pledge).await;
    answer(delivery)
}

/// Decline the pledge's payment (`payment.failed`).
#[utoipa::path(
    post, path = "/sandbox/checkout/{pledge_id}/fail", tag = "sandbox",
    params(("pledge_id" = String, Path, description = "The pledge id")),
    responses(
        (status = 200, description = "Delivered; the webhook's answer is included", body = SandboxDelivery),
        (status = 403, description = "Origin not allowed", body = super::ErrorBody),
        (status = 404, description = "No such pledge, or sandbox payments are off", body = super::ErrorBody),
        (status = 409, description = "The pledge is not pending", body = super::ErrorBody),
        (status = 502, description = "unavailable: the webhook kept failing or did not answer", body = super::ErrorBody),
        (status = 503, description = "unavailable: the pledge could not be read", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "sandbox_fail", skip_all, fields(pledge_id = %pledge_id))]
async fn fail(
    State(state): State<AppState>,
    Path(pledge_id): Path<String>,
    headers: HeaderMap,
) -> Result<axum::Json<SandboxDelivery>, ApiError> {
    check_origin(&state, &headers)?;
    let pledge = pledge(&state, &pledge_id).await?;
    require(&pledge, PledgeStatus::Pending, "declined")?;
    let delivery = provider(&state)?.fail(&pledge).await;
    answer(delivery)
}

/// Refund the pledge's gift, in full or in part (`refund.succeeded`).
#[utoipa::path(
    post, path = "/sandbox/checkout/{pledge_id}/refund", tag = "sandbox",
    params(("pledge_id" = String, Path, description = "The pledge id")),
    request_body(content = Option<RefundRequest>, description = "Optional; the whole amount by default"),
    responses(
        (status = 200, description = "Delivered; the webhook's answer is included", body = SandboxDelivery),
        (status = 400, description = "Malformed JSON or unknown field", body = super::ErrorBody),
        (status = 403, description = "Origin not allowed", body = super::ErrorBody),
        (status = 404, description = "No such pledge, or sandbox payments are off", body = super::ErrorBody),
        (status = 409, description = "The pledge is not confirmed (paid)", body = super::ErrorBody),
        (status = 422, description = "invalid_request: amount not between 1 and the pledge's amount", body = super::ErrorBody),
        (status = 502, description = "unavailable: the webhook kept failing or did not answer", body = super::ErrorBody),
        (status = 503, description = "unavailable: the pledge could not be read", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "sandbox_refund", skip_all, fields(pledge_id = %pledge_id))]
async fn refund(
    State(state): State<AppState>,
    Path(pledge_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::Json<SandboxDelivery>, ApiError> {
    check_origin(&state, &headers)?;
    let request: RefundRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RefundRequest::default()
    } else {
        super::json::parse(&body)?
    };
    let pledge = pledge(&state, &pledge_id).await?;
    require(&pledge, PledgeStatus::Confirmed, "refunded")?;
    let amount = request.amount.unwrap_or(pledge.amount);
    if !(1..=pledge.amount).contains(&amount) {
        return Err(Invalid::new(
            "amount",
            format!(
                "a refund must be between 1 and the pledge's amount ({})",
                pledge.amount
            ),
        )
        .into());
    }
    let id: uuid::Uuid = pledge_id
        .parse()
        .map_err(|_| ApiError::NotFound("no such pledge".into()))?;
    let Some(paid_by) = crate::ledger::gift_txn(&state.db, &id).await? else {
        return Err(ApiError::Conflict(
            "this pledge has no settled gift to refund".into(),
        ));
    };
    let delivery = provider(&state)?
        .refund(&pledge, &paid_by, amount, None)
        .await;
    answer(delivery)
}

async fn pledge(state: &AppState, pledge_id: &str) -> Result<PledgeView, ApiError> {
    let not_found = || ApiError::NotFound("no such pledge".into());
    let id: uuid::Uuid = pledge_id.parse().map_err(|_| not_found())?;
    state.pledges.find(&id).await?.ok_or_else(not_found)
}

/// Refuses an action on a pledge that is not in the `wanted` status.
fn require(pledge: &PledgeView, wanted: PledgeStatus, action: &str) -> Result<(), ApiError> {
    if pledge.status == wanted {
        return Ok(());
    }
    Err(ApiError::Conflict(format!(
        "this pledge is {}: only a {wanted} pledge can be {action}",
        pledge.status
    )))
}

fn provider(state: &AppState) -> Result<SandboxProvider, ApiError> {
    SandboxProvider::new(&state.config).map_err(|e| {
        tracing::error!(error = %e, "sandbox provider unavailable");
        ApiError::Upstream("the sandbox provider is unavailable".into())
    })
}

fn answer(
    delivery: Result<Delivery, SandboxError>,
) -> Result<axum::Json<SandboxDelivery>, ApiError> {
    match delivery {
        Ok(delivery) => Ok(axum::Json(delivery.into())),
        Err(e) => {
            tracing::warn!(error = %e, "sandbox webhook delivery failed");
            Err(ApiError::Upstream(match e {
                SandboxError::Rejected {
                    status, attempts, ..
                } => format!(
                    "the payment webhook answered {status} after {attempts} attempt(s); try again"
                ),
                SandboxError::Unreachable { attempts, .. } => format!(
                    "the payment webhook did not answer after {attempts} attempt(s); try again"
                ),
                SandboxError::Client(_) | SandboxError::Encode(_) => {
                    "the sandbox provider could not send the event".into()
                }
            }))
        }
    }
}
