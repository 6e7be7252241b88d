//! Settling one batch of payment events in one transaction: record the events (a
//! replayed event id is a no-op), load and lock what they touch, plan, write the ledger
//! rows and the outbox of live effects, commit. A batch that races another gateway's is
//! retried from the start.

use sqlx::{Postgres, Transaction};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use super::load::{self, Txns};
use super::outbox::{self, Streams};
use super::plan::{self, Known, Outcome};
use super::stores::Stores;
use super::{pledge_rows, records, write};
use crate::counters::pledge_hash;
use crate::domain::PledgeRecord;
use crate::payments::PaymentEvent;

/// How often a batch that raced another settlement is tried again.
const ATTEMPTS: u32 = 5;
/// The longest pause before a batch that raced is tried again (the pause is random up to
/// it, so two gateways that raced do not meet again at once).
const RETRY_PAUSE_MS: u64 = 20;
/// Bounds inside the database on one settling transaction: a lock held elsewhere or a
/// statement that hangs ends it with an error (the batch is answered 503 and delivered
/// again) well before the gateway's own deadline gives up on it.
const TX_LIMITS: &str = "set local lock_timeout = '1500ms'; set local statement_timeout = '1900ms'";

/// What a batch came to.
pub struct Settled {
    /// One per event given, in order.
    pub outcomes: Vec<Outcome>,
    /// How many live effects it left in the outbox.
    pub effects: usize,
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("settlement kept racing another gateway on {0}")]
    Raced(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the live store did not answer: {0}")]
    LiveStoreDown(redis::RedisError),
    #[error("a pledge in the live store could not be read: {0}")]
    Unreadable(pledge_hash::Unreadable),
    /// Writing a pledge known only to the live store failed: when on its data, that is
    /// the live store's record, not the event, at fault.
    #[error("a pledge from the live store could not be written: {0}")]
    LivePledge(sqlx::Error),
    #[error("the ledger is inconsistent: {0}")]
    Inconsistent(String),
    #[error("the database did not answer in time")]
    TimedOut,
}

/// What a failed batch calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// An event's own data breaks a constraint or a type: settled alone, an event that
    /// still fails is recorded as an `invalid_event` exception.
    Data,
    /// Tied to some of the events but not their fault (they kept racing other gateways,
    /// or what the live store holds of their pledge is unusable): settled alone, an event
    /// that still fails is answered 503 on its own and delivered again.
    Contended,
    /// Other settlements held what the batch needed for longer than it may wait: the
    /// batch is answered 503 and delivered again; the database is fine.
    Busy,
    /// A store is gone or hangs: the whole batch is answered 503 at once, and the next
    /// moment's batches too.
    Down,
}

/// The SQLSTATE of a database error.
fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|code| code.into_owned())
}

