//! The fund's ledger in PostgreSQL: settling payment events in group-committed batches
//! (gifts, refunds, matching, exceptions), then telling the live counters.

mod drift;
mod effects;
mod load;
pub mod plan;
mod rebuild;
mod settle;
mod settler;
mod sums;
mod write;

pub use drift::run_drift_check;
pub use plan::Outcome;
pub use rebuild::{RebuildError, ensure_built, rebuild_campaign};

pub use settler::{BATCH, LINGER, Settler, SettlerQueue, Unavailable, run_settler};
pub use sums::LedgerTotals;
