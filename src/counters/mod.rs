//! Live counters in Redis: the key layout and typed reads of the totals.
//!
//! Every key of a campaign carries the deployment prefix and the campaign's hash tag
//! (`lf:{c:slug}:...`), so all of a campaign's keys live in one Redis Cluster slot and
//! its scripts run unchanged there.

mod keys;
mod totals;

pub use keys::{CampaignKeys, Keys};
pub use totals::{Totals, read_totals};
