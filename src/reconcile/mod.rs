//! Three-way reconciliation of a campaign (CONTRACT §8): the PostgreSQL ledger × the
//! provider's statement × the live totals in Redis. A statement is stored as it streams
//! in (`import`), classified against the ledger in one snapshot (`classify`), and the
//! report (`report`) is kept: the latest one decides whether the campaign may close.

mod classify;
pub mod import;
pub mod report;
pub mod statement;

use chrono::Utc;
use redis::aio::ConnectionLike;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

use crate::closing;
use crate::domain::Slug;
use crate::ledger::{self, RebuildError, Stores};
pub use import::{ImportError, Imported, Progress, import};
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
}

/// A report as kept: its id among the campaign's reports.
pub struct Kept {
    pub id: i64,
    pub report: Report,
}

/// Reconciles `campaign` against the stored statement `statement_id` and keeps the report.
pub async fn reconcile(
    stores: &Stores,
    campaign: &Slug,
    campaign_id: i64,
    statement_id: i64,
) -> Result<Kept, ReconcileError> {
    let mut redis = stores.redis.clone();
    let (live_confirmed, live_drift) = live(stores, &mut redis, campaign).await?;
    let mut conn = stores.db.acquire().await?;
    let mut tx = conn
        .begin_with("begin isolation level repeatable read")
        .await?;
    let report = assemble(
        &mut tx,
        campaign,
        campaign_id,
        statement_id,
        live_confirmed,
        live_drift,
    )
    .await?;
    let state = closing::ledger_state(&mut tx, campaign_id).await?;
    // The staged rows go with the transaction; nothing else was written.
    tx.rollback().await?;
    let json = serde_json::to_string(&report).map_err(|e| ReconcileError::Encode(e.to_string()))?;
    let id: i64 = sqlx::query_scalar(
        r#"insert into reconciliation_reports
               (campaign_id, statement_id, generated_at, clean, report, ledger_state)
           values ($1, $2, $3, $4, $5::json, $6) returning id"#,
    )
    .bind(campaign_id)
    .bind(statement_id)
    .bind(report.generated_at)
    .bind(report.clean)
    .bind(json)
    .bind(state)
    .fetch_one(&stores.db)
    .await?;
    Ok(Kept { id, report })
}

async fn assemble(
    db: &mut PgConnection,
    campaign: &Slug,
    campaign_id: i64,
    statement_id: i64,
    live_confirmed: i64,
    live_drift: i64,
) -> Result<Report, ReconcileError> {
    let (rows, other_campaigns) = classify::stage(db, statement_id, campaign_id).await?;
    let mut lists = classify::discrepancies(db, campaign_id).await?;
    let mut list = |class: &str| lists.remove(class).unwrap_or_default();
    let (statement_sha256, bad_total): (String, i32) =
        sqlx::query_as(r#"select body_sha256, bad_rows from statements where id = $1"#)
            .bind(statement_id)
            .fetch_one(&mut *db)
            .await?;
    let bad_rows: Vec<statement::BadRow> = sqlx::query_as(
        r#"select line::bigint as line, reason from statement_problems
           where statement_id = $1 order by line"#,
    )
    .bind(statement_id)
    .fetch_all(&mut *db)
    .await?
    .into_iter()
    .map(|(line, reason): (i64, String)| statement::BadRow {
        line: line as u64,
        reason,
    })
    .collect();
    let (by_designation, by_stream) = classify::buckets(db, campaign_id).await?;
    let mut report = Report {
        campaign: campaign.to_string(),
        generated_at: Utc::now(),
        source: report::Source {
            statement_sha256,
            rows,
            other_campaigns,
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
        bad_rows_not_listed: 0,
        bad_rows,
        by_designation,
        by_stream,
        unpaid_pledges: classify::unpaid(db, campaign_id).await?,
        clean: false,
    };
    let listed = report.bad_rows.len() as u64;
    report.bad_rows_not_listed = u64::try_from(bad_total).unwrap_or(0).saturating_sub(listed);
    report.clean = report.is_clean();
    Ok(report)
}

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
