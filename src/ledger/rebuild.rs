//! Live counters rebuilt from the ledger: after Redis is lost (`rebuild-counters`, or a
//! gateway that finds a campaign's counters missing), and when the drift check repairs.
//! Each holds the campaign's lock while it reads the ledger and rewrites Redis, so no
//! effect is applied in between (see `lock.rs`).

mod flight;
mod snapshot;
mod write;

use redis::aio::ConnectionLike;
use sqlx::{Connection, PgConnection, PgPool};

use super::lock::{CampaignLock, LockError};
use super::sums::{LedgerCounters, LedgerTotals};
use crate::counters::channel::Message;
use crate::counters::{self, CampaignKeys, Keys};
use crate::domain::Slug;

pub use snapshot::Snapshot;
pub(super) use snapshot::{the_rest, totals_and_waiting};

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no campaign named {0}")]
    UnknownCampaign(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Being rebuilt elsewhere, or lost again while rebuilt here.
    #[error("the campaign's live counters are not ready yet; try again")]
    Busy,
}

impl From<LockError> for RebuildError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Busy => RebuildError::Busy,
            LockError::Database(e) => RebuildError::Database(e),
        }
    }
}

/// How long a rebuild or repair waits for the campaign's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a reader waits for another's rebuild of a campaign it needs.
const BUILT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a waiting reader looks whether the counters were built.
const BUILT_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How often it tries the campaign's lock itself (each try costs a connection).
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// What a rebuild rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Redis lost the campaign: every counter, donors and pending pledges.
    Everything,
    /// The drift repair: only what settlement counts (confirmed, matched, refunded,
    /// gifts, donors, leaderboards, the counted sets), leaving pledges in flight untouched.
    Settled,
}

/// Rebuilds every live counter of `campaign` from the ledger in one atomic step:
/// totals, donors, leaderboards, the sets of gifts and refunds counted, and the pending
/// pledges. Event logs, seqs and announced effects are kept; effects still in the outbox
/// are counted here and announced by the relay.
pub async fn rebuild_campaign<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<LedgerTotals, RebuildError> {
    rebuild_with_lock(db, redis, keys, campaign, Scope::Everything).await
}

/// Rewrites what settlement counts of `campaign` from the ledger (a drift repair).
pub async fn repair_campaign<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<LedgerTotals, RebuildError> {
    rebuild_with_lock(db, redis, keys, campaign, Scope::Settled).await
}

/// Takes the campaign's lock (waiting for it a while), then rewrites `scope`.
async fn rebuild_with_lock<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
    scope: Scope,
) -> Result<LedgerTotals, RebuildError> {
    let id = campaign_id(db, campaign).await?;
    let mut lock = CampaignLock::acquire(db, id, LOCK_WAIT).await?;
    let totals = rebuild_locked(lock.conn(), redis, keys, campaign, id, scope).await?;
    lock.release().await?;
    Ok(totals)
}

/// Rebuilds a campaign's counters if they are missing (Redis was lost), so totals are
/// never served from an empty store. Concurrent gateways rebuild once: within a process
/// one request at a time tries the campaign's lock (now and then, without holding a
/// connection between tries) while the others wait their turn; all of them watch Redis
/// for the counters to be built, and give up after a while (the caller answers 503).
pub async fn ensure_built<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<(), RebuildError> {
    let k = keys.campaign(campaign);
    if is_built(redis, &k).await? {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + BUILT_WAIT;
    let _turn = flight::turn(k.built(), deadline)
        .await
        .ok_or(RebuildError::Busy)?;
    if is_built(redis, &k).await? {
        return Ok(());
    }
    let id = campaign_id(db, campaign).await?;
    let mut next_try = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_try {
            if let Some(mut lock) = CampaignLock::try_acquire(db, id).await? {
                if !is_built(redis, &k).await? {
                    rebuild_locked(lock.conn(), redis, keys, campaign, id, Scope::Everything)
                        .await?;
                }
                lock.release().await?;
                return Ok(());
            }
            next_try = tokio::time::Instant::now() + LOCK_RETRY;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RebuildError::Busy);
        }
        tokio::time::sleep(BUILT_POLL).await;
        if is_built(redis, &k).await? {
            return Ok(());
        }
    }
}

pub(super) async fn is_built<C: ConnectionLike>(
    redis: &mut C,
    k: &CampaignKeys,
) -> redis::RedisResult<bool> {
    redis::cmd("EXISTS").arg(k.built()).query_async(redis).await
}

