//! The stores the ledger works on: PostgreSQL (the ledger itself) and the live store its
//! effects go to, under the deployment's key prefix.

use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::counters::Keys;

#[derive(Clone)]
pub struct Stores {
    pub db: PgPool,
    pub redis: ConnectionManager,
    pub keys: Keys,
}
