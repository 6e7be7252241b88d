//! Typed wrappers of the Lua scripts, one per live state change. Each script is loaded
//! once (by SHA, re-sent only when Redis lost it) and validates before it writes.

use redis::Script;
use redis::aio::ConnectionLike;
use std::sync::LazyLock;

use super::CampaignKeys;
use crate::domain::{Money, Pledge, Slug};

/// How many events each stream's log keeps for replay.
pub const LOG_LENGTH: u32 = 1000;

pub(super) struct Scripts {
    pledge: Script,
    expire: Script,
    pledge_failed: Script,
    gift: Script,
    refund: Script,
    pub(super) snapshot: Script,
    seq_floor: Script,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    pledge: Script::new(include_str!("scripts/pledge.lua")),
    expire: Script::new(include_str!("scripts/expire.lua")),
    pledge_failed: Script::new(include_str!("scripts/pledge_failed.lua")),
    gift: Script::new(include_str!("scripts/gift.lua")),
    refund: Script::new(include_str!("scripts/refund.lua")),
    snapshot: Script::new(include_str!("scripts/snapshot.lua")),
    seq_floor: Script::new(include_str!("scripts/seq_floor.lua")),
});

/// A pledge to record, with the times and lifetimes the caller chose.
pub struct PledgeWrite<'a> {
    pub pledge: &'a Pledge,
    pub pledge_id: &'a str,
    pub now_ms: i64,
    pub expires_ms: i64,
    pub idempotency_ttl_secs: u64,
    pub pledge_ttl_secs: u64,
}

/// What the pledge script did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PledgeOutcome {
    New {
        pledge_id: String,
        expires_ms: i64,
    },
    /// The same idempotency key and body were seen before: the first pledge.
    Replay {
        pledge_id: String,
        expires_ms: i64,
    },
    /// The same idempotency key came with a different body.
    Conflict,
    /// The campaign's counters are missing: rebuild them from the ledger, then retry.
    NotBuilt,
}

/// What a settlement hook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Counted, with its event's seq.
    Counted(u64),
    /// Counted before: nothing changed.
    AlreadyCounted,
    /// The campaign's counters are missing; rebuilding them from the ledger counts it.
    NotBuilt,
}

impl Applied {
    fn from_reply(reply: i64) -> Self {
        match reply {
            r if r > 0 => Applied::Counted(r.unsigned_abs()),
            0 => Applied::AlreadyCounted,
            _ => Applied::NotBuilt,
        }
    }
}

/// The key a donor is counted under: the page's `donor_ref`, or the pledge itself.
pub fn donor_key(donor_ref: Option<&str>, pledge_id: &str) -> String {
    match donor_ref {
        Some(r) => format!("d:{r}"),
        None => format!("p:{pledge_id}"),
    }
}

/// Records a pledge once per idempotency key (`pledge.lua`).
pub async fn accept_pledge<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    write: &PledgeWrite<'_>,
) -> redis::RedisResult<PledgeOutcome> {
    let p = write.pledge;
    let stream = &p.stream;
    let reply: Vec<String> = SCRIPTS
        .pledge
        .key(keys.idempotency(p.idempotency_key.as_str()))
        .key(keys.pledge(write.pledge_id))
        .key(keys.totals())
        .key(keys.stream_totals(stream))
        .key(keys.donors())
        .key(keys.stream_donors(stream))
        .key(keys.pending())
        .key(keys.streams())
        .key(keys.built())
        .arg(p.fingerprint())
        .arg(write.pledge_id)
        .arg(p.amount.minor_units())
        .arg(stream.as_str())
        .arg(donor_key(p.donor_ref.as_deref(), write.pledge_id))
        .arg(write.now_ms)
        .arg(write.expires_ms)
        .arg(write.idempotency_ttl_secs)
        .arg(write.pledge_ttl_secs)
        .arg(keys.channel())
        .arg(p.currency.as_str())
        .arg(p.public_name().unwrap_or(""))
        .arg(if p.anonymous { "1" } else { "0" })
        .arg(p.message.as_deref().unwrap_or(""))
        .arg(p.designation.as_ref().map_or("", |d| d.as_str()))
        .arg(p.donor_ref.as_deref().unwrap_or(""))
        .arg(p.idempotency_key.as_str())
        .invoke_async(conn)
        .await?;
    let parse_ms = |v: Option<&String>| v.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    Ok(match reply.first().map(String::as_str) {
        Some("new") => PledgeOutcome::New {
            pledge_id: reply.get(1).cloned().unwrap_or_default(),
            expires_ms: parse_ms(reply.get(2)),
        },
        Some("replay") => PledgeOutcome::Replay {
            pledge_id: reply.get(1).cloned().unwrap_or_default(),
            expires_ms: parse_ms(reply.get(2)),
        },
        Some("rebuild") => PledgeOutcome::NotBuilt,
        _ => PledgeOutcome::Conflict,
    })
}

/// Expires up to `limit` due pending pledges of a campaign (`expire.lua`); returns
/// the ids it expired.
pub async fn expire_due<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    now_ms: i64,
    limit: usize,
) -> redis::RedisResult<Vec<String>> {
    SCRIPTS
        .expire
        .key(keys.pending())
        .key(keys.totals())
        .arg(now_ms)
        .arg(limit)
        .arg(keys.base())
        .arg(keys.channel())
        .invoke_async(conn)
        .await
}

