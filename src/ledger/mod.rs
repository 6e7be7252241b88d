//! The fund's ledger in PostgreSQL: settling payment events in group-committed batches
//! (gifts, refunds, matching, exceptions), then telling the live counters.

pub mod plan;
