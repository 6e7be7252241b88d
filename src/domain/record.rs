//! A pledge as it is kept, in PostgreSQL (written behind, or by settlement) and in the
//! live store while it is in flight: one type for every place that reads a stored pledge.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Currency, Money, PledgeStatus, Slug, public_name};

/// A stored pledge. Its name is already the public one: an anonymous pledge keeps none.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PledgeRecord {
    pub id: Uuid,
    pub campaign_id: i64,
    #[sqlx(try_from = "String")]
    pub campaign: Slug,
    pub stream_id: i64,
    #[sqlx(try_from = "String")]
    pub stream: Slug,
    #[sqlx(try_from = "i64")]
    pub amount: Money,
    #[sqlx(try_from = "String")]
    pub currency: Currency,
    pub designation: Option<String>,
    pub donor_name: Option<String>,
    pub anonymous: bool,
    pub message: Option<String>,
    pub donor_ref: Option<String>,
    /// Absent for a pledge settlement wrote before the write-behind did.
    pub idempotency_key: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: PledgeStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl PledgeRecord {
    /// The name shown publicly: none for an anonymous pledge.
    pub fn public_name(&self) -> Option<&str> {
        public_name(self.anonymous, self.donor_name.as_deref())
    }
}
