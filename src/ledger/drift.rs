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
use super::sums::{LedgerCounters, LedgerTotals, ledger_totals};
use crate::counters::{CampaignKeys, FIELDS, Keys};
use crate::domain::Slug;

/// The live counters of the campaign and of each of `totals`' streams, in one read.
async fn live_counters<C: ConnectionLike>(
    redis: &mut C,
    k: &CampaignKeys,
    totals: &LedgerTotals,
) -> redis::RedisResult<(LedgerCounters, Vec<LedgerCounters>)> {
    let mut pipe = redis::pipe();
    pipe.atomic().hmget(k.totals(), &FIELDS[..]);
    for (slug, _, _) in &totals.streams {
        let stream = Slug::parse("stream", slug).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Client, "bad slug", e.to_string()))
        })?;
        pipe.hmget(k.stream_totals(&stream), &FIELDS[..]);
    }
    let replies: Vec<Vec<Option<i64>>> = pipe.query_async(redis).await?;
    let mut all = replies.iter().map(|r| LedgerCounters::from_fields(r));
    let campaign = all.next().unwrap_or_default();
    Ok((campaign, all.collect()))
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

/// Under the campaign's lock, compares the live counters with the ledger less the
/// effects waiting in the outbox that Redis has not counted yet; when they differ,
/// rewrites the settled counters from the same snapshot. Returns the drift found.
pub async fn check_and_repair<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<i64, RebuildError> {
    let id = campaign_id(db, campaign).await?;
    let mut lock = CampaignLock::acquire(db, id).await?;
    let mut snap_tx = lock
        .conn()
        .begin_with("begin isolation level repeatable read, read only")
        .await?;
    let Some((totals, waiting)) = rebuild::totals_and_waiting(&mut snap_tx, id).await? else {
        return Err(RebuildError::UnknownCampaign(campaign.to_string()));
    };
    let k = keys.campaign(campaign);
    let uncounted = uncounted(redis, &k, &waiting).await?;
    let live = live_counters(redis, &k, &totals).await?;
    let drift = drift_between(&expected_now(&totals, &uncounted), &live);
    if drift != 0 {
        tracing::warn!(campaign = %campaign, drift, "live counters drifted from the ledger; repairing");
        let snap = rebuild::the_rest(&mut snap_tx, totals).await?;
        rebuild::write_snapshot(&mut snap_tx, redis, keys, campaign, &snap, Scope::Settled).await?;
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
) -> redis::RedisResult<Vec<(String, LedgerCounters)>> {
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
                changes.push((g.stream.to_string(), change));
            }
            LiveEffect::Refund(r) => {
                pipe.sismember(k.applied_refunds(), &r.refund_id);
                let change = LedgerCounters {
                    confirmed: -r.amount.minor_units(),
                    refunded: r.amount.minor_units(),
                    matched: -r.match_reversed.minor_units(),
                    ..LedgerCounters::default()
                };
                changes.push((r.stream.to_string(), change));
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
        let open: Vec<String> = match sqlx::query_scalar(
            r#"select slug::text from campaigns where closed_at is null order by id"#,
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
        for slug in open {
            if let Ok(campaign) = Slug::parse("campaign", &slug) {
                check_one(&db, &mut redis.clone(), &keys, &campaign).await;
            }
        }
    }
}

async fn check_one<C: ConnectionLike>(db: &PgPool, redis: &mut C, keys: &Keys, campaign: &Slug) {
    let gauge = metrics::gauge!("livefund_counter_drift", "campaign" => campaign.to_string());
    let found = match drift_of(db, redis, keys, campaign).await {
        Ok(0) => Ok(0),
        // A difference may be an effect on its way: look again, exactly, under the lock.
        Ok(_) => check_and_repair(db, redis, keys, campaign).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(drift) => gauge.set(drift as f64),
        Err(e) => tracing::warn!(error = %e, campaign = %campaign, "drift check failed"),
    }
}
