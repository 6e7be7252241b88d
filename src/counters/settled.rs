//! The ledger's effects on the live counters, as the outbox carries them (serialized with
//! serde) and the scripts that apply them: a gift, a refund, a milestone, a failed payment,
//! a test alert. Each is idempotent: counted at most once (a rebuild from the ledger may
//! have counted it already) and announced at most once.

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};

use super::CampaignKeys;
use super::scripts::{LOG_LENGTH, SCRIPTS};
use crate::domain::{Money, Slug, public_name};

/// The key a donor is counted under: the page's `donor_ref`, or the pledge itself.
pub fn donor_key(donor_ref: Option<&str>, pledge_id: &str) -> String {
    match donor_ref {
        Some(r) => format!("d:{r}"),
        None => format!("p:{pledge_id}"),
    }
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

/// What applying an effect came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Announced now, with its event's seq.
    Announced(u64),
    /// Announced before: nothing changed.
    AlreadyAnnounced,
    /// The campaign's counters are missing; rebuild them from the ledger, then apply it.
    NotBuilt,
    /// A refund whose gift is not counted yet; apply it later.
    GiftNotCounted,
}

impl Applied {
    fn from_reply(reply: i64) -> Self {
        match reply {
            r if r > 0 => Applied::Announced(r.unsigned_abs()),
            0 => Applied::AlreadyAnnounced,
            -2 => Applied::GiftNotCounted,
            _ => Applied::NotBuilt,
        }
    }
}

/// A gift committed to the ledger, as the live counters need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledGift {
    pub gift_id: String,
    pub pledge_id: String,
    pub stream: Slug,
    pub amount: Money,
    pub matched: Money,
    pub currency: String,
    pub donor_ref: Option<String>,
    pub anonymous: bool,
    /// The name shown: already `None` for an anonymous gift.
    pub public_name: Option<String>,
    pub message: Option<String>,
    pub designation: Option<String>,
}

impl SettledGift {
    pub fn board_key(&self) -> String {
        board_key(
            &self.gift_id,
            &self.pledge_id,
            self.anonymous,
            self.donor_ref.as_deref(),
        )
    }
}

/// Counts a settled gift live, unless counted already, and announces it once (`gift.lua`).
pub async fn gift_settled<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    gift: &SettledGift,
) -> redis::RedisResult<Applied> {
    let stream = &gift.stream;
    let shown = |v: &Option<String>| v.clone().unwrap_or_default();
    let reply: i64 = SCRIPTS
        .gift
        .key(keys.applied_gifts())
        .key(keys.announced())
        .key(keys.pledge(&gift.pledge_id))
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
        .key(keys.built())
        .arg(&gift.gift_id)
        .arg(&gift.pledge_id)
        .arg(stream.as_str())
        .arg(gift.amount.minor_units())
        .arg(gift.matched.minor_units())
        .arg(&gift.currency)
        .arg(super::donor_key(gift.donor_ref.as_deref(), &gift.pledge_id))
        .arg(public_name(gift.anonymous, gift.public_name.as_deref()).unwrap_or_default())
        .arg(shown(&gift.message))
        .arg(shown(&gift.designation))
        .arg(LOG_LENGTH)
        .arg(keys.channel())
        .arg(gift.board_key())
        .invoke_async(conn)
        .await?;
    Ok(Applied::from_reply(reply))
}

/// A refund committed to the ledger, as the live counters need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledRefund {
    pub refund_id: String,
    pub gift_id: String,
    pub pledge_id: String,
    pub stream: Slug,
    pub amount: Money,
    pub match_reversed: Money,
    /// The leaderboard key of the refunded gift ([`SettledGift::board_key`]).
    pub board_key: String,
    pub fully_refunded: bool,
}

