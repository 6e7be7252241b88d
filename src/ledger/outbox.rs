//! The outbox: each live effect of a batch (a gift, a refund, a milestone, a failed
//! payment, a test alert) is a row written in the same transaction as the ledger rows it
//! follows from, so a crash between the commit and Redis loses nothing: the relay
//! (`relay.rs`) of any gateway applies it later.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{Postgres, Transaction};
use std::collections::HashMap;

use super::load::StreamRef;
use super::plan::{Effect, NewGift, NewMilestone, NewRefund, Plan};
use crate::counters::{
    Alert, FailedPledge, ReachedMilestone, Scope, SettledGift, SettledRefund, board_key,
};
use crate::domain::{Money, PledgeRecord, Slug};
use crate::payments::PaymentEvent;

/// One row of the outbox, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveEffect {
    Gift(SettledGift),
    Refund(SettledRefund),
    Milestone(ReachedMilestone),
    Failed(FailedPledge),
    Alert(Alert),
}

/// The streams a batch's effects may name, by id.
pub type Streams = HashMap<i64, StreamRef>;

/// Why effects could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// An effect names a stream the batch did not load: the batch is not committed, rather
    /// than its effect lost.
    #[error("a live effect names a stream the batch did not load: {0}")]
    Unplaced(String),
}

/// Writes the plan's live effects, in the plan's order; returns how many.
pub async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan,
    streams: &Streams,
) -> Result<usize, EnqueueError> {
    let mut campaigns = Vec::with_capacity(plan.effects.len());
    let mut effects = Vec::with_capacity(plan.effects.len());
    for effect in &plan.effects {
        let (campaign, effect) = live_effect(plan, effect, streams)
            .ok_or_else(|| EnqueueError::Unplaced(format!("{effect:?}")))?;
        campaigns.push(campaign);
        effects.push(sqlx::types::Json(effect));
    }
    if effects.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        r#"insert into outbox (campaign_id, effect)
           select campaign_id, effect
           from unnest($1::bigint[], $2::jsonb[]) with ordinality as e(campaign_id, effect, n)
           order by n"#,
    )
    .bind(&campaigns)
    .bind(&effects)
    .execute(&mut **tx)
    .await?;
    Ok(effects.len())
}

/// The stream's slug.
fn slug(streams: &Streams, id: i64) -> Option<Slug> {
    Some(streams.get(&id)?.slug.clone())
}

fn live_effect(plan: &Plan, effect: &Effect, streams: &Streams) -> Option<(i64, LiveEffect)> {
    Some(match effect {
        Effect::Gift(i) => {
            let g = plan.gifts.get(*i)?;
            (
                g.pledge.campaign_id,
                LiveEffect::Gift(gift(g, slug(streams, g.pledge.stream_id)?)),
            )
        }
        Effect::Refund(i) => {
            let r = plan.refunds.get(*i)?;
            let stream = slug(streams, r.gift.stream_id)?;
            (r.gift.campaign_id, LiveEffect::Refund(refund(r, stream)))
        }
        Effect::Milestone(i) => {
            let m = plan.milestones.get(*i)?;
            (m.campaign_id, LiveEffect::Milestone(milestone(m, streams)?))
        }
        Effect::Failed(p) => {
            let failed = FailedPledge {
                pledge_id: p.id.to_string(),
                stream: slug(streams, p.stream_id)?,
            };
            (p.campaign_id, LiveEffect::Failed(failed))
        }
        Effect::Test(p, event) => {
            let alert = test_alert(p, event, slug(streams, p.stream_id)?);
            (p.campaign_id, LiveEffect::Alert(alert))
        }
    })
}

fn gift(g: &NewGift, stream: Slug) -> SettledGift {
    let p = &g.pledge;
    SettledGift {
        gift_id: g.id.to_string(),
        pledge_id: p.id.to_string(),
        stream,
        amount: p.amount,
        matched: Money::from_stored(g.matched),
        currency: p.currency.to_string(),
        donor_ref: p.donor_ref.clone(),
        anonymous: p.anonymous,
        public_name: p.public_name().map(str::to_owned),
        message: p.message.clone(),
        designation: p.designation.clone(),
    }
}

fn refund(r: &NewRefund, stream: Slug) -> SettledRefund {
    let (gift_id, pledge_id) = (r.gift.id.to_string(), r.gift.pledge_id.to_string());
    SettledRefund {
        board_key: board_key(
            &gift_id,
            &pledge_id,
            r.gift.anonymous,
            r.gift.donor_ref.as_deref(),
        ),
        refund_id: r.id.to_string(),
        gift_id,
        pledge_id,
        stream,
        amount: Money::from_stored(r.amount),
        match_reversed: Money::from_stored(r.reversed),
        fully_refunded: r.fully,
    }
}

/// A stream's milestone goes to that stream; the campaign's to each of its streams.
fn milestone(m: &NewMilestone, streams: &Streams) -> Option<ReachedMilestone> {
    Some(match m.stream_id {
        Some(id) => {
            let stream = slug(streams, id)?;
            ReachedMilestone {
                key: format!("stream:{stream}:{}", m.reached),
                scope: Scope::Stream,
                reached: m.reached,
                streams: vec![stream],
            }
        }
        None => {
            let mut ids: Vec<i64> = streams
                .values()
                .filter(|s| s.campaign_id == m.campaign_id)
                .map(|s| s.id)
                .collect();
            ids.sort_unstable();
            ReachedMilestone {
                key: format!("campaign:{}", m.reached),
                scope: Scope::Campaign,
                reached: m.reached,
                streams: ids.into_iter().filter_map(|id| slug(streams, id)).collect(),
            }
        }
    })
}

/// A provider's test event: an alert marked test on the pledge's stream, with no seq,
/// never replayed, counted nowhere.
fn test_alert(p: &PledgeRecord, event: &PaymentEvent, stream: Slug) -> Alert {
    let frame = json!({
        "type": "gift", "seq": null, "gift_id": null,
        "donor": p.public_name(),
        "amount": event.amount, "currency": event.currency,
        "message": p.message, "designation": p.designation,
        "matched": 0, "test": true,
    });
    Alert {
        key: event.event_id.clone(),
        stream,
        frame: frame.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_read_back_as_written() {
        let stream = Slug::parse("s", "live-01").expect("slug");
        let effect = LiveEffect::Milestone(ReachedMilestone {
            key: "campaign:50".into(),
            scope: Scope::Campaign,
            reached: 50,
            streams: vec![stream.clone()],
        });
        let json = serde_json::to_value(&effect).expect("serializes");
        assert_eq!(json["kind"], "milestone");
        assert_eq!(json["streams"][0], "live-01");
        let back: LiveEffect = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, effect);
        let bad = serde_json::json!({"kind": "failed", "pledge_id": "p", "stream": "Not A Slug"});
        assert!(
            serde_json::from_value::<LiveEffect>(bad).is_err(),
            "slugs are checked"
        );
    }
}
