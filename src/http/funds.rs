//! Operator API for funds: `POST /api/v1/funds`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use std::collections::HashSet;

use super::auth::Operator;
use super::{ApiError, Json};
use crate::catalog::{self, Fund, NewDesignation, NewFund};
use crate::domain::{DesignationCode, Invalid, Slug, bounded_text};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/funds", post(create))
}

/// A fund and its program areas (designations); a gift may be restricted to one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFund {
    #[schema(example = "ciai-zhugu")]
    slug: String,
    name: String,
    charity: String,
    #[serde(default)]
    designations: Vec<CreateDesignation>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDesignation {
    #[schema(example = "education")]
    code: String,
    name: String,
}

const MAX_DESIGNATIONS: usize = 64;

impl TryFrom<CreateFund> for NewFund {
    type Error = Invalid;

    fn try_from(body: CreateFund) -> Result<Self, Invalid> {
        if body.designations.len() > MAX_DESIGNATIONS {
            return Err(Invalid::new(
                "designations",
                format!("at most {MAX_DESIGNATIONS} designations"),
            ));
        }
        let mut seen = HashSet::new();
        let mut designations = Vec::with_capacity(body.designations.len());
        for (i, d) in body.designations.iter().enumerate() {
            let code = DesignationCode::parse(&format!("designations[{i}].code"), &d.code)?;
            if code.as_str() == crate::closing::UNRESTRICTED {
                return Err(Invalid::new(
                    format!("designations[{i}].code"),
                    "\"unrestricted\" names gifts for no program area; choose another code",
                ));
            }
            if !seen.insert(code.clone()) {
                return Err(Invalid::new(
                    format!("designations[{i}].code"),
                    format!("{:?} is listed twice", d.code),
                ));
            }
            let name = bounded_text(&format!("designations[{i}].name"), &d.name, 100)?;
            designations.push(NewDesignation { code, name });
        }
        Ok(NewFund {
            slug: Slug::parse("slug", &body.slug)?,
            name: bounded_text("name", &body.name, 200)?,
            charity: bounded_text("charity", &body.charity, 200)?,
            designations,
        })
    }
}

/// Create a fund with its designations.
#[utoipa::path(
    post, path = "/api/v1/funds", tag = "operator",
    request_body = CreateFund,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "The fund", body = Fund),
        (status = 400, description = "Malformed JSON or unknown field", body = super::ErrorBody),
        (status = 401, description = "Missing or wrong operator token", body = super::ErrorBody),
        (status = 409, description = "Slug taken", body = super::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = super::ErrorBody),
        (status = 422, description = "Invalid field", body = super::ErrorBody),
    )
)]
async fn create(
    _: Operator,
    State(state): State<AppState>,
    Json(body): Json<CreateFund>,
) -> Result<(StatusCode, axum::Json<Fund>), ApiError> {
    let fund = NewFund::try_from(body)?;
    let fund = catalog::create_fund(&state.db, &fund).await?;
    tracing::info!(fund = %fund.slug, "fund created");
    Ok((StatusCode::CREATED, axum::Json(fund)))
}
