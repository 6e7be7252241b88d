//! Reading a provider statement (CONTRACT §8) row by row, never holding it whole: each
//! line becomes a typed row or a bad row with its line number and the reason. Nothing in
//! the file stops the reading but the end of the file.
//!
//! `provider_txn_id,pledge_id,type,amount,currency,fee,occurred_at[,refunded_txn_id]`,
//! with a header row; UTF-8 with or without a byte-order mark; LF or CRLF.

use chrono::{DateTime, Utc};
use std::io::Read;

use crate::domain::{Currency, Money};

/// The columns every statement has, in order; `refunded_txn_id` may follow.
pub const COLUMNS: [&str; 7] = [
    "provider_txn_id",
    "pledge_id",
    "type",
    "amount",
    "currency",
    "fee",
    "occurred_at",
];
const OPTIONAL: &str = "refunded_txn_id";

/// Money in or out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    Payment,
    Refund,
}

impl RowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Payment => "payment",
            RowKind::Refund => "refund",
        }
    }
}

/// One row as the provider states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRow {
    /// The line it starts on (the header is line 1).
    pub line: u64,
    pub provider_txn_id: String,
    /// As given; may be empty (the provider did not know it).
    pub pledge_id: String,
    pub kind: RowKind,
    /// Minor units, positive.
    pub amount: i64,
    pub currency: Currency,
    /// Minor units, zero or more.
    pub fee: i64,
    pub occurred_at: DateTime<Utc>,
    /// On a refund: the payment it refunds, when the statement says.
    pub refunded_txn_id: Option<String>,
}

/// A line that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
}

/// What one line came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Row(StatementRow),
    Bad(BadRow),
}

/// The rows of a statement, in file order.
pub struct StatementReader<R: Read> {
    records: csv::StringRecordsIntoIter<R>,
    /// Whether the statement has the `refunded_txn_id` column; `None` until the header
    /// is read.
    width: Option<usize>,
    /// Set once the header is missing or wrong, or the input failed: the rest cannot
    /// be read.
    done: bool,
    /// Why the input itself failed (not a line of it), if it did.
    broken: Option<String>,
}

impl<R: Read> StatementReader<R> {
    pub fn new(reader: R) -> Self {
        let records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            // Lines end at `\n` only (a CRLF's `\r` is trimmed with the last field), so
            // line numbers count the same with either ending.
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(reader)
            .into_records();
        Self {
            records,
            width: None,
            done: false,
            broken: None,
        }
    }

    /// Why the input itself failed part way (an I/O error, not a bad line), if it did:
    /// what was read is then not the whole statement.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    fn header(&mut self, record: &csv::StringRecord) -> Result<(), BadRow> {
        let names: Vec<&str> = record
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = if i == 0 {
                    name.trim_start_matches('\u{feff}')
                } else {
                    name
                };
                name.trim()
            })
            .collect();
        let with_optional: Vec<&str> = COLUMNS.iter().copied().chain([OPTIONAL]).collect();
        if names == COLUMNS {
            self.width = Some(COLUMNS.len());
            Ok(())
        } else if names == with_optional {
            self.width = Some(with_optional.len());
            Ok(())
        } else {
            Err(BadRow {
                line: 1,
                reason: format!(
                    "the header is {:?}, not {}[,{OPTIONAL}]",
                    names.join(","),
                    COLUMNS.join(",")
                ),
            })
        }
    }
}

impl<R: Read> Iterator for StatementReader<R> {
    type Item = Parsed;

    fn next(&mut self) -> Option<Parsed> {
        if self.done {
            return None;
        }
        let Some(next) = self.records.next() else {
            self.done = true;
            // A file with no header at all says so once.
            return self.width.is_none().then(|| {
                Parsed::Bad(BadRow {
                    line: 1,
                    reason: "the statement is empty: no header row".into(),
                })
            });
        };
        let record = match next {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                // An unreadable byte sequence spoils one line; an I/O error the rest.
                if !matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) {
                    self.done = true;
                    self.broken = Some(e.to_string());
                }
                return Some(Parsed::Bad(BadRow {
                    line: line.max(1),
                    reason: format!("unreadable: {e}"),
                }));
            }
        };
        let line = record.position().map_or(1, |p| p.line());
        // A blank line (a lone `\r` with CRLF endings) is no row.
        if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
            return self.next();
        }
        let Some(width) = self.width else {
            return Some(match self.header(&record) {
                Ok(()) => self.next()?,
                Err(bad) => {
                    self.done = true;
                    Parsed::Bad(bad)
                }
            });
        };
        Some(match parse_row(&record, line, width) {
            Ok(row) => Parsed::Row(row),
            Err(reason) => Parsed::Bad(BadRow { line, reason }),
        })
    }
}

