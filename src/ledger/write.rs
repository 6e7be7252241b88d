//! Writing a batch's money rows inside its transaction: one statement per table, each over
//! `unnest` arrays, each idempotent by its unique constraints. A row that another
//! gateway wrote first means the batch raced it and is retried from the start.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::plan::{Known, Plan};
use crate::payments::PaymentEvent;

type Tx<'a> = Transaction<'a, Postgres>;

/// Another gateway settled part of this batch first; the batch is retried from scratch.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("a concurrent settlement wrote {0} first")]
    Raced(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One column of `rows`, for an `unnest` parameter.
fn col<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// Records the events not seen before (outcome to be filled in) and returns their ids.
/// Inserted in event id order, so two batches holding the same events (a provider's
/// retries landing on two gateways) cannot deadlock on them.
pub async fn record_events(tx: &mut Tx<'_>, events: &[PaymentEvent]) -> sqlx::Result<Vec<String>> {
    let mut sorted: Vec<&PaymentEvent> = events.iter().collect();
    sorted.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let events = &sorted[..];
    sqlx::query_scalar(
        r#"insert into payment_events
               (event_id, type, pledge_id, provider_txn_id, amount, currency, fee, occurred_at,
                test, refunded_txn_id, outcome)
           select *, 'pending' from unnest($1::text[], $2::text[], $3::uuid[], $4::text[],
                                           $5::bigint[], $6::text[], $7::bigint[],
                                           $8::timestamptz[], $9::bool[], $10::text[])
           on conflict (event_id) do nothing
           returning event_id"#,
    )
    .bind(col(events, |e| e.event_id.as_str()))
    .bind(col(events, |e| e.kind.as_str()))
    .bind(col(events, |e| e.pledge_id.parse::<Uuid>().ok()))
    .bind(col(events, |e| e.provider_txn_id.as_str()))
    .bind(col(events, |e| e.amount))
    .bind(col(events, |e| e.currency.as_str()))
    .bind(col(events, |e| e.fee))
    .bind(col(events, |e| e.occurred_at))
    .bind(col(events, |e| e.test))
    .bind(col(events, |e| e.refunded_txn_id.as_deref()))
    .fetch_all(&mut **tx)
    .await
}

/// Writes the plan's money rows: gifts, refunds of gifts and of charges, matching.
pub async fn money(tx: &mut Tx<'_>, plan: &Plan, known: &Known) -> Result<(), WriteError> {
    gifts(tx, plan).await?;
    refunds(tx, plan).await?;
    charge_refunds(tx, plan).await?;
    matching(tx, plan, known).await?;
    Ok(())
}

async fn gifts(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), WriteError> {
    let g = &plan.gifts;
    if g.is_empty() {
        return Ok(());
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        r#"insert into gifts (id, campaign_id, stream_id, pledge_id, provider_txn_id, event_id,
                              amount, fee, currency, designation, donor_name, anonymous,
                              message, donor_ref)
           select * from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::uuid[], $5::text[],
                                $6::text[], $7::bigint[], $8::bigint[], $9::text[],
                                $10::text[], $11::text[], $12::bool[], $13::text[],
                                $14::text[])
           on conflict do nothing
           returning id"#,
    )
    .bind(col(g, |x| x.id))
    .bind(col(g, |x| x.pledge.campaign_id))
    .bind(col(g, |x| x.pledge.stream_id))
    .bind(col(g, |x| x.pledge.id))
    .bind(col(g, |x| x.provider_txn_id.as_str()))
    .bind(col(g, |x| x.event_id.as_str()))
    .bind(col(g, |x| x.pledge.amount.minor_units()))
    .bind(col(g, |x| x.fee))
    .bind(col(g, |x| x.pledge.currency.as_str()))
    .bind(col(g, |x| x.pledge.designation.as_deref()))
    .bind(col(g, |x| x.pledge.public_name()))
    .bind(col(g, |x| x.pledge.anonymous))
    .bind(col(g, |x| x.pledge.message.as_deref()))
    .bind(col(g, |x| x.pledge.donor_ref.as_deref()))
    .fetch_all(&mut **tx)
    .await?;
    if inserted.len() != g.len() {
        return Err(WriteError::Raced("a gift"));
    }
    Ok(())
}

async fn refunds(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), WriteError> {
    let r = &plan.refunds;
    if r.is_empty() {
        return Ok(());
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        r#"insert into refunds (id, gift_id, campaign_id, provider_txn_id, event_id, amount,
                                currency, post_close)
           select * from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[],
                                $6::bigint[], $7::text[], $8::bool[])
           on conflict do nothing
           returning id"#,
    )
    .bind(col(r, |x| x.id))
    .bind(col(r, |x| x.gift.id))
    .bind(col(r, |x| x.gift.campaign_id))
    .bind(col(r, |x| x.provider_txn_id.as_str()))
    .bind(col(r, |x| x.event_id.as_str()))
    .bind(col(r, |x| x.amount))
    .bind(col(r, |x| x.gift.currency.as_str()))
    .bind(col(r, |x| x.post_close))
    .fetch_all(&mut **tx)
    .await?;
    if inserted.len() != r.len() {
        return Err(WriteError::Raced("a refund"));
    }
    Ok(())
}

async fn charge_refunds(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), WriteError> {
    let r = &plan.charge_refunds;
    if r.is_empty() {
        return Ok(());
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        r#"insert into exception_refunds (id, exception_event_id, campaign_id, provider_txn_id,
                                          event_id, amount, currency)
           select * from unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                                $6::bigint[], $7::text[])
           on conflict do nothing
           returning id"#,
    )
    .bind(col(r, |x| x.id))
    .bind(col(r, |x| x.charge.event_id.as_str()))
    .bind(col(r, |x| x.charge.campaign_id))
    .bind(col(r, |x| x.provider_txn_id.as_str()))
    .bind(col(r, |x| x.event_id.as_str()))
    .bind(col(r, |x| x.amount))
    .bind(col(r, |x| x.charge.currency.as_str()))
    .fetch_all(&mut **tx)
    .await?;
    if inserted.len() != r.len() {
        return Err(WriteError::Raced("a refund of an exception"));
    }
    Ok(())
}

/// The sponsor's matches and their reversals, and the pools' spent totals.
async fn matching(tx: &mut Tx<'_>, plan: &Plan, known: &Known) -> sqlx::Result<()> {
    let mut rows: Vec<(i64, Uuid, Option<Uuid>, i64)> = Vec::new();
    for g in plan.gifts.iter().filter(|g| g.matched > 0) {
        rows.push((g.pledge.campaign_id, g.id, None, g.matched));
    }
    for r in plan.refunds.iter().filter(|r| r.reversed > 0) {
        rows.push((r.gift.campaign_id, r.gift.id, Some(r.id), -r.reversed));
    }
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"insert into matching_entries (campaign_id, gift_id, refund_id, amount)
           select * from unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::bigint[])"#,
    )
    .bind(col(&rows, |r| r.0))
    .bind(col(&rows, |r| r.1))
    .bind(col(&rows, |r| r.2))
    .bind(col(&rows, |r| r.3))
    .execute(&mut **tx)
    .await?;
    let (ids, spent): (Vec<i64>, Vec<i64>) =
        known.pools.iter().map(|(id, p)| (*id, p.spent)).unzip();
    sqlx::query(
        r#"update matching_pools m set spent = s.spent
           from unnest($1::bigint[], $2::bigint[]) as s(campaign_id, spent)
           where m.campaign_id = s.campaign_id"#,
    )
    .bind(&ids)
    .bind(&spent)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
