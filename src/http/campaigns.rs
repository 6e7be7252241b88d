//! Campaigns: created by operators (`POST /api/v1/campaigns`), read by anyone
//! (`GET /api/v1/campaigns/{campaign}`) with designations, streams and live totals.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::Operator;
use super::{ApiError, Json};
use crate::catalog::{self, Campaign, Designation, NewCampaign, Stream};
use crate::counters::{Totals, read_totals};
use crate::domain::{
    CampaignStatus, CampaignWindow, Currency, Invalid, MatchingTerms, Money, Slug, bounded_text,
};
use crate::ledger;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/campaigns", post(create).get(list))
        .route("/api/v1/campaigns/{campaign}", get(show))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    #[schema(example = "warm-winter-2026")]
    slug: String,
    /// The fund's slug.
    fund: String,
    title: String,
    /// ISO-4217; default CNY.
    #[schema(example = "CNY")]
    currency: Option<String>,
    /// Minor units.
    goal: i64,
    min_amount: i64,
    max_amount: i64,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    matching: Option<CreateMatching>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMatching {
    sponsor: String,
    /// Percent of each settled gift the sponsor adds, 1 to 1000.
    ratio_percent: i64,
    /// The most the sponsor adds in all, net of reversals (minor units).
    cap: i64,
}

impl TryFrom<CreateCampaign> for NewCampaign {
    type Error = Invalid;

    fn try_from(body: CreateCampaign) -> Result<Self, Invalid> {
        let matching = body
            .matching
            .map(|m| {
                let sponsor = bounded_text("matching.sponsor", &m.sponsor, 200)?;
                let cap = Money::positive("matching.cap", m.cap)?;
                MatchingTerms::new(sponsor, m.ratio_percent, cap)
            })
            .transpose()?;
        let campaign = NewCampaign {
            slug: Slug::parse("slug", &body.slug)?,
            fund: Slug::parse("fund", &body.fund)?,
            title: bounded_text("title", &body.title, 200)?,
            currency: match &body.currency {
                Some(code) => Currency::parse("currency", code)?,
                None => Currency::CNY,
            },
            goal: Money::positive("goal", body.goal)?,
            min_amount: Money::positive("min_amount", body.min_amount)?,
            max_amount: Money::positive("max_amount", body.max_amount)?,
            window: CampaignWindow::new(body.starts_at, body.ends_at)?,
            matching,
        };
        campaign.check()?;
        Ok(campaign)
    }
}

/// The sponsor's matching as shown to anyone.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MatchingView {
    sponsor: String,
    ratio_percent: u16,
    #[schema(value_type = i64)]
    cap: Money,
    /// What is left of the cap, per the ledger.
    #[schema(value_type = i64)]
    remaining: Money,
}

/// One stream of a campaign with its totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamSummary {
    slug: String,
    streamer: String,
    #[schema(value_type = Option<i64>)]
    goal: Option<Money>,
    totals: Totals,
}

/// A campaign with its designations, streams and live totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignView {
    slug: String,
    /// The fund's slug.
    fund: String,
    /// The fund's name, as shown to donors.
    fund_name: String,
    /// The charity that runs the fund.
    charity: String,
    title: String,
    #[schema(value_type = String, example = "CNY")]
    currency: Currency,
    #[schema(value_type = i64)]
    goal: Money,
    #[schema(value_type = i64)]
    min_amount: Money,
    #[schema(value_type = i64)]
    max_amount: Money,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    status: CampaignStatus,
    closed_at: Option<DateTime<Utc>>,
    matching: Option<MatchingView>,
    designations: Vec<Designation>,
    streams: Vec<StreamSummary>,
    totals: Totals,
    created_at: DateTime<Utc>,
    /// The page of the campaign's public disclosure (its data:
    /// `GET /api/v1/campaigns/{campaign}/disclosure`).
    disclosure_url: String,
}

