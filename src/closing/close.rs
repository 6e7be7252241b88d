//! Closing a campaign (CONTRACT §4): only on a clean latest report that is newer than
//! every change to the ledger, or by force with a reason. The campaign's row is locked as
//! settlement locks it, so the digest covers exactly what was settled before the close;
//! everything settled after it sees the campaign closed (late payments become exceptions,
//! refunds post-close adjustments).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::digest::ledger_digest;
use super::export;

/// Where a campaign's ledger stands: its rows only ever grow (gifts, refunds, exceptions
/// and their refunds) and exceptions only ever get resolved, so counting them tells
/// whether anything changed between two moments.
pub async fn ledger_state(db: &mut sqlx::PgConnection, campaign_id: i64) -> sqlx::Result<String> {
    sqlx::query_scalar(
        r#"select concat_ws(' ',
               'gifts:' || (select count(*) from gifts where campaign_id = $1),
               'refunds:' || (select count(*) from refunds where campaign_id = $1),
               'exception_refunds:' || (select count(*) from exception_refunds
                                        where campaign_id = $1),
               'exceptions:' || (select count(*) from payment_exceptions where campaign_id = $1),
               'resolved:' || (select count(*) from payment_exceptions
                               where campaign_id = $1 and resolved_at is not null))"#,
    )
    .bind(campaign_id)
    .fetch_one(db)
    .await
}

/// What a close answers (and answers again to a repeated close).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Closed {
    pub closed_at: DateTime<Utc>,
    pub ledger_digest: String,
    /// Gifts in the ledger at close.
    pub gifts: i64,
    /// Their amount less refunds, at close.
    pub net: i64,
    /// Whether it was forced past an unclean or missing report.
    pub forced: bool,
}

/// How an operator asks.
#[derive(Debug, Clone)]
pub struct CloseRequest {
    pub force: bool,
    pub reason: Option<String>,
    /// Who closes it, as the operator names themself.
    pub by: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error("{0}")]
    NotReconciled(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Closes the campaign `campaign_id` (named `slug`). Closing a closed campaign answers
/// its close again.
pub async fn close(
    db: &PgPool,
    campaign_id: i64,
    slug: &str,
    request: &CloseRequest,
) -> Result<Closed, CloseError> {
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    // Force counts only with a reason; without one the close stands on the report.
    let forced = request.force && reason.is_some();
    let mut tx = db.begin().await?;
    // Locked as settlement locks it: no batch settles on this campaign until the close
    // commits, and every batch after it sees the campaign closed.
    let (closed_at, digest_given, was_forced): (
        Option<DateTime<Utc>>,
        Option<String>,
        Option<bool>,
    ) = sqlx::query_as(
        r#"select closed_at, ledger_digest, close_forced from campaigns
               where id = $1 for update"#,
    )
    .bind(campaign_id)
    .fetch_one(&mut *tx)
    .await?;
    let gifts = export::gifts(&mut tx, campaign_id).await?;
    let net: i64 = gifts
        .iter()
        .map(|g| g.amount - (g.refunded - g.refunded_after_close))
        .sum();
    if let (Some(closed_at), Some(ledger_digest)) = (closed_at, digest_given) {
        return Ok(Closed {
            closed_at,
            ledger_digest,
            gifts: gifts.len() as i64,
            net,
            forced: was_forced.unwrap_or(false),
        });
    }
    let report = if forced {
        None
    } else {
        Some(clean_report(&mut tx, campaign_id, request.force).await?)
    };
    let digest = ledger_digest(slug, &gifts);
    let closed_at: DateTime<Utc> = sqlx::query_scalar(
        r#"update campaigns
           set closed_at = now(), close_forced = $2, close_reason = $3, ledger_digest = $4,
               closed_by = $5, closed_on_report = $6
           where id = $1
           returning closed_at"#,
    )
    .bind(campaign_id)
    .bind(forced)
    .bind(reason)
    .bind(&digest)
    .bind(&request.by)
    .bind(report)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(campaign = slug, forced, by = %request.by, digest = %digest, "campaign closed");
    Ok(Closed {
        closed_at,
        ledger_digest: digest,
        gifts: gifts.len() as i64,
        net,
        forced,
    })
}

/// The latest report's id, if it is clean and nothing in the ledger changed after it.
/// `asked_force`: the operator asked to force but gave no reason (said so if refused).
async fn clean_report(
    db: &mut sqlx::PgConnection,
    campaign_id: i64,
    asked_force: bool,
) -> Result<i64, CloseError> {
    let or_force = if asked_force {
        " (a forced close needs a reason)"
    } else {
        ""
    };
    let latest: Option<(i64, bool, Option<String>)> = sqlx::query_as(
        r#"select id, clean, ledger_state from reconciliation_reports
           where campaign_id = $1 order by id desc limit 1"#,
    )
    .bind(campaign_id)
    .fetch_optional(&mut *db)
    .await?;
    let Some((id, clean, state)) = latest else {
        return Err(CloseError::NotReconciled(format!(
            "the campaign has no reconciliation report: upload the provider's statement first{or_force}"
        )));
    };
    if !clean {
        return Err(CloseError::NotReconciled(format!(
            "the latest reconciliation report is not clean: resolve it, or close with force and a reason{or_force}"
        )));
    }
    let now = ledger_state(&mut *db, campaign_id).await?;
    if state.as_deref() != Some(now.as_str()) {
        return Err(CloseError::NotReconciled(format!(
            "the ledger changed after the latest reconciliation report: reconcile again{or_force}"
        )));
    }
    Ok(id)
}
