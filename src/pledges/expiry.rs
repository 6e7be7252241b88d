//! The expiry sweep: pending pledges whose time has come leave `pledged`, on every
//! gateway's watch (the script makes concurrent sweeps harmless).

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{PledgeChange, WriteBehind};
use crate::catalog::CampaignInfo;
use crate::counters::{self, Keys};
use crate::domain::{PledgeStatus, Slug};

/// How often each gateway sweeps.
const EVERY: Duration = Duration::from_secs(1);
/// The most pledges one script call expires, so Redis is never blocked for long.
const PER_CALL: usize = 500;

/// Which campaigns this gateway has put in the index of campaigns to sweep.
#[derive(Default)]
pub struct ExpiryIndex {
    registered: Mutex<HashSet<String>>,
}

impl ExpiryIndex {
    /// Makes sure `campaign` is in the sweep index (one SADD per campaign per process).
    pub async fn register(&self, redis: &ConnectionManager, keys: &Keys, campaign: &CampaignInfo) {
        let slug = campaign.slug.as_str();
        let fresh = self
            .registered
            .lock()
            .map(|mut set| set.insert(slug.to_owned()))
            .unwrap_or(true);
        if !fresh {
            return;
        }
        let mut conn = redis.clone();
        let added: redis::RedisResult<()> = conn.sadd(keys.pending_campaigns(), slug).await;
        if added.is_err()
            && let Ok(mut set) = self.registered.lock()
        {
            set.remove(slug);
        }
    }
}

/// Sweeps every [`EVERY`] until `shutdown`.
pub async fn run_expiry(
    redis: ConnectionManager,
    keys: Keys,
    write_behind: WriteBehind,
    every: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every.unwrap_or(EVERY));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = sweep(&redis, &keys, &write_behind).await {
            tracing::warn!(error = %e, "pledge expiry sweep failed; will retry");
        }
    }
}

/// Expires every due pledge of every indexed campaign.
pub async fn sweep(
    redis: &ConnectionManager,
    keys: &Keys,
    write_behind: &WriteBehind,
) -> redis::RedisResult<usize> {
    let mut conn = redis.clone();
    let campaigns: Vec<String> = conn.smembers(keys.pending_campaigns()).await?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut total = 0;
    for campaign in campaigns {
        let Ok(slug) = Slug::parse("campaign", &campaign) else {
            continue;
        };
        let campaign_keys = keys.campaign(&slug);
        loop {
            let expired = counters::expire_due(&mut conn, &campaign_keys, now_ms, PER_CALL).await?;
            total += expired.len();
            for id in &expired {
                if let Ok(id) = id.parse() {
                    write_behind.send(PledgeChange::Status {
                        id,
                        status: PledgeStatus::Expired,
                    });
                }
            }
            if expired.len() < PER_CALL {
                break;
            }
        }
    }
    if total > 0 {
        metrics::counter!("livefund_pledges_expired_total").increment(total as u64);
    }
    Ok(total)
}