/// Takes a refund off the live counters, unless counted already, and announces it once
/// (`refund.lua`).
pub async fn refund_settled<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    refund: &SettledRefund,
) -> redis::RedisResult<Applied> {
    let stream = &refund.stream;
    let reply: i64 = SCRIPTS
        .refund
        .key(keys.applied_refunds())
        .key(keys.announced())
        .key(keys.applied_gifts())
        .key(keys.pledge(&refund.pledge_id))
        .key(keys.totals())
        .key(keys.stream_totals(stream))
        .key(keys.top())
        .key(keys.stream_top(stream))
        .key(keys.stream_seq(stream))
        .key(keys.stream_log(stream))
        .key(keys.built())
        .arg(&refund.refund_id)
        .arg(&refund.gift_id)
        .arg(stream.as_str())
        .arg(refund.amount.minor_units())
        .arg(refund.match_reversed.minor_units())
        .arg(&refund.board_key)
        .arg(if refund.fully_refunded { "1" } else { "0" })
        .arg(LOG_LENGTH)
        .arg(keys.channel())
        .invoke_async(conn)
        .await?;
    Ok(Applied::from_reply(reply))
}

/// Whose goal a milestone is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Stream,
    Campaign,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Stream => "stream",
            Scope::Campaign => "campaign",
        }
    }
}

/// A milestone the ledger decided, announced on each of `streams`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachedMilestone {
    /// Unique per milestone: `stream:<slug>:<pct>` or `campaign:<pct>`.
    pub key: String,
    pub scope: Scope,
    pub reached: i32,
    pub streams: Vec<Slug>,
}

/// Announces a milestone once on each of its streams (`milestone.lua`); returns the seq
/// each stream's event got.
pub async fn milestone_reached<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    milestone: &ReachedMilestone,
) -> redis::RedisResult<(Applied, Vec<u64>)> {
    let mut invocation = SCRIPTS.milestone.key(keys.announced());
    invocation.key(keys.built());
    for stream in &milestone.streams {
        invocation
            .key(keys.stream_seq(stream))
            .key(keys.stream_log(stream));
    }
    invocation
        .arg(&milestone.key)
        .arg(milestone.scope.as_str())
        .arg(milestone.reached)
        .arg(LOG_LENGTH)
        .arg(keys.channel());
    for stream in &milestone.streams {
        invocation.arg(stream.as_str());
    }
    let reply: Vec<i64> = invocation.invoke_async(conn).await?;
    let seqs: Vec<u64> = reply.iter().skip(1).map(|s| s.unsigned_abs()).collect();
    let applied = match reply.first().copied().unwrap_or(-1) {
        1 => Applied::Announced(seqs.iter().copied().max().unwrap_or(0)),
        0 => Applied::AlreadyAnnounced,
        _ => Applied::NotBuilt,
    };
    Ok((applied, seqs))
}

/// A pledge whose payment failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedPledge {
    pub pledge_id: String,
    pub stream: Slug,
}

/// A pending pledge's payment failed (`pledge_failed.lua`); true when this call
/// changed it.
pub async fn pledge_failed<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    failed: &FailedPledge,
) -> redis::RedisResult<bool> {
    let changed: i64 = SCRIPTS
        .pledge_failed
        .key(keys.pledge(&failed.pledge_id))
        .key(keys.pending())
        .key(keys.totals())
        .key(keys.stream_totals(&failed.stream))
        .arg(&failed.pledge_id)
        .arg(keys.channel())
        .arg(failed.stream.as_str())
        .invoke_async(conn)
        .await?;
    Ok(changed == 1)
}

/// A frame shown once and never logged nor replayed (a test alert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per alert (the provider's event id): it is shown once.
    pub key: String,
    pub stream: Slug,
    pub frame: String,
}

/// Announces an alert once to a stream's sockets on every gateway (`alert.lua`).
pub async fn publish_alert<C: ConnectionLike>(
    conn: &mut C,
    keys: &CampaignKeys,
    alert: &Alert,
) -> redis::RedisResult<bool> {
    let shown: i64 = SCRIPTS
        .alert
        .key(keys.announced())
        .arg(&alert.key)
        .arg(keys.channel())
        .arg(alert.stream.as_str())
        .arg(&alert.frame)
        .invoke_async(conn)
        .await?;
    Ok(shown == 1)
}