/// A pending pledge's payment failed (`pledge_failed.lua`); true when this call
/// changed it.
pub async fn pledge_failed<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    pledge_id: &str,
) -> redis::RedisResult<bool> {
    let changed: i64 = SCRIPTS
        .pledge_failed
        .key(keys.pledge(pledge_id))
        .key(keys.pending())
        .key(keys.totals())
        .arg(pledge_id)
        .arg(keys.base())
        .arg(keys.channel())
        .invoke_async(conn)
        .await?;
    Ok(changed == 1)
}

/// A gift committed to the ledger, as the live counters need it.
pub struct SettledGift<'a> {
    pub gift_id: &'a str,
    pub pledge_id: &'a str,
    pub stream: &'a Slug,
    pub amount: Money,
    pub matched: Money,
    pub currency: &'a str,
    pub donor_ref: Option<&'a str>,
    pub anonymous: bool,
    /// The name shown: already `None` for an anonymous gift.
    pub public_name: Option<&'a str>,
    pub message: Option<&'a str>,
    pub designation: Option<&'a str>,
    pub campaign_goal: Money,
    pub stream_goal: Option<Money>,
}

/// The leaderboard key of a gift: the donor's, except that an anonymous gift has an
/// entry of its own, never merged with a named donor.
pub fn board_key(
    gift_id: &str,
    pledge_id: &str,
    anonymous: bool,
    donor_ref: Option<&str>,
) -> String {
    match (anonymous, donor_ref) {
        (false, Some(r)) => format!("d:{r}"),
        (false, None) => format!("p:{pledge_id}"),
        (true, _) => format!("a:{gift_id}"),
    }
}

impl SettledGift<'_> {
    pub fn board_key(&self) -> String {
        board_key(self.gift_id, self.pledge_id, self.anonymous, self.donor_ref)
    }
}

/// Announces a frame that is never logged nor replayed (a test alert) to a stream's
/// sockets on every gateway.
pub async fn publish_alert<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    stream: &Slug,
    frame: &str,
) -> redis::RedisResult<()> {
    redis::cmd("PUBLISH")
        .arg(keys.channel())
        .arg(format!("A {stream} {frame}"))
        .query_async(conn)
        .await
}

/// Counts a settled gift live (`gift.lua`).
pub async fn gift_settled<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    gift: &SettledGift<'_>,
) -> redis::RedisResult<Applied> {
    let stream = gift.stream;
    let reply: i64 = SCRIPTS
        .gift
        .key(keys.applied_gifts())
        .key(keys.pledge(gift.pledge_id))
        .key(keys.pending())
        .key(keys.totals())
        .key(keys.stream_totals(stream))
        .key(keys.donors())
        .key(keys.stream_donors(stream))
        .key(keys.top())
        .key(keys.stream_top(stream))
        .key(keys.names())
        .key(keys.stream_seq(stream))
        .key(keys.stream_log(stream))
        .key(keys.milestones())
        .key(keys.streams())
        .key(keys.built())
        .arg(gift.gift_id)
        .arg(gift.pledge_id)
        .arg(stream.as_str())
        .arg(gift.amount.minor_units())
        .arg(gift.matched.minor_units())
        .arg(gift.currency)
        .arg(donor_key(gift.donor_ref, gift.pledge_id))
        .arg(if gift.anonymous {
            ""
        } else {
            gift.public_name.unwrap_or("")
        })
        .arg(gift.message.unwrap_or(""))
        .arg(gift.designation.unwrap_or(""))
        .arg(gift.campaign_goal.minor_units())
        .arg(gift.stream_goal.map_or(0, Money::minor_units))
        .arg(LOG_LENGTH)
        .arg(keys.base())
        .arg(keys.channel())
        .arg(gift.board_key())
        .invoke_async(conn)
        .await?;
    Ok(Applied::from_reply(reply))
}

/// A refund committed to the ledger, as the live counters need it.
pub struct SettledRefund<'a> {
    pub refund_id: &'a str,
    pub gift_id: &'a str,
    pub pledge_id: &'a str,
    pub stream: &'a Slug,
    pub amount: Money,
    pub match_reversed: Money,
    /// The leaderboard key of the refunded gift ([`SettledGift::board_key`]).
    pub board_key: &'a str,
    pub fully_refunded: bool,
}

/// Takes a refund off the live counters (`refund.lua`).
pub async fn refund_settled<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    refund: &SettledRefund<'_>,
) -> redis::RedisResult<Applied> {
    let stream = refund.stream;
    let reply: i64 = SCRIPTS
        .refund
        .key(keys.applied_refunds())
        .key(keys.pledge(refund.pledge_id))
        .key(keys.totals())
        .key(keys.stream_totals(stream))
        .key(keys.top())
        .key(keys.stream_top(stream))
        .key(keys.stream_seq(stream))
        .key(keys.stream_log(stream))
        .key(keys.built())
        .arg(refund.refund_id)
        .arg(refund.gift_id)
        .arg(stream.as_str())
        .arg(refund.amount.minor_units())
        .arg(refund.match_reversed.minor_units())
        .arg(refund.board_key)
        .arg(if refund.fully_refunded { "1" } else { "0" })
        .arg(LOG_LENGTH)
        .arg(keys.channel())
        .invoke_async(conn)
        .await?;
    Ok(Applied::from_reply(reply))
}

/// Raises a stream's seq to at least `floor` (`seq_floor.lua`); returns the seq now.
pub async fn raise_seq<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    stream: &Slug,
    floor: i64,
) -> redis::RedisResult<i64> {
    SCRIPTS
        .seq_floor
        .key(keys.stream_seq(stream))
        .arg(floor)
        .invoke_async(conn)
        .await
}
