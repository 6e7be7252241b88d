//! Reading, inside the settling transaction, what a batch of events touches: their
//! pledges, gifts, refunds, pools (locked) and refunds parked for later.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use std::collections::HashSet;
use uuid::Uuid;

use super::plan::{GiftFacts, Known, PledgeFacts, PoolFacts};
use crate::payments::{EventKind, PaymentEvent};

#[derive(sqlx::FromRow)]
struct PledgeRow {
    id: Uuid,
    campaign_id: i64,
    stream_id: i64,
    amount: i64,
    currency: String,
    designation: Option<String>,
    donor_name: Option<String>,
    anonymous: bool,
    message: Option<String>,
    donor_ref: Option<String>,
}

impl From<PledgeRow> for PledgeFacts {
    fn from(r: PledgeRow) -> Self {
        PledgeFacts {
            id: r.id,
            campaign_id: r.campaign_id,
            stream_id: r.stream_id,
            amount: r.amount,
            currency: r.currency,
            designation: r.designation,
            donor_name: r.donor_name,
            anonymous: r.anonymous,
            message: r.message,
            donor_ref: r.donor_ref,
        }
    }
}

/// The pledges of `ids` that PostgreSQL has.
pub async fn pledges(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[Uuid],
) -> sqlx::Result<Vec<PledgeFacts>> {
    let rows: Vec<PledgeRow> = sqlx::query_as(
        r#"select id, campaign_id, stream_id, amount::bigint as amount, currency::text as currency,
                  designation, donor_name, anonymous, message, donor_ref
           from pledges where id = any($1)"#,
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(PledgeFacts::from).collect())
}

/// Locks the pledges' rows until the transaction ends, in id order so that concurrent
/// batches cannot deadlock on them.
pub async fn lock_pledges(tx: &mut Transaction<'_, Postgres>, ids: &[Uuid]) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(r#"select id from pledges where id = any($1) order by id for update"#)
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct GiftRow {
    id: Uuid,
    pledge_id: Uuid,
    provider_txn_id: String,
    amount: i64,
    currency: String,
    campaign_id: i64,
    stream_id: i64,
    anonymous: bool,
    donor_ref: Option<String>,
    matched: i64,
    refunded: i64,
    reversed: i64,
}

#[derive(sqlx::FromRow)]
struct ParkedRow {
    event_id: String,
    pledge_id: Uuid,
    provider_txn_id: String,
    amount: i64,
    currency: String,
    fee: i64,
    occurred_at: DateTime<Utc>,
}

/// Fills `known` (whose pledges are already loaded) with the rest of what the batch
/// touches. The campaigns' matching pools are locked until the transaction ends, in
/// campaign order so concurrent batches cannot deadlock on them.
pub async fn rest(
    tx: &mut Transaction<'_, Postgres>,
    events: &[PaymentEvent],
    known: &mut Known,
) -> sqlx::Result<()> {
    let pledge_ids: Vec<Uuid> = known.pledges.keys().copied().collect();
    let campaign_ids: Vec<i64> = known
        .pledges
        .values()
        .map(|p| p.campaign_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let txns: Vec<&str> = events.iter().map(|e| e.provider_txn_id.as_str()).collect();

    let closed: Vec<(i64, bool)> =
        sqlx::query_as(r#"select id, closed_at is not null from campaigns where id = any($1)"#)
            .bind(&campaign_ids)
            .fetch_all(&mut **tx)
            .await?;
    known.closed.extend(closed);

    let pools: Vec<(i64, i32, i64, i64)> = sqlx::query_as(
        r#"select campaign_id, ratio_percent, cap::bigint, spent from matching_pools
           where campaign_id = any($1) order by campaign_id for update"#,
    )
    .bind(&campaign_ids)
    .fetch_all(&mut **tx)
    .await?;
    for (campaign, ratio, cap, spent) in pools {
        known.pools.insert(
            campaign,
            PoolFacts {
                ratio_percent: ratio.into(),
                cap,
                spent,
            },
        );
    }

    let gifts: Vec<GiftRow> = sqlx::query_as(
        r#"select g.id, g.pledge_id, g.provider_txn_id, g.amount::bigint as amount,
                  g.currency::text as currency, g.campaign_id, g.stream_id, g.anonymous,
                  g.donor_ref,
                  coalesce((select sum(amount) from matching_entries
                            where gift_id = g.id and refund_id is null), 0)::bigint as matched,
                  coalesce((select sum(amount) from refunds where gift_id = g.id), 0)::bigint
                      as refunded,
                  coalesce((select -sum(amount) from matching_entries
                            where gift_id = g.id and refund_id is not null), 0)::bigint as reversed
           from gifts g
           where g.pledge_id = any($1) or g.provider_txn_id = any($2)"#,
    )
    .bind(&pledge_ids)
    .bind(&txns)
    .fetch_all(&mut **tx)
    .await?;
    for g in gifts {
        known.gift_txns.insert(g.provider_txn_id.clone());
        known.gifts.insert(
            g.pledge_id,
            GiftFacts {
                id: g.id,
                pledge_id: g.pledge_id,
                amount: g.amount,
                currency: g.currency,
                campaign_id: g.campaign_id,
                stream_id: g.stream_id,
                anonymous: g.anonymous,
                donor_ref: g.donor_ref,
                matched: g.matched,
                refunded: g.refunded,
                reversed: g.reversed,
            },
        );
    }

    let refunds: Vec<String> = sqlx::query_scalar(
        r#"select provider_txn_id from refunds where provider_txn_id = any($1)"#,
    )
    .bind(&txns)
    .fetch_all(&mut **tx)
    .await?;
    known.refund_txns.extend(refunds);

    let parked: Vec<ParkedRow> = sqlx::query_as(
        r#"select e.event_id, x.pledge_id, e.provider_txn_id, e.amount, e.currency, e.fee,
                  e.occurred_at
           from payment_exceptions x
           join payment_events e on e.event_id = x.event_id
           where x.kind = 'refund_without_gift' and x.resolved_at is null
             and x.pledge_id = any($1)
           order by e.id"#,
    )
    .bind(&pledge_ids)
    .fetch_all(&mut **tx)
    .await?;
    for p in parked {
        known
            .parked
            .entry(p.pledge_id)
            .or_default()
            .push(PaymentEvent {
                event_id: p.event_id,
                kind: EventKind::RefundSucceeded,
                pledge_id: p.pledge_id.to_string(),
                provider_txn_id: p.provider_txn_id,
                amount: p.amount,
                currency: p.currency,
                fee: p.fee,
                occurred_at: p.occurred_at,
                test: false,
            });
    }
    Ok(())
}
