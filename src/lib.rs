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
pub mod ledger;
pub mod live;
pub mod payments;
pub mod pledges;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use catalog::CatalogCache;
use config::Config;
use counters::Keys;
use ledger::{RelayWake, Settler, SettlerQueue};
use live::Live;
use pledges::{ExpiryIndex, PledgeChange, RateLimiter, WriteBehind};

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub config: Arc<Config>,
    pub keys: Keys,
    pub metrics: PrometheusHandle,
    pub catalog: Arc<CatalogCache>,
    pub write_behind: WriteBehind,
    pub expiry_index: Arc<ExpiryIndex>,
    pub pledge_rate: Arc<RateLimiter>,
    pub live: Arc<Live>,
    pub settler: Settler,
    /// Wakes this gateway's outbox relay after a commit.
    pub relay: RelayWake,
    /// Cancelled when the service stops: sockets close, background tasks end.
    pub shutdown: CancellationToken,
    background: Arc<Mutex<Option<Background>>>,
}

/// The receiving ends of the background tasks, taken once by [`serve`].
struct Background {
    redis_client: redis::Client,
    write_behind: mpsc::Receiver<PledgeChange>,
    live_commands: mpsc::UnboundedReceiver<live::SubscriberCommand>,
    settler: SettlerQueue,
}

impl AppState {
    pub fn new(db: PgPool, redis_client: redis::Client, config: Config) -> Self {
        // The recorder first, so the metric handles made below record into it.
        let metrics = telemetry::metrics_handle();
        let redis = ConnectionManager::new_lazy_with_config(redis_client.clone(), redis_config())
            .expect("a lazy connection manager does not connect, so it cannot fail");
        let keys = Keys::new(config.redis_prefix.clone());
        let (write_behind, write_behind_rx) = WriteBehind::new();
        let (live, live_commands) = Live::new(redis.clone(), config.limits.ws_queue);
        let (settler, settler_queue) = Settler::new();
        Self {
            catalog: Arc::new(CatalogCache::new(db.clone(), keys.clone())),
            pledge_rate: Arc::new(RateLimiter::new(config.limits.http_pledges_per_ip)),
            expiry_index: Arc::new(ExpiryIndex::default()),
            write_behind,
            live,
            shutdown: CancellationToken::new(),
            background: Arc::new(Mutex::new(Some(Background {
                redis_client,
                write_behind: write_behind_rx,
                live_commands,
                settler: settler_queue,
            }))),
            settler,
            relay: RelayWake::default(),
            keys,
            db,
            redis,
            config: Arc::new(config),
            metrics,
        }
    }
}

/// Opens the PostgreSQL pool; the first connection is made on first use, so a
/// service can start while the database is still coming up (`/readyz` tells). A
/// connection is waited for at most a second: while PostgreSQL is gone, webhooks are
/// answered 503 at once rather than held.
pub fn connect_postgres(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(32)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy(url)
}

/// A Redis client for `url`; connections are made on first use, and the connection
/// manager built from it reconnects by itself after a loss.
pub fn connect_redis(url: &str) -> redis::RedisResult<redis::Client> {
    redis::Client::open(url)
}

fn redis_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

/// The schema's migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Runs the pending migrations embedded in the binary.
pub async fn migrate(db: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(db).await
}

/// Serves the API on `listener` until `shutdown` is cancelled, then closes the live
/// sockets, drains in-flight requests, flushes the pledge write-behind and returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let background = state
        .background
        .lock()
        .ok()
        .and_then(|mut b| b.take())
        .ok_or_else(|| std::io::Error::other("this state is already being served"))?;
    let flush = CancellationToken::new();
    let writer = tokio::spawn(pledges::run_write_behind(
        state.db.clone(),
        background.write_behind,
        flush.clone(),
    ));
    // The settler, like the write-behind, runs until the HTTP side has drained, so no
    // webhook waits on a settler that has stopped.
    let settler = tokio::spawn(ledger::run_settler(
        state.clone(),
        background.settler,
        flush.clone(),
    ));
    let stop = state.shutdown.clone();
    tokio::spawn(live::run_subscriber(
        background.redis_client,
        state.live.clone(),
        background.live_commands,
        stop.clone(),
    ));
    tokio::spawn(live::run_coalescer(state.live.clone(), stop.clone()));
    let relay = tokio::spawn(ledger::run_relay(
        state.db.clone(),
        state.redis.clone(),
        state.keys.clone(),
        state.relay.clone(),
        flush.clone(),
    ));
    tokio::spawn(pledges::run_expiry(
        state.redis.clone(),
        state.keys.clone(),
        state.write_behind.clone(),
        None,
        stop.clone(),
    ));
    let drift_every = state.config.limits.drift_check_secs;
    if drift_every > 0 {
        tokio::spawn(ledger::run_drift_check(
            state.db.clone(),
            state.redis.clone(),
            state.keys.clone(),
            Duration::from_secs(drift_every),
            stop.clone(),
        ));
    }
    tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.cancelled().await;
            stop.cancel();
        }
    });

    // Small frames go out at once (no Nagle delay), and a client that stops reading can
    // pin only a bounded kernel buffer before its sends block and it is closed.
    let send_buffer = state.config.limits.socket_send_buffer;
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
        let _ = tcp.set_nodelay(true);
        if send_buffer > 0 {
            let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer);
        }
    });
    let app = http::router(state);
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop.cancelled_owned())
    .await;
    flush.cancel();
    if settler.await.is_err() {
        tracing::error!("the settler task failed");
    }
    if writer.await.is_err() {
        tracing::error!("the pledge write-behind task failed");
    }
    if relay.await.is_err() {
        tracing::error!("the outbox relay task failed");
    }
    served
}
