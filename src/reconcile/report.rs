//! The reconciliation report (CONTRACT §8) as JSON, and the cells of its CSV (one
//! discrepancy a row). Every list is in a fixed order and every map sorted, so the same
//! ledger, statement and live totals give a byte-identical report but for
//! `generated_at`. The JSON lists the first [`LISTED`] of each class and counts the rest
//! in `not_listed`; the CSV lists them all.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::statement::BadRow;
use crate::closing::spreadsheet_safe;

/// The most entries of one class a JSON report lists.
pub const LISTED: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub campaign: String,
    pub generated_at: DateTime<Utc>,
    /// The statement reconciled: its SHA-256 and rows (this campaign's, and others' left out).
    #[schema(value_type = Object)]
    pub source: Source,
    #[schema(value_type = Object)]
    pub ledger: Side,
    #[schema(value_type = Object)]
    pub statement: Side,
    #[schema(value_type = Object)]
    pub live: Live,
    /// How far the live counters are from the ledger (0: they agree).
    pub live_drift: i64,
    #[schema(value_type = Object)]
    pub matched: Count,
    /// Money the provider took or returned that the ledger does not have: the worst case.
    #[schema(value_type = Vec<Object>)]
    pub missing_in_ledger: Vec<Discrepancy>,
    #[schema(value_type = Vec<Object>)]
    pub missing_in_statement: Vec<Discrepancy>,
    /// Amount, currency or fee differ.
    #[schema(value_type = Vec<Object>)]
    pub amount_mismatch: Vec<Discrepancy>,
    /// A transaction twice in the statement, or two payments for one pledge.
    #[schema(value_type = Vec<Object>)]
    pub duplicates: Vec<Discrepancy>,
    /// Every payment exception of the campaign, resolved or not, with its resolution.
    #[schema(value_type = Vec<Object>)]
    pub exceptions: Vec<ExceptionEntry>,
    /// Statement lines that could not be read.
    #[schema(value_type = Vec<Object>)]
    pub bad_rows: Vec<BadRow>,
    /// Per list, the entries beyond the first [`LISTED`] (the CSV has them all); only the
    /// lists that were cut.
    #[schema(value_type = Object)]
    pub not_listed: BTreeMap<String, u64>,
    #[schema(value_type = Object)]
    pub by_designation: BTreeMap<String, Bucket>,
    #[schema(value_type = Object)]
    pub by_stream: BTreeMap<String, Bucket>,
    /// Pledges never paid (pending, expired or failed): the conversion the campaign missed.
    #[schema(value_type = Object)]
    pub unpaid_pledges: Unpaid,
    /// Every list empty, nothing unreadable, and no live drift.
    pub clean: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub statement_sha256: String,
    pub rows: u64,
    /// Rows of the statement that belong to other campaigns, left out.
    pub other_campaigns: u64,
}

/// Money on one side: payments (`amount`), `refunds`, `net` = amount − refunds, `fees`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Side {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gifts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    pub amount: i64,
    pub refunds: i64,
    pub net: i64,
    pub fees: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Live {
    pub confirmed: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Count {
    pub count: i64,
    pub amount: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bucket {
    pub gifts: i64,
    pub net: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Unpaid {
    pub count: i64,
    pub amount: i64,
    pub by_stream: BTreeMap<String, Count>,
}

/// What one side says of a transaction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Money {
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
}

/// One transaction that does not reconcile, with both sides as far as they have it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Discrepancy {
    pub provider_txn_id: String,
    pub pledge_id: Option<String>,
    /// `payment` or `refund`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The statement line, when the statement has it.
    pub line: Option<i64>,
    pub ledger: Option<Money>,
    pub statement: Option<Money>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct ExceptionEntry {
    pub event_id: String,
    pub kind: String,
    pub provider_txn_id: Option<String>,
    pub pledge_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub detail: String,
    pub created_at: DateTime<Utc>,
    /// `applied`, `refunded` or `replayed`; absent while unresolved.
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
}

impl Report {
    /// Whether nothing needs an operator's look.
    pub fn is_clean(&self) -> bool {
        self.missing_in_ledger.is_empty()
            && self.missing_in_statement.is_empty()
            && self.amount_mismatch.is_empty()
            && self.duplicates.is_empty()
            && self.exceptions.is_empty()
            && self.bad_rows.is_empty()
            && self.not_listed.values().all(|n| *n == 0)
            && self.live_drift == 0
    }

    /// The CSV rows that follow the discrepancies: exceptions, bad rows, and what the
    /// lists do not show (bad rows not listed, live drift).
    pub fn trailing_rows(&self) -> Vec<[String; 12]> {
        let mut rows = Vec::new();
        for x in &self.exceptions {
            let detail = match &x.resolution {
                Some(resolution) => format!("{}: {} (resolved: {resolution})", x.kind, x.detail),
                None => format!("{}: {} (unresolved)", x.kind, x.detail),
            };
            let mut row = blank("exception");
            row[1] = spreadsheet_safe(x.provider_txn_id.as_deref().unwrap_or_default());
            row[2] = spreadsheet_safe(x.pledge_id.as_deref().unwrap_or_default());
            row[5] = x.amount.to_string();
            row[7] = x.currency.clone();
            row[11] = spreadsheet_safe(&detail);
            rows.push(row);
        }
        for bad in &self.bad_rows {
            let mut row = blank("bad_row");
            row[4] = bad.line.to_string();
            row[11] = spreadsheet_safe(&bad.reason);
            rows.push(row);
        }
        if let Some(more) = self.not_listed.get("bad_rows").filter(|n| **n > 0) {
            let mut row = blank("bad_rows_not_listed");
            row[11] = format!("{more} more unreadable lines");
            rows.push(row);
        }
        if self.live_drift != 0 {
            let mut row = blank("live_drift");
            row[5] = self.ledger.net.to_string();
            row[8] = self.live.confirmed.to_string();
            row[11] = format!(
                "the live counters differ from the ledger by {}",
                self.live_drift
            );
            rows.push(row);
        }
        rows
    }
}

/// The CSV's header.
pub const CSV_HEADER: [&str; 12] = [
    "class",
    "provider_txn_id",
    "pledge_id",
    "type",
    "line",
    "ledger_amount",
    "ledger_fee",
    "ledger_currency",
    "statement_amount",
    "statement_fee",
    "statement_currency",
    "detail",
];

fn blank(class: &str) -> [String; 12] {
    let mut row: [String; 12] = Default::default();
    row[0] = class.to_owned();
    row
}

/// The CSV row of one discrepancy of `class`.
pub fn discrepancy_row(class: &str, d: &Discrepancy) -> [String; 12] {
    let side = |m: &Option<Money>| match m {
        Some(m) => [m.amount.to_string(), m.fee.to_string(), m.currency.clone()],
        None => Default::default(),
    };
    let [la, lf, lc] = side(&d.ledger);
    let [sa, sf, sc] = side(&d.statement);
    [
        class.to_owned(),
        spreadsheet_safe(&d.provider_txn_id),
        spreadsheet_safe(d.pledge_id.as_deref().unwrap_or_default()),
        d.kind.clone(),
        d.line.map(|l| l.to_string()).unwrap_or_default(),
        la,
        lf,
        spreadsheet_safe(&lc),
        sa,
        sf,
        spreadsheet_safe(&sc),
        spreadsheet_safe(&d.detail),
    ]
}