fn parse_row(record: &csv::StringRecord, line: u64, width: usize) -> Result<StatementRow, String> {
    if record.len() != width {
        return Err(format!("{} columns, not {width}", record.len()));
    }
    let field = |i: usize| record.get(i).unwrap_or_default().trim();
    if let Some(i) = (0..record.len()).find(|&i| field(i).chars().any(char::is_control)) {
        let name = COLUMNS.get(i).copied().unwrap_or(OPTIONAL);
        return Err(format!("{name} holds a control character"));
    }
    let provider_txn_id = field(0);
    if provider_txn_id.is_empty() {
        return Err("no provider_txn_id".into());
    }
    let kind = match field(2) {
        "payment" => RowKind::Payment,
        "refund" => RowKind::Refund,
        other => return Err(format!("type {other:?} is neither payment nor refund")),
    };
    let amount = integer("amount", field(3))?;
    if amount <= 0 || amount > Money::MAX.minor_units() {
        return Err(format!(
            "amount {amount} is not between 1 and {}",
            Money::MAX.minor_units()
        ));
    }
    let currency = Currency::parse("currency", field(4))
        .map_err(|_| format!("currency {:?} is not an ISO-4217 code", field(4)))?;
    let fee = integer("fee", field(5))?;
    if fee < 0 || fee > amount {
        return Err(format!("fee {fee} is not between 0 and the amount"));
    }
    let occurred_at = DateTime::parse_from_rfc3339(field(6))
        .map_err(|_| format!("occurred_at {:?} is not an RFC 3339 time", field(6)))?
        .with_timezone(&Utc);
    let refunded_txn_id = (width > COLUMNS.len())
        .then(|| field(COLUMNS.len()))
        .filter(|txn| !txn.is_empty())
        .map(str::to_owned);
    if refunded_txn_id.is_some() && kind == RowKind::Payment {
        return Err("a payment names a refunded_txn_id".into());
    }
    Ok(StatementRow {
        line,
        provider_txn_id: provider_txn_id.to_owned(),
        pledge_id: field(1).to_owned(),
        kind,
        amount,
        currency,
        fee,
        occurred_at,
        refunded_txn_id,
    })
}

