//! The outbox relay, on every gateway: takes a campaign's pending effects in order (under
//! the campaign's lock, so one relay at a time applies a campaign's effects, and never
//! while a rebuild or repair rewrites its counters), runs each effect's script on Redis,
//! then deletes the rows and records the streams' seqs, in one transaction. A relay that
//! dies half-way leaves its rows for the next one; the scripts are idempotent, so an
//! effect applied twice counts and announces once.

use redis::aio::ConnectionLike;
use sqlx::PgPool;
use sqlx::types::Json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::outbox::LiveEffect;
use super::stores::Stores;
use super::sums::Named;
use super::{RebuildError, ensure_built, lock};
use crate::counters::{self, Applied, CampaignKeys, Keys};
use crate::domain::Slug;

/// The most effects applied in one transaction.
const BATCH: i64 = 500;
/// How many scripts are in flight at once (pipelined on one connection, in order).
const IN_FLIGHT: usize = 128;
/// How often the relay looks for effects left by another gateway.
const POLL: Duration = Duration::from_secs(1);
/// How soon it looks again when other relays hold every campaign with effects.
const RETRY: Duration = Duration::from_millis(50);
/// How long the relay goes on, once stopped, with what the settler committed last.
const LAST_PASS: Duration = Duration::from_secs(2);

/// Wakes the relay when a batch has committed effects.
#[derive(Clone, Default)]
pub struct RelayWake(Arc<Notify>);

impl RelayWake {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Why a relay pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
}

/// What one pass over the outbox came to.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Nothing is pending.
    Empty,
    /// Effects were applied; there may be more.
    Progress,
    /// Effects are pending, but other relays (or a rebuild) hold their campaigns.
    Held,
    /// Effects are pending that could not be applied now: they wait (a refund before its
    /// gift, an effect that cannot be read), or Redis failed.
    Waiting,
}

/// Applies the outbox until `stop`.
pub async fn run_relay(stores: Stores, wake: RelayWake, stop: CancellationToken) {
    let Stores { db, redis, keys } = stores;
    let mut wait = POLL;
    loop {
        tokio::select! {
            _ = wake.0.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {
                // What the last batches committed, relayed now if it can be soon;
                // whatever is left waits in the outbox for the next start.
                let mut redis = redis.clone();
                let last = async {
                    while let Pass::Progress = relay_pass(&db, &mut redis, &keys).await {}
                };
                let _ = tokio::time::timeout(LAST_PASS, last).await;
                return;
            }
        }
        loop {
            match relay_pass(&db, &mut redis.clone(), &keys).await {
                Pass::Progress => wait = RETRY,
                Pass::Empty => {
                    wait = POLL;
                    break;
                }
                Pass::Held => {
                    wait = RETRY;
                    break;
                }
                Pass::Waiting => {
                    // Back off while nothing moves, up to the poll interval.
                    wait = (wait * 2).clamp(RETRY, POLL);
                    break;
                }
            }
        }
    }
}

/// One pass: every campaign with pending effects that no one else is relaying. A
/// campaign that fails is logged and left for the next pass; the others go on.
async fn relay_pass<C: ConnectionLike + Clone>(db: &PgPool, redis: &mut C, keys: &Keys) -> Pass {
    let pending: Vec<Named> = match sqlx::query_as(
        r#"select c.id, c.slug::text as slug from campaigns c
           where exists (select 1 from outbox o where o.campaign_id = c.id) order by c.id"#,
    )
    .fetch_all(db)
    .await
    {
        Ok(pending) => pending,
        Err(e) => {
            failed(&e, "the outbox");
            return Pass::Waiting;
        }
    };
    if pending.is_empty() {
        return Pass::Empty;
    }
    let (mut progress, mut held) = (false, false);
    for Named { id, slug: campaign } in pending {
        match relay_campaign(db, redis, keys, id, &campaign).await {
            Ok(Relayed::Applied(n)) => progress |= n > 0,
            Ok(Relayed::Held) => held = true,
            Ok(Relayed::NotBuilt) => {
                // Counted by the rebuild, which reads the effects' commits; announced by
                // the next pass.
                match ensure_built(db, redis, keys, &campaign).await {
                    Ok(()) => progress = true,
                    Err(e) => failed(&e, campaign.as_str()),
                }
            }
            Err(e) => failed(&e, campaign.as_str()),
        }
    }
    if progress {
        Pass::Progress
    } else if held {
        Pass::Held
    } else {
        Pass::Waiting
    }
}

fn failed(e: &dyn std::fmt::Display, what: &str) {
    metrics::counter!("livefund_relay_errors_total").increment(1);
    tracing::warn!(error = %e, what, "outbox relay failed; retrying");
}

enum Relayed {
    /// Applied this many effects.
    Applied(usize),
    Held,
    NotBuilt,
}

