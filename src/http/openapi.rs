//! The OpenAPI document of the contract, served at `/openapi.json`.

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{books, campaigns, error, funds, health, live, pledges, sandbox, streams, webhooks};
use crate::counters::Totals;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

/// This API as OpenAPI 3.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI document")))]
async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "livefund",
        description = "Charity fundraising through live streams: pledges, live overlays, \
                       a settled ledger and reconciliation. Amounts are integer minor units."
    ),
    paths(
        health::healthz, health::readyz, health::metrics, openapi,
        funds::create,
        campaigns::create, campaigns::show, campaigns::list,
        streams::create, streams::show,
        pledges::create, pledges::show, live::upgrade,
        webhooks::receive,
        sandbox::pay, sandbox::fail, sandbox::refund,
        books::upload, books::latest, books::gifts, books::close, books::disclosure,
    ),
    components(schemas(Totals, error::ErrorBody, error::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "public", description = "Read by anyone"),
        (name = "operator", description = "Needs the operator bearer token"),
        (name = "viewer", description = "Pledges and the live WebSocket; no login"),
        (name = "provider", description = "The payment provider's signed webhooks"),
        (name = "health", description = "Probes and metrics"),
        (name = "sandbox", description = "The built-in sandbox payment provider; only with sandbox payments on"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
