//! Reading stored pledges from PostgreSQL as [`PledgeRecord`]s, in one place.

use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use crate::domain::{PledgeRecord, PledgeStatus};

/// The pledge query, with its `where` clause appended at compile time (sqlx takes only
/// static SQL).
macro_rules! select_pledges {
    ($where:literal) => {
        concat!(
            r#"select p.id, p.campaign_id, c.slug::text as campaign, p.stream_id,
                      s.slug::text as stream,
                      p.amount::bigint as amount, p.currency::text as currency, p.designation,
                      p.donor_name, p.anonymous, p.message, p.donor_ref, p.idempotency_key,
                      p.status, p.created_at, p.expires_at
               from pledges p join streams s on s.id = p.stream_id
               join campaigns c on c.id = p.campaign_id "#,
            $where
        )
    };
}

/// The pledges of `ids` that PostgreSQL has.
pub async fn by_ids(db: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<Vec<PledgeRecord>> {
    sqlx::query_as(select_pledges!("where p.id = any($1)"))
        .bind(ids)
        .fetch_all(db)
        .await
}

/// One pledge, if PostgreSQL has it.
pub async fn by_id<'e>(db: impl PgExecutor<'e>, id: &Uuid) -> sqlx::Result<Option<PledgeRecord>> {
    sqlx::query_as(select_pledges!("where p.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The campaign's pending pledges.
pub async fn pending_of(
    db: &mut PgConnection,
    campaign_id: i64,
) -> sqlx::Result<Vec<PledgeRecord>> {
    sqlx::query_as(select_pledges!(
        "where p.campaign_id = $1 and p.status = $2"
    ))
    .bind(campaign_id)
    .bind(PledgeStatus::Pending.as_str())
    .fetch_all(db)
    .await
}
