//! Migrations on an empty database: every table appears, and a second run is a no-op.

use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn migrations_build_the_schema_on_an_empty_database(db: PgPool) {
    let before: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_schema = 'public'",
    )
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(before, 0);

    livefund::migrate(&db).await.expect("migrations run");
    livefund::migrate(&db)
        .await
        .expect("a second run changes nothing");

    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables \
         where table_schema = 'public' and table_name <> '_sqlx_migrations' order by 1",
    )
    .fetch_all(&db)
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "campaigns",
            "designations",
            "funds",
            "gifts",
            "matching_entries",
            "matching_pools",
            "payment_events",
            "payment_exceptions",
            "pledges",
            "reconciliation_reports",
            "refunds",
            "statement_rows",
            "statements",
            "stream_seqs",
            "streams",
        ]
    );
}

#[sqlx::test]
async fn money_constraints_hold_in_the_database(db: PgPool) {
    // Even a write that bypasses the service cannot store a non-positive goal or a
    // matching pool spent past its cap.
    sqlx::query("insert into funds (slug, name, charity) values ('f1', 'F', 'C')")
        .execute(&db)
        .await
        .expect("fund");
    let bad_goal = sqlx::query(
        "insert into campaigns (slug, fund_id, title, currency, goal, min_amount, max_amount) \
         select 'c1', id, 'T', 'CNY', 0, 1, 2 from funds",
    )
    .execute(&db)
    .await;
    assert!(bad_goal.is_err(), "a zero goal is refused");
    sqlx::query(
        "insert into campaigns (slug, fund_id, title, currency, goal, min_amount, max_amount) \
         select 'c1', id, 'T', 'CNY', 100, 1, 2 from funds",
    )
    .execute(&db)
    .await
    .expect("campaign");
    sqlx::query(
        "insert into matching_pools (campaign_id, sponsor, ratio_percent, cap) \
         select id, 'S', 100, 50 from campaigns",
    )
    .execute(&db)
    .await
    .expect("pool");
    let overspend = sqlx::query("update matching_pools set spent = 51")
        .execute(&db)
        .await;
    assert!(overspend.is_err(), "the cap cannot be overspent");
}
