//! Three-way reconciliation of a campaign (CONTRACT §8): the PostgreSQL ledger × the
//! provider's statement × the live totals in Redis. A statement is stored as it streams
//! in (`import`), classified against the ledger in one snapshot (`classify`), and the
//! report (`report`) is kept: the latest one decides whether the campaign may close.

mod classify;
mod csv_out;
pub mod import;
pub mod report;
pub mod statement;

use chrono::Utc;
use redis::aio::ConnectionLike;
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::closing;
use crate::domain::Slug;
use crate::ledger::{self, CampaignLock, Guarded, LockError, RebuildError, Stores};
pub use csv_out::csv_chunks;
pub use import::{ImportError, Imported, Progress, import};
use report::LISTED;
pub use report::Report;

/// How long a report waits for effects still on their way to the live counters before
/// it takes a difference for drift.
const SETTLE_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Live(#[from] RebuildError),
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("the report could not be encoded: {0}")]
    Encode(String),
    #[error("another report of the campaign is being made; try again")]
    Busy,
}

impl From<LockError> for ReconcileError {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Busy => ReconcileError::Busy,
            LockError::Database(e) => ReconcileError::Database(e),
        }
    }
}

/// A report as kept: its id among the campaign's reports.
pub struct Kept {
    pub id: i64,
    pub report: Report,
}

/// How long a report waits for another report of the same campaign to be made.
const REPORT_WAIT: Duration = Duration::from_secs(120);

/// Reconciles `campaign` against the stored statement `statement_id` and keeps the
/// report. Reports of one campaign are made one at a time, so the latest kept is the
/// newest snapshot.
pub async fn reconcile(
    stores: &Stores,
    campaign: &Slug,
    campaign_id: i64,
    statement_id: i64,
) -> Result<Kept, ReconcileError> {
    let mut lock = CampaignLock::acquire_for(
        &stores.db,
        Guarded::Reconciliation,
        campaign_id,
        REPORT_WAIT,
    )
    .await?;
    let kept = reconcile_locked(stores, lock.conn(), campaign, campaign_id, statement_id).await?;
    lock.release().await?;
    Ok(kept)
}

async fn reconcile_locked(
    stores: &Stores,
    conn: &mut PgConnection,
    campaign: &Slug,
    campaign_id: i64,
    statement_id: i64,
) -> Result<Kept, ReconcileError> {
    let mut redis = stores.redis.clone();
    let (live_confirmed, live_drift) = live(stores, &mut redis, campaign).await?;
    let mut tx = conn
        .begin_with("begin isolation level repeatable read")
        .await?;
    let (rows, other_campaigns) = classify::stage(&mut tx, statement_id, campaign_id).await?;
    let id: i64 = sqlx::query_scalar(
        r#"insert into reconciliation_reports (campaign_id, statement_id, clean, report)
           values ($1, $2, false, '{}') returning id"#,
    )
    .bind(campaign_id)
    .bind(statement_id)
    .fetch_one(&mut *tx)
    .await?;
    classify::store_discrepancies(&mut tx, id, campaign_id).await?;
    let live = (live_confirmed, live_drift);
    let mut report = assemble(&mut tx, campaign, campaign_id, statement_id, id, live).await?;
    report.source.rows = rows;
    report.source.other_campaigns = other_campaigns;
    report.clean = report.is_clean();
    let state = closing::ledger_state(&mut tx, campaign_id).await?;
    let json = serde_json::to_string(&report).map_err(|e| ReconcileError::Encode(e.to_string()))?;
    sqlx::query(
        r#"update reconciliation_reports
           set generated_at = $2, clean = $3, report = $4::json, ledger_state = $5
           where id = $1"#,
    )
    .bind(id)
    .bind(report.generated_at)
    .bind(report.clean)
    .bind(json)
    .bind(state)
    .execute(&mut *tx)
    .await?;
    // The staged rows go with the transaction.
    tx.commit().await?;
    Ok(Kept { id, report })
}

