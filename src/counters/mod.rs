//! Live counters in Redis: the key layout, the Lua scripts that change them (one per
//! state change) and typed reads of the totals.
//!
//! Every key of a campaign carries the deployment prefix and the campaign's hash tag
//! (`lf:{c:slug}:...`), so all of a campaign's keys live in one Redis Cluster slot and
//! its scripts run unchanged there.

pub mod channel;
mod keys;
pub mod pledge_hash;
mod scripts;
mod settled;
mod snapshot;
mod totals;

pub use keys::{CampaignKeys, Keys};
pub use scripts::{
    LOG_LENGTH, PledgeOutcome, PledgeWrite, accept_pledge, expire_due, pledge_call,
    pledge_script_source, raise_seq,
};
pub use settled::{
    Alert, Applied, FailedPledge, ReachedMilestone, Scope, SettledGift, SettledRefund, board_key,
    donor_key, gift_settled, milestone_reached, pledge_failed, publish_alert, refund_settled,
};
pub use snapshot::{Snapshot, TopDonor, snapshot};
pub use totals::{FIELDS, Totals, read_totals, short_reply};
