//! Reading, inside the settling transaction, what a batch of events touches, and locking
//! what the batch may change, always in the same order so concurrent batches on several
//! gateways cannot deadlock: pledges (by id), campaigns (by id: closed or not, confirmed
//! totals), sponsor pools, charges, parked refunds.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use super::lock::TXN_NAMESPACE;
use super::plan::{CampaignFacts, ChargeFacts, GiftFacts, Known, PoolFacts, Progress};
use crate::domain::Slug;
use crate::payments::{EventKind, PaymentEvent};

type Tx<'a> = Transaction<'a, Postgres>;

/// The provider transactions a batch's events carry, by role.
#[derive(Debug, Default)]
pub struct Txns {
    /// Of successful payments.
    pub payments: Vec<String>,
    /// Refunds' own.
    pub refunds: Vec<String>,
    /// The payments refunds name.
    pub named: Vec<String>,
}

impl Txns {
    pub fn of(events: &[PaymentEvent]) -> Txns {
        let mut txns = Txns::default();
        for e in events.iter().filter(|e| !e.test) {
            match e.kind {
                EventKind::PaymentSucceeded => txns.payments.push(e.provider_txn_id.clone()),
                EventKind::RefundSucceeded => txns.refunds.push(e.provider_txn_id.clone()),
                EventKind::PaymentFailed => {}
            }
            txns.named.extend(e.refunds_txn().map(str::to_owned));
        }
        txns
    }

    /// Payments, and the payments refunds name.
    pub fn paid(&self) -> Vec<String> {
        self.payments.iter().chain(&self.named).cloned().collect()
    }
}

/// A provider transaction's key among the transaction locks (FNV-1a, folded to 32 bits: a
/// collision only serializes two transactions, it never lets two batches in at once).
fn txn_key(txn: &str) -> i32 {
    let hash = txn.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash as i32
}

