//! Stored pledges in PostgreSQL as [`PledgeRecord`]s: written (by the write-behind, or by
//! settlement for a pledge paid before it was written) and read, in one place.

use sqlx::{PgConnection, PgExecutor};
use std::collections::HashSet;
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

fn col<'a, U>(rows: &[&'a PledgeRecord], f: impl Fn(&'a PledgeRecord) -> U) -> Vec<U> {
    rows.iter().map(|r| f(r)).collect()
}

/// The insert of many pledges, ending in what becomes of one stored already.
macro_rules! insert_pledges {
    ($on_conflict:literal) => {
        concat!(
            r#"insert into pledges (id, campaign_id, stream_id, amount, currency, designation,
                                donor_name, anonymous, message, donor_ref, idempotency_key,
                                status, created_at, expires_at)
           select * from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                                $6::text[], $7::text[], $8::bool[], $9::text[], $10::text[],
                                $11::text[], $12::text[], $13::timestamptz[],
                                $14::timestamptz[])
           "#,
            $on_conflict
        )
    };
}

/// What becomes of a pledge that is stored already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStored {
    /// The write-behind: it keeps its status; its times and key become the accepted ones.
    Refresh,
    /// Settlement, writing a pledge it found only in the live store: whatever another
    /// writer stored in the meantime is kept as it is.
    Keep,
}

/// Writes pledges as they were accepted, each once, in id order (the order settlement
/// locks them in, so the two never wait on each other in a cycle).
pub async fn upsert(
    db: &mut PgConnection,
    pledges: &[&PledgeRecord],
    on_stored: OnStored,
) -> sqlx::Result<()> {
    let mut seen = HashSet::new();
    let mut p: Vec<&PledgeRecord> = pledges
        .iter()
        .copied()
        .filter(|p| seen.insert(p.id))
        .collect();
    if p.is_empty() {
        return Ok(());
    }
    p.sort_by_key(|p| p.id);
    let query = match on_stored {
        OnStored::Refresh => insert_pledges!(
            r#"on conflict (id) do update
               set created_at = excluded.created_at,
                   expires_at = excluded.expires_at,
                   idempotency_key = coalesce(excluded.idempotency_key, pledges.idempotency_key)"#
        ),
        OnStored::Keep => insert_pledges!("on conflict (id) do nothing"),
    };
    sqlx::query(query)
        .bind(col(&p, |p| p.id))
        .bind(col(&p, |p| p.campaign_id))
        .bind(col(&p, |p| p.stream_id))
        .bind(col(&p, |p| p.amount.minor_units()))
        .bind(col(&p, |p| p.currency.as_str()))
        .bind(col(&p, |p| p.designation.as_deref()))
        .bind(col(&p, |p| p.public_name()))
        .bind(col(&p, |p| p.anonymous))
        .bind(col(&p, |p| p.message.as_deref()))
        .bind(col(&p, |p| p.donor_ref.as_deref()))
        .bind(col(&p, |p| p.idempotency_key.as_deref()))
        .bind(col(&p, |p| p.status.as_str()))
        .bind(col(&p, |p| p.created_at))
        .bind(col(&p, |p| p.expires_at))
        .execute(db)
        .await?;
    Ok(())
}
