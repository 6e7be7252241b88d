//! The settler: webhook handlers hand it verified events and wait; it commits many per
//! transaction (at most [`BATCH`] events, waiting at most [`LINGER`] for a batch to
//! fill) and wakes each handler after the commit, then the outbox relay.
//!
//! It fails fast: a full queue answers at once; a handler whose provider hung up is
//! skipped; a batch that fails because the database is gone fails whole, at once. Only
//! an error tied to some events makes it settle them one by one: an event whose own data
//! fails alone is recorded as an `invalid_event` exception, never retried for ever.

use axum::body::Bytes;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::invalid::{invalid_event_id, record_invalid};
use super::plan::Outcome;
use super::relay::RelayWake;
use super::settle::{Failure, SettleError, Settled, settle_batch};
use super::stores::Stores;
use crate::payments::PaymentEvent;

/// The most events in one transaction.
pub const BATCH: usize = 1000;
/// How long a batch waits to fill once its first event arrived.
pub const LINGER: Duration = Duration::from_millis(5);
/// How long a handler waits for room in a full queue before it answers 503.
const ENQUEUE_WAIT: Duration = Duration::from_millis(500);
/// After a batch failed because the database is gone, the batches of the next moment are
/// answered 503 at once; the first one after it tries the database again.
const DOWN_FOR: Duration = Duration::from_millis(500);
/// The longest a batch may take: past it (a database that hangs rather than refuses),
/// its events are answered 503, and whatever it committed is a replay when delivered again.
const BATCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Settles `events` in one transaction, within [`BATCH_TIMEOUT`].
async fn settle_within(stores: &Stores, events: &[PaymentEvent]) -> Result<Settled, SettleError> {
    tokio::time::timeout(BATCH_TIMEOUT, settle_batch(stores, events))
        .await
        .unwrap_or(Err(SettleError::TimedOut))
}

/// The ledger could not commit; the provider should deliver again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the ledger is unavailable")]
pub struct Unavailable;

struct Job {
    event: PaymentEvent,
    /// The body as signed, kept should the event have to be recorded as invalid.
    raw: Bytes,
    reply: oneshot::Sender<Result<Outcome, Unavailable>>,
}

/// The handlers' side of the settler.
#[derive(Clone)]
pub struct Settler {
    tx: mpsc::Sender<Job>,
}

/// The settler's receiving side, taken by [`run_settler`].
pub struct SettlerQueue(mpsc::Receiver<Job>);

impl Settler {
    pub fn new() -> (Self, SettlerQueue) {
        let (tx, rx) = mpsc::channel(BATCH * 4);
        (Self { tx }, SettlerQueue(rx))
    }

    /// Settles one event (whose signed body is `raw`); returns once its effect is
    /// committed, or could not be.
    pub async fn settle(&self, event: PaymentEvent, raw: Bytes) -> Result<Outcome, Unavailable> {
        let (reply, answer) = oneshot::channel();
        let job = Job { event, raw, reply };
        self.tx
            .send_timeout(job, ENQUEUE_WAIT)
            .await
            .map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)?
    }
}

