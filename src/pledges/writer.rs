//! Write-behind of pledges to PostgreSQL in batches, so operators can later report
//! pledges never paid. A crash loses at most what was not yet flushed; confirmed gifts
//! never pass through here.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::Pledge;

/// The most changes written in one transaction.
const BATCH: usize = 1000;
/// How long a batch waits to fill once its first change arrived.
const LINGER: Duration = Duration::from_millis(20);
/// Changes waiting to be written; past this, new ones are dropped and counted.
const QUEUE: usize = 100_000;

/// A pledge as first accepted.
#[derive(Debug, Clone)]
pub struct PledgeRow {
    pub id: Uuid,
    pub campaign_id: i64,
    pub stream_id: i64,
    pub pledge: Pledge,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One change to write behind.
#[derive(Debug, Clone)]
pub enum PledgeChange {
    Created(PledgeRow),
    /// The pledge moved to `status` (`expired` or `failed`); a status only moves forward.
    Status {
        id: Uuid,
        status: &'static str,
    },
}

/// The sending side, held in the app state.
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
        let first = tokio::select! {
            change = rx.recv() => change,
            _ = shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(change)) => batch.push(change),
                _ => break,
            }
        }
        write_with_retries(&db, &mut batch).await;
    }
    // Shutting down: whatever is still queued is written before the process exits.
    rx.close();
    while let Some(change) = rx.recv().await {
        batch.push(change);
        if batch.len() >= BATCH {
            write_with_retries(&db, &mut batch).await;
        }
    }
    write_with_retries(&db, &mut batch).await;
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

/// Inserts new pledges, then applies status changes, in one transaction.
pub async fn write(db: &PgPool, batch: &[PledgeChange]) -> sqlx::Result<()> {
    let mut rows = Rows::default();
    let mut status_ids = Vec::new();
    let mut statuses = Vec::new();
    // Rows are written in id order, the order settlement locks pledges in, so the two
    // never wait on each other in a cycle.
    let mut ordered: Vec<&PledgeChange> = batch.iter().collect();
    ordered.sort_by_key(|change| match change {
        PledgeChange::Created(row) => row.id,
        PledgeChange::Status { id, .. } => *id,
    });
    let mut seen = std::collections::HashSet::new();
    for change in ordered {
        match change {
            // A retried pledge may be queued twice; one upsert may touch a row only once.
            PledgeChange::Created(row) if !seen.insert(row.id) => {}
            PledgeChange::Created(row) => rows.push(row),
            PledgeChange::Status { id, status } => {
                status_ids.push(*id);
                statuses.push(*status);
            }
        }
    }
    let mut tx = db.begin().await?;
    if !rows.id.is_empty() {
        sqlx::query(
            r#"insert into pledges (id, campaign_id, stream_id, amount, currency, designation,
                                    donor_name, anonymous, message, donor_ref, idempotency_key,
                                    status, created_at, expires_at)
               select id, campaign_id, stream_id, amount, currency, designation, donor_name,
                      anonymous, message, donor_ref, idempotency_key, 'pending', created_at,
                      expires_at
               from unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                           $6::text[], $7::text[], $8::bool[], $9::text[], $10::text[],
                           $11::text[], $12::timestamptz[], $13::timestamptz[])
                 as p(id, campaign_id, stream_id, amount, currency, designation, donor_name,
                      anonymous, message, donor_ref, idempotency_key, created_at, expires_at)
               on conflict (id) do update
                   -- Settlement may have written the pledge first, from the live store,
                   -- without its times and key: these are the pledge's own.
                   set created_at = excluded.created_at,
                       expires_at = excluded.expires_at,
                       idempotency_key = excluded.idempotency_key"#,
        )
        .bind(&rows.id)
        .bind(&rows.campaign_id)
        .bind(&rows.stream_id)
        .bind(&rows.amount)
        .bind(&rows.currency)
        .bind(&rows.designation)
        .bind(&rows.donor_name)
        .bind(&rows.anonymous)
        .bind(&rows.message)
        .bind(&rows.donor_ref)
        .bind(&rows.idempotency_key)
        .bind(&rows.created_at)
        .bind(&rows.expires_at)
        .execute(&mut *tx)
        .await?;
    }
    if !status_ids.is_empty() {
        // Only forward: pending → expired/failed; never over confirmed or refunded.
        sqlx::query(
            r#"update pledges p set status = c.status, updated_at = now()
               from unnest($1::uuid[], $2::text[]) as c(id, status)
               where p.id = c.id and p.status = 'pending'"#,
        )
        .bind(&status_ids)
        .bind(&statuses)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// New pledges as columns, for one `unnest` insert.
#[derive(Default)]
struct Rows {
    id: Vec<Uuid>,
    campaign_id: Vec<i64>,
    stream_id: Vec<i64>,
    amount: Vec<i64>,
    currency: Vec<String>,
    designation: Vec<Option<String>>,
    donor_name: Vec<Option<String>>,
    anonymous: Vec<bool>,
    message: Vec<Option<String>>,
    donor_ref: Vec<Option<String>>,
    idempotency_key: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
    expires_at: Vec<DateTime<Utc>>,
}

impl Rows {
    fn push(&mut self, row: &PledgeRow) {
        let p = &row.pledge;
        self.id.push(row.id);
        self.campaign_id.push(row.campaign_id);
        self.stream_id.push(row.stream_id);
        self.amount.push(p.amount.minor_units());
        self.currency.push(p.currency.to_string());
        self.designation
            .push(p.designation.as_ref().map(|d| d.to_string()));
        // An anonymous pledge's name is dropped here: it is never shown, so never kept.
        self.donor_name.push(p.public_name().map(str::to_owned));
        self.anonymous.push(p.anonymous);
        self.message.push(p.message.clone());
        self.donor_ref.push(p.donor_ref.clone());
        self.idempotency_key
            .push(p.idempotency_key.as_str().to_owned());
        self.created_at.push(row.created_at);
        self.expires_at.push(row.expires_at);
    }
}