fn integer(name: &str, text: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|_| format!("{name} {text:?} is not an integer of minor units"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "provider_txn_id,pledge_id,type,amount,currency,fee,occurred_at";

    fn read(text: &[u8]) -> Vec<Parsed> {
        StatementReader::new(text).collect()
    }

    fn bad(parsed: &[Parsed]) -> Vec<(u64, String)> {
        parsed
            .iter()
            .filter_map(|p| match p {
                Parsed::Bad(b) => Some((b.line, b.reason.clone())),
                Parsed::Row(_) => None,
            })
            .collect()
    }

    fn rows(parsed: &[Parsed]) -> Vec<&StatementRow> {
        parsed
            .iter()
            .filter_map(|p| match p {
                Parsed::Row(r) => Some(r),
                Parsed::Bad(_) => None,
            })
            .collect()
    }

    #[test]
    fn good_rows_are_typed_with_their_line() {
        let text = format!(
            "{HEADER}\npay_1,p1,payment,5000,CNY,30,2026-06-01T12:00:00Z\n\
             ref_1,p1,refund,1000,CNY,0,2026-06-01T13:00:00+08:00\n"
        );
        let parsed = read(text.as_bytes());
        assert_eq!(bad(&parsed), []);
        let rows = rows(&parsed);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].line, rows[0].kind, rows[0].amount, rows[0].fee),
            (2, RowKind::Payment, 5000, 30)
        );
        assert_eq!(rows[1].line, 3);
        assert_eq!(
            rows[1].occurred_at.to_rfc3339(),
            "2026-06-01T05:00:00+00:00"
        );
    }

    #[test]
    fn a_byte_order_mark_and_crlf_are_read_as_nothing() {
        let text = format!(
            "\u{feff}{HEADER},refunded_txn_id\r\nref_1,p1,refund,1000,CNY,0,2026-06-01T12:00:00Z,pay_1\r\n"
        );
        let parsed = read(text.as_bytes());
        assert_eq!(bad(&parsed), []);
        assert_eq!(rows(&parsed)[0].refunded_txn_id.as_deref(), Some("pay_1"));
        assert_eq!(rows(&parsed)[0].line, 2);
        let crlf = format!("{HEADER}\r\nx,p,payment,1,CNY,0,bad\r\ny,p,payment,1,CNY,0,bad\r\n");
        let lines: Vec<u64> = bad(&read(crlf.as_bytes())).iter().map(|b| b.0).collect();
        assert_eq!(lines, [2, 3]);
    }

    #[test]
    fn every_bad_row_is_reported_by_line_and_the_rest_are_read() {
        let text = format!(
            "{HEADER}\n\
             pay_1,p1,payment,5000,CNY,30\n\
             pay_2,p2,payment,50.00,CNY,30,2026-06-01T12:00:00Z\n\
             pay_3,p3,chargeback,5000,CNY,30,2026-06-01T12:00:00Z\n\
             pay_4,p4,payment,5000,CNY,30,yesterday\n\
             pay_5,p5,payment,-5,CNY,0,2026-06-01T12:00:00Z\n\
             pay_6,p6,payment,5000,yuan,0,2026-06-01T12:00:00Z\n\
             ,p7,payment,5000,CNY,0,2026-06-01T12:00:00Z\n\
             pay_8,p8,payment,5000,CNY,-1,2026-06-01T12:00:00Z\n\
             pay_9,p9,payment,5000,CNY,0,2026-06-01T12:00:00Z\n"
        );
        let parsed = read(text.as_bytes());
        let lines: Vec<u64> = bad(&parsed).iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9]);
        let reasons = bad(&parsed);
        assert!(reasons[0].1.contains("6 columns"), "{reasons:?}");
        assert!(reasons[1].1.contains("not an integer"), "{reasons:?}");
        assert!(reasons[2].1.contains("chargeback"), "{reasons:?}");
        assert!(reasons[3].1.contains("RFC 3339"), "{reasons:?}");
        assert_eq!(rows(&parsed).len(), 1, "the good row after them is read");
        assert_eq!(rows(&parsed)[0].line, 10);
    }

    #[test]
    fn control_characters_huge_amounts_and_misplaced_names_are_bad_rows_blank_lines_none() {
        let text = format!(
            "{HEADER},refunded_txn_id\r\n\
             pay\u{0}1,p1,payment,5000,CNY,0,2026-06-01T12:00:00Z,\r\n\
             pay_2,p2,payment,9000000000000000000,CNY,0,2026-06-01T12:00:00Z,\r\n\
             pay_3,p3,payment,100,CNY,101,2026-06-01T12:00:00Z,\r\n\
             pay_4,p4,payment,100,CNY,1,2026-06-01T12:00:00Z,pay_0\r\n\
             \r\n\
             pay_5,p5,payment,100,CNY,1,2026-06-01T12:00:00Z,\r\n\r\n"
        );
        let parsed = read(text.as_bytes());
        let lines: Vec<u64> = bad(&parsed).iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{:?}", bad(&parsed));
        assert!(bad(&parsed)[0].1.contains("control character"));
        assert_eq!(rows(&parsed).len(), 1);
        assert_eq!(rows(&parsed)[0].line, 7);
    }

    #[test]
    fn an_empty_file_a_header_only_and_a_wrong_header_say_so() {
        assert_eq!(
            bad(&read(b"")),
            [(1, "the statement is empty: no header row".into())]
        );
        let header_only = read(format!("{HEADER}\n").as_bytes());
        assert!(header_only.is_empty(), "no rows, nothing wrong");
        let wrong = read(b"txn,amount\npay_1,5000\n");
        assert_eq!(wrong.len(), 1, "nothing after a header it cannot read");
        assert!(bad(&wrong)[0].1.contains("the header is"));
    }

    #[test]
    fn a_quoted_field_with_a_line_break_keeps_the_lines_that_follow() {
        let text = format!(
            "{HEADER}\n\"pay\n1\",p1,payment,5000,CNY,0,2026-06-01T12:00:00Z\n\
             pay_2,p2,payment,70,CNY,0,2026-06-01T12:00:00Z\n"
        );
        let parsed = read(text.as_bytes());
        assert_eq!(bad(&parsed)[0].0, 2, "no id holds a line break");
        assert_eq!(rows(&parsed)[0].line, 4);
    }

    #[test]
    fn invalid_utf8_spoils_its_line_only() {
        let mut text = format!("{HEADER}\n").into_bytes();
        text.extend_from_slice(b"pay_\xff,p1,payment,5000,CNY,0,2026-06-01T12:00:00Z\n");
        text.extend_from_slice(b"pay_2,p2,payment,70,CNY,0,2026-06-01T12:00:00Z\n");
        let parsed = read(&text);
        assert_eq!(bad(&parsed).len(), 1);
        assert_eq!(bad(&parsed)[0].0, 2);
        assert_eq!(rows(&parsed).len(), 1);
    }
}
