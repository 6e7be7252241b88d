//! The Totals object of the contract, read from the live counters in one round trip.

use redis::aio::ConnectionLike;
use serde::Serialize;

use super::CampaignKeys;
use crate::domain::{Money, Slug};

/// `{"goal", "pledged", "confirmed", "matched", "refunded", "gifts", "donors"}`.
///
/// `pledged` counts pledges not yet failed or expired; `confirmed` counts settled gifts
/// net of refunds; `matched` is the sponsor's matching on top; `donors` is an estimate
/// (HyperLogLog) of distinct donors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    #[schema(value_type = Option<i64>)]
    pub goal: Option<Money>,
    #[schema(value_type = i64)]
    pub pledged: Money,
    #[schema(value_type = i64)]
    pub confirmed: Money,
    #[schema(value_type = i64)]
    pub matched: Money,
    #[schema(value_type = i64)]
    pub refunded: Money,
    pub gifts: i64,
    pub donors: i64,
}

const FIELDS: [&str; 5] = ["pledged", "confirmed", "matched", "refunded", "gifts"];

type Counters = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn totals(goal: Option<Money>, counters: Counters, donors: i64) -> Totals {
    let (pledged, confirmed, matched, refunded, gifts) = counters;
    let money = |v: Option<i64>| Money::from_stored(v.unwrap_or(0));
    Totals {
        goal,
        pledged: money(pledged),
        confirmed: money(confirmed),
        matched: money(matched),
        refunded: money(refunded),
        gifts: gifts.unwrap_or(0),
        donors,
    }
}

/// Reads a campaign's totals and those of the given streams (with their goals) in one
/// atomic pipeline; counters that do not exist yet read as zero.
pub async fn read_totals<C: ConnectionLike>(
    redis: &mut C,
    keys: &CampaignKeys,
    campaign_goal: Money,
    streams: &[(&Slug, Option<Money>)],
) -> redis::RedisResult<(Totals, Vec<Totals>)> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.hmget(keys.totals(), &FIELDS[..])
        .pfcount(keys.donors());
    for (stream, _) in streams {
        pipe.hmget(keys.stream_totals(stream), &FIELDS[..])
            .pfcount(keys.stream_donors(stream));
    }
    let replies: Vec<redis::Value> = pipe.query_async(redis).await?;
    let mut replies = replies.into_iter();
    let mut next = || -> redis::RedisResult<(Counters, i64)> {
        let counters = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Nil))?;
        let donors = redis::from_redis_value(replies.next().unwrap_or(redis::Value::Int(0)))?;
        Ok((counters, donors))
    };
    let (counters, donors) = next()?;
    let campaign = totals(Some(campaign_goal), counters, donors);
    let mut per_stream = Vec::with_capacity(streams.len());
    for (_, goal) in streams {
        let (counters, donors) = next()?;
        per_stream.push(totals(*goal, counters, donors));
    }
    Ok((campaign, per_stream))
}
