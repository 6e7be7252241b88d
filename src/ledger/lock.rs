//! One PostgreSQL advisory lock per campaign serializes everything that writes the
//! campaign's settled live counters: the outbox relay while it applies effects, and a
//! rebuild or a drift repair while it reads the ledger and rewrites Redis. A repair
//! therefore never races an effect: an effect committed before the repair's snapshot is
//! in it (and only announced afterwards), one committed after waits for the repair.
//!
//! A second lock per campaign, apart from it, takes its reconciliation reports one at a
//! time.
//!
//! A lock is only ever tried, never waited on inside PostgreSQL: a waiter holds no
//! connection between tries, and a connection that may hold a lock is closed rather than
//! returned to the pool unless the lock was released.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;

/// The first key of livefund's advisory locks ("lf" and 1), so they never meet another
/// application's (or sqlx's migration lock) in the same database.
const NAMESPACE: i32 = 0x6c66_0001;
/// The first key of the locks on provider transactions (see `load::lock_txns`).
pub const TXN_NAMESPACE: i32 = 0x6c66_0002;
/// The first key of the locks that take a campaign's reconciliation reports one at a
/// time (apart from the live counters' lock, so a long report never holds up the relay).
const RECONCILIATION_NAMESPACE: i32 = 0x6c66_0003;

/// What a campaign lock guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// The live counters: the relay, rebuilds and repairs.
    LiveCounters,
    /// Its reconciliation reports: one made at a time, so the latest is the newest.
    Reconciliation,
}

impl Guarded {
    fn namespace(self) -> i32 {
        match self {
            Guarded::LiveCounters => NAMESPACE,
            Guarded::Reconciliation => RECONCILIATION_NAMESPACE,
        }
    }
}

/// The second key: the campaign id, folded into 32 bits (a collision only serializes
/// two campaigns, it never lets two writers in at once).
fn key(campaign_id: i64) -> i32 {
    (campaign_id % i64::from(i32::MAX)) as i32
}

/// Takes the campaign's lock for the rest of `tx`, if no one holds it.
pub async fn try_lock_in(
    tx: &mut Transaction<'_, Postgres>,
    campaign_id: i64,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(r#"select pg_try_advisory_xact_lock($1, $2)"#)
        .bind(NAMESPACE)
        .bind(key(campaign_id))
        .fetch_one(&mut **tx)
        .await
}

/// Why a campaign's lock was not had.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the campaign is busy: its live counters are being rebuilt or relayed")]
    Busy,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The campaign's lock, held on a connection of its own until [`CampaignLock::release`].
/// Reads that must see everything committed before the lock was taken start their
/// snapshot on [`CampaignLock::conn`] after it is held.
pub struct CampaignLock {
    conn: PoolConnection<Postgres>,
    namespace: i32,
    campaign_id: i64,
}

impl CampaignLock {
    /// The campaign's live-counters lock if no one holds it now.
    pub async fn try_acquire(db: &PgPool, campaign_id: i64) -> sqlx::Result<Option<CampaignLock>> {
        Self::try_acquire_for(db, Guarded::LiveCounters, campaign_id).await
    }

    /// The campaign's lock on `what` if no one holds it now.
    pub async fn try_acquire_for(
        db: &PgPool,
        what: Guarded,
        campaign_id: i64,
    ) -> sqlx::Result<Option<CampaignLock>> {
        let namespace = what.namespace();
        let mut conn = db.acquire().await?;
        // From here until a release, the connection may hold the lock: dropped (an error,
        // a cancelled request), it is closed, which releases the lock, never pooled.
        conn.close_on_drop();
        let held: bool = sqlx::query_scalar(r#"select pg_try_advisory_lock($1, $2)"#)
            .bind(namespace)
            .bind(key(campaign_id))
            .fetch_one(&mut *conn)
            .await?;
        Ok(held.then_some(CampaignLock {
            conn,
            namespace,
            campaign_id,
        }))
    }

    /// The campaign's live-counters lock, tried again and again for at most `within`.
    pub async fn acquire(
        db: &PgPool,
        campaign_id: i64,
        within: Duration,
    ) -> Result<CampaignLock, LockError> {
        Self::acquire_for(db, Guarded::LiveCounters, campaign_id, within).await
    }

    /// The campaign's lock on `what`, tried again and again for at most `within`.
    pub async fn acquire_for(
        db: &PgPool,
        what: Guarded,
        campaign_id: i64,
        within: Duration,
    ) -> Result<CampaignLock, LockError> {
        let deadline = tokio::time::Instant::now() + within;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(lock) = Self::try_acquire_for(db, what, campaign_id).await? {
                return Ok(lock);
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(LockError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// The connection holding the lock.
    pub fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.conn
    }

    /// Releases the lock; the connection is closed (it was marked so while it might hold
    /// the lock), which costs a reconnect, not a leaked lock.
    pub async fn release(mut self) -> sqlx::Result<()> {
        let released: bool = sqlx::query_scalar(r#"select pg_advisory_unlock($1, $2)"#)
            .bind(self.namespace)
            .bind(key(self.campaign_id))
            .fetch_one(&mut *self.conn)
            .await?;
        if !released {
            tracing::error!(
                campaign_id = self.campaign_id,
                "a campaign lock was not held at release"
            );
        }
        Ok(())
    }
}
