//! The snapshot a socket reads when it opens (`snapshot.lua`): totals, seq, recent
//! gifts, top donors and the events to replay.

use redis::FromRedisValue;
use redis::aio::ConnectionLike;

use super::CampaignKeys;
use super::scripts::SCRIPTS;
use super::totals::{Counters, Totals};
use crate::domain::{Money, Slug};

/// A top donor: the name shown (`None` for anonymous) and the net amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopDonor {
    pub donor: Option<String>,
    pub amount: Money,
}

/// What a socket needs when it opens (`snapshot.lua`).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub campaign: Totals,
    pub stream: Totals,
    pub seq: u64,
    /// Recent gift frames as stored, newest first.
    pub recent: Vec<String>,
    pub top: Vec<TopDonor>,
    /// Event frames after `since`, oldest first.
    pub replay: Vec<String>,
    /// The log no longer reaches back to `since`.
    pub gap: bool,
}

type RawSnapshot = (
    Vec<Option<i64>>,
    i64,
    Vec<Option<i64>>,
    i64,
    u64,
    Vec<String>,
    Vec<(String, i64, String)>,
    Vec<String>,
    i64,
);

/// Reads a stream's snapshot atomically; with `since`, also the events after it.
pub async fn snapshot<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    stream: &Slug,
    goals: (Money, Option<Money>),
    since: Option<u64>,
    recent: usize,
    top: usize,
) -> redis::RedisResult<Snapshot> {
    let value: redis::Value = SCRIPTS
        .snapshot
        .key(keys.totals())
        .key(keys.donors())
        .key(keys.stream_totals(stream))
        .key(keys.stream_donors(stream))
        .key(keys.stream_seq(stream))
        .key(keys.stream_log(stream))
        .key(keys.stream_top(stream))
        .key(keys.names())
        .arg(since.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX)))
        .arg(recent)
        .arg(top)
        .invoke_async(conn)
        .await?;
    let (campaign, campaign_donors, stream_counters, stream_donors, seq, recent, top, replay, gap) =
        RawSnapshot::from_redis_value(value)?;
    Ok(Snapshot {
        campaign: Counters::from_slice(&campaign).into_totals(Some(goals.0), campaign_donors),
        stream: Counters::from_slice(&stream_counters).into_totals(goals.1, stream_donors),
        seq,
        recent,
        top: top
            .into_iter()
            .map(|(_, amount, name)| TopDonor {
                donor: (!name.is_empty()).then_some(name),
                amount: Money::from_stored(amount),
            })
            .collect(),
        replay,
        gap: gap == 1,
    })
}
