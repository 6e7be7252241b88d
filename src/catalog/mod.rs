//! The catalogue in PostgreSQL: funds with their designations, campaigns with their
//! matching pools, and streams. Duplicates are decided by unique constraints.

mod cache;
mod campaigns;
mod funds;
mod streams;

pub use cache::{CampaignInfo, CatalogCache, StreamInfo};
pub use campaigns::{
    Campaign, LISTED, Matching, NewCampaign, campaign_by_slug, create_campaign, listed_campaigns,
};
pub use funds::{Designation, Fund, NewDesignation, NewFund, create_fund, designations_of_fund};
pub use streams::{
    ModerationKey, NewStream, Stream, create_stream, stream_by_slug, streams_of_campaign,
};

/// Why a catalogue write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("a {0} with this slug already exists")]
    AlreadyExists(&'static str),
    #[error("no fund with slug {0}")]
    UnknownFund(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