async fn assemble(
    db: &mut PgConnection,
    campaign: &Slug,
    campaign_id: i64,
    statement_id: i64,
    report_id: i64,
    (live_confirmed, live_drift): (i64, i64),
) -> Result<Report, ReconcileError> {
    let mut not_listed = BTreeMap::new();
    let mut lists = BTreeMap::new();
    for class in CLASSES {
        let (list, total) = classify::listed(db, report_id, class, LISTED as i64).await?;
        not_listed.insert(class.to_owned(), total - list.len() as u64);
        lists.insert(class, list);
    }
    let mut list = |class: &str| lists.remove(class).unwrap_or_default();
    let (statement_sha256, bad_total): (String, i32) =
        sqlx::query_as(r#"select body_sha256, bad_rows from statements where id = $1"#)
            .bind(statement_id)
            .fetch_one(&mut *db)
            .await?;
    let bad_rows: Vec<statement::BadRow> = sqlx::query_as(
        r#"select line::bigint as line, reason from statement_problems
           where statement_id = $1 order by line limit $2"#,
    )
    .bind(statement_id)
    .bind(LISTED as i64)
    .fetch_all(&mut *db)
    .await?
    .into_iter()
    .map(|(line, reason): (i64, String)| statement::BadRow {
        line: line as u64,
        reason,
    })
    .collect();
    let listed_bad = bad_rows.len() as u64;
    not_listed.insert(
        "bad_rows".to_owned(),
        u64::try_from(bad_total)
            .unwrap_or(0)
            .saturating_sub(listed_bad),
    );
    not_listed.retain(|_, n| *n > 0);
    let (by_designation, by_stream) = classify::buckets(db, campaign_id).await?;
    Ok(Report {
        campaign: campaign.to_string(),
        generated_at: Utc::now(),
        source: report::Source {
            statement_sha256,
            rows: 0,
            other_campaigns: 0,
        },
        ledger: classify::ledger_side(db, campaign_id).await?,
        statement: classify::statement_side(db).await?,
        live: report::Live {
            confirmed: live_confirmed,
        },
        live_drift,
        matched: classify::matched(db).await?,
        missing_in_ledger: list("missing_in_ledger"),
        missing_in_statement: list("missing_in_statement"),
        amount_mismatch: list("amount_mismatch"),
        duplicates: list("duplicates"),
        exceptions: classify::exceptions(db, campaign_id).await?,
        bad_rows,
        not_listed,
        by_designation,
        by_stream,
        unpaid_pledges: classify::unpaid(db, campaign_id).await?,
        clean: false,
    })
}

/// The classes of discrepancy, in the report's order.
pub const CLASSES: [&str; 4] = [
    "missing_in_ledger",
    "missing_in_statement",
    "amount_mismatch",
    "duplicates",
];

/// The live confirmed total, and the drift between the live counters and the ledger once
/// the effects on their way have had a moment to arrive.
async fn live<C: ConnectionLike>(
    stores: &Stores,
    redis: &mut C,
    campaign: &Slug,
) -> Result<(i64, i64), ReconcileError> {
    ledger::ensure_built(&stores.db, redis, &stores.keys, campaign).await?;
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    let mut drift = ledger::drift_of(&stores.db, redis, &stores.keys, campaign).await?;
    while drift != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drift = ledger::drift_of(&stores.db, redis, &stores.keys, campaign).await?;
    }
    let confirmed: Option<i64> = redis::cmd("HGET")
        .arg(stores.keys.campaign(campaign).totals())
        .arg("confirmed")
        .query_async(redis)
        .await?;
    Ok((confirmed.unwrap_or(0), drift))
}

/// The latest report kept for a campaign, as it was written.
pub async fn latest(
    db: &sqlx::PgPool,
    campaign_id: i64,
) -> sqlx::Result<Option<(i64, bool, String)>> {
    sqlx::query_as(
        r#"select id, clean, report::text from reconciliation_reports
           where campaign_id = $1 order by id desc limit 1"#,
    )
    .bind(campaign_id)
    .fetch_optional(db)
    .await
}
