//! The settler: webhook handlers hand it verified events and wait; it commits many per
//! transaction (at most [`BATCH`] events, waiting at most [`LINGER`] for a batch to
//! fill) and wakes each handler after the commit. Live effects follow, in order, on a
//! task of their own.

use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::effects::{self, Effects};
use super::plan::Outcome;
use super::settle::settle_batch;
use crate::AppState;
use crate::payments::PaymentEvent;

/// The most events in one transaction.
pub const BATCH: usize = 1000;
/// How long a batch waits to fill once its first event arrived.
pub const LINGER: Duration = Duration::from_millis(5);

/// The ledger could not commit; the provider should deliver again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the ledger is unavailable")]
pub struct Unavailable;

struct Job {
    event: PaymentEvent,
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
        let (tx, rx) = mpsc::channel(BATCH * 16);
        (Self { tx }, SettlerQueue(rx))
    }

    /// Settles one event; returns once its effect is committed (or could not be).
    pub async fn settle(&self, event: PaymentEvent) -> Result<Outcome, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { event, reply })
            .await
            .map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)?
    }
}

/// Commits batches until `stop` and the queue is drained.
pub async fn run_settler(state: AppState, queue: SettlerQueue, stop: CancellationToken) {
    let SettlerQueue(mut rx) = queue;
    let (effects_tx, effects_rx) = mpsc::channel::<Effects>(64);
    let applier = tokio::spawn(run_effects(state.clone(), effects_rx));
    let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = stop.cancelled() => { rx.close(); rx.recv().await }
        };
        let Some(first) = first else { break };
        jobs.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while jobs.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(job)) => jobs.push(job),
                _ => break,
            }
        }
        metrics::histogram!("livefund_settlement_batch_size").record(jobs.len() as f64);
        let events: Vec<PaymentEvent> = jobs.iter().map(|j| j.event.clone()).collect();
        match settle_batch(&state, &events).await {
            Ok(settled) => {
                for (job, outcome) in jobs.drain(..).zip(settled.outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
                forward(&effects_tx, settled.effects).await;
            }
            Err(e) if jobs.len() > 1 => {
                // One event may be what fails the batch: settle each on its own, so the
                // others are not held hostage by it.
                tracing::warn!(error = %e, events = jobs.len(), "settlement batch failed; settling its events one by one");
                for job in jobs.drain(..) {
                    match settle_batch(&state, std::slice::from_ref(&job.event)).await {
                        Ok(mut settled) => {
                            let outcome = settled.outcomes.pop().ok_or(Unavailable);
                            let _ = job.reply.send(outcome);
                            forward(&effects_tx, settled.effects).await;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, event = %job.event.event_id, "settlement failed; nothing acknowledged");
                            let _ = job.reply.send(Err(Unavailable));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "settlement failed; nothing acknowledged");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(Unavailable));
                }
            }
        }
    }
    drop(effects_tx);
    let _ = applier.await;
}

async fn forward(effects_tx: &mpsc::Sender<Effects>, effects: Effects) {
    if !effects.is_empty() && effects_tx.send(effects).await.is_err() {
        tracing::error!("the live effects task has stopped");
    }
}

async fn run_effects(state: AppState, mut rx: mpsc::Receiver<Effects>) {
    while let Some(effects) = rx.recv().await {
        effects::apply(&state, &effects).await;
    }
}
