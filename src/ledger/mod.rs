//! The fund's ledger in PostgreSQL: settling payment events in group-committed batches
//! (gifts, refunds, matching, exceptions), then telling the live counters.

mod effects;
mod load;
pub mod plan;
mod settle;
mod settler;
mod write;

pub use plan::Outcome;
pub use settle::{Settled, settle_batch};
pub use settler::{BATCH, LINGER, Settler, SettlerQueue, Unavailable, run_settler};
