//! Redis loss and drift: counters rebuilt from the ledger (on demand, by the command,
//! and by the drift check) equal the ledger's sums exactly.

mod common;

use common::process::livefund;
use common::{Options, TestApp, eventually, payment_event};
use livefund::config::Limits;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

/// Deletes every Redis key of this app's prefix: Redis "lost" for this deployment only.
async fn lose_redis(app: &TestApp) {
    let mut redis = app.redis().await;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", app.prefix))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut redis)
                .await
                .expect("del");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// The ledger's own sums for the seeded campaign.
async fn ledger_sums(app: &TestApp) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "select (coalesce((select sum(amount) from gifts), 0) \
                 - coalesce((select sum(amount) from refunds), 0))::bigint, \
                coalesce((select sum(amount) from matching_entries), 0)::bigint, \
                coalesce((select sum(amount) from refunds), 0)::bigint, \
                (select count(*) from gifts)",
    )
    .fetch_one(&app.db)
    .await
    .expect("sums")
}

fn settled(totals: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| totals[k].as_i64().unwrap_or(-1);
    (n("confirmed"), n("matched"), n("refunded"), n("gifts"))
}

/// Three gifts (one partly refunded) and one pending pledge, written behind.
async fn some_history(app: &TestApp) -> Vec<String> {
    let mut pledges = Vec::new();
    for (i, amount) in [5000, 3000, 1200].into_iter().enumerate() {
        let pledge = app.pledged("stream", amount).await;
        let (status, reply) = app
            .webhook(&payment_event(
                "payment.succeeded",
                &pledge,
                &format!("txn_{i}"),
                amount,
            ))
            .await;
        assert_eq!(reply["outcome"], "gift", "{status} {reply}");
        pledges.push(pledge);
    }
    let (_, reply) = app
        .webhook(&payment_event(
            "refund.succeeded",
            &pledges[1],
            "rf_1",
            1000,
        ))
        .await;
    assert_eq!(reply["outcome"], "refund");
    pledges.push(app.pledged("stream", 700).await);
    eventually("the write-behind", || async {
        app.count("select count(*) from pledges").await == 4
    })
    .await;
    pledges
}

async fn until_settled(app: &TestApp, expected: (i64, i64, i64, i64)) -> (Value, Value) {
    eventually(&format!("the totals to be {expected:?}"), || async {
        settled(&app.totals("stream").await.1) == expected
    })
    .await;
    app.totals("stream").await
}

#[sqlx::test]
async fn lost_counters_are_rebuilt_from_the_ledger_before_totals_are_served(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    some_history(&app).await;
    let sums = ledger_sums(&app).await;
    // Matched at 50 %: 2500 + 1500 + 600, less 500 given back by the 1000 refund.
    assert_eq!(sums, (8200, 4100, 1000, 3));
    let before = until_settled(&app, sums).await;

    lose_redis(&app).await;
    let (status, stream) = app.get("/api/v1/streams/stream").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        settled(&stream["campaign_totals"]),
        sums,
        "rebuilt on first read"
    );
    assert_eq!(
        (stream["totals"].clone(), stream["campaign_totals"].clone()),
        before
    );

    // New activity counts on top of the rebuilt numbers, once.
    lose_redis(&app).await;
    let pledge = app.pledged("stream", 900).await;
    let (stream, _) = app.totals("stream").await;
    assert_eq!(
        stream["pledged"],
        before.0["pledged"].as_i64().unwrap_or(0) + 900
    );
    // Once written behind, the pledge survives the next loss too.
    eventually("the write-behind", || async {
        app.count("select count(*) from pledges").await == 5
    })
    .await;
    lose_redis(&app).await;
    let (_, reply) = app
        .webhook(&payment_event(
            "payment.succeeded",
            &pledge,
            "txn_late",
            900,
        ))
        .await;
    assert_eq!(reply["outcome"], "gift", "{reply}");
    let sums = ledger_sums(&app).await;
    assert_eq!(sums.0, 9100);
    until_settled(&app, sums).await;
}