/// Locks, until the transaction ends and in one order on every gateway, every payment's
/// provider transaction and every payment a refund names: a payment and the refund naming
/// it settle one after the other even when they share no pledge (the refund's `pledge_id`
/// is the provider's to get right; its `refunded_txn_id` decides). Batches wait on each
/// other only for events on the same transaction.
pub async fn lock_txns(tx: &mut Tx<'_>, events: &[PaymentEvent]) -> sqlx::Result<()> {
    let mut keys: Vec<i32> = events
        .iter()
        .filter(|e| e.kind == EventKind::PaymentSucceeded)
        .map(|e| e.provider_txn_id.as_str())
        .chain(events.iter().filter_map(PaymentEvent::refunds_txn))
        .map(txn_key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        r#"select count(pg_advisory_xact_lock($1, k))
           from (select unnest($2::int[]) as k order by k) as sorted"#,
    )
    .bind(TXN_NAMESPACE)
    .bind(&keys)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The pledges a batch touches, in id order: those its events name, and those whose gift
/// a refund names.
pub async fn pledge_ids(
    tx: &mut Tx<'_>,
    events: &[PaymentEvent],
    txns: &Txns,
) -> sqlx::Result<Vec<Uuid>> {
    let mut ids: HashSet<Uuid> = events
        .iter()
        .filter_map(|e| e.pledge_id.parse().ok())
        .collect();
    if !txns.named.is_empty() {
        let of_gifts: Vec<Uuid> =
            sqlx::query_scalar(r#"select pledge_id from gifts where provider_txn_id = any($1)"#)
                .bind(&txns.named)
                .fetch_all(&mut **tx)
                .await?;
        ids.extend(of_gifts);
    }
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort();
    Ok(ids)
}

/// Locks the pledges' rows until the transaction ends, in id order: events on one pledge
/// settle one transaction at a time, on every gateway.
pub async fn lock_pledges(tx: &mut Tx<'_>, ids: &[Uuid]) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(r#"select id from pledges where id = any($1) order by id for update"#)
        .bind(ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A stream of a touched campaign: its campaign and slug, for the live effects.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamRef {
    pub id: i64,
    pub campaign_id: i64,
    #[sqlx(try_from = "String")]
    pub slug: Slug,
    goal: Option<i64>,
    confirmed: i64,
}

/// Locks the campaigns' rows (in id order: a close waits for the batch, and a batch for a
/// close) and reads whether each is closed, its progress, and its streams'.
pub async fn campaigns(
    tx: &mut Tx<'_>,
    ids: &[i64],
    known: &mut Known,
) -> sqlx::Result<HashMap<i64, StreamRef>> {
    let rows: Vec<(i64, bool, i64)> = sqlx::query_as(
        r#"select id, closed_at is not null, goal::bigint from campaigns
           where id = any($1) order by id for no key update"#,
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    // Read after the lock, in statements of their own: their snapshot then holds what the
    // batch that held the lock before committed.
    let confirmed: HashMap<i64, i64> = sqlx::query_as(
        r#"select campaign_id, confirmed from campaign_confirmed where campaign_id = any($1)"#,
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    for (id, closed, goal) in rows {
        let progress = Progress {
            goal: Some(goal),
            confirmed: confirmed.get(&id).copied().unwrap_or(0),
            ..Progress::default()
        };
        known
            .campaigns
            .insert(id, CampaignFacts { closed, progress });
    }
    let streams: Vec<StreamRef> = sqlx::query_as(
        r#"select s.id, s.campaign_id, s.slug::text as slug, s.goal::bigint as goal,
                  coalesce(t.confirmed, 0) as confirmed
           from streams s left join stream_confirmed t on t.stream_id = s.id
           where s.campaign_id = any($1) order by s.id"#,
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    for s in &streams {
        let progress = Progress {
            goal: s.goal,
            confirmed: s.confirmed,
            ..Progress::default()
        };
        known.streams.insert(s.id, progress);
    }
    reached(tx, ids, known).await?;
    Ok(streams.into_iter().map(|s| (s.id, s)).collect())
}

/// The milestones the campaigns and their streams already reached.
async fn reached(tx: &mut Tx<'_>, ids: &[i64], known: &mut Known) -> sqlx::Result<()> {
    let rows: Vec<(i64, Option<i64>, i32)> = sqlx::query_as(
        r#"select campaign_id, stream_id, reached from milestones where campaign_id = any($1)"#,
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    for (campaign, stream, pct) in rows {
        let progress = match stream {
            Some(s) => known.streams.get_mut(&s),
            None => known.campaigns.get_mut(&campaign).map(|c| &mut c.progress),
        };
        if let Some(p) = progress {
            p.reached.insert(pct);
        }
    }
    Ok(())
}

/// The campaigns' sponsor pools, locked in campaign order.
pub async fn pools(tx: &mut Tx<'_>, ids: &[i64], known: &mut Known) -> sqlx::Result<()> {
    let pools: Vec<(i64, i32, i64, i64)> = sqlx::query_as(
        r#"select campaign_id, ratio_percent, cap::bigint, spent from matching_pools
           where campaign_id = any($1) order by campaign_id for update"#,
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    for (campaign, ratio, cap, spent) in pools {
        let pool = PoolFacts {
            ratio_percent: ratio.into(),
            cap,
            spent,
        };
        known.pools.insert(campaign, pool);
    }
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

/// The gifts of the pledges, and those paid by the transactions, with what has been
/// refunded and matched of each.
pub async fn gifts(
    tx: &mut Tx<'_>,
    pledges: &[Uuid],
    txns: &[String],
    known: &mut Known,
) -> sqlx::Result<()> {
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
    .bind(pledges)
    .bind(txns)
    .fetch_all(&mut **tx)
    .await?;
    for g in gifts {
        known
            .gift_txns
            .insert(g.provider_txn_id.clone(), g.pledge_id);
        let facts = GiftFacts {
            id: g.id,
            pledge_id: g.pledge_id,
            provider_txn_id: g.provider_txn_id,
            amount: g.amount,
            currency: g.currency,
            campaign_id: g.campaign_id,
            stream_id: g.stream_id,
            anonymous: g.anonymous,
            donor_ref: g.donor_ref,
            matched: g.matched,
            refunded: g.refunded,
            reversed: g.reversed,
        };
        known.gifts.insert(facts.pledge_id, facts);
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ChargeRow {
    event_id: String,
    provider_txn_id: String,
    campaign_id: Option<i64>,
    amount: i64,
    currency: String,
    refunded: i64,
}

/// Payments of the transactions recorded as exceptions (charges), locked, with what has
/// been refunded of each.
pub async fn charges(tx: &mut Tx<'_>, txns: &[String], known: &mut Known) -> sqlx::Result<()> {
    let rows: Vec<ChargeRow> = sqlx::query_as(
        r#"select x.event_id, e.provider_txn_id, x.campaign_id, e.amount, e.currency,
                  coalesce((select sum(r.amount) from exception_refunds r
                            where r.exception_event_id = x.event_id), 0)::bigint as refunded
           from payment_exceptions x join payment_events e on e.event_id = x.event_id
           where e.type = 'payment.succeeded' and e.provider_txn_id = any($1)
           order by x.id for update of x"#,
    )
    .bind(txns)
    .fetch_all(&mut **tx)
    .await?;
    for c in rows {
        let charge = ChargeFacts {
            event_id: c.event_id,
            provider_txn_id: c.provider_txn_id.clone(),
            campaign_id: c.campaign_id,
            amount: c.amount,
            currency: c.currency,
            refunded: c.refunded,
        };
        known.charges.entry(c.provider_txn_id).or_insert(charge);
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct ParkedRow {
    event_id: String,
    pledge_id: Option<Uuid>,
    provider_txn_id: String,
    amount: i64,
    currency: String,
    fee: i64,
    occurred_at: DateTime<Utc>,
    refunded_txn_id: Option<String>,
}

/// Refunds parked before their payment that the batch may apply: for its pledges, or
/// naming its payments. Locked, in arrival order.
pub async fn parked(
    tx: &mut Tx<'_>,
    pledges: &[Uuid],
    payments: &[String],
    known: &mut Known,
) -> sqlx::Result<()> {
    let rows: Vec<ParkedRow> = sqlx::query_as(
        r#"select e.event_id, e.pledge_id, e.provider_txn_id, e.amount, e.currency, e.fee,
                  e.occurred_at, e.refunded_txn_id
           from payment_exceptions x join payment_events e on e.event_id = x.event_id
           where x.kind = 'refund_without_gift' and x.resolved_at is null
             and (x.pledge_id = any($1) or e.refunded_txn_id = any($2))
           order by x.id for update of x"#,
    )
    .bind(pledges)
    .bind(payments)
    .fetch_all(&mut **tx)
    .await?;
    for p in rows {
        known.parked_refunds.insert(p.provider_txn_id.clone());
        known.parked.push(PaymentEvent {
            event_id: p.event_id,
            kind: EventKind::RefundSucceeded,
            pledge_id: p.pledge_id.map(|id| id.to_string()).unwrap_or_default(),
            provider_txn_id: p.provider_txn_id,
            amount: p.amount,
            currency: p.currency,
            fee: p.fee,
            occurred_at: p.occurred_at,
            test: false,
            // An empty name is no name, as when the event first arrived.
            refunded_txn_id: p.refunded_txn_id.filter(|txn| !txn.is_empty()),
        });
    }
    Ok(())
}

/// Which of the refund transactions were applied already (to a gift or a charge), and
/// which wait parked.
pub async fn refund_txns(tx: &mut Tx<'_>, txns: &[String], known: &mut Known) -> sqlx::Result<()> {
    let applied: Vec<String> = sqlx::query_scalar(
        r#"select provider_txn_id from refunds where provider_txn_id = any($1)
           union all
           select provider_txn_id from exception_refunds where provider_txn_id = any($1)"#,
    )
    .bind(txns)
    .fetch_all(&mut **tx)
    .await?;
    known.applied_refunds.extend(applied);
    let parked: Vec<String> = sqlx::query_scalar(
        r#"select provider_txn_id from payment_exceptions
           where kind = 'refund_without_gift' and resolved_at is null
             and provider_txn_id = any($1)"#,
    )
    .bind(txns)
    .fetch_all(&mut **tx)
    .await?;
    known.parked_refunds.extend(parked);
    Ok(())
}
