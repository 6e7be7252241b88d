//! Domain types built at the edge by parsing: money, slugs, codes and bounded text.
//!
//! Past the HTTP layer, code takes these types and never re-checks them.

mod campaign;
mod money;
mod pledge;
mod record;
mod status;
mod text;

pub use campaign::{CampaignStatus, CampaignWindow, MatchingTerms};
pub use money::{Currency, Money};
pub use pledge::{
    IdempotencyKey, MAX_DONOR_NAME, MAX_MESSAGE, Pledge, PledgeFields, PledgeRules, Refusal,
    public_name,
};
pub use record::PledgeRecord;
pub use status::PledgeStatus;
pub use text::{DesignationCode, Slug, bounded_text};

/// Why a value from a client cannot become a domain value; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
