//! The running service: builds the state the handlers get together with the background
//! tasks that serve it, owns those tasks, and stops them in order. One shutdown signal:
//! when it fires, sockets close and the sweeps stop; once the HTTP side has drained, the
//! settler, the pledge write-behind and the outbox relay finish their work, and every task
//! is awaited.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalog::CatalogCache;
use crate::config::Config;
use crate::counters::Keys;
use crate::ledger::{self, Ledger, SettlerQueue};
use crate::live::{self, Live, SubscriberCommand};
use crate::pledges::{self, Intake, PledgeChange, RateLimiter, WriteBehind};
use crate::state::AppState;
use crate::{sandbox, telemetry};

/// The service: its state and its background tasks.
pub struct Service {
    state: AppState,
    tasks: TaskTracker,
    /// Cancelled once the HTTP side has drained: the tasks that finish work begun by a
    /// request (settling, writing behind, relaying effects) stop after it.
    drained: CancellationToken,
}

/// The receiving ends the background tasks drain.
struct Queues {
    redis_client: redis::Client,
    write_behind: mpsc::Receiver<PledgeChange>,
    live_commands: mpsc::UnboundedReceiver<SubscriberCommand>,
    settler: SettlerQueue,
    accepted: Option<mpsc::UnboundedReceiver<uuid::Uuid>>,
}

fn redis_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500))
}

impl Service {
    /// Builds the state over `db` and `redis_client` and starts every background task;
    /// `shutdown` stops the service.
    pub fn start(
        db: PgPool,
        redis_client: redis::Client,
        config: Config,
        shutdown: CancellationToken,
    ) -> Service {
        let (state, queues) = build(db, redis_client, config, shutdown);
        let service = Service {
            state,
            tasks: TaskTracker::new(),
            drained: CancellationToken::new(),
        };
        service.spawn_all(queues);
        service
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    fn spawn_all(&self, queues: Queues) {
        let (state, stop, drained) = (&self.state, &self.state.shutdown, &self.drained);
        let t = &self.tasks;
        t.spawn(pledges::run_write_behind(
            state.db.clone(),
            queues.write_behind,
            drained.clone(),
        ));
        let (stores, wake) = (&state.ledger.stores, state.ledger.relay_wake());
        // The relay stops after the settler, so the effects of its last batches are
        // relayed too.
        let settled = CancellationToken::new();
        let settler = ledger::run_settler(
            stores.clone(),
            wake.clone(),
            queues.settler,
            drained.clone(),
        );
        let settler_done = settled.clone();
        t.spawn(async move {
            // Cancelled however the settler ends, a panic included.
            let _done = settler_done.drop_guard();
            settler.await;
        });
        t.spawn(ledger::run_relay(stores.clone(), wake, settled));
        t.spawn(live::run_subscriber(
            queues.redis_client,
            state.live.clone(),
            queues.live_commands,
            stop.clone(),
        ));
        t.spawn(live::run_coalescer(state.live.clone(), stop.clone()));
        t.spawn(pledges::run_expiry(
            state.redis.clone(),
            state.keys.clone(),
            state.pledges.write_behind(),
            None,
            stop.clone(),
        ));
        let every = state.config.limits.drift_check_secs;
        if every > 0 {
            t.spawn(ledger::run_drift_check(
                state.db.clone(),
                state.redis.clone(),
                state.keys.clone(),
                Duration::from_secs(every),
                stop.clone(),
            ));
        }
        if let Some(accepted) = queues.accepted {
            let delay = Duration::from_millis(state.config.limits.sandbox_autopay_ms);
            t.spawn(sandbox::run_autopay(
                state.config.clone(),
                state.pledges.clone(),
                accepted,
                delay,
                stop.clone(),
            ));
        }
    }

    /// Lets the tasks that finish requests' work drain, then waits for every task. Call
    /// it once the HTTP side has stopped (after the shutdown signal).
    pub async fn finish(self) {
        self.drained.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The state, and the receiving ends its background tasks drain.
fn build(
    db: PgPool,
    redis_client: redis::Client,
    config: Config,
    shutdown: CancellationToken,
) -> (AppState, Queues) {
    // The recorder first, so the metric handles made below record into it.
    let metrics = telemetry::metrics_handle();
    let redis = ConnectionManager::new_lazy_with_config(redis_client.clone(), redis_config())
        .expect("a lazy connection manager does not connect, so it cannot fail");
    let keys = Keys::new(config.redis_prefix.clone());
    let stores = ledger::Stores {
        db: db.clone(),
        redis: redis.clone(),
        keys: keys.clone(),
    };
    let (ledger, settler) = Ledger::new(stores);
    let (write_behind, write_behind_rx) = WriteBehind::new();
    let autopay = config.sandbox_payments && config.limits.sandbox_autopay_ms > 0;
    let (accepted, accepted_rx) = if autopay {
        let (tx, rx) = mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let intake = Intake::new(
        ledger.clone(),
        write_behind,
        config.checkout_url.clone(),
        config.limits.pledge_ttl_secs,
        accepted,
    );
    let (live, live_commands) = Live::new(redis.clone(), config.limits.ws_queue);
    let state = AppState {
        catalog: Arc::new(CatalogCache::new(db.clone(), keys.clone())),
        pledge_rate: Arc::new(RateLimiter::new(config.limits.http_pledges_per_ip)),
        pledges: intake,
        live,
        ledger,
        shutdown,
        keys,
        db,
        redis,
        config: Arc::new(config),
        metrics,
    };
    let queues = Queues {
        redis_client,
        write_behind: write_behind_rx,
        live_commands,
        settler,
        accepted: accepted_rx,
    };
    (state, queues)
}
