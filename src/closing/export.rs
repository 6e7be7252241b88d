//! The settled ledger of a campaign, one entry per gift (CONTRACT §4
//! `GET /api/v1/campaigns/{campaign}/gifts`), as JSON or as a CSV that opens cleanly in a
//! spreadsheet: UTF-8 with a byte-order mark, and no text cell a spreadsheet would take
//! for a formula. The order is the ledger digest's: by `settled_at`, then `gift_id`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// One settled gift with what happened to it since.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GiftEntry {
    pub gift_id: Uuid,
    pub pledge_id: Uuid,
    pub provider_txn_id: String,
    pub stream: String,
    pub amount: i64,
    pub fee: i64,
    pub currency: String,
    pub designation: Option<String>,
    /// The name shown publicly; absent for an anonymous gift.
    pub donor: Option<String>,
    pub anonymous: bool,
    pub message: Option<String>,
    /// Whether moderation hid the message from overlays.
    pub message_hidden: bool,
    /// The sponsor's match, net of reversals.
    pub matched: i64,
    /// Refunded in all.
    pub refunded: i64,
    /// Of `refunded`, what was refunded after the campaign closed (not in its digest).
    pub refunded_after_close: i64,
    /// Of `matched`, the reversals by those refunds (zero or less).
    pub matched_after_close: i64,
    pub settled_at: DateTime<Utc>,
}

/// The columns of the CSV, in order.
pub const COLUMNS: [&str; 18] = [
    "gift_id",
    "pledge_id",
    "provider_txn_id",
    "stream",
    "amount",
    "fee",
    "currency",
    "designation",
    "donor",
    "anonymous",
    "message",
    "message_hidden",
    "matched",
    "refunded",
    "refunded_after_close",
    "matched_after_close",
    "settled_at",
    "net",
];

/// Every gift of the campaign, in the digest's order.
pub async fn gifts(db: &mut PgConnection, campaign_id: i64) -> sqlx::Result<Vec<GiftEntry>> {
    sqlx::query_as(
        r#"select g.id as gift_id, g.pledge_id, g.provider_txn_id, s.slug::text as stream,
                  g.amount::bigint as amount, g.fee, g.currency::text as currency,
                  g.designation, g.donor_name as donor, g.anonymous, g.message,
                  g.message_hidden,
                  coalesce((select sum(m.amount) from matching_entries m
                            where m.gift_id = g.id), 0)::bigint as matched,
                  coalesce((select sum(r.amount) from refunds r
                            where r.gift_id = g.id), 0)::bigint as refunded,
                  coalesce((select sum(r.amount) from refunds r
                            where r.gift_id = g.id and r.post_close), 0)::bigint
                      as refunded_after_close,
                  coalesce((select sum(m.amount) from matching_entries m
                            join refunds r on r.id = m.refund_id
                            where m.gift_id = g.id and r.post_close), 0)::bigint
                      as matched_after_close,
                  g.settled_at
           from gifts g join streams s on s.id = g.stream_id
           where g.campaign_id = $1
           order by g.settled_at, g.id"#,
    )
    .bind(campaign_id)
    .fetch_all(db)
    .await
}

/// A time as every export writes it (and the digest reads it): UTC, microseconds.
pub fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A text cell a spreadsheet would take for a formula (or that starts with the mark
/// itself) gets one `'` in front; dropping one leading `'` gives the text back.
pub fn spreadsheet_safe(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\'') => format!("'{text}"),
        _ => text.to_owned(),
    }
}

impl GiftEntry {
    /// The cells of its CSV row, in [`COLUMNS`] order.
    pub fn cells(&self) -> Vec<String> {
        let text = |v: &Option<String>| spreadsheet_safe(v.as_deref().unwrap_or_default());
        vec![
            self.gift_id.to_string(),
            self.pledge_id.to_string(),
            spreadsheet_safe(&self.provider_txn_id),
            self.stream.clone(),
            self.amount.to_string(),
            self.fee.to_string(),
            self.currency.clone(),
            text(&self.designation),
            text(&self.donor),
            self.anonymous.to_string(),
            text(&self.message),
            self.message_hidden.to_string(),
            self.matched.to_string(),
            self.refunded.to_string(),
            self.refunded_after_close.to_string(),
            self.matched_after_close.to_string(),
            time_text(self.settled_at),
            (self.amount - self.refunded).to_string(),
        ]
    }
}

/// The CSV: a byte-order mark (so spreadsheets read it as UTF-8), the header, a row per gift.
pub fn to_csv(gifts: &[GiftEntry]) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(b"\xEF\xBB\xBF".to_vec());
    out.write_record(COLUMNS)?;
    for gift in gifts {
        out.write_record(gift.cells())?;
    }
    out.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_one_mark_gives_the_text_back() {
        for text in ["=1+1", "+86", "-3", "@x", "'quoted", "普通"] {
            let safe = spreadsheet_safe(text);
            let back = safe
                .strip_prefix('\'')
                .filter(|_| safe != text)
                .unwrap_or(&safe);
            assert_eq!(back, text);
        }
        assert_eq!(spreadsheet_safe("=1+1"), "'=1+1");
        assert_eq!(spreadsheet_safe("普通"), "普通");
    }
}
