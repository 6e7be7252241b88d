//! The drift check: compares the live counters with the ledger, exports the difference
//! as a metric, and repairs a campaign whose counters are wrong. The quick comparison
//! takes no lock; when it sees a difference, the exact one runs under the campaign's
//! lock, with the effects still waiting in the outbox set aside, and repairs from the
//! same snapshot of the ledger.

use redis::aio::ConnectionLike;
use sqlx::{Connection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::lock::CampaignLock;
use super::outbox::LiveEffect;
use super::rebuild::{self, RebuildError, Scope, campaign_id, expected_now};
use super::sums::{LedgerCounters, LedgerTotals, Named, ledger_totals};
use crate::counters::{CampaignKeys, FIELDS, Keys, short_reply};
use crate::domain::Slug;

/// The live counters of the campaign and of each of `totals`' streams, in one read.
async fn live_counters<C: ConnectionLike>(
    redis: &mut C,
    k: &CampaignKeys,
    totals: &LedgerTotals,
) -> redis::RedisResult<(LedgerCounters, Vec<LedgerCounters>)> {
    let mut pipe = redis::pipe();
    pipe.atomic().hmget(k.totals(), &FIELDS[..]);
    for (stream, _, _) in &totals.streams {
        pipe.hmget(k.stream_totals(stream), &FIELDS[..]);
    }
    let replies: Vec<Vec<Option<i64>>> = pipe.query_async(redis).await?;
    let mut all = replies.iter().map(|r| LedgerCounters::from_fields(r));
    let wanted = totals.streams.len() + 1;
    match all.next() {
        Some(campaign) if replies.len() == wanted => Ok((campaign, all.collect())),
        _ => Err(short_reply(replies.len(), wanted)),
    }
}

fn drift_between(
    (campaign, streams): &(LedgerCounters, Vec<LedgerCounters>),
    (live_campaign, live_streams): &(LedgerCounters, Vec<LedgerCounters>),
) -> i64 {
    let per_stream: i64 = streams
        .iter()
        .zip(live_streams)
        .map(|(ledger, live)| ledger.drift(live))
        .sum();
    campaign.drift(live_campaign) + per_stream
}

/// Compares one campaign's live counters with its ledger, without a lock; returns the
/// drift (0 when they agree). An effect committed but not yet applied shows here.
pub async fn drift_of<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<i64, RebuildError> {
    let mut conn = db.acquire().await?;
    let Some(ledger) = ledger_totals(&mut conn, campaign).await? else {
        return Ok(0);
    };
    let k = keys.campaign(campaign);
    let live = live_counters(redis, &k, &ledger).await?;
    let expected = (
        ledger.campaign,
        ledger.streams.iter().map(|(_, _, c)| *c).collect(),
    );
    Ok(drift_between(&expected, &live))
}

/// How long the exact check waits for the campaign's lock (a relay holds it briefly;
/// a campaign busy for longer is looked at again on the next check).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Under the campaign's lock, compares the live counters with the ledger less the
/// effects waiting in the outbox that Redis has not counted yet; when they differ,
/// rewrites the settled counters from the same snapshot. Returns the drift found, or
/// [`RebuildError::Busy`] when the lock stayed taken.
pub async fn check_and_repair<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<i64, RebuildError> {
    let id = campaign_id(db, campaign).await?;
    let mut lock = CampaignLock::acquire(db, id, LOCK_WAIT).await?;
    let mut snap_tx = lock
        .conn()
        .begin_with("begin isolation level repeatable read, read only")
        .await?;
    let Some((totals, waiting)) = rebuild::totals_and_waiting(&mut snap_tx, id).await? else {
        return Err(RebuildError::UnknownCampaign(campaign.to_string()));
    };
    let k = keys.campaign(campaign);
    // Counters Redis lost entirely are rebuilt whole (seqs, pending pledges and all), not
    // repaired.
    let (drift, scope) = if rebuild::is_built(redis, &k).await? {
        let uncounted = uncounted(redis, &k, &waiting).await?;
        let live = live_counters(redis, &k, &totals).await?;
        let drift = drift_between(&expected_now(&totals, &uncounted), &live);
        (drift, Scope::Settled)
    } else {
        (1, Scope::Everything)
    };
    if drift != 0 {
        tracing::warn!(campaign = %campaign, drift, ?scope, "live counters differ from the ledger; rewriting them");
        let snap = rebuild::the_rest(&mut snap_tx, totals).await?;
        rebuild::write_snapshot(&mut snap_tx, redis, keys, campaign, &snap, scope).await?;
        metrics::counter!("livefund_counter_repairs_total").increment(1);
    }
    snap_tx.commit().await?;
    lock.release().await?;
    Ok(drift)
}

/// What the waiting effects Redis has not counted yet will add, by stream.
async fn uncounted<C: ConnectionLike>(
    redis: &mut C,
    k: &CampaignKeys,
    waiting: &[LiveEffect],
) -> redis::RedisResult<Vec<(Slug, LedgerCounters)>> {
    let mut pipe = redis::pipe();
    let mut changes = Vec::new();
    for effect in waiting {
        match effect {
            LiveEffect::Gift(g) => {
                pipe.sismember(k.applied_gifts(), &g.gift_id);
                let change = LedgerCounters {
                    confirmed: g.amount.minor_units(),
                    matched: g.matched.minor_units(),
                    gifts: 1,
                    ..LedgerCounters::default()
                };
                changes.push((g.stream.clone(), change));
            }
            LiveEffect::Refund(r) => {
                pipe.sismember(k.applied_refunds(), &r.refund_id);
                let change = LedgerCounters {
                    confirmed: -r.amount.minor_units(),
                    refunded: r.amount.minor_units(),
                    matched: -r.match_reversed.minor_units(),
                    ..LedgerCounters::default()
                };
                changes.push((r.stream.clone(), change));
            }
            _ => {}
        }
    }
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let counted: Vec<bool> = pipe.query_async(redis).await?;
    Ok(changes
        .into_iter()
        .zip(counted)
        .filter(|(_, counted)| !counted)
        .map(|(change, _)| change)
        .collect())
}

/// Every `every`, compares each open campaign's live counters with the ledger, exports
/// `livefund_counter_drift{campaign}`, and repairs what is wrong.
pub async fn run_drift_check<C: ConnectionLike + Clone + Send + 'static>(
    db: PgPool,
    redis: C,
    keys: Keys,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.reset();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let open: Vec<Named> = match sqlx::query_as(
            r#"select id, slug::text as slug from campaigns where closed_at is null order by id"#,
        )
        .fetch_all(&db)
        .await
        {
            Ok(open) => open,
            Err(e) => {
                tracing::warn!(error = %e, "drift check: cannot list campaigns");
                continue;
            }
        };
        for campaign in open {
            check_one(&db, &mut redis.clone(), &keys, &campaign.slug).await;
        }
    }
}

