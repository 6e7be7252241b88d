//! The pages people see — the landing page, the viewer's pledge page, the streamer's
//! overlay, a campaign's public disclosure and the sandbox checkout — and their assets, served from `web/` as embedded in
//! the binary. The pages speak only to this origin (their Content-Security-Policy says
//! so); they read everything else from the public API and the live WebSocket.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiError;
use crate::domain::Slug;
use crate::state::AppState;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Web;

/// What a page may load and talk to: its own origin, nothing else.
const PAGE_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     object-src 'none'";

pub fn router(state: &AppState) -> Router<AppState> {
    let routes = Router::new()
        .route("/", get(landing))
        .route("/give/{stream}", get(give))
        .route("/overlay/{stream}", get(overlay))
        .route("/disclosure/{campaign}", get(disclosure))
        .route("/assets/{name}", get(asset));
    if state.config.sandbox_payments {
        routes.route("/sandbox/checkout/{pledge_id}", get(checkout))
    } else {
        routes
    }
}

/// How a page may be framed: the overlay by anything that shows it (a streaming tool's
/// browser source may be a frame), the others by nothing (no one can dress a pay button
/// up as something else).
#[derive(Clone, Copy)]
enum Framing {
    Anywhere,
    Nowhere,
}

async fn landing(headers: HeaderMap) -> Response {
    page("landing.html", StatusCode::OK, Framing::Nowhere, &headers)
}

async fn give(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = stream_found(&state, &stream).await?;
    Ok(page("give.html", found, Framing::Nowhere, &headers))
}

async fn overlay(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = stream_found(&state, &stream).await?;
    Ok(page("overlay.html", found, Framing::Anywhere, &headers))
}

async fn disclosure(
    State(state): State<AppState>,
    Path(campaign): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = match Slug::parse("campaign", &campaign) {
        Ok(slug) => crate::catalog::campaign_by_slug(&state.db, &slug)
            .await?
            .is_some(),
        Err(_) => false,
    };
    Ok(page(
        "disclosure.html",
        status(found),
        Framing::Nowhere,
        &headers,
    ))
}

async fn checkout(
    State(state): State<AppState>,
    Path(pledge_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let found = match pledge_id.parse() {
        Ok(id) => state.pledges.find(&id).await?.is_some(),
        Err(_) => false,
    };
    Ok(page(
        "checkout.html",
        status(found),
        Framing::Nowhere,
        &headers,
    ))
}

/// The page is served either way; for a stream that does not exist it says so, with 404.
async fn stream_found(state: &AppState, stream: &str) -> Result<StatusCode, ApiError> {
    let Ok(slug) = Slug::parse("stream", stream) else {
        return Ok(StatusCode::NOT_FOUND);
    };
    Ok(status(state.catalog.stream(&slug).await?.is_some()))
}

fn status(found: bool) -> StatusCode {
    if found {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match Web::get(&format!("assets/{name}")) {
        Some(file) => served(file, StatusCode::OK, &headers),
        None => ApiError::not_found("asset", &name).into_response(),
    }
}

fn page(name: &str, status: StatusCode, framing: Framing, headers: &HeaderMap) -> Response {
    let Some(file) = Web::get(name) else {
        tracing::error!(page = name, "a page is missing from the build");
        return ApiError::NotFound(format!("no page {name}")).into_response();
    };
    let mut response = served(file, status, headers);
    let policy = match framing {
        Framing::Anywhere => PAGE_POLICY.to_owned(),
        Framing::Nowhere => format!("{PAGE_POLICY}; frame-ancestors 'none'"),
    };
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// A file with its type and validator; `304` when the browser holds this version already.
/// Pages and assets are revalidated on every load (their names carry no version), so a
/// new build is seen at once.
fn served(file: rust_embed::EmbeddedFile, status: StatusCode, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", hex::encode(file.metadata.sha256_hash()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|held| held.split(',').any(|tag| tag.trim() == etag));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        // Checkout links carry the pledge id, a capability: never sent onwards.
        (header::REFERRER_POLICY, "no-referrer".to_owned()),
    ];
    if fresh && status == StatusCode::OK {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let mime = file.metadata.mimetype();
    let textual =
        mime.starts_with("text/") || mime.ends_with("javascript") || mime.ends_with("json");
    let kind = if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    let kind = (header::CONTENT_TYPE, kind);
    (status, common, [kind], file.data.into_owned()).into_response()
}
