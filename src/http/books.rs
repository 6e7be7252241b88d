//! A campaign's books over HTTP (CONTRACT §4, §8): operators upload the provider's
//! statement and get the reconciliation report, read the latest report, export the
//! settled gifts and close the campaign; anyone reads the disclosure.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::TryStreamExt;
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::auth::Operator;
use super::campaigns::find_campaign;
use super::{ApiError, RawBody};
use crate::closing::{self, CloseError, CloseRequest, Closed, Disclosure, GiftEntry};
use crate::reconcile::{self, ImportError, Progress, Report};
use crate::state::AppState;

/// The largest statement taken over HTTP (a million rows is about 100 MB).
pub const STATEMENT_LIMIT: u64 = 1024 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/campaigns/{campaign}/statements", post(upload))
        .route("/api/v1/campaigns/{campaign}/reconciliation", get(latest))
        .route("/api/v1/campaigns/{campaign}/gifts", get(gifts))
        .route("/api/v1/campaigns/{campaign}/close", post(close))
        .route("/api/v1/campaigns/{campaign}/disclosure", get(disclosure))
}

/// `?format=json` (the default) or `?format=csv`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Format {
    format: Option<String>,
}

impl Format {
    fn csv(&self) -> Result<bool, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(ApiError::BadRequest {
                message: format!("format {other:?} is neither json nor csv"),
                field: Some("format".into()),
            }),
        }
    }
}

fn csv_response(body: impl Into<Body>, file_name: &str) -> Response {
    let disposition = format!("attachment; filename=\"{file_name}\"");
    let body: Body = body.into();
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// A kept report: its JSON as made, or its CSV (every discrepancy) streamed.
fn report_response(state: &AppState, id: i64, report: Report, json: String, csv: bool) -> Response {
    if !csv {
        return ([(header::CONTENT_TYPE, "application/json")], json).into_response();
    }
    let name = format!("{}-reconciliation.csv", report.campaign);
    let chunks = reconcile::csv_chunks(state.db.clone(), id, report);
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        let chunk = chunks.recv().await?;
        Some((chunk.map_err(std::io::Error::other), chunks))
    });
    csv_response(Body::from_stream(stream), &name)
}

/// Upload the provider's statement (CSV, CONTRACT §8) and reconcile the campaign with it.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{campaign}/statements", tag = "operator",
    params(("campaign" = String, Path, description = "The campaign's slug"), Format),
    request_body(content = String, content_type = "text/csv",
                 description = "provider_txn_id,pledge_id,type,amount,currency,fee,occurred_at[,refunded_txn_id]"),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The reconciliation report", body = Report),
        (status = 401, description = "Missing or wrong operator token", body = super::ErrorBody),
        (status = 404, description = "No such campaign", body = super::ErrorBody),
        (status = 413, description = "The statement is over 1 GiB", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "statement_upload", skip_all, fields(campaign = %slug))]
async fn upload(
    _: Operator,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(format): Query<Format>,
    body: Body,
) -> Result<Response, ApiError> {
    let csv = format.csv()?;
    let campaign = find_campaign(&state, &slug).await?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let imported = reconcile::import(
        &state.db,
        campaign.id,
        reader,
        STATEMENT_LIMIT,
        Progress::default(),
    )
    .await
    .map_err(|e| match e {
        ImportError::Database(e) => ApiError::Database(e),
        ImportError::TooLarge(limit) => ApiError::PayloadTooLarge {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        },
        ImportError::Read(reason) => ApiError::BadRequest {
            message: format!("the statement could not be read to its end: {reason}"),
            field: None,
        },
    })?;
    tracing::info!(
        rows = imported.rows,
        bad_rows = imported.bad_rows,
        "statement stored"
    );
    let kept = reconcile::reconcile(
        &state.ledger.stores,
        &campaign.slug,
        campaign.id,
        imported.statement_id,
    )
    .await
    .map_err(reconcile_error)?;
    let json = serde_json::to_string(&kept.report)
        .map_err(|e| ApiError::Upstream(format!("the report could not be written: {e}")))?;
    Ok(report_response(&state, kept.id, kept.report, json, csv))
}

fn reconcile_error(e: reconcile::ReconcileError) -> ApiError {
    match e {
        reconcile::ReconcileError::Database(e) => ApiError::Database(e),
        reconcile::ReconcileError::Live(e) => e.into(),
        reconcile::ReconcileError::Redis(e) => ApiError::Redis(e),
        reconcile::ReconcileError::Encode(e) => ApiError::Upstream(e),
        reconcile::ReconcileError::Busy => ApiError::Unavailable("the campaign's reconciliation"),
    }
}

