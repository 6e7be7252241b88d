//! A payment provider's event (CONTRACT §7), parsed after its signature is verified.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Invalid;

/// What happened at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventKind {
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PaymentSucceeded => "payment.succeeded",
            EventKind::PaymentFailed => "payment.failed",
            EventKind::RefundSucceeded => "refund.succeeded",
        }
    }
}

/// The longest id the ledger keeps (event ids and provider transaction ids).
pub const MAX_ID: usize = 200;

/// One webhook delivery's body. Fields the contract does not name are ignored, so a
/// provider may add its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The pledge paid, or (for a refund) the pledge whose gift is refunded.
    pub pledge_id: String,
    /// The provider's transaction id: the payment's, or the refund's own.
    pub provider_txn_id: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub fee: i64,
    pub occurred_at: DateTime<Utc>,
    /// A provider's test mode: an alert marked test, no total and no ledger row changed.
    #[serde(default)]
    pub test: bool,
    /// For a refund: the `provider_txn_id` of the payment it refunds. Without it, the
    /// refund applies to the pledge's gift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_txn_id: Option<String>,
}

impl PaymentEvent {
    /// Checks what the ledger needs of any event, whatever its kind: ids of 1 to
    /// [`MAX_ID`] characters, and no text the database cannot hold (a NUL character).
    /// The rest (amounts, currencies, pledges) is judged by settlement, which records a
    /// bad one as an exception.
    pub fn check(&self) -> Result<(), Invalid> {
        let ids = [
            ("event_id", Some(&self.event_id)),
            ("provider_txn_id", Some(&self.provider_txn_id)),
            ("refunded_txn_id", self.refunded_txn_id.as_ref()),
        ];
        for (field, value) in ids {
            let Some(value) = value else { continue };
            let len = value.chars().count();
            if len == 0 || len > MAX_ID {
                return Err(Invalid::new(
                    field,
                    format!("must be 1 to {MAX_ID} characters"),
                ));
            }
        }
        let texts = [
            ("event_id", &self.event_id),
            ("pledge_id", &self.pledge_id),
            ("provider_txn_id", &self.provider_txn_id),
            ("currency", &self.currency),
        ];
        let refunded = self.refunded_txn_id.iter().map(|t| ("refunded_txn_id", t));
        for (field, value) in texts.into_iter().chain(refunded) {
            if value.contains('\0') {
                return Err(Invalid::new(field, "must not contain a NUL character"));
            }
        }
        Ok(())
    }

    /// The event as settlement takes it: `refunded_txn_id` kept on refunds only, and an
    /// empty one taken as absent (a provider omitting it).
    pub fn normalized(mut self) -> Self {
        let keep = self.kind == EventKind::RefundSucceeded;
        self.refunded_txn_id = self.refunded_txn_id.filter(|t| keep && !t.is_empty());
        self
    }

    /// Whether this is a refund that names the payment it refunds.
    pub fn refunds_txn(&self) -> Option<&str> {
        match self.kind {
            EventKind::RefundSucceeded => self.refunded_txn_id.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PaymentEvent {
        serde_json::from_str(
            r#"{"event_id": "evt_1", "type": "refund.succeeded", "pledge_id": "p",
                "provider_txn_id": "rf_1", "amount": 100, "currency": "CNY",
                "occurred_at": "2026-06-01T12:00:00Z", "refunded_txn_id": "pay_1"}"#,
        )
        .expect("a refund event")
    }

    #[test]
    fn a_refund_names_the_payment_it_refunds() {
        let e = event();
        assert_eq!(e.refunds_txn(), Some("pay_1"));
        assert_eq!((e.fee, e.test), (0, false), "defaults");
        assert_eq!(e.check(), Ok(()));
        let payment = PaymentEvent {
            kind: EventKind::PaymentSucceeded,
            ..e
        };
        assert_eq!(payment.refunds_txn(), None, "only refunds refund");
    }

    #[test]
    fn an_empty_or_misplaced_refunded_txn_id_is_absent() {
        let empty = PaymentEvent {
            refunded_txn_id: Some(String::new()),
            ..event()
        };
        assert_eq!(empty.normalized().refunded_txn_id, None);
        let payment = PaymentEvent {
            kind: EventKind::PaymentSucceeded,
            ..event()
        };
        assert_eq!(payment.normalized().refunded_txn_id, None);
        assert_eq!(
            event().normalized().refunded_txn_id.as_deref(),
            Some("pay_1")
        );
    }

    #[test]
    fn empty_long_and_nul_ids_are_refused() {
        for (field, bad) in [
            ("event_id", String::new()),
            ("provider_txn_id", "x".repeat(MAX_ID + 1)),
            ("refunded_txn_id", String::new()),
            ("pledge_id", "a\0b".to_owned()),
            ("currency", "CN\0".to_owned()),
        ] {
            let mut e = event();
            match field {
                "event_id" => e.event_id = bad,
                "provider_txn_id" => e.provider_txn_id = bad,
                "refunded_txn_id" => e.refunded_txn_id = Some(bad),
                "pledge_id" => e.pledge_id = bad,
                _ => e.currency = bad,
            }
            assert_eq!(e.check().map_err(|i| i.field), Err(field.to_owned()));
        }
    }
}
