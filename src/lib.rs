//! livefund: charity fundraising through live streams.
//!
//! The library holds the whole service so tests drive it exactly as `main` does: bind a
//! listener (port 0 in tests) and call [`serve`] with the stores and the configuration.
//!
//! # The components, and how a pledge flows through them
//!
//! - [`domain`]: money, slugs, pledges and their statuses, parsed at the edge; no I/O.
//! - [`config`]: the command line and environment (CONTRACT §2).
//! - [`catalog`]: funds, campaigns and streams in PostgreSQL, with a short-lived cache.
//! - [`counters`]: Redis, what is live: the key layout, one Lua script per state change,
//!   the pledge hash, the pub/sub message codec, totals and snapshots.
//! - [`pledges`]: pledge intake. A viewer's pledge (HTTP or WebSocket) is parsed against
//!   its campaign's rules and recorded once per idempotency key by `pledge.lua`, which
//!   counts it as pledged and publishes the totals change; it is then written behind to
//!   PostgreSQL in batches, and expires if it is never paid.
//! - [`payments`]: the provider's signed events. The provider pays the pledge and posts a
//!   signed webhook ([`http`] verifies it on the raw body).
//! - [`ledger`]: PostgreSQL, the source of truth for money. The settler commits many
//!   events per transaction: the gift (or refund, or exception) and an outbox row for
//!   each live effect; the webhook is answered after that commit. The outbox relay then
//!   runs each effect's script (`gift.lua` counts the gift and appends its alert to the
//!   stream's log with the next seq) and publishes it.
//! - [`live`]: each gateway subscribes to the campaigns its sockets watch and passes each
//!   frame, serialized once, to every local socket of the stream; the overlay shows the
//!   alert and the new totals.
//! - [`sandbox`]: the built-in payment provider for demos and tests, which pays through
//!   the same signed webhook as a real one.
//! - [`http`]: the route table; [`service`] builds the state and owns the background
//!   tasks; [`demo`]: everything local.

pub mod catalog;
pub mod cli;
pub mod closing;
pub mod config;
pub mod counters;
pub mod demo;
pub mod domain;
pub mod http;
pub mod ledger;
pub mod live;
pub mod payments;
pub mod pledges;
pub mod reconcile;
pub mod sandbox;
pub mod service;
pub mod state;
pub mod telemetry;

pub use state::AppState;

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use config::Config;
use service::Service;

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

/// A listening socket on `addr` with room for `backlog` connections waiting to be
/// accepted.
pub async fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// A Redis client for `url`; connections are made on first use, and the connection
/// manager built from it reconnects by itself after a loss.
pub fn connect_redis(url: &str) -> redis::RedisResult<redis::Client> {
    redis::Client::open(url)
}

/// The schema's migrations, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Runs the pending migrations embedded in the binary.
pub async fn migrate(db: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(db).await
}

/// Serves the API on `listener` over `db` and `redis` until `shutdown` is cancelled, then
/// closes the live sockets, drains in-flight requests, lets settlement, the pledge
/// write-behind and the outbox relay finish, and returns.
pub async fn serve(
    listener: TcpListener,
    db: PgPool,
    redis: redis::Client,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let service = Service::start(db, redis, config, shutdown.clone());
    let app = http::router(service.state().clone());
    // Small frames go out at once (no Nagle delay), and a client that stops reading can
    // pin only a bounded kernel buffer before its sends block and it is closed.
    let send_buffer = service.state().config.limits.socket_send_buffer;
    let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
        let _ = tcp.set_nodelay(true);
        if send_buffer > 0 {
            let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer);
        }
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await;
    service.finish().await;
    served
}
