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
            "campaign_confirmed",
            "campaigns",
            "designations",
            "exception_refunds",
            "funds",
            "gifts",
            "matching_entries",
            "matching_pools",
            "milestones",
            "outbox",
            "payment_events",
            "payment_exceptions",
            "pledges",
            "reconciliation_discrepancies",
            "reconciliation_reports",
            "refunds",
            "statement_problems",
            "statement_rows",
            "statements",
            "stream_confirmed",
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

#[sqlx::test(migrations = false)]
async fn the_ledger_integrity_migration_carries_an_existing_ledger_over(db: PgPool) {
    livefund::MIGRATOR
        .run_to(1, &db)
        .await
        .expect("the first migration");
    let statements = [
        "insert into funds (slug, name, charity) values ('fund', 'f', 'c')",
        "insert into campaigns (slug, fund_id, title, currency, goal, min_amount, max_amount) \
         values ('campaign', 1, 't', 'CNY', 10000, 1, 100000)",
        "insert into streams (slug, campaign_id, streamer, goal, moderation_key_hash) \
         values ('stream', 1, 's', 4000, decode(repeat('00', 32), 'hex'))",
        "insert into pledges (id, campaign_id, stream_id, amount, currency, anonymous, status, \
                              created_at, expires_at) \
         values ('00000000-0000-0000-0000-000000000001', 1, 1, 3000, 'CNY', false, 'confirmed', \
                 now(), now())",
        "insert into payment_events (event_id, type, pledge_id, provider_txn_id, amount, currency, \
                                     occurred_at, outcome) \
         values ('e1', 'payment.succeeded', '00000000-0000-0000-0000-000000000001', 't1', 3000, \
                 'CNY', now(), 'gift'), \
                ('e2', 'refund.succeeded', '00000000-0000-0000-0000-000000000001', 'r1', 1000, \
                 'CNY', now(), 'refund')",
        "insert into gifts (id, campaign_id, stream_id, pledge_id, provider_txn_id, event_id, \
                            amount, fee, currency, anonymous) \
         values ('00000000-0000-0000-0000-0000000000a1', 1, 1, \
                 '00000000-0000-0000-0000-000000000001', 't1', 'e1', 3000, 0, 'CNY', false)",
        "insert into refunds (id, gift_id, campaign_id, provider_txn_id, event_id, amount, currency) \
         values ('00000000-0000-0000-0000-0000000000b1', '00000000-0000-0000-0000-0000000000a1', \
                 1, 'r1', 'e2', 1000, 'CNY')",
        "insert into payment_exceptions (event_id, campaign_id, provider_txn_id, kind, amount, \
                                         currency, resolved_at) \
         values ('e2', 1, 'r1', 'refund_without_gift', 1000, 'CNY', now())",
    ];
    for sql in statements {
        sqlx::query(sql).execute(&db).await.expect(sql);
    }
    livefund::migrate(&db).await.expect("the later migrations");
    let confirmed: Vec<i64> = sqlx::query_scalar(
        "select confirmed from stream_confirmed union all select confirmed from campaign_confirmed",
    )
    .fetch_all(&db)
    .await
    .expect("confirmed");
    assert_eq!(
        confirmed,
        [2000, 2000],
        "gifts net of refunds, per stream and campaign"
    );
    let reached: Vec<(Option<i64>, i32)> =
        sqlx::query_as("select stream_id, reached from milestones order by stream_id, reached")
            .fetch_all(&db)
            .await
            .expect("milestones");
    assert_eq!(
        reached,
        [(Some(1), 25), (Some(1), 50)],
        "the stream passed half its goal; the campaign a fifth of its"
    );
    let resolution: Option<String> =
        sqlx::query_scalar("select resolution from payment_exceptions where event_id = 'e2'")
            .fetch_one(&db)
            .await
            .expect("resolution");
    assert_eq!(resolution.as_deref(), Some("applied"));
}

#[sqlx::test(migrations = false)]
async fn a_campaign_closed_by_hand_before_reconciliation_is_kept_as_a_forced_close(db: PgPool) {
    livefund::MIGRATOR
        .run_to(2, &db)
        .await
        .expect("the first two migrations");
    for sql in [
        "insert into funds (slug, name, charity) values ('fund', 'f', 'c')",
        "insert into campaigns (slug, fund_id, title, currency, goal, min_amount, max_amount, \
                                closed_at, close_forced, ledger_digest) \
         values ('campaign', 1, 't', 'CNY', 10000, 1, 100000, now(), false, 'd')",
    ] {
        sqlx::query(sql).execute(&db).await.expect(sql);
    }
    livefund::migrate(&db).await.expect("the later migrations");
    let (forced, reason, by): (bool, String, String) =
        sqlx::query_as("select close_forced, close_reason, closed_by from campaigns")
            .fetch_one(&db)
            .await
            .expect("campaign");
    assert!(forced);
    assert!(!reason.is_empty() && !by.is_empty());
}