/// Assembles the public view of a campaign, with totals from the live counters.
pub async fn campaign_view(
    state: &AppState,
    campaign: Campaign,
    streams: Vec<Stream>,
) -> Result<CampaignView, ApiError> {
    let designations = catalog::designations_of_fund(&state.db, campaign.fund_id).await?;
    let keys = state.keys.campaign(&campaign.slug);
    let goals: Vec<(&Slug, Option<Money>)> = streams.iter().map(|s| (s.slug(), s.goal())).collect();
    let mut redis = state.redis.clone();
    ledger::ensure_built(&state.db, &mut redis, &state.keys, &campaign.slug).await?;
    let (totals, stream_totals) = read_totals(&mut redis, &keys, campaign.goal, &goals).await?;
    let cap = campaign.matching.as_ref().map(|m| m.terms.cap);
    let totals = totals.with_matching_cap(cap);
    let streams = streams
        .iter()
        .zip(stream_totals)
        .map(|(s, totals)| StreamSummary {
            slug: s.slug().to_string(),
            streamer: s.streamer.clone(),
            goal: s.goal(),
            totals,
        })
        .collect();
    Ok(CampaignView {
        status: campaign.status(Utc::now()),
        slug: campaign.slug.to_string(),
        fund: campaign.fund_slug,
        fund_name: campaign.fund_name,
        charity: campaign.charity,
        title: campaign.title,
        currency: campaign.currency,
        goal: campaign.goal,
        min_amount: campaign.min_amount,
        max_amount: campaign.max_amount,
        starts_at: campaign.window.starts_at,
        ends_at: campaign.window.ends_at,
        closed_at: campaign.closed_at,
        matching: campaign.matching.map(|m| MatchingView {
            remaining: Money::from_stored(m.terms.cap.minor_units() - m.spent.minor_units()),
            sponsor: m.terms.sponsor,
            ratio_percent: m.terms.ratio_percent,
            cap: m.terms.cap,
        }),
        designations,
        streams,
        totals,
        created_at: campaign.created_at,
        disclosure_url: format!("/disclosure/{}", campaign.slug),
    })
}

/// Finds a campaign by the slug in a path, or answers 404.
pub async fn find_campaign(state: &AppState, slug: &str) -> Result<Campaign, ApiError> {
    let not_found = || ApiError::not_found("campaign", slug);
    let parsed = Slug::parse("campaign", slug).map_err(|_| not_found())?;
    catalog::campaign_by_slug(&state.db, &parsed)
        .await?
        .ok_or_else(not_found)
}

/// Create a campaign of a fund, optionally with sponsor matching.
#[utoipa::path(
    post, path = "/api/v1/campaigns", tag = "operator",
    request_body = CreateCampaign,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "The campaign", body = CampaignView),
        (status = 400, description = "Malformed JSON or unknown field", body = super::ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = super::ErrorBody),
        (status = 409, description = "Slug taken", body = super::ErrorBody),
        (status = 422, description = "Invalid field or unknown fund", body = super::ErrorBody),
    )
)]
async fn create(
    _: Operator,
    State(state): State<AppState>,
    Json(body): Json<CreateCampaign>,
) -> Result<(StatusCode, axum::Json<CampaignView>), ApiError> {
    let new = NewCampaign::try_from(body)?;
    let campaign = catalog::create_campaign(&state.db, &new).await?;
    tracing::info!(campaign = %campaign.slug, "campaign created");
    let view = campaign_view(&state, campaign, Vec::new()).await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// A campaign with its designations, streams and live totals.
#[utoipa::path(
    get, path = "/api/v1/campaigns/{campaign}", tag = "public",
    params(("campaign" = String, Path, description = "The campaign's slug")),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        (status = 404, description = "No such campaign", body = super::ErrorBody),
    )
)]
async fn show(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<axum::Json<CampaignView>, ApiError> {
    let campaign = find_campaign(&state, &slug).await?;
    let streams = catalog::streams_of_campaign(&state.db, campaign.id).await?;
    Ok(axum::Json(campaign_view(&state, campaign, streams).await?))
}

/// The campaigns anyone can give to or follow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CampaignList {
    campaigns: Vec<CampaignView>,
}

/// The campaigns: those not closed (scheduled, live, or ended and awaiting close) newest
/// first, then the closed ones most recently closed first; at most 100, each with its
/// streams and live totals.
#[utoipa::path(
    get, path = "/api/v1/campaigns", tag = "public",
    responses(
        (status = 200, description = "The campaigns, open ones first", body = CampaignList),
        (status = 503, description = "unavailable", body = super::ErrorBody),
    )
)]
async fn list(State(state): State<AppState>) -> Result<axum::Json<CampaignList>, ApiError> {
    let mut campaigns = Vec::new();
    for campaign in catalog::listed_campaigns(&state.db).await? {
        let streams = catalog::streams_of_campaign(&state.db, campaign.id).await?;
        campaigns.push(campaign_view(&state, campaign, streams).await?);
    }
    Ok(axum::Json(CampaignList { campaigns }))
}
