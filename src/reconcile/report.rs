//! The reconciliation report (CONTRACT §8) as JSON, and as CSV with one discrepancy a
//! row. Every list is in a fixed order and every map sorted, so the same ledger,
//! statement and live totals give a byte-identical report but for `generated_at`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::statement::BadRow;

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
    /// Bad lines beyond those listed.
    pub bad_rows_not_listed: u64,
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
            && self.bad_rows_not_listed == 0
            && self.live_drift == 0
    }

    /// Every discrepancy, one a row: the lists in the JSON's order, then exceptions and
    /// bad rows.
    pub fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record([
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
        ])?;
        let lists = [
            ("missing_in_ledger", &self.missing_in_ledger),
            ("missing_in_statement", &self.missing_in_statement),
            ("amount_mismatch", &self.amount_mismatch),
            ("duplicates", &self.duplicates),
        ];
        for (class, list) in lists {
            for d in list {
                out.write_record(discrepancy_cells(class, d))?;
            }
        }
        for x in &self.exceptions {
            let detail = match &x.resolution {
                Some(resolution) => format!("{}: {} (resolved: {resolution})", x.kind, x.detail),
                None => format!("{}: {} (unresolved)", x.kind, x.detail),
            };
            out.write_record([
                "exception".to_owned(),
                x.provider_txn_id.clone().unwrap_or_default(),
                x.pledge_id.clone().unwrap_or_default(),
                String::new(),
                String::new(),
                x.amount.to_string(),
                String::new(),
                x.currency.clone(),
                String::new(),
                String::new(),
                String::new(),
                detail,
            ])?;
        }
        for bad in &self.bad_rows {
            let mut cells = vec![String::new(); 12];
            cells[0] = "bad_row".into();
            cells[4] = bad.line.to_string();
            cells[11] = bad.reason.clone();
            out.write_record(cells)?;
        }
        out.into_inner().map_err(|e| e.into_error().into())
    }
}

fn discrepancy_cells(class: &str, d: &Discrepancy) -> Vec<String> {
    let side = |m: &Option<Money>| match m {
        Some(m) => [m.amount.to_string(), m.fee.to_string(), m.currency.clone()],
        None => [String::new(), String::new(), String::new()],
    };
    let mut cells = vec![
        class.to_owned(),
        d.provider_txn_id.clone(),
        d.pledge_id.clone().unwrap_or_default(),
        d.kind.clone(),
        d.line.map(|l| l.to_string()).unwrap_or_default(),
    ];
    cells.extend(side(&d.ledger));
    cells.extend(side(&d.statement));
    cells.push(d.detail.clone());
    cells
}
