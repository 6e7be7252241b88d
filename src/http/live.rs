//! `GET /api/v1/streams/{stream}/live[?since=SEQ]`: the upgrade to a live WebSocket.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use tungstenite::protocol::WebSocketConfig;

use super::ApiError;
use super::pledges::check_origin;
use crate::domain::Slug;
use crate::live::{NotAnUpgrade, SocketParams, Upgrade, run_socket};
use crate::state::AppState;

/// A socket's read buffer starts this small (client frames are small; it grows for a
/// larger one). With the 128 KiB default an idle socket costs over 100 KB; with this,
/// about 6 KB in all, measured over 8,000 idle sockets.
const READ_BUFFER: usize = 512;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/streams/{stream}/live", get(upgrade))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LiveQuery {
    /// The last seq the client showed; the events after it are replayed.
    since: Option<u64>,
}

/// Upgrade to the stream's live WebSocket (CONTRACT §9).
#[utoipa::path(
    get, path = "/api/v1/streams/{stream}/live", tag = "viewer",
    params(("stream" = String, Path, description = "The stream's slug"), LiveQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 403, description = "Origin not allowed", body = super::ErrorBody),
        (status = 404, description = "No such stream", body = super::ErrorBody),
    )
)]
#[tracing::instrument(name = "live_socket", skip_all, fields(stream = %stream))]
async fn upgrade(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    Query(query): Query<LiveQuery>,
    headers: HeaderMap,
    ws: Result<Upgrade, NotAnUpgrade>,
) -> Result<Response, ApiError> {
    check_origin(&state, &headers)?;
    let not_found = || ApiError::not_found("stream", &stream);
    let slug = Slug::parse("stream", &stream).map_err(|_| not_found())?;
    let info = state.catalog.stream(&slug).await?.ok_or_else(not_found)?;
    let ws = ws.map_err(|rejection| ApiError::BadRequest {
        message: format!("this is a WebSocket endpoint: {rejection}"),
        field: None,
    })?;
    let limit = state.config.limits.ws_max_frame;
    let params = SocketParams {
        live: state.live.clone(),
        intake: state.pledges.clone(),
        ledger: state.ledger.clone(),
        limits: state.config.limits.clone(),
        shutdown: state.shutdown.clone(),
        stream: info,
        since: query.since,
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    Ok(ws.on_upgrade(config, move |socket| run_socket(socket, params)))
}
