//! One PostgreSQL advisory lock per campaign serializes everything that writes the
//! campaign's settled live counters: the outbox relay while it applies effects, and a
//! rebuild or a drift repair while it reads the ledger and rewrites Redis. A repair
//! therefore never races an effect: an effect committed before the repair's snapshot is
//! in it (and only announced afterwards), one committed after waits for the repair.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Transaction};

/// The first key of livefund's advisory locks ("lf" and 1), so they never meet another
/// application's (or sqlx's migration lock) in the same database.
const NAMESPACE: i32 = 0x6c66_0001;

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

/// The campaign's lock, held on a connection of its own until [`CampaignLock::release`].
/// Reads that must see everything committed before the lock was taken start their
/// snapshot on [`CampaignLock::conn`] after it is held.
pub struct CampaignLock {
    conn: PoolConnection<Postgres>,
    campaign_id: i64,
    released: bool,
}

impl CampaignLock {
    /// Waits for the campaign's lock.
    pub async fn acquire(db: &PgPool, campaign_id: i64) -> sqlx::Result<CampaignLock> {
        let mut conn = db.acquire().await?;
        sqlx::query(r#"select pg_advisory_lock($1, $2)"#)
            .bind(NAMESPACE)
            .bind(key(campaign_id))
            .execute(&mut *conn)
            .await?;
        Ok(CampaignLock {
            conn,
            campaign_id,
            released: false,
        })
    }

    /// The connection holding the lock.
    pub fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.conn
    }

    /// Releases the lock; the connection goes back to the pool.
    pub async fn release(mut self) -> sqlx::Result<()> {
        let released: bool = sqlx::query_scalar(r#"select pg_advisory_unlock($1, $2)"#)
            .bind(NAMESPACE)
            .bind(key(self.campaign_id))
            .fetch_one(&mut *self.conn)
            .await?;
        self.released = released;
        if !released {
            tracing::error!(
                campaign_id = self.campaign_id,
                "a campaign lock was not held at release"
            );
        }
        Ok(())
    }
}

impl Drop for CampaignLock {
    fn drop(&mut self) {
        if !self.released {
            // Not released (an error, or a task cancelled): the connection must not go
            // back to the pool holding the lock. Closing it releases the lock.
            self.conn.close_on_drop();
        }
    }
}
