//! The drift check: compares the live counters with the ledger, exports the difference
//! as a metric, and repairs a campaign whose counters stay wrong.

use redis::aio::ConnectionLike;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::rebuild::{RebuildError, Scope, rebuild};
use super::sums::{LedgerCounters, ledger_totals};
use crate::counters::{FIELDS, Keys};
use crate::domain::Slug;

/// Compares one campaign's live counters with its ledger; returns the drift (0 when
/// they agree).
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
    let mut pipe = redis::pipe();
    pipe.hmget(k.totals(), &FIELDS[..]);
    let mut slugs = Vec::new();
    for (slug, _, _) in &ledger.streams {
        if let Ok(s) = Slug::parse("stream", slug) {
            pipe.hmget(k.stream_totals(&s), &FIELDS[..]);
            slugs.push(s);
        }
    }
    let replies: Vec<Vec<Option<i64>>> = pipe.query_async(redis).await?;
    let live = |v: &Vec<Option<i64>>| LedgerCounters {
        pledged: v.first().copied().flatten().unwrap_or(0),
        confirmed: v.get(1).copied().flatten().unwrap_or(0),
        matched: v.get(2).copied().flatten().unwrap_or(0),
        refunded: v.get(3).copied().flatten().unwrap_or(0),
        gifts: v.get(4).copied().flatten().unwrap_or(0),
    };
    let mut drift = replies
        .first()
        .map_or(0, |v| ledger.campaign.drift(&live(v)));
    for ((_, _, counters), reply) in ledger.streams.iter().zip(replies.iter().skip(1)) {
        drift += counters.drift(&live(reply));
    }
    Ok(drift)
}

/// How much settlement the live counters have seen: gifts and refunds counted.
async fn activity<C: ConnectionLike>(
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> redis::RedisResult<i64> {
    let k = keys.campaign(campaign);
    let (gifts, refunds): (i64, i64) = redis::pipe()
        .scard(k.applied_gifts())
        .scard(k.applied_refunds())
        .query_async(redis)
        .await?;
    Ok(gifts + refunds)
}

/// Every `every`, compares each open campaign's live counters with the ledger, exports
/// `livefund_counter_drift{campaign}`, and repairs a campaign that drifted on two checks
/// in a row (one check may catch a gift between its commit and its live effect).
pub async fn run_drift_check<C: ConnectionLike + Clone + Send + 'static>(
    db: PgPool,
    redis: C,
    keys: Keys,
    every: Duration,
    stop: CancellationToken,
) {
    // Campaign → (drift, live activity) at the last check that saw drift.
    let mut drifted: HashMap<String, (i64, i64)> = HashMap::new();
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
            let Ok(campaign) = Slug::parse("campaign", &slug) else {
                continue;
            };
            let mut conn = redis.clone();
            let Ok(activity) = activity(&mut conn, &keys, &campaign).await else {
                continue;
            };
            match drift_of(&db, &mut conn, &keys, &campaign).await {
                Ok(0) => {
                    drifted.remove(&slug);
                    metrics::gauge!("livefund_counter_drift", "campaign" => slug.clone()).set(0.0);
                }
                Ok(drift) => {
                    metrics::gauge!("livefund_counter_drift", "campaign" => slug.clone())
                        .set(drift as f64);
                    // Repaired only when the same drift stays with nothing settled in
                    // between: a gift between its commit and its live effect is not drift,
                    // and a repair must not race one.
                    if drifted.insert(slug.clone(), (drift, activity)) == Some((drift, activity)) {
                        tracing::warn!(campaign = %slug, drift, "live counters drifted from the ledger; repairing");
                        if let Err(e) =
                            rebuild(&db, &mut conn, &keys, &campaign, Scope::Settled).await
                        {
                            tracing::warn!(error = %e, "drift repair failed");
                        } else {
                            drifted.remove(&slug);
                        }
                    } else {
                        tracing::info!(campaign = %slug, drift, "live counters differ from the ledger; checking again");
                    }
                }
                Err(e) => tracing::warn!(error = %e, campaign = %slug, "drift check failed"),
            }
        }
    }
}
