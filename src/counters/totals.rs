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
    /// Campaign totals only, when a sponsor matches: what is left of the sponsor's cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub matching_remaining: Option<Money>,
}

impl Totals {
    /// Adds what is left of a matching `cap` (campaign totals of a matched campaign).
    pub fn with_matching_cap(mut self, cap: Option<Money>) -> Self {
        self.matching_remaining = cap
            .map(|cap| Money::from_stored((cap.minor_units() - self.matched.minor_units()).max(0)));
        self
    }
}

/// The counter fields of a totals hash, in the order scripts and reads use.
pub const FIELDS: [&str; 5] = ["pledged", "confirmed", "matched", "refunded", "gifts"];

/// The raw counters of one totals hash; absent fields read as zero.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters([i64; 5]);

impl Counters {
    pub fn from_slice(values: &[Option<i64>]) -> Self {
        let mut out = [0; 5];
        for (slot, value) in out.iter_mut().zip(values) {
            *slot = value.unwrap_or(0);
        }
        Counters(out)
    }

    pub fn into_totals(self, goal: Option<Money>, donors: i64) -> Totals {
        let [pledged, confirmed, matched, refunded, gifts] = self.0;
        Totals {
            goal,
            pledged: Money::from_stored(pledged),
            confirmed: Money::from_stored(confirmed),
            matched: Money::from_stored(matched),
            refunded: Money::from_stored(refunded),
            gifts,
            donors,
            matching_remaining: None,
        }
    }
}

/// Reads a campaign's totals and those of the given streams (with their goals) in one
/// atomic pipeline.
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
    let replies: Vec<(Vec<Option<i64>>, i64)> = {
        let flat: Vec<redis::Value> = pipe.query_async(redis).await?;
        let mut pairs = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(counters), Some(donors)) = (it.next(), it.next()) {
            pairs.push((
                redis::from_redis_value(counters)?,
                redis::from_redis_value(donors)?,
            ));
        }
        pairs
    };
    if replies.len() != streams.len() + 1 {
        return Err(short_reply(replies.len(), streams.len() + 1));
    }
    let mut replies = replies.into_iter();
    let mut next = |goal: Option<Money>| {
        let (counters, donors) = replies.next().unwrap_or_default();
        Counters::from_slice(&counters).into_totals(goal, donors)
    };
    let campaign = next(Some(campaign_goal));
    let per_stream = streams.iter().map(|(_, goal)| next(*goal)).collect();
    Ok((campaign, per_stream))
}

/// A pipeline answered fewer replies than it was sent commands.
pub fn short_reply(got: usize, wanted: usize) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "a pipeline answered fewer replies than it sent commands",
        format!("{got} of {wanted}"),
    ))
}
