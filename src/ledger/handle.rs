//! What the rest of the service holds of the ledger: its database, the live store its
//! effects go to, and the settler's queue. Cheap to clone; built with its settler's
//! receiving end, which the service's task owner runs.

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use super::Outcome;
use super::rebuild::{RebuildError, ensure_built};
use super::relay::RelayWake;
use super::settler::{Settler, SettlerQueue, Unavailable};
use crate::counters::Keys;
use crate::domain::Slug;
use crate::payments::PaymentEvent;

/// A handle on the ledger.
#[derive(Clone)]
pub struct Ledger {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
    settler: Settler,
    relay: RelayWake,
}

impl Ledger {
    /// The handle, and the settler's queue for [`super::run_settler`].
    pub fn new(db: PgPool, redis: ConnectionManager, keys: Keys) -> (Ledger, SettlerQueue) {
        let (settler, queue) = Settler::new();
        let ledger = Ledger {
            db,
            redis,
            keys,
            settler,
            relay: RelayWake::default(),
        };
        (ledger, queue)
    }

    /// Settles one verified event (whose signed body is `raw`); returns once its effect
    /// is committed, or could not be.
    pub async fn settle(
        &self,
        event: PaymentEvent,
        raw: axum::body::Bytes,
    ) -> Result<Outcome, Unavailable> {
        self.settler.settle(event, raw).await
    }

    /// Rebuilds the campaign's live counters from the ledger if Redis lost them.
    pub async fn ensure_built(&self, campaign: &Slug) -> Result<(), RebuildError> {
        ensure_built(&self.db, &mut self.redis.clone(), &self.keys, campaign).await
    }

    /// Wakes this gateway's outbox relay: a batch committed effects.
    pub(super) fn wake_relay(&self) {
        self.relay.wake();
    }

    pub(super) fn relay_wake(&self) -> RelayWake {
        self.relay.clone()
    }
}