/// Applies one campaign's pending effects, in order, under its lock. An effect that
/// cannot be read (written by another version) is logged and left, never dropped.
#[tracing::instrument(name = "relay", skip_all, fields(campaign = %campaign))]
async fn relay_campaign<C: ConnectionLike + Clone>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign_id: i64,
    campaign: &Slug,
) -> Result<Relayed, RelayError> {
    let mut tx = db.begin().await?;
    if !lock::try_lock_in(&mut tx, campaign_id).await? {
        return Ok(Relayed::Held);
    }
    let rows: Vec<(i64, Json<serde_json::Value>)> = sqlx::query_as(
        r#"select id, effect from outbox where campaign_id = $1 order by id limit $2"#,
    )
    .bind(campaign_id)
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let rows: Vec<(i64, LiveEffect)> = rows.into_iter().filter_map(readable).collect();
    let k = keys.campaign(campaign);
    let mut done = Vec::with_capacity(rows.len());
    let mut seqs: HashMap<String, i64> = HashMap::new();
    let mut not_built = false;
    for chunk in rows.chunks(IN_FLIGHT) {
        let runs = chunk
            .iter()
            .map(|(_, effect)| apply(redis.clone(), &k, effect));
        for ((id, effect), step) in chunk.iter().zip(futures_util::future::join_all(runs).await) {
            match step? {
                Step::Done(announced) => {
                    done.push(*id);
                    for (stream, seq) in announced {
                        let high = seqs.entry(stream).or_default();
                        *high = (*high).max(seq);
                    }
                }
                Step::NotBuilt => not_built = true,
                Step::Later => tracing::warn!(?effect, "a refund's gift is not counted yet; later"),
            }
        }
    }
    delete_and_record(&mut tx, &done, &seqs).await?;
    tx.commit().await?;
    metrics::counter!("livefund_relay_effects_total").increment(done.len() as u64);
    Ok(if not_built {
        Relayed::NotBuilt
    } else {
        Relayed::Applied(done.len())
    })
}

/// An outbox row as an effect, or `None` (logged) when it cannot be read.
fn readable((id, Json(value)): (i64, Json<serde_json::Value>)) -> Option<(i64, LiveEffect)> {
    match serde_json::from_value(value) {
        Ok(effect) => Some((id, effect)),
        Err(e) => {
            metrics::counter!("livefund_relay_unreadable_total").increment(1);
            tracing::error!(outbox_id = id, error = %e, "an outbox effect cannot be read; left in place");
            None
        }
    }
}

/// What applying one effect came to.
enum Step {
    /// Applied (or applied before): the streams' seqs it announced.
    Done(Vec<(String, i64)>),
    /// The campaign's counters are missing.
    NotBuilt,
    /// Not yet (a refund whose gift is not counted).
    Later,
}

fn step(applied: Applied, stream: &Slug) -> Step {
    match applied {
        Applied::Announced(seq) => Step::Done(vec![(stream.to_string(), seq as i64)]),
        Applied::AlreadyAnnounced => Step::Done(Vec::new()),
        Applied::NotBuilt => Step::NotBuilt,
        Applied::GiftNotCounted => Step::Later,
    }
}

async fn apply<C: ConnectionLike>(
    mut redis: C,
    k: &CampaignKeys,
    effect: &LiveEffect,
) -> redis::RedisResult<Step> {
    Ok(match effect {
        LiveEffect::Gift(g) => step(counters::gift_settled(&mut redis, k, g).await?, &g.stream),
        LiveEffect::Refund(r) => step(counters::refund_settled(&mut redis, k, r).await?, &r.stream),
        LiveEffect::Milestone(m) => match counters::milestone_reached(&mut redis, k, m).await? {
            (Applied::NotBuilt, _) => Step::NotBuilt,
            (_, seqs) => Step::Done(
                m.streams
                    .iter()
                    .zip(seqs)
                    .map(|(s, seq)| (s.to_string(), seq as i64))
                    .collect(),
            ),
        },
        LiveEffect::Failed(f) => {
            counters::pledge_failed(&mut redis, k, f).await?;
            Step::Done(Vec::new())
        }
        LiveEffect::Alert(a) => {
            counters::publish_alert(&mut redis, k, a).await?;
            Step::Done(Vec::new())
        }
    })
}

/// Deletes the applied effects and raises each stream's recorded seq, so a stream whose
/// seq Redis loses starts again above it.
async fn delete_and_record(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    done: &[i64],
    seqs: &HashMap<String, i64>,
) -> sqlx::Result<()> {
    if !done.is_empty() {
        sqlx::query(r#"delete from outbox where id = any($1)"#)
            .bind(done)
            .execute(&mut **tx)
            .await?;
    }
    if !seqs.is_empty() {
        let (slugs, values): (Vec<&str>, Vec<i64>) =
            seqs.iter().map(|(s, v)| (s.as_str(), *v)).unzip();
        sqlx::query(
            r#"insert into stream_seqs (stream_id, seq)
               select s.id, x.seq from unnest($1::text[], $2::bigint[]) as x(slug, seq)
               join streams s on s.slug = x.slug
               order by s.id
               on conflict (stream_id) do update set seq = greatest(stream_seqs.seq, excluded.seq)"#,
        )
        .bind(&slugs)
        .bind(&values)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