/// Commits batches until `stop` and the queue is drained.
pub async fn run_settler(
    stores: Stores,
    relay: RelayWake,
    queue: SettlerQueue,
    stop: CancellationToken,
) {
    let ledger = Worker { stores, relay };
    let SettlerQueue(mut rx) = queue;
    let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
    let mut down_since: Option<tokio::time::Instant> = None;
    loop {
        let got = tokio::select! {
            n = rx.recv_many(&mut jobs, BATCH) => n,
            _ = stop.cancelled() => { rx.close(); rx.recv_many(&mut jobs, BATCH).await }
        };
        if got == 0 {
            break;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        while jobs.len() < BATCH {
            let room = BATCH - jobs.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut jobs, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        // A provider that hung up delivers again; its event is not worth a transaction now.
        jobs.retain(|job| !job.reply.is_closed());
        if down_since.is_some_and(|at| at.elapsed() < DOWN_FOR) {
            fail(&mut jobs);
            continue;
        }
        metrics::histogram!("livefund_settlement_batch_size").record(jobs.len() as f64);
        down_since = match settle_jobs(&ledger, &mut jobs).await {
            Health::Up => None,
            Health::Down => Some(tokio::time::Instant::now()),
        };
    }
}

/// What the settler works with: the stores, and the relay it wakes after a commit.
struct Worker {
    stores: Stores,
    relay: RelayWake,
}

/// Whether the database answered.
enum Health {
    Up,
    Down,
}

fn fail(jobs: &mut Vec<Job>) {
    for job in jobs.drain(..) {
        let _ = job.reply.send(Err(Unavailable));
    }
}

async fn settle_jobs(ledger: &Worker, jobs: &mut Vec<Job>) -> Health {
    if jobs.is_empty() {
        return Health::Up;
    }
    let events: Vec<PaymentEvent> = jobs.iter().map(|j| j.event.clone()).collect();
    match settle_within(&ledger.stores, &events).await {
        Ok(settled) => {
            if settled.effects > 0 {
                ledger.relay.wake();
            }
            for (job, outcome) in jobs.drain(..).zip(settled.outcomes) {
                let _ = job.reply.send(Ok(outcome));
            }
            Health::Up
        }
        Err(e) if e.failure() == Failure::Busy => {
            tracing::warn!(error = %e, events = jobs.len(), "settlement waited too long on other settlements; nothing acknowledged");
            fail(jobs);
            Health::Up
        }
        Err(e) if e.failure() != Failure::Down => {
            tracing::warn!(error = %e, events = jobs.len(), "settlement batch failed on its data; settling its events one by one");
            settle_alone(ledger, jobs).await
        }
        Err(e) => {
            tracing::error!(error = %e, events = jobs.len(), "settlement failed; nothing acknowledged");
            fail(jobs);
            Health::Down
        }
    }
}

/// Settles each event in its own transaction, so one bad event holds none of the others.
/// An event whose own data fails is recorded as invalid; one that fails for another
/// reason tied to it (it keeps racing, its pledge cannot be read) is answered 503 alone;
/// an error that is no event's (the database went away) fails it and every event after
/// it at once.
async fn settle_alone(ledger: &Worker, jobs: &mut Vec<Job>) -> Health {
    let mut down = false;
    for job in jobs.drain(..) {
        // A provider that hung up while the others settled delivers again.
        if job.reply.is_closed() {
            continue;
        }
        if down {
            let _ = job.reply.send(Err(Unavailable));
            continue;
        }
        let answer = match settle_within(&ledger.stores, std::slice::from_ref(&job.event)).await {
            Ok(settled) => {
                if settled.effects > 0 {
                    ledger.relay.wake();
                }
                settled.outcomes.into_iter().next().ok_or(Unavailable)
            }
            Err(e) if e.failure() == Failure::Data => record(ledger, &job, &e).await,
            Err(e) if matches!(e.failure(), Failure::Contended | Failure::Busy) => {
                tracing::warn!(error = %e, event = %job.event.event_id, "an event could not settle now; the provider will deliver it again");
                Err(Unavailable)
            }
            Err(e) => {
                tracing::error!(error = %e, event = %job.event.event_id, "settlement failed; nothing acknowledged");
                down = true;
                Err(Unavailable)
            }
        };
        let _ = job.reply.send(answer);
    }
    if down { Health::Down } else { Health::Up }
}

async fn record(ledger: &Worker, job: &Job, e: &SettleError) -> Result<Outcome, Unavailable> {
    tracing::error!(error = %e, event = %job.event.event_id, "the ledger refused an event on its own; recording it as invalid for an operator");
    let reason = format!("the ledger refused it: {e}");
    match record_invalid(&ledger.stores.db, &job.raw, &reason).await {
        Ok(_) => Ok(Outcome::Exception("invalid_event")),
        Err(e) => {
            let id = invalid_event_id(&job.raw);
            tracing::error!(error = %e, event = %job.event.event_id, invalid = %id, "could not record an invalid event");
            Err(Unavailable)
        }
    }
}
