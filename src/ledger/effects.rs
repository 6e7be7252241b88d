//! After a batch commits: each gift, refund and failure is told to the live counters by
//! its Lua script (idempotent by gift or refund id), and test events become test alerts.
//! A failure here is logged and left to the drift check; the ledger is already right.

use futures_util::future::join_all;
use serde_json::json;
use std::collections::HashMap;

use super::plan::{NewGift, NewRefund, Plan, PledgeFacts};
use crate::AppState;
use crate::counters::{self, Applied, SettledGift, SettledRefund};
use crate::domain::{Money, Slug};
use crate::payments::PaymentEvent;

/// A stream's slug and goal, with its campaign's.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StreamMeta {
    pub id: i64,
    pub slug: String,
    pub goal: Option<i64>,
    pub campaign: String,
    pub campaign_goal: i64,
}

/// What a committed batch tells the live counters.
#[derive(Debug, Default)]
pub struct Effects {
    gifts: Vec<NewGift>,
    refunds: Vec<NewRefund>,
    failed: Vec<PledgeFacts>,
    tests: Vec<(PledgeFacts, PaymentEvent)>,
    streams: HashMap<i64, StreamMeta>,
}

impl Effects {
    pub fn from_plan(plan: Plan, streams: HashMap<i64, StreamMeta>) -> Self {
        Self {
            gifts: plan.gifts,
            refunds: plan.refunds,
            failed: plan.failed,
            tests: plan.tests,
            streams,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.gifts.is_empty()
            && self.refunds.is_empty()
            && self.failed.is_empty()
            && self.tests.is_empty()
    }
}

/// How many scripts are in flight at once (pipelined on the one connection).
const IN_FLIGHT: usize = 256;

/// Applies the effects in order of the plan; returns how many failed.
pub async fn apply(state: &AppState, effects: &Effects) -> usize {
    let mut failures = 0;
    let mut seqs: HashMap<i64, u64> = HashMap::new();
    let mut note = |stream_id: i64, done: Done| match done {
        Ok(Some(seq)) => {
            let high = seqs.entry(stream_id).or_default();
            *high = (*high).max(seq);
        }
        Ok(None) => {}
        Err(()) => failures += 1,
    };
    for chunk in effects.gifts.chunks(IN_FLIGHT) {
        let runs = chunk.iter().map(|g| gift(state, effects, g));
        for (g, done) in chunk.iter().zip(join_all(runs).await) {
            note(g.pledge.stream_id, done);
        }
    }
    for chunk in effects.refunds.chunks(IN_FLIGHT) {
        let runs = chunk.iter().map(|r| refund(state, effects, r));
        for (r, done) in chunk.iter().zip(join_all(runs).await) {
            note(r.gift.stream_id, done);
        }
    }
    if let Err(e) = record_seqs(state, &seqs).await {
        tracing::warn!(error = %e, "could not record the streams' seqs");
    }
    for p in &effects.failed {
        failures += usize::from(!failed(state, effects, p).await);
    }
    for (p, event) in &effects.tests {
        failures += usize::from(!test_alert(state, effects, p, event).await);
    }
    if failures > 0 {
        metrics::counter!("livefund_live_effects_failed_total").increment(failures as u64);
        tracing::warn!(
            failures,
            "live counters not updated after commit; the drift check will repair them"
        );
    }
    failures
}

fn slugs(effects: &Effects, stream_id: i64) -> Option<(&StreamMeta, Slug, Slug)> {
    let meta = effects.streams.get(&stream_id)?;
    let stream = Slug::parse("stream", &meta.slug).ok()?;
    let campaign = Slug::parse("campaign", &meta.campaign).ok()?;
    Some((meta, stream, campaign))
}

async fn gift(state: &AppState, effects: &Effects, g: &NewGift) -> Done {
    let (meta, stream, campaign) = slugs(effects, g.pledge.stream_id).ok_or(())?;
    let keys = state.keys.campaign(&campaign);
    let (gift_id, pledge_id) = (g.id.to_string(), g.pledge.id.to_string());
    let public_name = if g.pledge.anonymous {
        None
    } else {
        g.pledge.donor_name.as_deref()
    };
    let settled = SettledGift {
        gift_id: &gift_id,
        pledge_id: &pledge_id,
        stream: &stream,
        amount: Money::from_stored(g.pledge.amount),
        matched: Money::from_stored(g.matched),
        currency: &g.pledge.currency,
        donor_ref: g.pledge.donor_ref.as_deref(),
        anonymous: g.pledge.anonymous,
        public_name,
        message: g.pledge.message.as_deref(),
        designation: g.pledge.designation.as_deref(),
        campaign_goal: Money::from_stored(meta.campaign_goal),
        stream_goal: meta.goal.map(Money::from_stored),
    };
    let mut redis = state.redis.clone();
    let mut applied = counters::gift_settled(&mut redis, &keys, &settled)
        .await
        .map_err(drop)?;
    if applied == Applied::NotBuilt {
        // Counted by the rebuild if it read this gift's commit; if not, counted now,
        // and either way its alert is not lost.
        rebuilt(state, &campaign).await?;
        applied = counters::gift_settled(&mut redis, &keys, &settled)
            .await
            .map_err(drop)?;
    }
    Ok(seq_of(applied))
}

/// What one live effect came to: counted (with its event's seq), nothing new, or failed.
type Done = Result<Option<u64>, ()>;

fn seq_of(applied: Applied) -> Option<u64> {
    match applied {
        Applied::Counted(seq) => Some(seq),
        Applied::AlreadyCounted | Applied::NotBuilt => None,
    }
}

/// The counters were lost: they are rebuilt from the ledger, which holds this batch.
async fn rebuilt(state: &AppState, campaign: &Slug) -> Result<(), ()> {
    let mut redis = state.redis.clone();
    super::ensure_built(&state.db, &mut redis, &state.keys, campaign)
        .await
        .map_err(drop)
}

/// Records each stream's highest seq, so a stream whose seq Redis loses starts above it.
async fn record_seqs(state: &AppState, seqs: &HashMap<i64, u64>) -> sqlx::Result<()> {
    if seqs.is_empty() {
        return Ok(());
    }
    let (ids, values): (Vec<i64>, Vec<i64>) = seqs
        .iter()
        .map(|(id, seq)| (*id, i64::try_from(*seq).unwrap_or(i64::MAX)))
        .unzip();
    sqlx::query(
        r#"insert into stream_seqs (stream_id, seq)
           select * from unnest($1::bigint[], $2::bigint[])
           on conflict (stream_id) do update set seq = greatest(stream_seqs.seq, excluded.seq)"#,
    )
    .bind(&ids)
    .bind(&values)
    .execute(&state.db)
    .await?;
    Ok(())
}

async fn refund(state: &AppState, effects: &Effects, r: &NewRefund) -> Done {
    let (_, stream, campaign) = slugs(effects, r.gift.stream_id).ok_or(())?;
    let keys = state.keys.campaign(&campaign);
    let (refund_id, gift_id, pledge_id) = (
        r.id.to_string(),
        r.gift.id.to_string(),
        r.gift.pledge_id.to_string(),
    );
    let board = counters::board_key(
        &gift_id,
        &pledge_id,
        r.gift.anonymous,
        r.gift.donor_ref.as_deref(),
    );
    let settled = SettledRefund {
        refund_id: &refund_id,
        gift_id: &gift_id,
        pledge_id: &pledge_id,
        stream: &stream,
        amount: Money::from_stored(r.amount),
        match_reversed: Money::from_stored(r.reversed),
        board_key: &board,
        fully_refunded: r.fully,
    };
    let mut redis = state.redis.clone();
    let mut applied = counters::refund_settled(&mut redis, &keys, &settled)
        .await
        .map_err(drop)?;
    if applied == Applied::NotBuilt {
        rebuilt(state, &campaign).await?;
        applied = counters::refund_settled(&mut redis, &keys, &settled)
            .await
            .map_err(drop)?;
    }
    Ok(seq_of(applied))
}

async fn failed(state: &AppState, effects: &Effects, p: &PledgeFacts) -> bool {
    let Some((_, _, campaign)) = slugs(effects, p.stream_id) else {
        return false;
    };
    let mut redis = state.redis.clone();
    let keys = state.keys.campaign(&campaign);
    counters::pledge_failed(&mut redis, &keys, &p.id.to_string())
        .await
        .is_ok()
}

/// A provider's test event: an alert marked test on the pledge's stream, with no seq,
/// never replayed, counted nowhere.
async fn test_alert(
    state: &AppState,
    effects: &Effects,
    p: &PledgeFacts,
    event: &PaymentEvent,
) -> bool {
    let Some((_, stream, campaign)) = slugs(effects, p.stream_id) else {
        return false;
    };
    let frame = json!({
        "type": "gift", "seq": null, "gift_id": null,
        "donor": if p.anonymous { None } else { p.donor_name.as_deref() },
        "amount": event.amount, "currency": event.currency,
        "message": p.message, "designation": p.designation,
        "matched": 0, "test": true,
    });
    let keys = state.keys.campaign(&campaign);
    counters::publish_alert(&mut state.redis.clone(), &keys, &stream, &frame.to_string())
        .await
        .is_ok()
}
