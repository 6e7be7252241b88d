//! The one error type of the HTTP API, rendered as CONTRACT §3 says:
//! `{"error": {"code", "message"}}`. Client mistakes map to their codes; database and
//! internal failures become an opaque 500 (or 503 when a backend is unreachable) and
//! are logged once, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::catalog::CatalogError;
use crate::domain::{Invalid, Refusal};
use crate::pledges::PledgeError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, a wrong type or an unknown field: 400 `invalid_request`.
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    /// Well-formed but invalid value: 422 `invalid_request`, naming the field.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    BadSignature(String),
    #[error("too many requests: slow down")]
    RateLimited,
    #[error(transparent)]
    Pledge(#[from] PledgeError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the resource is not in a state that allows it: 409
    /// `invalid_request`.
    #[error("{0}")]
    Conflict(String),
    /// A campaign may not close on the reconciliation it has: 409 `not_reconciled`.
    #[error("{0}")]
    NotReconciled(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// PostgreSQL or Redis did not answer: 503 `unavailable`.
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// A service this one called failed or did not answer: 502 `unavailable`.
    #[error("{0}")]
    Upstream(String),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, snake_case.
    code: &'static str,
    /// For people; never a stack trace, SQL or secret.
    message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    pub fn not_found(what: &str, slug: &str) -> Self {
        ApiError::NotFound(format!("no {what} named {slug:?}"))
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BadSignature(_) => (StatusCode::UNAUTHORIZED, "bad_signature"),
            ApiError::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Pledge(e) => (pledge_status(e), e.code()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "invalid_request"),
            ApiError::NotReconciled(_) => (StatusCode::CONFLICT, "not_reconciled"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "unavailable"),
            ApiError::Unavailable(_) | ApiError::Redis(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Database(e) if is_unreachable(e) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Database(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

fn pledge_status(e: &PledgeError) -> StatusCode {
    match e {
        PledgeError::Refused(Refusal::CampaignClosed | Refusal::CampaignNotLive(_))
        | PledgeError::IdempotencyConflict => StatusCode::CONFLICT,
        PledgeError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PledgeError::Redis(_) | PledgeError::Database(_) | PledgeError::Rebuild(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Errors that mean "PostgreSQL is not there right now" rather than "this query is wrong".
fn is_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    )
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Database(e)
    }
}

impl From<crate::ledger::RebuildError> for ApiError {
    fn from(e: crate::ledger::RebuildError) -> Self {
        match e {
            crate::ledger::RebuildError::Database(e) => ApiError::Database(e),
            crate::ledger::RebuildError::Redis(e) => ApiError::Redis(e),
            crate::ledger::RebuildError::UnknownCampaign(c) => ApiError::not_found("campaign", &c),
            crate::ledger::RebuildError::Busy => ApiError::Unavailable("the live store"),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::AlreadyExists(what) => {
                ApiError::AlreadyExists(format!("a {what} with this slug already exists"))
            }
            CatalogError::UnknownFund(slug) => {
                ApiError::Invalid(Invalid::new("fund", format!("no fund named {slug:?}")))
            }
            CatalogError::Database(e) => ApiError::Database(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let (message, field) = match &self {
            ApiError::BadRequest { message, field } => (message.clone(), field.clone()),
            ApiError::Invalid(invalid)
            | ApiError::Pledge(PledgeError::Refused(Refusal::Invalid(invalid))) => {
                (invalid.to_string(), Some(invalid.field.clone()))
            }
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                let message = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "the fund database is unavailable, try again"
                } else {
                    "internal error"
                };
                (message.to_owned(), None)
            }
            ApiError::Redis(e) => {
                tracing::error!(error = %e, "redis error");
                ("the live store is unavailable, try again".to_owned(), None)
            }
            other => (other.to_string(), None),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field,
            },
        };
        (status, Json(body)).into_response()
    }
}
