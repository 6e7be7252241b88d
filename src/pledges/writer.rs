//! Write-behind of pledges to PostgreSQL in batches, so operators can later report
//! pledges never paid. A crash loses at most what was not yet flushed; confirmed gifts
//! never pass through here.

use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{PledgeRecord, PledgeStatus};
use crate::ledger::pledge_rows;

/// The most changes written in one transaction.
const BATCH: usize = 1000;
/// How long a batch waits to fill once its first change arrived.
const LINGER: Duration = Duration::from_millis(20);
/// Changes waiting to be written; past this, new ones are dropped and counted.
const QUEUE: usize = 100_000;

/// One change to write behind.
#[derive(Debug, Clone)]
pub enum PledgeChange {
    /// A pledge as first accepted.
    Created(Box<PledgeRecord>),
    /// The pledge moved to `status` (expired or failed) while pending.
    Status { id: Uuid, status: PledgeStatus },
}

impl PledgeChange {
    fn id(&self) -> Uuid {
        match self {
            PledgeChange::Created(p) => p.id,
            PledgeChange::Status { id, .. } => *id,
        }
    }
}

/// The sending side, held by pledge intake and the expiry sweep.
#[derive(Clone)]
pub struct WriteBehind {
    tx: mpsc::Sender<PledgeChange>,
}

impl WriteBehind {
    pub fn new() -> (Self, mpsc::Receiver<PledgeChange>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, rx)
    }

    /// Queues a change without waiting; when the queue is full the change is dropped
    /// (and counted) rather than slowing pledges down.
    pub fn send(&self, change: PledgeChange) {
        if self.tx.try_send(change).is_err() {
            metrics::counter!("livefund_write_behind_dropped_total").increment(1);
            tracing::warn!("write-behind queue full: a pledge change was dropped");
        }
    }
}

/// Writes queued changes in batches until `shutdown`, then flushes what is left.
pub async fn run_write_behind(
    db: PgPool,
    mut rx: mpsc::Receiver<PledgeChange>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let got = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = shutdown.cancelled() => {
                // Shutting down: whatever is still queued is written before the exit.
                rx.close();
                rx.recv_many(&mut batch, BATCH).await
            }
        };
        if got == 0 {
            break;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        write_with_retries(&db, &mut batch).await;
    }
}

async fn write_with_retries(db: &PgPool, batch: &mut Vec<PledgeChange>) {
    if batch.is_empty() {
        return;
    }
    metrics::histogram!("livefund_write_behind_batch_size").record(batch.len() as f64);
    for attempt in 0..5u32 {
        match write(db, batch).await {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "write-behind batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
        }
    }
    metrics::counter!("livefund_write_behind_dropped_total").increment(batch.len() as u64);
    tracing::error!(
        changes = batch.len(),
        "write-behind batch dropped after retries"
    );
    batch.clear();
}

/// Inserts new pledges, then applies status changes, in one transaction. Rows are written
/// in id order, the order settlement locks pledges in, which keeps the two from waiting on
/// each other in a cycle in the common case; PostgreSQL breaks a cycle that still forms
/// (a deadlock error), and both sides retry.
pub async fn write(db: &PgPool, batch: &[PledgeChange]) -> sqlx::Result<()> {
    let mut ordered: Vec<&PledgeChange> = batch.iter().collect();
    ordered.sort_by_key(|change| change.id());
    let mut created: Vec<&PledgeRecord> = Vec::new();
    let mut moved: Vec<(Uuid, &'static str)> = Vec::new();
    for change in ordered {
        match change {
            PledgeChange::Created(p) => created.push(p.as_ref()),
            PledgeChange::Status { id, status } => moved.push((*id, status.as_str())),
        }
    }
    let mut tx = db.begin().await?;
    pledge_rows::upsert(&mut tx, &created, pledge_rows::OnStored::Refresh).await?;
    if !moved.is_empty() {
        let (ids, statuses): (Vec<Uuid>, Vec<&str>) = moved.into_iter().unzip();
        // Only forward: pending to expired or failed; never over a paid pledge.
        sqlx::query(
            r#"update pledges p set status = c.status, updated_at = now()
               from unnest($1::uuid[], $2::text[]) as c(id, status)
               where p.id = c.id and p.status = $3"#,
        )
        .bind(&ids)
        .bind(&statuses)
        .bind(PledgeStatus::Pending.as_str())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}
