//! A payment provider's event (CONTRACT §7), parsed after its signature is verified.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What happened at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
}

impl PaymentEvent {
    /// Checks what the ledger needs of any event, whatever its kind: ids of 1 to
    /// [`MAX_ID`] characters. The rest (amounts, currencies, pledges) is judged by
    /// settlement, which records a bad one as an exception.
    pub fn check(&self) -> Result<(), crate::domain::Invalid> {
        for (field, value) in [
            ("event_id", &self.event_id),
            ("provider_txn_id", &self.provider_txn_id),
        ] {
            let len = value.chars().count();
            if len == 0 || len > MAX_ID {
                return Err(crate::domain::Invalid::new(
                    field,
                    format!("must be 1 to {MAX_ID} characters"),
                ));
            }
        }
        Ok(())
    }
}
