//! Signed bodies that cannot be understood (CONTRACT §7): an unknown `type`, a missing or
//! malformed field, text the database cannot hold. They are answered 200, so the provider
//! stops retrying, and recorded as an `invalid_event` exception with the raw body, so an
//! operator sees them; they change no total. The same body twice is recorded once.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The longest detail kept with an exception.
const MAX_DETAIL: usize = 500;

/// What an invalid body's fields say, where they can be read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Hints {
    event_id: Option<String>,
    pledge_id: Option<Uuid>,
    provider_txn_id: Option<String>,
    amount: i64,
    currency: String,
}

/// Text PostgreSQL can hold, and not too much of it.
fn clean(text: &str, max: usize) -> String {
    text.chars().filter(|c| *c != '\0').take(max).collect()
}

impl Hints {
    fn of(body: &[u8]) -> Hints {
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return Hints::default();
        };
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .map(|s| clean(s, 200))
                .filter(|s| !s.is_empty())
        };
        Hints {
            event_id: text("event_id"),
            pledge_id: text("pledge_id").and_then(|p| p.parse().ok()),
            provider_txn_id: text("provider_txn_id"),
            amount: fields.get("amount").and_then(Value::as_i64).unwrap_or(0),
            currency: text("currency").map(|c| clean(&c, 8)).unwrap_or_default(),
        }
    }
}

/// The id an invalid body is recorded under: its digest, so a redelivery is a no-op.
pub fn invalid_event_id(body: &[u8]) -> String {
    format!("invalid:{}", hex::encode(Sha256::digest(body)))
}

/// Records `body` as an `invalid_event` exception for `reason`; returns its event id.
#[tracing::instrument(skip_all)]
pub async fn record_invalid(db: &PgPool, body: &[u8], reason: &str) -> sqlx::Result<String> {
    let event_id = invalid_event_id(body);
    let hints = Hints::of(body);
    let detail = match &hints.event_id {
        Some(id) => clean(&format!("event {id}: {reason}"), MAX_DETAIL),
        None => clean(reason, MAX_DETAIL),
    };
    sqlx::query(
        r#"insert into payment_exceptions (event_id, campaign_id, pledge_id, provider_txn_id,
                                           kind, amount, currency, detail, raw_body)
           values ($1, (select campaign_id from pledges where id = $2), $2, $3,
                   'invalid_event', $4, $5, $6, $7)
           on conflict (event_id) do nothing"#,
    )
    .bind(&event_id)
    .bind(hints.pledge_id)
    .bind(&hints.provider_txn_id)
    .bind(hints.amount)
    .bind(&hints.currency)
    .bind(&detail)
    .bind(body)
    .execute(db)
    .await?;
    metrics::counter!("livefund_invalid_events_total").increment(1);
    tracing::warn!(%event_id, reason = %detail, "a signed event could not be understood; recorded as an exception");
    Ok(event_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_read_what_they_can_and_drop_nuls() {
        let pledge = Uuid::new_v4();
        let body = format!(
            r#"{{"event_id": "evt\u0000_1", "type": "payment.maybe", "pledge_id": "{pledge}",
                 "provider_txn_id": "txn_1", "amount": 500, "currency": "CNY"}}"#
        );
        let h = Hints::of(body.as_bytes());
        assert_eq!(h.event_id.as_deref(), Some("evt_1"));
        assert_eq!(h.pledge_id, Some(pledge));
        assert_eq!((h.amount, h.currency.as_str()), (500, "CNY"));
        assert_eq!(Hints::of(b"not json"), Hints::default());
        assert_eq!(Hints::of(br#"{"amount": "5"}"#).amount, 0);
    }

    #[test]
    fn the_same_body_has_the_same_id() {
        assert_eq!(invalid_event_id(b"{}"), invalid_event_id(b"{}"));
        assert_ne!(invalid_event_id(b"{}"), invalid_event_id(b"{ }"));
        assert!(invalid_event_id(b"x").starts_with("invalid:"));
    }
}
