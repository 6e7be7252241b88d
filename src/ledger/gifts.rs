//! Reading settled gifts.

use sqlx::PgPool;
use uuid::Uuid;

/// The provider transaction that paid the pledge's gift, if it has one.
pub async fn gift_txn(db: &PgPool, pledge_id: &Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(r#"select provider_txn_id from gifts where pledge_id = $1"#)
        .bind(pledge_id)
        .fetch_optional(db)
        .await
}