#[sqlx::test]
async fn the_rebuild_command_restores_every_counter(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.seed().await;
    some_history(&app).await;
    let sums = ledger_sums(&app).await;
    let before = until_settled(&app, sums).await;
    let top_key = format!("{}:{{c:campaign}}:top", app.prefix);
    let mut redis = app.redis().await;
    let top_before: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(&top_key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .expect("top");
    lose_redis(&app).await;

    let database = db
        .connect_options()
        .get_database()
        .expect("db name")
        .to_owned();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let server = base
        .rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .expect("url");
    let out = livefund()
        .args(["rebuild-counters", "--campaign", "campaign"])
        .env("DATABASE_URL", format!("{server}/{database}"))
        .env("REDIS_URL", common::redis_url())
        .env("LIVEFUND_REDIS_PREFIX", &app.prefix)
        .output()
        .expect("run rebuild-counters");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("campaign: confirmed 8200"), "{printed}");

    let top_after: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(&top_key)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await
        .expect("top");
    assert_eq!(top_after, top_before, "the leaderboard too");
    assert_eq!(app.totals("stream").await, before);
}

#[sqlx::test]
async fn the_drift_check_repairs_a_tampered_counter(db: PgPool) {
    let options = Options {
        limits: Limits {
            drift_check_secs: 1,
            http_pledges_per_ip: 0,
            ..Limits::default()
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    some_history(&app).await;
    let sums = ledger_sums(&app).await;
    until_settled(&app, sums).await;

    let mut redis = app.redis().await;
    let _: i64 = redis::cmd("HINCRBY")
        .arg(format!("{}:{{c:campaign}}:totals", app.prefix))
        .arg("confirmed")
        .arg(999)
        .query_async(&mut redis)
        .await
        .expect("tamper");
    assert_eq!(
        app.totals("stream").await.1["confirmed"],
        json!(sums.0 + 999)
    );
    let saw_drift = std::sync::atomic::AtomicBool::new(false);
    eventually("the drift seen and repaired", || async {
        let (_, metrics) = app.get("/metrics").await;
        let drift = r#"livefund_counter_drift{campaign="campaign"} 999"#;
        if metrics.as_str().unwrap_or_default().contains(drift) {
            saw_drift.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        saw_drift.load(std::sync::atomic::Ordering::Relaxed)
            && settled(&app.totals("stream").await.1) == sums
    })
    .await;
}

#[sqlx::test]
async fn after_redis_is_lost_seq_keeps_increasing_and_resuming_clients_see_a_gap(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let history = some_history(&app).await;
    let sums = ledger_sums(&app).await;
    until_settled(&app, sums).await;
    // Three gifts and a refund: seq 4 (the live effects recorded it).
    eventually("the recorded seq", || async {
        app.count("select coalesce(max(seq), 0) from stream_seqs")
            .await
            == 4
    })
    .await;

    lose_redis(&app).await;
    let mut client = common::ws::Client::connect(&app.ws_url("stream", Some(4))).await;
    let snapshot = client.next_of("snapshot").await;
    assert_eq!(snapshot["gap"], true, "the log was lost with Redis");
    let seq = snapshot["seq"].as_u64().expect("seq");
    assert!(seq > 4, "seq starts above what clients saw ({seq})");
    let (_, reply) = app
        .webhook(&payment_event(
            "payment.succeeded",
            &history[3],
            "txn_after",
            700,
        ))
        .await;
    assert_eq!(reply["outcome"], "gift", "{reply}");
    let gift = client.next_of("gift").await;
    assert_eq!(gift["seq"], seq + 1);
}

#[sqlx::test]
async fn pending_pledges_still_expire_after_redis_is_lost(db: PgPool) {
    let options = Options {
        limits: Limits {
            pledge_ttl_secs: 1,
            http_pledges_per_ip: 0,
            ..Limits::default()
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    app.pledged("stream", 500).await;
    lose_redis(&app).await;
    app.pledged("stream", 700).await;
    eventually("the pledges to expire", || async {
        app.totals("stream").await.0["pledged"] == 0
    })
    .await;
}
