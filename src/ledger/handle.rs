//! What the rest of the service holds of the ledger: its stores and the settler's queue.
//! Cheap to clone; built with its settler's receiving end, which the service's task
//! owner runs.

use super::Outcome;
use super::rebuild::{RebuildError, ensure_built};
use super::relay::RelayWake;
use super::settler::{Settler, SettlerQueue, Unavailable};
use super::stores::Stores;
use crate::domain::Slug;
use crate::payments::PaymentEvent;

/// A handle on the ledger.
#[derive(Clone)]
pub struct Ledger {
    pub stores: Stores,
    settler: Settler,
    relay: RelayWake,
}

impl Ledger {
    /// The handle, and the settler's queue for [`super::run_settler`].
    pub fn new(stores: Stores) -> (Ledger, SettlerQueue) {
        let (settler, queue) = Settler::new();
        let ledger = Ledger {
            stores,
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
        let s = &self.stores;
        ensure_built(&s.db, &mut s.redis.clone(), &s.keys, campaign).await
    }

    /// What wakes this gateway's outbox relay after a commit.
    pub fn relay_wake(&self) -> RelayWake {
        self.relay.clone()
    }
}
