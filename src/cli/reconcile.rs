//! `livefund reconcile`: an operator at a terminal reconciles a campaign with a statement
//! file. A progress bar while the statement is read, the report on stdout, a one-screen
//! summary on stderr, and exit status 1 when the report is not clean.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use redis::aio::ConnectionManager;
use std::io::Write;
use std::time::Duration;

use crate::config::{ReconcileArgs, ReportFormat};
use crate::counters::Keys;
use crate::domain::Slug;
use crate::ledger::Stores;
use crate::reconcile::{self, Progress, Report};
use crate::{catalog, connect_postgres, connect_redis};

/// A report that is not clean: said on stderr, and the exit status.
#[derive(Debug, thiserror::Error)]
#[error("the report is not clean (see the lists above)")]
pub struct NotClean;

pub async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let (database_url, redis_url) = args.backends.required()?;
    let db = connect_postgres(database_url.expose()).context("DATABASE_URL")?;
    let client = connect_redis(redis_url.expose()).context("REDIS_URL")?;
    let redis = ConnectionManager::new(client)
        .await
        .context("connecting to Redis")?;
    let slug = Slug::parse("campaign", &args.campaign).map_err(anyhow::Error::msg)?;
    let campaign = catalog::campaign_by_slug(&db, &slug)
        .await
        .context("reading the campaign")?
        .with_context(|| format!("no campaign named {:?}", args.campaign))?;
    let file = std::fs::File::open(&args.statement)
        .with_context(|| format!("opening {}", args.statement.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);

    let progress = Progress::default();
    let bar = progress_bar(size);
    let ticker = tokio::spawn(follow(bar.clone(), progress.clone()));
    let imported = reconcile::import(&db, campaign.id, file, u64::MAX, progress).await;
    ticker.abort();
    bar.finish_and_clear();
    let imported = imported.context("storing the statement")?;

    let stores = Stores {
        db,
        redis,
        keys: Keys::new(args.prefix.redis_prefix),
    };
    let kept = reconcile::reconcile(&stores, &slug, campaign.id, imported.statement_id)
        .await
        .context("reconciling")?;
    match args.format {
        ReportFormat::Json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &kept.report)?;
            writeln!(out)?;
            out.flush()?;
        }
        ReportFormat::Csv => {
            let mut chunks = reconcile::csv_chunks(stores.db.clone(), kept.id, kept.report.clone());
            while let Some(chunk) = chunks.recv().await {
                let chunk = chunk.map_err(anyhow::Error::msg)?;
                let mut out = std::io::stdout().lock();
                out.write_all(&chunk)?;
                out.flush()?;
            }
        }
    }
    eprint!("{}", summary(&kept.report, kept.id));
    if kept.report.clean {
        Ok(())
    } else {
        Err(NotClean.into())
    }
}

fn progress_bar(size: u64) -> ProgressBar {
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "reading the statement {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

async fn follow(bar: ProgressBar, progress: Progress) {
    loop {
        bar.set_position(progress.bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an operator reads first: where the money stands and what needs a look.
pub fn summary(report: &Report, id: i64) -> String {
    let yuan = |fen: i64| {
        let sign = if fen < 0 { "-" } else { "" };
        format!(
            "{sign}¥{}.{:02}",
            group(fen.unsigned_abs() / 100),
            fen.unsigned_abs() % 100
        )
    };
    let verdict = if report.clean { "clean" } else { "NOT clean" };
    let unresolved = report
        .exceptions
        .iter()
        .filter(|x| x.resolution.is_none())
        .count();
    let lines = [
        format!("{}: {verdict} (report {id})", report.campaign),
        format!(
            "  statement  {} rows ({} bad), payments {}, refunds {}, fees {}",
            group(report.source.rows),
            report.bad_rows.len() as u64 + report.not_listed.get("bad_rows").copied().unwrap_or(0),
            yuan(report.statement.amount),
            yuan(report.statement.refunds),
            yuan(report.statement.fees)
        ),
        format!(
            "  ledger     {} gifts {}, refunds {}, fees {}; live confirmed {}",
            group(report.ledger.gifts.unwrap_or(0).max(0) as u64),
            yuan(report.ledger.amount),
            yuan(report.ledger.refunds),
            yuan(report.ledger.fees),
            yuan(report.live.confirmed)
        ),
        format!(
            "  matched    {} rows, {}",
            group(report.matched.count.max(0) as u64),
            yuan(report.matched.amount)
        ),
        format!(
            "  missing in ledger     {:>6}   money the provider moved that the ledger lacks",
            report.missing_in_ledger.len()
        ),
        format!(
            "  missing in statement  {:>6}",
            report.missing_in_statement.len()
        ),
        format!(
            "  amount mismatch       {:>6}",
            report.amount_mismatch.len()
        ),
        format!("  duplicates            {:>6}", report.duplicates.len()),
        format!(
            "  exceptions            {:>6}   ({unresolved} unresolved)",
            report.exceptions.len()
        ),
        format!("  live drift            {:>6}", report.live_drift),
        format!(
            "  unpaid pledges        {:>6}   {}",
            report.unpaid_pledges.count,
            yuan(report.unpaid_pledges.amount)
        ),
    ];
    lines.map(|line| line + "\n").concat()
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