/// The latest reconciliation report of the campaign, as it was made.
#[utoipa::path(
    get, path = "/api/v1/campaigns/{campaign}/reconciliation", tag = "operator",
    params(("campaign" = String, Path, description = "The campaign's slug"), Format),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The latest report", body = Report),
        (status = 401, description = "Missing or wrong operator token", body = super::ErrorBody),
        (status = 404, description = "No such campaign, or no report yet", body = super::ErrorBody),
    )
)]
async fn latest(
    _: Operator,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(format): Query<Format>,
) -> Result<Response, ApiError> {
    let csv = format.csv()?;
    let campaign = find_campaign(&state, &slug).await?;
    let Some((id, _, text)) = reconcile::latest(&state.db, campaign.id).await? else {
        return Err(ApiError::NotFound(format!(
            "campaign {slug:?} has no reconciliation report yet"
        )));
    };
    let report: Report = serde_json::from_str(&text)
        .map_err(|e| ApiError::Upstream(format!("a stored report could not be read: {e}")))?;
    Ok(report_response(&state, id, report, text, csv))
}

/// The settled ledger: one entry per gift.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct GiftList {
    gifts: Vec<GiftEntry>,
}

/// The settled ledger of the campaign, one entry per gift, in the digest's order.
#[utoipa::path(
    get, path = "/api/v1/campaigns/{campaign}/gifts", tag = "operator",
    params(("campaign" = String, Path, description = "The campaign's slug"), Format),
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "The gifts (JSON, or CSV with a byte-order mark)", body = GiftList),
        (status = 401, description = "Missing or wrong operator token", body = super::ErrorBody),
        (status = 404, description = "No such campaign", body = super::ErrorBody),
    )
)]
async fn gifts(
    _: Operator,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Query(format): Query<Format>,
) -> Result<Response, ApiError> {
    let csv = format.csv()?;
    let campaign = find_campaign(&state, &slug).await?;
    let mut conn = state.db.acquire().await?;
    let gifts = closing::gifts(&mut conn, campaign.id).await?;
    if csv {
        let body = closing::to_csv(&gifts)
            .map_err(|e| ApiError::Upstream(format!("the export could not be written: {e}")))?;
        return Ok(csv_response(body, &format!("{slug}-gifts.csv")));
    }
    Ok(axum::Json(GiftList { gifts }).into_response())
}

/// How an operator closes a campaign.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseBody {
    /// Close although the latest report is not clean (or there is none); needs a reason.
    #[serde(default)]
    force: bool,
    reason: Option<String>,
    /// Who closes it, as recorded with the close (default `operator`).
    by: Option<String>,
}

/// Close the campaign: pledges are refused from then on, and the ledger digest is fixed.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{campaign}/close", tag = "operator",
    params(("campaign" = String, Path, description = "The campaign's slug")),
    request_body = CloseBody,
    security(("operator_token" = [])),
    responses(
        (status = 200, description = "Closed (or closed before: the same close)", body = Closed),
        (status = 401, description = "Missing or wrong operator token", body = super::ErrorBody),
        (status = 404, description = "No such campaign", body = super::ErrorBody),
        (status = 409, description = "not_reconciled: no clean report that still stands for the ledger, and no force with a reason", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "close", skip_all, fields(campaign = %slug))]
async fn close(
    _: Operator,
    State(state): State<AppState>,
    Path(slug): Path<String>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, axum::Json<Closed>), ApiError> {
    // No body at all is a plain close.
    let body: CloseBody = if body.iter().all(u8::is_ascii_whitespace) {
        CloseBody::default()
    } else {
        super::json::parse(&body)?
    };
    let campaign = find_campaign(&state, &slug).await?;
    let by = body
        .by
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or("operator");
    if by.chars().count() > 100 {
        return Err(crate::domain::Invalid::new("by", "at most 100 characters").into());
    }
    let request = CloseRequest {
        force: body.force,
        reason: body.reason,
        by: by.to_owned(),
    };
    let closed = closing::close(&state.db, campaign.id, campaign.slug.as_str(), &request)
        .await
        .map_err(|e| match e {
            CloseError::NotReconciled(why) => ApiError::NotReconciled(why),
            CloseError::Database(e) => ApiError::Database(e),
        })?;
    // This gateway refuses pledges at once; the others within the catalogue's freshness.
    state.catalog.forget_all();
    Ok((StatusCode::OK, axum::Json(closed)))
}

/// What a donor or a journalist checks: the campaign's money, by program area and stream,
/// the digest once closed, and the adjustments after it. No names, messages or ids.
#[utoipa::path(
    get, path = "/api/v1/campaigns/{campaign}/disclosure", tag = "public",
    params(("campaign" = String, Path, description = "The campaign's slug")),
    responses(
        (status = 200, description = "The disclosure", body = Disclosure),
        (status = 404, description = "No such campaign", body = super::ErrorBody),
    )
)]
async fn disclosure(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<axum::Json<Disclosure>, ApiError> {
    let campaign = find_campaign(&state, &slug).await?;
    let mut conn = state.db.acquire().await?;
    Ok(axum::Json(closing::disclose(&mut conn, &campaign).await?))
}
