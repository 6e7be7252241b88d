//! Live counters in Redis: the key layout, the Lua scripts that change them (one per
//! state change) and typed reads of the totals.
//!
//! Every key of a campaign carries the deployment prefix and the campaign's hash tag
//! (`lf:{c:slug}:...`), so all of a campaign's keys live in one Redis Cluster slot and
//! its scripts run unchanged there.

mod keys;
mod scripts;
mod snapshot;
mod totals;

pub use keys::{CampaignKeys, Keys};
pub use scripts::{
    Applied, LOG_LENGTH, PledgeOutcome, PledgeWrite, SettledGift, SettledRefund, accept_pledge,
    board_key, donor_key, expire_due, gift_settled, pledge_failed, publish_alert, raise_seq,
    refund_settled,
};
pub use snapshot::{Snapshot, TopDonor, snapshot};
pub use totals::{FIELDS, Totals, read_totals};
