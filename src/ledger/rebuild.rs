//! Live counters rebuilt from the ledger: after Redis is lost (`rebuild-counters`, or a
//! gateway that finds a campaign's counters missing) and when the drift check repairs.

use redis::aio::ConnectionLike;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::time::Duration;

use super::sums::{LedgerCounters, LedgerTotals, ledger_totals};
use crate::counters::{self, CampaignKeys, Keys, board_key, donor_key};
use crate::domain::Slug;
use crate::pledges::PLEDGE_KEEP_SECS;

#[derive(sqlx::FromRow)]
struct BoardRow {
    stream: String,
    gift_id: String,
    pledge_id: String,
    anonymous: bool,
    donor_ref: Option<String>,
    donor_name: Option<String>,
    net: i64,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: String,
    stream: String,
    amount: i64,
    currency: String,
    donor_name: Option<String>,
    anonymous: bool,
    message: Option<String>,
    designation: Option<String>,
    donor_ref: Option<String>,
    idempotency_key: Option<String>,
    created_ms: i64,
    expires_ms: i64,
}

/// Why a rebuild failed.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no campaign named {0}")]
    UnknownCampaign(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Rebuilds every live counter of `campaign` from the ledger in one atomic step:
/// totals, donors, leaderboards, milestones reached, the sets of gifts and refunds
/// already counted, and the pending pledges. Event logs and seqs are kept.
pub async fn rebuild_campaign<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<LedgerTotals, RebuildError> {
    rebuild(db, redis, keys, campaign, Scope::Everything).await
}

/// What a rebuild rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Redis lost the campaign: every counter, donors, milestones and pending pledges.
    Everything,
    /// The drift repair: only what settlement counts (confirmed, matched, refunded,
    /// gifts, leaderboards, the counted sets), leaving pledges in flight untouched.
    Settled,
}