/// Data exceptions (22) and integrity constraint violations (23).
fn breaks_a_rule(e: &sqlx::Error) -> bool {
    sqlstate(e).is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

impl SettleError {
    /// What the failure calls for.
    pub fn failure(&self) -> Failure {
        match self {
            SettleError::Raced(_) | SettleError::Unreadable(_) | SettleError::Inconsistent(_) => {
                Failure::Contended
            }
            SettleError::Database(e) if breaks_a_rule(e) => Failure::Data,
            SettleError::LivePledge(e) if breaks_a_rule(e) => Failure::Contended,
            SettleError::Database(e) | SettleError::LivePledge(e) => {
                match sqlstate(e).as_deref() {
                    // A conflict with other batches that outlived its retries.
                    Some(code) if code.starts_with("40") => Failure::Contended,
                    // lock_not_available: the lock timeout.
                    Some("55P03") => Failure::Busy,
                    // Everything else, a statement timeout among it, is the database's.
                    _ => Failure::Down,
                }
            }
            SettleError::LiveStoreDown(_) | SettleError::TimedOut => Failure::Down,
        }
    }
}

impl From<write::WriteError> for SettleError {
    fn from(e: write::WriteError) -> Self {
        match e {
            write::WriteError::Raced(what) => SettleError::Raced(what),
            write::WriteError::Database(e) => SettleError::Database(e),
        }
    }
}

/// Settles `events` (in arrival order) in one transaction.
#[tracing::instrument(name = "settle_batch", skip_all, fields(events = events.len()))]
pub async fn settle_batch(
    stores: &Stores,
    events: &[PaymentEvent],
) -> Result<Settled, SettleError> {
    // Within a batch, a repeated event id is a replay of its first delivery.
    let mut seen = HashSet::new();
    let unique: Vec<PaymentEvent> = events
        .iter()
        .filter(|e| seen.insert(e.event_id.clone()))
        .cloned()
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = stores.db.begin().await?;
        sqlx::raw_sql(TX_LIMITS).execute(&mut *tx).await?;
        match settle_in(stores, &mut tx, &unique).await {
            Ok((by_event, effects)) => {
                tx.commit().await?;
                return Ok(Settled {
                    outcomes: answers(events, &by_event),
                    effects,
                });
            }
            Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                tracing::info!(error = %e, attempt, "settlement raced another gateway; retrying");
                let _ = tx.rollback().await;
                let pause = rand::random_range(1..=RETRY_PAUSE_MS * u64::from(attempt));
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Only an event's first delivery gets its outcome; any other is a replay.
fn answers(events: &[PaymentEvent], by_event: &HashMap<String, Outcome>) -> Vec<Outcome> {
    let mut answered = HashSet::new();
    events
        .iter()
        .map(|e| match by_event.get(&e.event_id) {
            Some(outcome) if answered.insert(e.event_id.clone()) => outcome.clone(),
            _ => Outcome::Ignored,
        })
        .collect()
}

/// Races, deadlocks and serialization failures between concurrent batches are worth a
/// retry.
fn retryable(e: &SettleError) -> bool {
    match e {
        SettleError::Raced(_) => true,
        SettleError::Database(e) | SettleError::LivePledge(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "40P01" || code == "40001"),
        _ => false,
    }
}

async fn settle_in(
    stores: &Stores,
    tx: &mut Transaction<'_, Postgres>,
    events: &[PaymentEvent],
) -> Result<(HashMap<String, Outcome>, usize), SettleError> {
    load::lock_txns(tx, events).await?;
    let new: HashSet<String> = write::record_events(tx, events)
        .await?
        .into_iter()
        .collect();
    let fresh: Vec<PaymentEvent> = events
        .iter()
        .filter(|e| new.contains(&e.event_id))
        .cloned()
        .collect();
    if fresh.is_empty() {
        return Ok((HashMap::new(), 0));
    }
    let (mut known, streams) = load_known(stores, tx, &fresh).await?;
    let planned = plan::plan(&fresh, &mut known);
    records::exceptions(tx, &planned).await?;
    write::money(tx, &planned, &known).await?;
    records::write(tx, &fresh, &planned).await?;
    let effects = outbox::enqueue(tx, &planned, &streams)
        .await
        .map_err(|e| match e {
            outbox::EnqueueError::Database(e) => SettleError::Database(e),
            outbox::EnqueueError::Unplaced(what) => SettleError::Inconsistent(what),
        })?;
    for (e, outcome) in fresh.iter().zip(&planned.outcomes) {
        tracing::debug!(event_id = %e.event_id, pledge_id = %e.pledge_id, outcome = outcome.word(), "settled");
    }
    let by_event = fresh
        .iter()
        .map(|e| e.event_id.clone())
        .zip(planned.outcomes)
        .collect();
    Ok((by_event, effects))
}

/// Everything the batch's events touch, locked where the batch may change it.
async fn load_known(
    stores: &Stores,
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[PaymentEvent],
) -> Result<(Known, Streams), SettleError> {
    let txns = Txns::of(fresh);
    let ids = load::pledge_ids(tx, fresh, &txns).await?;
    let mut known = Known::default();
    let stored = pledge_rows::by_ids(tx, &ids).await?;
    known.pledges.extend(stored.into_iter().map(|p| (p.id, p)));
    let missing: Vec<Uuid> = ids
        .iter()
        .filter(|id| !known.pledges.contains_key(id))
        .copied()
        .collect();
    let live = live_pledges(stores, &missing).await?;
    // Known only to the live store (not yet written behind): written now, so every
    // gift's pledge is in the ledger's database.
    pledge_rows::upsert(
        tx,
        &live.iter().collect::<Vec<_>>(),
        pledge_rows::OnStored::Keep,
    )
    .await
    .map_err(SettleError::LivePledge)?;
    known.pledges.extend(live.into_iter().map(|p| (p.id, p)));
    load::lock_pledges(tx, &ids).await?;
    let mut campaigns: Vec<i64> = known.pledges.values().map(|p| p.campaign_id).collect();
    campaigns.sort_unstable();
    campaigns.dedup();
    let streams = load::campaigns(tx, &campaigns, &mut known).await?;
    load::pools(tx, &campaigns, &mut known).await?;
    let paid = txns.paid();
    load::gifts(tx, &ids, &paid, &mut known).await?;
    load::charges(tx, &paid, &mut known).await?;
    load::parked(tx, &ids, &txns.payments, &mut known).await?;
    let mut refund_txns = txns.refunds.clone();
    refund_txns.extend(known.parked.iter().map(|p| p.provider_txn_id.clone()));
    load::refund_txns(tx, &refund_txns, &mut known).await?;
    Ok((known, streams))
}

/// Pledges not yet written behind, read from the live store (they are written now).
/// A failure to read is not "no such pledge": it fails the batch, so the provider
/// delivers again rather than the payment becoming an exception.
async fn live_pledges(stores: &Stores, ids: &[Uuid]) -> Result<Vec<PledgeRecord>, SettleError> {
    let mut found = Vec::new();
    let mut redis = stores.redis.clone();
    for id in ids {
        let pledge = pledge_hash::find(&mut redis, &stores.keys, id)
            .await
            .map_err(|e| match e {
                pledge_hash::ReadError::Redis(e) => SettleError::LiveStoreDown(e),
                pledge_hash::ReadError::Unreadable(e) => SettleError::Unreadable(e),
            })?;
        found.extend(pledge);
    }
    Ok(found)
}
