//! Streams: created by operators under a campaign, read by anyone with the stream's
//! and its campaign's live totals.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::Operator;
use super::campaigns::find_campaign;
use super::{ApiError, Json};
use crate::catalog::{self, Campaign, ModerationKey, NewStream, Stream};
use crate::counters::{Totals, read_totals};
use crate::domain::{CampaignStatus, Invalid, Money, Slug, bounded_text};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/campaigns/{campaign}/streams", post(create))
        .route("/api/v1/streams/{stream}", get(show))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    #[schema(example = "xiangxi-live-01")]
    slug: String,
    streamer: String,
    /// The stream's own goal (minor units), if it has one.
    goal: Option<i64>,
}

impl TryFrom<CreateStream> for NewStream {
    type Error = Invalid;

    fn try_from(body: CreateStream) -> Result<Self, Invalid> {
        Ok(NewStream {
            slug: Slug::parse("slug", &body.slug)?,
            streamer: bounded_text("streamer", &body.streamer, 100)?,
            goal: body.goal.map(|g| Money::positive("goal", g)).transpose()?,
        })
    }
}

/// A stream with its totals and its campaign's.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    slug: String,
    /// The campaign's slug.
    campaign: String,
    streamer: String,
    #[schema(value_type = Option<i64>)]
    goal: Option<Money>,
    /// The campaign's status: pledges are taken only while it is `live`.
    status: CampaignStatus,
    created_at: DateTime<Utc>,
    totals: Totals,
    campaign_totals: Totals,
}

/// A new stream, with the moderation key shown only in this response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedStream {
    #[serde(flatten)]
    stream: StreamView,
    /// The streamer's key for moderation calls; only its hash is stored.
    moderation_key: String,
}

async fn stream_view(
    state: &AppState,
    campaign: &Campaign,
    stream: Stream,
) -> Result<StreamView, ApiError> {
    let keys = state.keys.campaign(&campaign.slug);
    let mut redis = state.redis.clone();
    crate::ledger::ensure_built(&state.db, &mut redis, &state.keys, &campaign.slug).await?;
    let (campaign_totals, mut stream_totals) = read_totals(
        &mut redis,
        &keys,
        campaign.goal,
        &[(stream.slug(), stream.goal())],
    )
    .await?;
    let totals = stream_totals
        .pop()
        .ok_or(ApiError::Unavailable("the live store"))?;
    let cap = campaign.matching.as_ref().map(|m| m.terms.cap);
    let campaign_totals = campaign_totals.with_matching_cap(cap);
    Ok(StreamView {
        slug: stream.slug().to_string(),
        campaign: campaign.slug.to_string(),
        goal: stream.goal(),
        streamer: stream.streamer,
        status: campaign.status(Utc::now()),
        created_at: stream.created_at,
        totals,
        campaign_totals,
    })
}

/// Create a stream of a campaign; the response carries its moderation key, once.
#[utoipa::path(
    post, path = "/api/v1/campaigns/{campaign}/streams", tag = "operator",
    params(("campaign" = String, Path, description = "The campaign's slug")),
    request_body = CreateStream,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "The stream and its moderation key", body = CreatedStream),
        (status = 400, description = "Malformed JSON or unknown field", body = super::ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = super::ErrorBody),
        (status = 404, description = "No such campaign", body = super::ErrorBody),
        (status = 409, description = "Slug taken", body = super::ErrorBody),
        (status = 422, description = "Invalid field", body = super::ErrorBody),
    )
)]
async fn create(
    _: Operator,
    State(state): State<AppState>,
    Path(campaign): Path<String>,
    Json(body): Json<CreateStream>,
) -> Result<(StatusCode, axum::Json<CreatedStream>), ApiError> {
    let campaign = find_campaign(&state, &campaign).await?;
    let new = NewStream::try_from(body)?;
    let key = ModerationKey::generate();
    let stream = catalog::create_stream(&state.db, campaign.id, &new, &key).await?;
    tracing::info!(campaign = %campaign.slug, stream = %stream.slug(), "stream created");
    let stream = stream_view(&state, &campaign, stream).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedStream {
            stream,
            moderation_key: key.reveal(),
        }),
    ))
}

/// A stream with its totals and its campaign's totals.
#[utoipa::path(
    get, path = "/api/v1/streams/{stream}", tag = "public",
    params(("stream" = String, Path, description = "The stream's slug")),
    responses(
        (status = 200, description = "The stream", body = StreamView),
        (status = 404, description = "No such stream", body = super::ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<axum::Json<StreamView>, ApiError> {
    let not_found = || ApiError::not_found("stream", &slug);
    let parsed = Slug::parse("stream", &slug).map_err(|_| not_found())?;
    let stream = catalog::stream_by_slug(&state.db, &parsed)
        .await?
        .ok_or_else(not_found)?;
    let campaign = find_campaign(&state, stream.campaign_slug.as_str()).await?;
    Ok(axum::Json(stream_view(&state, &campaign, stream).await?))
}