/// A stream's confirmed money as the ledger sums it, next to its running total.
const STREAM_SUMS: &str = r#"
    with sums as (
        select s.id as stream_id,
               (coalesce((select sum(amount) from gifts g where g.stream_id = s.id), 0)
                - coalesce((select sum(r.amount) from refunds r join gifts g
                            on g.id = r.gift_id where g.stream_id = s.id), 0))::bigint
                   as confirmed
        from streams s where s.campaign_id = $1)"#;

/// The running confirmed totals that milestones are decided from must equal the ledger's
/// sums. Compared in one snapshot without a lock; only when they differ, compared again
/// and rewritten under the campaign's row lock as settlement takes it. Returns how many
/// were wrong.
pub async fn verify_running_totals(db: &PgPool, campaign: &Slug) -> sqlx::Result<u64> {
    let id: Option<i64> = sqlx::query_scalar(r#"select id from campaigns where slug = $1"#)
        .bind(campaign.as_str())
        .fetch_optional(db)
        .await?;
    let Some(id) = id else { return Ok(0) };
    let differing: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        r#"{STREAM_SUMS}
           select (select count(*) from sums left join stream_confirmed t
                   on t.stream_id = sums.stream_id
                   where coalesce(t.confirmed, 0) <> sums.confirmed)
                + (case when coalesce((select confirmed from campaign_confirmed
                                       where campaign_id = $1), 0)
                               <> (select coalesce(sum(confirmed), 0) from sums)
                        then 1 else 0 end)"#
    )))
    .bind(id)
    .fetch_one(db)
    .await?;
    if differing == 0 {
        return Ok(0);
    }
    rewrite_running_totals(db, campaign, id).await
}

async fn rewrite_running_totals(db: &PgPool, campaign: &Slug, id: i64) -> sqlx::Result<u64> {
    let mut tx = db.begin().await?;
    sqlx::query(r#"select id from campaigns where id = $1 for no key update"#)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let streams = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"{STREAM_SUMS}
           insert into stream_confirmed (stream_id, confirmed)
           select sums.stream_id, sums.confirmed from sums
           left join stream_confirmed t on t.stream_id = sums.stream_id
           where coalesce(t.confirmed, 0) <> sums.confirmed
           on conflict (stream_id) do update set confirmed = excluded.confirmed"#
    )))
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let campaign_rows = sqlx::query(
        r#"insert into campaign_confirmed (campaign_id, confirmed)
           select $1, total from (
               select coalesce(sum(t.confirmed), 0)::bigint as total from stream_confirmed t
               join streams s on s.id = t.stream_id where s.campaign_id = $1) as sums
           where total <> coalesce(
               (select confirmed from campaign_confirmed where campaign_id = $1), 0)
           on conflict (campaign_id) do update set confirmed = excluded.confirmed"#,
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    let fixed = streams + campaign_rows;
    if fixed > 0 {
        tracing::error!(campaign = %campaign, fixed, "running confirmed totals differed from the ledger; rewritten");
    }
    Ok(fixed)
}

async fn check_one<C: ConnectionLike>(db: &PgPool, redis: &mut C, keys: &Keys, campaign: &Slug) {
    match verify_running_totals(db, campaign).await {
        Ok(0) => {}
        Ok(fixed) => {
            metrics::counter!("livefund_running_totals_fixed_total").increment(fixed);
        }
        Err(e) => {
            tracing::warn!(error = %e, campaign = %campaign, "could not verify running totals")
        }
    }
    let gauge = metrics::gauge!("livefund_counter_drift", "campaign" => campaign.to_string());
    let found = match drift_of(db, redis, keys, campaign).await {
        Ok(0) => Ok(0),
        // A difference may be an effect on its way: look again, exactly, under the lock.
        Ok(_) => check_and_repair(db, redis, keys, campaign).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(drift) => gauge.set(drift as f64),
        // Not known this time: the gauge keeps its last value.
        Err(RebuildError::Busy) => {
            metrics::counter!("livefund_drift_checks_skipped_total").increment(1);
            tracing::info!(campaign = %campaign, "drift check skipped: the campaign stayed busy");
        }
        Err(e) => tracing::warn!(error = %e, campaign = %campaign, "drift check failed"),
    }
}