/// Rewrites `scope` of a campaign's live counters from the ledger in one atomic step.
pub async fn rebuild<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
    scope: Scope,
) -> Result<LedgerTotals, RebuildError> {
    let everything = scope == Scope::Everything;
    // One consistent snapshot of the ledger for every read below.
    let mut snapshot = db.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *snapshot)
        .await?;
    let totals = ledger_totals(&mut snapshot, campaign)
        .await?
        .ok_or_else(|| RebuildError::UnknownCampaign(campaign.to_string()))?;
    let k = keys.campaign(campaign);
    let id = totals.campaign_id;
    let boards: Vec<BoardRow> = sqlx::query_as(
        r#"select s.slug::text as stream, g.id::text as gift_id, g.pledge_id::text as pledge_id,
                  g.anonymous, g.donor_ref, g.donor_name,
                  (g.amount - coalesce((select sum(amount) from refunds r where r.gift_id = g.id), 0))::bigint as net
           from gifts g join streams s on s.id = g.stream_id
           where g.campaign_id = $1 order by g.settled_at"#,
    )
    .bind(id)
    .fetch_all(&mut *snapshot)
    .await?;
    // (stream, donor_ref, pledge id): counted under the same key as the pledge script's.
    let donors: Vec<(String, Option<String>, String)> = sqlx::query_as(
        r#"select s.slug::text, p.donor_ref, p.id::text
           from pledges p join streams s on s.id = p.stream_id
           where p.campaign_id = $1 and p.status in ('pending', 'confirmed', 'refunded')
           union
           select s.slug::text, g.donor_ref, g.pledge_id::text
           from gifts g join streams s on s.id = g.stream_id where g.campaign_id = $1"#,
    )
    .bind(id)
    .fetch_all(&mut *snapshot)
    .await?;
    let applied_gifts: Vec<String> =
        sqlx::query_scalar(r#"select id::text from gifts where campaign_id = $1"#)
            .bind(id)
            .fetch_all(&mut *snapshot)
            .await?;
    let applied_refunds: Vec<String> =
        sqlx::query_scalar(r#"select id::text from refunds where campaign_id = $1"#)
            .bind(id)
            .fetch_all(&mut *snapshot)
            .await?;
    let pending: Vec<PendingRow> = sqlx::query_as(
        r#"select p.id::text as id, s.slug::text as stream, p.amount::bigint as amount,
                  p.currency::text as currency, p.donor_name, p.anonymous, p.message,
                  p.designation, p.donor_ref, p.idempotency_key,
                  (extract(epoch from p.created_at) * 1000)::bigint as created_ms,
                  (extract(epoch from p.expires_at) * 1000)::bigint as expires_ms
           from pledges p join streams s on s.id = p.stream_id
           where p.campaign_id = $1 and p.status = 'pending'"#,
    )
    .bind(id)
    .fetch_all(&mut *snapshot)
    .await?;

    let mut pipe = redis::pipe();
    pipe.atomic();
    let stream_slugs: Vec<Slug> = totals
        .streams
        .iter()
        .filter_map(|(s, _, _)| Slug::parse("stream", s).ok())
        .collect();
    if everything {
        pipe.del(&[
            k.totals(),
            k.donors(),
            k.applied_gifts(),
            k.applied_refunds(),
            k.milestones(),
            k.pending(),
            k.streams(),
        ])
        .ignore();
    }
    pipe.del(&[k.top(), k.names()]).ignore();
    for s in &stream_slugs {
        if everything {
            pipe.del(&[k.stream_totals(s), k.stream_donors(s)]).ignore();
        }
        pipe.del(k.stream_top(s)).ignore();
        pipe.sadd(k.streams(), s.as_str()).ignore();
    }
    let fields = |c: &LedgerCounters| {
        let all = c.fields();
        if everything {
            all.to_vec()
        } else {
            all[1..].to_vec()
        }
    };
    pipe.hset_multiple(k.totals(), &fields(&totals.campaign))
        .ignore();
    let mut milestones = vec![(
        "campaign".to_owned(),
        reached(totals.campaign.confirmed, totals.goal),
    )];
    for ((slug, goal, counters), s) in totals.streams.iter().zip(&stream_slugs) {
        pipe.hset_multiple(k.stream_totals(s), &fields(counters))
            .ignore();
        milestones.push((
            format!("s:{slug}"),
            reached(counters.confirmed, goal.unwrap_or(0)),
        ));
    }
    if everything {
        pipe.hset_multiple(k.milestones(), &milestones).ignore();
    }
    for (stream, donor_ref, pledge_id) in &donors {
        if let Ok(s) = Slug::parse("stream", stream) {
            let donor = donor_key(donor_ref.as_deref(), pledge_id);
            pipe.pfadd(k.donors(), &donor).ignore();
            pipe.pfadd(k.stream_donors(&s), &donor).ignore();
        }
    }
    let mut names: HashMap<String, String> = HashMap::new();
    for b in &boards {
        let key = board_key(
            &b.gift_id,
            &b.pledge_id,
            b.anonymous,
            b.donor_ref.as_deref(),
        );
        let name = if b.anonymous {
            String::new()
        } else {
            b.donor_name.clone().unwrap_or_default()
        };
        names.insert(key.clone(), name);
        if b.net > 0
            && let Ok(s) = Slug::parse("stream", &b.stream)
        {
            pipe.zincr(k.top(), &key, b.net).ignore();
            pipe.zincr(k.stream_top(&s), &key, b.net).ignore();
        }
    }
    if !names.is_empty() {
        let names: Vec<(String, String)> = names.into_iter().collect();
        pipe.hset_multiple(k.names(), &names).ignore();
    }
    for chunk in applied_gifts.chunks(1000) {
        pipe.sadd(k.applied_gifts(), chunk).ignore();
    }
    for chunk in applied_refunds.chunks(1000) {
        pipe.sadd(k.applied_refunds(), chunk).ignore();
    }
    for p in pending.iter().filter(|_| everything) {
        let public = if p.anonymous {
            ""
        } else {
            p.donor_name.as_deref().unwrap_or("")
        };
        let donor = donor_key(p.donor_ref.as_deref(), &p.id);
        // The same fields `pledge.lua` writes; a change to one is a change to both.
        pipe.hset_multiple(
            k.pledge(&p.id),
            &[
                ("stream", p.stream.clone()),
                ("amount", p.amount.to_string()),
                ("currency", p.currency.clone()),
                ("status", "pending".to_owned()),
                ("name", public.to_owned()),
                ("anonymous", if p.anonymous { "1" } else { "0" }.to_owned()),
                ("message", p.message.clone().unwrap_or_default()),
                ("designation", p.designation.clone().unwrap_or_default()),
                ("donor_ref", p.donor_ref.clone().unwrap_or_default()),
                ("donor", donor),
                (
                    "idempotency_key",
                    p.idempotency_key.clone().unwrap_or_default(),
                ),
                ("created", p.created_ms.to_string()),
                ("expires", p.expires_ms.to_string()),
            ],
        )
        .ignore();
        pipe.expire(k.pledge(&p.id), PLEDGE_KEEP_SECS as i64)
            .ignore();
        pipe.zadd(k.pending(), &p.id, p.expires_ms).ignore();
        pipe.set_ex(
            keys.pledge_index(&p.id),
            campaign.as_str(),
            PLEDGE_KEEP_SECS,
        )
        .ignore();
    }
    pipe.set(k.built(), 1).ignore();
    pipe.query_async::<()>(redis).await?;
    if everything {
        seed_seqs(&mut snapshot, redis, &k, totals.campaign_id).await?;
        // Pending pledges are swept again (the index of campaigns to sweep is outside
        // this campaign's slot, so it is not in the atomic step above).
        let _: () = redis::cmd("SADD")
            .arg(keys.pending_campaigns())
            .arg(campaign.as_str())
            .query_async(redis)
            .await?;
    }
    snapshot.commit().await?;
    pipe_publish_totals(redis, &k, &stream_slugs).await?;
    tracing::info!(campaign = %campaign, gifts = applied_gifts.len(), "live counters rebuilt from the ledger");
    Ok(totals)
}

/// How far above its recorded high-water mark a stream's seq starts again after Redis
/// lost it: past any event emitted but not yet recorded (milestones, the last batch).
const SEQ_JUMP: i64 = 1000;

/// Starts each stream's seq above what it ever reached (never lowering a seq that
/// survived), so seq keeps increasing and clients resuming from an old seq see a gap.
async fn seed_seqs<C: ConnectionLike>(
    db: &mut PgConnection,
    redis: &mut C,
    k: &CampaignKeys,
    campaign_id: i64,
) -> Result<(), RebuildError> {
    let floors: Vec<(String, i64)> = sqlx::query_as(
        r#"select s.slug::text,
                  greatest(coalesce(q.seq, 0),
                           (select count(*) from gifts g where g.stream_id = s.id)
                           + (select count(*) from refunds r join gifts g on g.id = r.gift_id
                              where g.stream_id = s.id))::bigint
           from streams s left join stream_seqs q on q.stream_id = s.id
           where s.campaign_id = $1"#,
    )
    .bind(campaign_id)
    .fetch_all(&mut *db)
    .await?;
    for (slug, floor) in floors {
        let Ok(stream) = Slug::parse("stream", &slug) else {
            continue;
        };
        counters::raise_seq(redis, k, &stream, floor + SEQ_JUMP).await?;
    }
    Ok(())
}

/// Tells every gateway the totals changed, so sockets see the rebuilt numbers.
async fn pipe_publish_totals<C: ConnectionLike>(
    redis: &mut C,
    k: &CampaignKeys,
    streams: &[Slug],
) -> redis::RedisResult<()> {
    if streams.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for s in streams {
        pipe.publish(k.channel(), format!("T {s}")).ignore();
    }
    pipe.query_async(redis).await
}

/// The highest milestone (25/50/75/100 %) a total has reached of a goal.
fn reached(total: i64, goal: i64) -> i64 {
    if goal <= 0 {
        return 0;
    }
    [100, 75, 50, 25]
        .into_iter()
        .find(|pct| i128::from(total) * 100 >= i128::from(goal) * i128::from(*pct))
        .unwrap_or(0)
}

/// Rebuilds a campaign's counters if they are missing (Redis was lost), so totals are
/// never served from an empty store. Concurrent gateways rebuild at most once at a time.
pub async fn ensure_built<C: ConnectionLike>(
    db: &PgPool,
    redis: &mut C,
    keys: &Keys,
    campaign: &Slug,
) -> Result<(), RebuildError> {
    let k = keys.campaign(campaign);
    let built: bool = redis::cmd("EXISTS")
        .arg(k.built())
        .query_async(redis)
        .await?;
    if built {
        return Ok(());
    }
    let lock: Option<String> = redis::cmd("SET")
        .arg(k.rebuilding())
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(30)
        .query_async(redis)
        .await?;
    if lock.is_some() {
        let result = rebuild_campaign(db, redis, keys, campaign).await;
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(k.rebuilding())
            .query_async(redis)
            .await;
        return result.map(|_| ());
    }
    // Another gateway is rebuilding: wait for it (bounded).
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let built: bool = redis::cmd("EXISTS")
            .arg(k.built())
            .query_async(redis)
            .await?;
        if built {
            return Ok(());
        }
    }
    rebuild_campaign(db, redis, keys, campaign)
        .await
        .map(|_| ())
}
