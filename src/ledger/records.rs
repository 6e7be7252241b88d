//! Writing what a batch decided besides money: exceptions and how they were resolved,
//! pledge statuses, each event's outcome, the confirmed totals and the milestones reached.

use sqlx::{Postgres, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

use super::plan::{Outcome, Plan};
use crate::domain::PledgeStatus;
use crate::payments::PaymentEvent;

type Tx<'a> = Transaction<'a, Postgres>;

fn col<'a, T, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// Writes the records of the plan for `events` (the new events, in plan order), after
/// its money rows; its exceptions are written before them ([`exceptions`]).
pub async fn write(tx: &mut Tx<'_>, events: &[PaymentEvent], plan: &Plan) -> sqlx::Result<()> {
    resolutions(tx, plan).await?;
    statuses(tx, plan).await?;
    outcomes(tx, events, plan).await?;
    confirmed(tx, plan).await?;
    milestones(tx, plan).await?;
    Ok(())
}

/// The plan's new exceptions: first, since refunds of charges name them.
pub async fn exceptions(tx: &mut Tx<'_>, plan: &Plan) -> sqlx::Result<()> {
    let x = &plan.exceptions;
    if x.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"insert into payment_exceptions (event_id, campaign_id, pledge_id, provider_txn_id,
                                           kind, amount, currency, detail, refunded_txn_id)
           select * from unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[],
                                $6::bigint[], $7::text[], $8::text[], $9::text[])
           on conflict (event_id) do nothing"#,
    )
    .bind(col(x, |e| e.event.event_id.as_str()))
    .bind(col(x, |e| e.campaign_id))
    .bind(col(x, |e| e.event.pledge_id.parse::<Uuid>().ok()))
    .bind(col(x, |e| e.event.provider_txn_id.as_str()))
    .bind(col(x, |e| e.kind))
    .bind(col(x, |e| e.event.amount))
    .bind(col(x, |e| e.event.currency.as_str()))
    .bind(col(x, |e| e.detail.as_str()))
    .bind(col(x, |e| e.event.refunded_txn_id.as_deref()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Exceptions resolved (a parked refund applied or replayed, a charge refunded in full),
/// and parked refunds refused once their payment came.
async fn resolutions(tx: &mut Tx<'_>, plan: &Plan) -> sqlx::Result<()> {
    let r = &plan.resolved;
    if !r.is_empty() {
        sqlx::query(
            r#"update payment_exceptions x
               set resolved_at = now(), resolution = r.how, resolved_by = r.by
               from unnest($1::text[], $2::text[], $3::text[]) as r(event_id, how, by)
               where x.event_id = r.event_id and x.resolved_at is null"#,
        )
        .bind(col(r, |r| r.event_id.as_str()))
        .bind(col(r, |r| r.how.as_str()))
        .bind(col(r, |r| r.by.as_str()))
        .execute(&mut **tx)
        .await?;
    }
    let c = &plan.reclassified;
    if !c.is_empty() {
        sqlx::query(
            r#"update payment_exceptions x set kind = c.kind, detail = c.detail
               from unnest($1::text[], $2::text[], $3::text[]) as c(event_id, kind, detail)
               where x.event_id = c.event_id and x.resolved_at is null"#,
        )
        .bind(col(c, |c| c.event_id.as_str()))
        .bind(col(c, |c| c.kind))
        .bind(col(c, |c| c.detail.as_str()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Each pledge's last status in the plan, written only where it moves the pledge forward.
async fn statuses(tx: &mut Tx<'_>, plan: &Plan) -> sqlx::Result<()> {
    let mut last: HashMap<Uuid, PledgeStatus> = HashMap::new();
    for (id, status) in &plan.statuses {
        let keep = last.get(id).is_some_and(|s| !s.may_become(*status));
        if !keep {
            last.insert(*id, *status);
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let (ids, statuses): (Vec<Uuid>, Vec<&str>) =
        last.into_iter().map(|(id, s)| (id, s.as_str())).unzip();
    let (words, ranks) = PledgeStatus::rank_table();
    sqlx::query(
        r#"update pledges p set status = c.status, updated_at = now()
           from unnest($1::uuid[], $2::text[]) as c(id, status),
                unnest($3::text[], $4::int[]) as was(status, rank),
                unnest($3::text[], $4::int[]) as now(status, rank)
           where p.id = c.id and was.status = p.status and now.status = c.status
             and was.rank < now.rank"#,
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&words)
    .bind(&ranks)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn outcomes(tx: &mut Tx<'_>, events: &[PaymentEvent], plan: &Plan) -> sqlx::Result<()> {
    let mut ids: Vec<&str> = col(events, |e| e.event_id.as_str());
    let mut words: Vec<&str> = col(&plan.outcomes, Outcome::word);
    // Parked refunds of earlier batches applied now: refunds after all.
    for (event_id, outcome) in &plan.late_outcomes {
        ids.push(event_id);
        words.push(outcome.word());
    }
    sqlx::query(
        r#"update payment_events e set outcome = o.outcome
           from unnest($1::text[], $2::text[]) as o(event_id, outcome)
           where e.event_id = o.event_id"#,
    )
    .bind(&ids)
    .bind(&words)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds the batch's net confirmed money to the streams' and campaigns' running totals.
async fn confirmed(tx: &mut Tx<'_>, plan: &Plan) -> sqlx::Result<()> {
    let (streams, campaigns) = plan.confirmed_deltas();
    let mut streams: Vec<(i64, i64)> = streams.into_iter().collect();
    let mut campaigns: Vec<(i64, i64)> = campaigns.into_iter().collect();
    streams.sort_unstable();
    campaigns.sort_unstable();
    if streams.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"insert into stream_confirmed (stream_id, confirmed)
           select * from unnest($1::bigint[], $2::bigint[])
           on conflict (stream_id)
           do update set confirmed = stream_confirmed.confirmed + excluded.confirmed"#,
    )
    .bind(col(&streams, |s| s.0))
    .bind(col(&streams, |s| s.1))
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        r#"insert into campaign_confirmed (campaign_id, confirmed)
           select * from unnest($1::bigint[], $2::bigint[])
           on conflict (campaign_id)
           do update set confirmed = campaign_confirmed.confirmed + excluded.confirmed"#,
    )
    .bind(col(&campaigns, |c| c.0))
    .bind(col(&campaigns, |c| c.1))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn milestones(tx: &mut Tx<'_>, plan: &Plan) -> sqlx::Result<()> {
    let m = &plan.milestones;
    if m.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"insert into milestones (campaign_id, stream_id, reached)
           select * from unnest($1::bigint[], $2::bigint[], $3::int[])"#,
    )
    .bind(col(m, |m| m.campaign_id))
    .bind(col(m, |m| m.stream_id))
    .bind(col(m, |m| m.reached))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
