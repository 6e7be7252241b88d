//! What every HTTP handler gets: the stores, the configuration and a handle on each part
//! of the service (the catalogue, pledge intake, the ledger, the live hubs). Cheap to
//! clone. Built only by the service (`service.rs`), together with the background tasks
//! that serve it, so a state never exists without them.

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use sqlx::PgPool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogCache;
use crate::config::Config;
use crate::counters::Keys;
use crate::ledger::Ledger;
use crate::live::Live;
use crate::pledges::{Intake, RateLimiter};

#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub config: Arc<Config>,
    pub keys: Keys,
    pub metrics: PrometheusHandle,
    pub catalog: Arc<CatalogCache>,
    /// Pledge intake, shared with the live sockets.
    pub pledges: Intake,
    /// Per-IP limit on pledges over HTTP.
    pub pledge_rate: Arc<RateLimiter>,
    pub live: Arc<Live>,
    pub ledger: Ledger,
    /// Cancelled when the service stops: sockets close, background work ends.
    pub shutdown: CancellationToken,
}
