//! Writing a batch's plan inside its transaction: one statement per table, each over
//! `unnest` arrays, each idempotent by its unique constraints.

use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

use super::plan::{Known, Plan, PledgeFacts};
use crate::payments::PaymentEvent;

/// Another gateway settled part of this batch first; the batch is retried from scratch.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("a concurrent settlement wrote {0} first")]
    Raced(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Records the events not seen before (outcome to be filled in) and returns their ids.
pub async fn record_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[PaymentEvent],
) -> sqlx::Result<Vec<String>> {
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let pledges: Vec<Option<Uuid>> = events.iter().map(|e| e.pledge_id.parse().ok()).collect();
    let txns: Vec<&str> = events.iter().map(|e| e.provider_txn_id.as_str()).collect();
    let amounts: Vec<i64> = events.iter().map(|e| e.amount).collect();
    let currencies: Vec<&str> = events.iter().map(|e| e.currency.as_str()).collect();
    let fees: Vec<i64> = events.iter().map(|e| e.fee).collect();
    let times: Vec<_> = events.iter().map(|e| e.occurred_at).collect();
    let tests: Vec<bool> = events.iter().map(|e| e.test).collect();
    sqlx::query_scalar(
        r#"insert into payment_events
               (event_id, type, pledge_id, provider_txn_id, amount, currency, fee, occurred_at,
                test, outcome)
           select *, 'pending' from unnest($1::text[], $2::text[], $3::uuid[], $4::text[],
                                           $5::bigint[], $6::text[], $7::bigint[],
                                           $8::timestamptz[], $9::bool[])
           on conflict (event_id) do nothing
           returning event_id"#,
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&pledges)
    .bind(&txns)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&fees)
    .bind(&times)
    .bind(&tests)
    .fetch_all(&mut **tx)
    .await
}

