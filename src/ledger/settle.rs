//! Settling one batch of payment events in one transaction: record the events (a
//! replayed event id is a no-op), load what they touch, plan, write, commit. A batch
//! that races another gateway's is retried from the start.

use sqlx::{Postgres, Transaction};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

use super::effects::{Effects, StreamMeta};
use super::plan::{self, Known, Outcome, PledgeFacts};
use super::{load, write};
use crate::AppState;
use crate::domain::Slug;
use crate::payments::PaymentEvent;

/// How often a batch that raced another settlement is tried again.
const ATTEMPTS: u32 = 5;

/// What a batch came to.
pub struct Settled {
    /// One per event given, in order.
    pub outcomes: Vec<Outcome>,
    /// What to tell the live counters now that it is committed.
    pub effects: Effects,
}

/// Settles `events` (in arrival order) in one transaction.
pub async fn settle_batch(
    state: &AppState,
    events: &[PaymentEvent],
) -> Result<Settled, sqlx::Error> {
    // Within a batch, a repeated event id is a replay of its first delivery.
    let mut seen = HashSet::new();
    let unique: Vec<PaymentEvent> = events
        .iter()
        .filter(|e| seen.insert(e.event_id.clone()))
        .cloned()
        .collect();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = state.db.begin().await?;
        match settle_in(state, &mut tx, &unique).await {
            Ok((by_event, effects)) => {
                tx.commit().await?;
                // Only an event's first delivery gets its outcome; any other is a replay.
                let mut answered = HashSet::new();
                let outcomes = events
                    .iter()
                    .map(|e| match by_event.get(&e.event_id) {
                        Some(outcome) if answered.insert(e.event_id.clone()) => outcome.clone(),
                        _ => Outcome::Ignored,
                    })
                    .collect();
                return Ok(Settled { outcomes, effects });
            }
            Err(Failure::Raced(what)) if attempt < ATTEMPTS => {
                tracing::info!(what, attempt, "settlement raced another gateway; retrying");
                let _ = tx.rollback().await;
            }
            Err(Failure::Raced(what)) => {
                return Err(sqlx::Error::Protocol(format!(
                    "settlement kept racing on {what}"
                )));
            }
            Err(Failure::Database(e)) if retryable(&e) && attempt < ATTEMPTS => {
                tracing::info!(error = %e, attempt, "settlement conflict; retrying");
                let _ = tx.rollback().await;
            }
            Err(Failure::Database(e)) => return Err(e),
        }
    }
}

enum Failure {
    Raced(&'static str),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Database(e)
    }
}

/// Deadlocks and serialization failures between concurrent batches are worth a retry.
fn retryable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

async fn settle_in(
    state: &AppState,
    tx: &mut Transaction<'_, Postgres>,
    events: &[PaymentEvent],
) -> Result<(HashMap<String, Outcome>, Effects), Failure> {
    let new: HashSet<String> = write::record_events(tx, events)
        .await?
        .into_iter()
        .collect();
    let fresh: Vec<PaymentEvent> = events
        .iter()
        .filter(|e| new.contains(&e.event_id))
        .cloned()
        .collect();
    let mut known = Known::default();
    if !fresh.is_empty() {
        let ids: Vec<Uuid> = fresh
            .iter()
            .filter_map(|e| e.pledge_id.parse().ok())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for p in load::pledges(tx, &ids).await? {
            known.pledges.insert(p.id, p);
        }
        let missing: Vec<Uuid> = ids
            .into_iter()
            .filter(|id| !known.pledges.contains_key(id))
            .collect();
        let live = live_pledges(state, &missing).await?;
        write::pledges(tx, &live).await?;
        for p in live {
            known.pledges.insert(p.id, p);
        }
        // Events on the same pledge settle one transaction at a time, on every gateway:
        // what the rest of the batch reads (gifts, refunds so far, parked refunds) is then
        // what the previous holder committed.
        let locked: Vec<Uuid> = known.pledges.keys().copied().collect();
        load::lock_pledges(tx, &locked).await?;
        load::rest(tx, &fresh, &mut known).await?;
    }
    let planned = plan::plan(&fresh, &mut known);
    write::plan(tx, &fresh, &planned, &known)
        .await
        .map_err(|e| match e {
            write::WriteError::Raced(what) => Failure::Raced(what),
            write::WriteError::Database(e) => Failure::Database(e),
        })?;
    let streams = stream_meta(tx, &planned).await?;
    let by_event = fresh
        .iter()
        .map(|e| e.event_id.clone())
        .zip(planned.outcomes.iter().cloned())
        .collect();
    Ok((by_event, Effects::from_plan(planned, streams)))
}

/// Pledges not yet written behind, read from the live store (they are written now).
/// A failure to read is not "no such pledge": it fails the batch, so the provider
/// delivers again rather than the payment becoming an exception.
async fn live_pledges(state: &AppState, ids: &[Uuid]) -> Result<Vec<PledgeFacts>, Failure> {
    let mut found = Vec::new();
    for id in ids {
        let status = crate::pledges::find_live(state, id).await.map_err(|e| {
            Failure::Database(sqlx::Error::Protocol(format!("the live store: {e}")))
        })?;
        let Some(status) = status else { continue };
        let Ok(slug) = Slug::parse("stream", &status.stream) else {
            continue;
        };
        let Some(stream) = state.catalog.stream(&slug).await? else {
            continue;
        };
        found.push(PledgeFacts {
            id: *id,
            campaign_id: stream.campaign.id,
            stream_id: stream.id,
            amount: status.amount,
            currency: status.currency,
            designation: status.designation,
            donor_name: status.donor_name,
            anonymous: status.anonymous,
            message: status.message,
            donor_ref: status.donor_ref,
        });
    }
    Ok(found)
}

/// The slugs and goals of the streams (and their campaigns) the plan's effects touch.
async fn stream_meta(
    tx: &mut Transaction<'_, Postgres>,
    plan: &plan::Plan,
) -> sqlx::Result<HashMap<i64, StreamMeta>> {
    let ids: Vec<i64> = plan
        .gifts
        .iter()
        .map(|g| g.pledge.stream_id)
        .chain(plan.refunds.iter().map(|r| r.gift.stream_id))
        .chain(plan.failed.iter().map(|p| p.stream_id))
        .chain(plan.tests.iter().map(|(p, _)| p.stream_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<StreamMeta> = sqlx::query_as(
        r#"select s.id, s.slug::text as slug, s.goal::bigint as goal,
                  c.slug::text as campaign, c.goal::bigint as campaign_goal
           from streams s join campaigns c on c.id = s.campaign_id
           where s.id = any($1)"#,
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r)).collect())
}