pub(super) async fn campaign_id(db: &PgPool, campaign: &Slug) -> Result<i64, RebuildError> {
    sqlx::query_scalar(r#"select id from campaigns where slug = $1"#)
        .bind(campaign.as_str())
        .fetch_optional(db)
        .await?
        .ok_or_else(|| RebuildError::UnknownCampaign(campaign.to_string()))
}

/// Reads one snapshot of the ledger and writes it to Redis; the caller holds the lock.
#[tracing::instrument(name = "rebuild", skip_all, fields(campaign = %campaign, ?scope))]
async fn rebuild_locked<C: ConnectionLike>(
    conn: &mut PgConnection,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
    campaign_id: i64,
    scope: Scope,
) -> Result<LedgerTotals, RebuildError> {
    let mut snap_tx = conn
        .begin_with("begin isolation level repeatable read, read only")
        .await?;
    let (totals, _) = snapshot::totals_and_waiting(&mut snap_tx, campaign_id)
        .await?
        .ok_or_else(|| RebuildError::UnknownCampaign(campaign.to_string()))?;
    let snap = snapshot::the_rest(&mut snap_tx, totals).await?;
    write_snapshot(&mut snap_tx, redis, keys, campaign, &snap, scope).await?;
    snap_tx.commit().await?;
    tracing::info!(campaign = %campaign, gifts = snap.gift_ids.len(), ?scope, "live counters rebuilt from the ledger");
    Ok(snap.totals)
}

/// Writes `snap` to the counters; after a loss of everything, seqs start above any seq
/// a client may have seen, and pending pledges are swept again.
pub(super) async fn write_snapshot<C: ConnectionLike>(
    db: &mut PgConnection,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
    snap: &Snapshot,
    scope: Scope,
) -> Result<(), RebuildError> {
    let k = keys.campaign(campaign);
    write::pipeline(keys, campaign, snap, scope)
        .query_async::<()>(redis)
        .await?;
    if scope == Scope::Everything {
        seed_seqs(db, redis, &k, snap.totals.campaign_id).await?;
        // The index of campaigns to sweep is outside this campaign's slot.
        let _: () = redis::cmd("SADD")
            .arg(keys.pending_campaigns())
            .arg(campaign.as_str())
            .query_async(redis)
            .await?;
        // Last: until now, readers wait and effects stay in the outbox. Not when the
        // counters just written are gone again (Redis lost them meanwhile).
        let marked: i64 = redis::Script::new(MARK_BUILT)
            .key(k.built())
            .key(k.totals())
            .invoke_async(redis)
            .await?;
        if marked == 0 {
            tracing::warn!(campaign = %campaign, "the live store lost the counters while they were rebuilt");
            return Err(RebuildError::Busy);
        }
    }
    publish_totals(redis, &k, &snap.totals).await?;
    Ok(())
}

/// Marks a campaign built (KEYS[1]) if its totals (KEYS[2]) are there.
const MARK_BUILT: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
redis.call('SET', KEYS[1], 1)
return 1
"#;

/// How far above its recorded high-water mark a stream's seq starts again after Redis
/// lost it: past any event emitted but not yet recorded.
const SEQ_JUMP: i64 = 1000;

/// Starts each stream's seq above what it ever reached (never lowering a seq that
/// survived), so seq keeps increasing and clients resuming from an old seq see a gap.
async fn seed_seqs<C: ConnectionLike>(
    db: &mut PgConnection,
    redis: &mut C,
    k: &CampaignKeys,
    campaign_id: i64,
) -> Result<(), RebuildError> {
    let floors: Vec<Floor> = sqlx::query_as(
        r#"select s.slug::text as stream,
                  greatest(coalesce(q.seq, 0),
                           (select count(*) from gifts g where g.stream_id = s.id)
                           + (select count(*) from refunds r join gifts g on g.id = r.gift_id
                              where g.stream_id = s.id)
                           + (select count(*) from milestones m
                              where m.campaign_id = s.campaign_id
                                and (m.stream_id = s.id or m.stream_id is null)))::bigint as floor
           from streams s left join stream_seqs q on q.stream_id = s.id
           where s.campaign_id = $1"#,
    )
    .bind(campaign_id)
    .fetch_all(&mut *db)
    .await?;
    for Floor { stream, floor } in floors {
        counters::raise_seq(redis, k, &stream, floor + SEQ_JUMP).await?;
    }
    Ok(())
}

/// The least seq a stream starts again at.
#[derive(sqlx::FromRow)]
struct Floor {
    #[sqlx(try_from = "String")]
    stream: Slug,
    floor: i64,
}

/// Tells every gateway the totals changed, so sockets see the rebuilt numbers.
async fn publish_totals<C: ConnectionLike>(
    redis: &mut C,
    k: &CampaignKeys,
    totals: &LedgerTotals,
) -> redis::RedisResult<()> {
    if totals.streams.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (stream, _, _) in &totals.streams {
        let changed = Message::Totals {
            stream: stream.as_str(),
        };
        pipe.publish(k.channel(), changed.encode()).ignore();
    }
    pipe.query_async(redis).await
}

/// The ledger's counters less the effects still waiting that Redis has not counted yet:
/// what the live counters must hold right now.
pub(super) fn expected_now(
    totals: &LedgerTotals,
    waiting: &[(Slug, LedgerCounters)],
) -> (LedgerCounters, Vec<LedgerCounters>) {
    let mut campaign = totals.campaign;
    let mut streams: Vec<LedgerCounters> = totals.streams.iter().map(|(_, _, c)| *c).collect();
    for (stream, change) in waiting {
        campaign.sub(change);
        if let Some(i) = totals.streams.iter().position(|(s, _, _)| s == stream) {
            streams[i].sub(change);
        }
    }
    (campaign, streams)
}
