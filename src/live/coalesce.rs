//! Totals frames, coalesced: a change is sent at once when the stream has been quiet,
//! and otherwise with the next batch, so each stream gets at most 10 totals a second.

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::Live;
use super::protocol::TotalsFrame;
use crate::counters::read_totals;
use crate::domain::{Money, Slug};

/// The least time between two totals frames of a stream.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Sends the totals of changed campaigns until `shutdown`.
pub async fn run_coalescer(live: Arc<Live>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = live.dirty_notify.notified() => {}
            _ = shutdown.cancelled() => return,
        }
        for campaign in live.take_dirty() {
            if let Err(e) = send_totals(&live, &campaign).await {
                tracing::warn!(error = %e, campaign, "could not read totals; will retry");
                live.mark_dirty(&campaign);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(MIN_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn send_totals(live: &Live, campaign: &str) -> redis::RedisResult<()> {
    let Some((info, hubs)) = live.campaign(campaign) else {
        return Ok(());
    };
    let goals: Vec<(&Slug, Option<Money>)> =
        hubs.iter().map(|h| (&h.info.slug, h.info.goal)).collect();
    let mut redis = live.redis.clone();
    let (campaign_totals, stream_totals) =
        read_totals(&mut redis, &info.keys, info.goal, &goals).await?;
    let campaign_totals = campaign_totals.with_matching_cap(info.matching_cap);
    for (hub, totals) in hubs.iter().zip(stream_totals) {
        let frame = TotalsFrame::new(hub.last_seq(), &totals, &campaign_totals).to_json();
        let Ok(mut last) = hub.last_totals.lock() else {
            continue;
        };
        if last.as_deref() != Some(frame.as_str()) {
            *last = Some(frame.clone());
            hub.publish_one(None, &frame);
        }
    }
    Ok(())
}
