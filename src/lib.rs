//! livefund: charity fundraising through live streams.
//!
//! The library holds the whole service so tests drive it exactly as `main` does:
//! build an [`AppState`], bind a listener (port 0 in tests) and call [`serve`].

pub mod catalog;
pub mod cli;
pub mod config;
pub mod counters;
pub mod demo;
pub mod domain;
pub mod http;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::Config;
use counters::Keys;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub config: Arc<Config>,
    pub keys: Keys,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(db: PgPool, redis: ConnectionManager, config: Config) -> Self {
        Self {
            keys: Keys::new(config.redis_prefix.clone()),
            db,
            redis,
            config: Arc::new(config),
            metrics: telemetry::metrics_handle(),
        }
    }
}

/// Opens the PostgreSQL pool; the first connection is made on first use, so a
/// service can start while the database is still coming up (`/readyz` tells).
pub fn connect_postgres(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy(url)
}

/// Opens the Redis connection manager, which reconnects by itself after a loss.
pub fn connect_redis(url: &str) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// Runs the pending migrations embedded in the binary.
pub async fn migrate(db: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(db).await
}

/// Serves the API on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = http::router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
