//! A report as CSV, one discrepancy a row, however many: the stored discrepancies are
//! read in the report's order a page at a time and sent on in chunks, so neither side
//! holds the whole.

use sqlx::PgPool;
use tokio::sync::mpsc;

use super::classify::{FOUND_COLUMNS, Found};
use super::report::{CSV_HEADER, Discrepancy, Report, discrepancy_row};

/// Rows read and encoded at a time.
const PAGE: i64 = 5_000;

/// The CSV of the kept report `report_id` (whose JSON is `report`), in chunks; an error
/// ends it.
pub fn csv_chunks(
    db: PgPool,
    report_id: i64,
    report: Report,
) -> mpsc::Receiver<Result<Vec<u8>, String>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Err(e) = write(&db, report_id, &report, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn write(
    db: &PgPool,
    report_id: i64,
    report: &Report,
    tx: &mpsc::Sender<Result<Vec<u8>, String>>,
) -> Result<(), String> {
    let send = |rows: Vec<[String; 12]>| async move {
        let bytes = encode(&rows)?;
        tx.send(Ok(bytes))
            .await
            .map_err(|_| "the reader left".to_owned())
    };
    send(vec![CSV_HEADER.map(str::to_owned)]).await?;
    let mut after = 0i64;
    loop {
        let page: Vec<(i64, Found)> =
            sqlx::query_as::<_, PositionedFound>(sqlx::AssertSqlSafe(format!(
                "select position, {FOUND_COLUMNS} from reconciliation_discrepancies
                 where report_id = $1 and position > $2 order by position limit $3"
            )))
            .bind(report_id)
            .bind(after)
            .bind(PAGE)
            .fetch_all(db)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|p| (p.position, p.found))
            .collect();
        let Some((last, _)) = page.last() else { break };
        after = *last;
        let rows = page
            .into_iter()
            .map(|(_, found)| {
                let class = found.class.clone();
                discrepancy_row(&class, &Discrepancy::from(found))
            })
            .collect();
        send(rows).await?;
    }
    send(report.trailing_rows()).await
}

#[derive(sqlx::FromRow)]
struct PositionedFound {
    position: i64,
    #[sqlx(flatten)]
    found: Found,
}

fn encode(rows: &[[String; 12]]) -> Result<Vec<u8>, String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    for row in rows {
        out.write_record(row).map_err(|e| e.to_string())?;
    }
    out.into_inner().map_err(|e| e.to_string())
}
