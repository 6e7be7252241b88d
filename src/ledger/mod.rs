//! The fund's ledger in PostgreSQL: settling payment events in group-committed batches
//! (gifts, refunds, matching, exceptions) with an outbox of their live effects, the relay
//! that applies those effects to the live counters, and rebuilds and repairs of the
//! counters from the ledger.

mod drift;
mod gifts;
mod handle;
mod invalid;
mod load;
mod lock;
mod outbox;
pub mod plan;
pub mod pledge_rows;
mod rebuild;
mod records;
mod relay;
mod settle;
mod settler;
mod stores;
mod sums;
mod write;

pub use drift::{check_and_repair, drift_of, run_drift_check, verify_running_totals};
pub use gifts::gift_txn;
pub use handle::Ledger;
pub use invalid::record_invalid;
pub use lock::{CampaignLock, Guarded, LockError};
pub use outbox::LiveEffect;
pub use plan::Outcome;
pub use rebuild::{RebuildError, ensure_built, rebuild_campaign, repair_campaign};
pub use relay::{RelayWake, run_relay};
pub use settler::{BATCH, LINGER, SettlerQueue, Unavailable, run_settler};
pub use stores::Stores;
pub use sums::LedgerTotals;
