//! Storing a provider statement as it streams in: a blocking thread reads it (hashing the
//! bytes and parsing rows), the async side copies the rows into PostgreSQL in batches
//! (`COPY`), so neither the text nor the rows are ever held whole. Bad rows are stored
//! with their reason, up to [`KEPT_PROBLEMS`]; beyond that they are counted.

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

use super::statement::{BadRow, Parsed, StatementReader, StatementRow};

/// Rows sent to the database at once.
const BATCH: usize = 5_000;
/// Bad rows kept with their reason; a statement with more is counted beyond them.
pub const KEPT_PROBLEMS: usize = 10_000;

/// A statement stored.
#[derive(Debug, Clone, Copy)]
pub struct Imported {
    pub statement_id: i64,
    pub rows: u64,
    pub bad_rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the statement could not be read: {0}")]
    Read(String),
    #[error("the statement is larger than {0} bytes")]
    TooLarge(u64),
}

/// How far the reading is, in bytes, for a progress bar.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A reader that hashes and counts what passes through it, and fails past `limit`.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    progress: Progress,
    read: u64,
    limit: u64,
}

/// The reason a statement over its limit stops being read.
const TOO_LARGE: &str = "the statement is over its size limit";

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(TOO_LARGE));
        }
        self.hash.update(&buf[..n]);
        self.progress.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What the reading thread sends: rows and bad rows, then the body's hash.
enum Chunk {
    Parsed(Vec<Parsed>),
    Done { sha256: String },
}

/// Reads `reader` to its end (at most `limit` bytes) and stores it as a statement of
/// `campaign_id`; nothing is stored when it cannot be read to its end.
pub async fn import<R: Read + Send + 'static>(
    db: &PgPool,
    campaign_id: i64,
    reader: R,
    limit: u64,
    progress: Progress,
) -> Result<Imported, ImportError> {
    let (tx, mut rx) = mpsc::channel::<Chunk>(4);
    let reading = tokio::task::spawn_blocking(move || read_all(reader, limit, progress, tx));
    let mut db_tx = db.begin().await?;
    let statement_id: i64 = sqlx::query_scalar(
        r#"insert into statements (campaign_id, body_sha256, row_count)
           values ($1, '', 0) returning id"#,
    )
    .bind(campaign_id)
    .fetch_one(&mut *db_tx)
    .await?;
    let mut copy = db_tx
        .copy_in_raw(
            "copy statement_rows (statement_id, line, provider_txn_id, pledge_id, type, amount, \
             currency, fee, occurred_at, refunded_txn_id) \
             from stdin (format csv, force_not_null (pledge_id))",
        )
        .await?;
    let (mut rows, mut problems, mut bad_rows) = (0u64, Vec::new(), 0u64);
    let mut sha256 = None;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Chunk::Parsed(batch) => {
                let mut encoded = csv::Writer::from_writer(Vec::new());
                for parsed in batch {
                    match parsed {
                        Parsed::Row(row) => {
                            rows += 1;
                            encode(&mut encoded, statement_id, &row)?;
                        }
                        Parsed::Bad(bad) => {
                            bad_rows += 1;
                            if problems.len() < KEPT_PROBLEMS {
                                problems.push(bad);
                            }
                        }
                    }
                }
                let bytes = encoded
                    .into_inner()
                    .map_err(|e| ImportError::Read(e.to_string()))?;
                copy.send(bytes).await?;
            }
            Chunk::Done { sha256: hash } => sha256 = Some(hash),
        }
    }
    let read = reading
        .await
        .map_err(|e| ImportError::Read(e.to_string()))?;
    let Some(sha256) = sha256.filter(|_| read.is_ok()) else {
        // Dropping the copy and the transaction rolls everything back.
        return Err(match read.err().unwrap_or_default() {
            e if e.contains(TOO_LARGE) => ImportError::TooLarge(limit),
            e => ImportError::Read(e),
        });
    };
    copy.finish().await?;
    store_problems(&mut db_tx, statement_id, &problems).await?;
    sqlx::query(
        r#"update statements set body_sha256 = $2, row_count = $3, bad_rows = $4 where id = $1"#,
    )
    .bind(statement_id)
    .bind(&sha256)
    .bind(i32::try_from(rows).unwrap_or(i32::MAX))
    .bind(i32::try_from(bad_rows).unwrap_or(i32::MAX))
    .execute(&mut *db_tx)
    .await?;
    db_tx.commit().await?;
    Ok(Imported {
        statement_id,
        rows,
        bad_rows,
    })
}

/// The reading thread: parses everything, sending it on in batches.
fn read_all<R: Read>(
    reader: R,
    limit: u64,
    progress: Progress,
    tx: mpsc::Sender<Chunk>,
) -> Result<(), String> {
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
        progress,
        read: 0,
        limit,
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut parser = StatementReader::new(&mut hashing);
    for parsed in parser.by_ref() {
        batch.push(parsed);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            tx.blocking_send(Chunk::Parsed(full))
                .map_err(|_| "the import stopped".to_owned())?;
        }
    }
    if let Some(e) = parser.broken() {
        return Err(e.to_owned());
    }
    drop(parser);
    if !batch.is_empty() {
        tx.blocking_send(Chunk::Parsed(batch))
            .map_err(|_| "the import stopped".to_owned())?;
    }
    let sha256 = hex::encode(hashing.hash.finalize());
    tx.blocking_send(Chunk::Done { sha256 })
        .map_err(|_| "the import stopped".to_owned())
}

fn encode(
    out: &mut csv::Writer<Vec<u8>>,
    statement_id: i64,
    row: &StatementRow,
) -> Result<(), ImportError> {
    out.write_record([
        statement_id.to_string().as_str(),
        &row.line.to_string(),
        &row.provider_txn_id,
        &row.pledge_id,
        row.kind.as_str(),
        &row.amount.to_string(),
        row.currency.as_str(),
        &row.fee.to_string(),
        &row.occurred_at.to_rfc3339(),
        row.refunded_txn_id.as_deref().unwrap_or_default(),
    ])
    .map_err(|e| ImportError::Read(e.to_string()))
}

async fn store_problems(
    db: &mut sqlx::PgConnection,
    statement_id: i64,
    problems: &[BadRow],
) -> sqlx::Result<()> {
    for chunk in problems.chunks(BATCH) {
        let lines: Vec<i64> = chunk.iter().map(|b| b.line as i64).collect();
        let reasons: Vec<&str> = chunk.iter().map(|b| b.reason.as_str()).collect();
        sqlx::query(
            r#"insert into statement_problems (statement_id, line, reason)
               select $1, line, reason from unnest($2::bigint[], $3::text[]) as p(line, reason)
               on conflict do nothing"#,
        )
        .bind(statement_id)
        .bind(&lines)
        .bind(&reasons)
        .execute(&mut *db)
        .await?;
    }
    Ok(())
}