/// Pledges known only to the live store (not yet written behind) are written now, so
/// every gift's pledge is in the ledger's database.
pub async fn pledges(
    tx: &mut Transaction<'_, Postgres>,
    pledges: &[PledgeFacts],
) -> sqlx::Result<()> {
    if pledges.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&PledgeFacts) -> Option<String>| pledges.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        r#"insert into pledges (id, campaign_id, stream_id, amount, currency, designation,
                                donor_name, anonymous, message, donor_ref, status, created_at,
                                expires_at)
           select id, campaign_id, stream_id, amount, currency, designation, donor_name,
                  anonymous, message, donor_ref, 'pending', now(), now()
           from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                       $6::text[], $7::text[], $8::bool[], $9::text[], $10::text[])
             as p(id, campaign_id, stream_id, amount, currency, designation, donor_name,
                  anonymous, message, donor_ref)
           on conflict (id) do nothing"#,
    )
    .bind(pledges.iter().map(|p| p.id).collect::<Vec<_>>())
    .bind(pledges.iter().map(|p| p.campaign_id).collect::<Vec<_>>())
    .bind(pledges.iter().map(|p| p.stream_id).collect::<Vec<_>>())
    .bind(pledges.iter().map(|p| p.amount).collect::<Vec<_>>())
    .bind(
        pledges
            .iter()
            .map(|p| p.currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(col(|p| p.designation.clone()))
    .bind(col(|p| p.donor_name.clone()))
    .bind(pledges.iter().map(|p| p.anonymous).collect::<Vec<_>>())
    .bind(col(|p| p.message.clone()))
    .bind(col(|p| p.donor_ref.clone()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How far a pledge status has come; a status only moves forward.
fn rank(status: &str) -> u8 {
    match status {
        "pending" => 0,
        "expired" | "failed" => 1,
        "confirmed" => 2,
        _ => 3,
    }
}

/// Writes everything the plan decided for `events` (the new events, in plan order).
pub async fn plan(
    tx: &mut Transaction<'_, Postgres>,
    events: &[PaymentEvent],
    plan: &Plan,
    known: &Known,
) -> Result<(), WriteError> {
    if !plan.gifts.is_empty() {
        let g = &plan.gifts;
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
        .bind(g.iter().map(|x| x.id).collect::<Vec<_>>())
        .bind(g.iter().map(|x| x.pledge.campaign_id).collect::<Vec<_>>())
        .bind(g.iter().map(|x| x.pledge.stream_id).collect::<Vec<_>>())
        .bind(g.iter().map(|x| x.pledge.id).collect::<Vec<_>>())
        .bind(
            g.iter()
                .map(|x| x.provider_txn_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(g.iter().map(|x| x.event_id.as_str()).collect::<Vec<_>>())
        .bind(g.iter().map(|x| x.pledge.amount).collect::<Vec<_>>())
        .bind(g.iter().map(|x| x.fee).collect::<Vec<_>>())
        .bind(
            g.iter()
                .map(|x| x.pledge.currency.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            g.iter()
                .map(|x| x.pledge.designation.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            g.iter()
                .map(|x| x.pledge.donor_name.clone())
                .collect::<Vec<_>>(),
        )
        .bind(g.iter().map(|x| x.pledge.anonymous).collect::<Vec<_>>())
        .bind(
            g.iter()
                .map(|x| x.pledge.message.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            g.iter()
                .map(|x| x.pledge.donor_ref.clone())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut **tx)
        .await?;
        if inserted.len() != g.len() {
            return Err(WriteError::Raced("a gift"));
        }
    }
    if !plan.refunds.is_empty() {
        let r = &plan.refunds;
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            r#"insert into refunds (id, gift_id, campaign_id, provider_txn_id, event_id, amount,
                                    currency)
               select * from unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[],
                                    $6::bigint[], $7::text[])
               on conflict do nothing
               returning id"#,
        )
        .bind(r.iter().map(|x| x.id).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.gift.id).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.gift.campaign_id).collect::<Vec<_>>())
        .bind(
            r.iter()
                .map(|x| x.provider_txn_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(r.iter().map(|x| x.event_id.as_str()).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.amount).collect::<Vec<_>>())
        .bind(
            r.iter()
                .map(|x| x.gift.currency.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut **tx)
        .await?;
        if inserted.len() != r.len() {
            return Err(WriteError::Raced("a refund"));
        }
    }
    matching(tx, plan, known).await?;
    exceptions(tx, plan).await?;
    statuses(tx, plan).await?;
    outcomes(tx, events, plan).await?;
    Ok(())
}

async fn matching(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan,
    known: &Known,
) -> sqlx::Result<()> {
    let mut campaign = Vec::new();
    let mut gift = Vec::new();
    let mut refund: Vec<Option<Uuid>> = Vec::new();
    let mut amount = Vec::new();
    for g in plan.gifts.iter().filter(|g| g.matched > 0) {
        campaign.push(g.pledge.campaign_id);
        gift.push(g.id);
        refund.push(None);
        amount.push(g.matched);
    }
    for r in plan.refunds.iter().filter(|r| r.reversed > 0) {
        campaign.push(r.gift.campaign_id);
        gift.push(r.gift.id);
        refund.push(Some(r.id));
        amount.push(-r.reversed);
    }
    if campaign.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"insert into matching_entries (campaign_id, gift_id, refund_id, amount)
           select * from unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::bigint[])"#,
    )
    .bind(&campaign)
    .bind(&gift)
    .bind(&refund)
    .bind(&amount)
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

async fn exceptions(tx: &mut Transaction<'_, Postgres>, plan: &Plan) -> sqlx::Result<()> {
    if !plan.exceptions.is_empty() {
        let x = &plan.exceptions;
        sqlx::query(
            r#"insert into payment_exceptions (event_id, campaign_id, pledge_id, provider_txn_id,
                                               kind, amount, currency, detail)
               select * from unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[],
                                    $6::bigint[], $7::text[], $8::text[])
               on conflict (event_id) do nothing"#,
        )
        .bind(
            x.iter()
                .map(|e| e.event.event_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(x.iter().map(|e| e.campaign_id).collect::<Vec<_>>())
        .bind(
            x.iter()
                .map(|e| e.event.pledge_id.parse::<Uuid>().ok())
                .collect::<Vec<_>>(),
        )
        .bind(
            x.iter()
                .map(|e| e.event.provider_txn_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(x.iter().map(|e| e.kind).collect::<Vec<_>>())
        .bind(x.iter().map(|e| e.event.amount).collect::<Vec<_>>())
        .bind(
            x.iter()
                .map(|e| e.event.currency.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(x.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.resolved.is_empty() {
        sqlx::query(
            r#"update payment_exceptions set resolved_at = now()
               where event_id = any($1) and resolved_at is null"#,
        )
        .bind(&plan.resolved)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn statuses(tx: &mut Transaction<'_, Postgres>, plan: &Plan) -> sqlx::Result<()> {
    let mut last: HashMap<Uuid, &'static str> = HashMap::new();
    for (id, status) in &plan.statuses {
        let keep = last.get(id).is_some_and(|s| rank(s) >= rank(status));
        if !keep {
            last.insert(*id, status);
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let (ids, statuses): (Vec<Uuid>, Vec<&str>) = last.into_iter().unzip();
    sqlx::query(
        r#"update pledges p set status = c.status, updated_at = now()
           from unnest($1::uuid[], $2::text[]) as c(id, status)
           where p.id = c.id
             and (case p.status when 'pending' then 0 when 'expired' then 1 when 'failed' then 1
                                when 'confirmed' then 2 else 3 end)
               < (case c.status when 'pending' then 0 when 'expired' then 1 when 'failed' then 1
                                when 'confirmed' then 2 else 3 end)"#,
    )
    .bind(&ids)
    .bind(&statuses)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn outcomes(
    tx: &mut Transaction<'_, Postgres>,
    events: &[PaymentEvent],
    plan: &Plan,
) -> sqlx::Result<()> {
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let words: Vec<&str> = plan.outcomes.iter().map(|o| o.word()).collect();
    sqlx::query(
        r#"update payment_events e set outcome = o.outcome
           from unnest($1::text[], $2::text[]) as o(event_id, outcome)
           where e.event_id = o.event_id"#,
    )
    .bind(&ids)
    .bind(&words)
    .execute(&mut **tx)
    .await?;
    // Parked refunds applied now (this batch's or earlier ones) are refunds after all.
    if !plan.resolved.is_empty() {
        sqlx::query(r#"update payment_events set outcome = 'refund' where event_id = any($1)"#)
            .bind(&plan.resolved)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
