//! Settlement over the real webhook: signatures, idempotent group-committed ledger
//! writes, exceptions, shuffled order, matching under concurrency, 503 without
//! PostgreSQL, and the live effects on the counters.

mod common;

use common::{Options, TestApp, code, eventually, payment_event};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[sqlx::test]
async fn signatures_are_checked_before_anything_is_recorded(db: PgPool) {
    let options = Options {
        webhook_secrets: vec!["whsec_new".into(), "whsec_old".into()],
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    let event = payment_event("payment.succeeded", &pledge, "txn_1", 5000);
    let body = event.to_string().into_bytes();
    let sign = |secret: &str, at: i64, body: &[u8]| {
        livefund::payments::signature::sign(&livefund::config::Secret::new(secret), at, body)
    };

    let refused = [
        (
            "wrong secret",
            Some(sign("whsec_wrong", now(), &body)),
            body.clone(),
        ),
        ("missing header", None, body.clone()),
        (
            "only an unknown scheme",
            Some(format!("t={},v0=abcd", now())),
            body.clone(),
        ),
        (
            "301 s early",
            Some(sign("whsec_new", now() - 301, &body)),
            body.clone(),
        ),
        (
            "301 s late",
            Some(sign("whsec_new", now() + 301, &body)),
            body.clone(),
        ),
    ];
    for (why, header, body) in refused {
        let (status, reply) = app.deliver_raw(body, header).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::UNAUTHORIZED, "bad_signature"),
            "{why}"
        );
    }
    let mut flipped = body.clone();
    flipped[10] ^= 0x01;
    let (status, _) = app
        .deliver_raw(flipped, Some(sign("whsec_new", now(), &body)))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a flipped bit");
    assert_eq!(
        app.count("select count(*) from payment_events").await,
        0,
        "nothing recorded"
    );

    for (at, secret) in [(now() - 299, "whsec_old"), (now() + 299, "whsec_new")] {
        let event = payment_event("payment.failed", &uuid::Uuid::new_v4().to_string(), "t", 1);
        let (status, reply) = app.deliver(&event, secret, at).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let (status, reply) = app.deliver(&event, "whsec_old", now()).await;
    assert_eq!(
        (status, reply["outcome"].clone()),
        (StatusCode::OK, json!("gift"))
    );
}

#[sqlx::test]
async fn the_same_confirmation_five_times_makes_one_gift(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    let event = payment_event("payment.succeeded", &pledge, "txn_1", 5000);
    let (a, b) = tokio::join!(app.webhook(&event), app.webhook(&event));
    let mut outcomes = vec![a, b];
    for _ in 0..3 {
        outcomes.push(app.webhook(&event).await);
    }
    // A second event id for the same transaction has no further effect either.
    let mut again = event.clone();
    again["event_id"] = json!("evt_other_delivery");
    outcomes.push(app.webhook(&again).await);
    for (status, reply) in &outcomes {
        assert_eq!(*status, StatusCode::OK, "{reply}");
    }
    let gifts = outcomes
        .iter()
        .filter(|(_, r)| r["outcome"] == "gift")
        .count();
    assert_eq!(gifts, 1);
    assert_eq!(app.count("select count(*) from gifts").await, 1);
    assert_eq!(app.count("select count(*) from payment_events").await, 2);
    let (status, read) = app.get(&format!("/api/v1/pledges/{pledge}")).await;
    assert_eq!(
        (status, read["status"].clone()),
        (StatusCode::OK, json!("confirmed"))
    );
    wait_for_confirmed(&app, 5000).await;
}

async fn wait_for_confirmed(app: &TestApp, confirmed: i64) -> (Value, Value) {
    eventually("the confirmed total", || async {
        app.totals("stream").await.0["confirmed"] == confirmed
    })
    .await;
    app.totals("stream").await
}

#[sqlx::test]
async fn every_exception_is_recorded_answered_200_and_counted_nowhere(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let paid = app.pledged("stream", 5000).await;
    let (status, _) = app
        .webhook(&payment_event("payment.succeeded", &paid, "txn_ok", 5000))
        .await;
    assert_eq!(status, StatusCode::OK);
    let other = app.pledged("stream", 5000).await;
    let mut usd = payment_event("payment.succeeded", &other, "txn_usd", 5000);
    usd["currency"] = json!("USD");
    let cases = [
        (
            payment_event(
                "payment.succeeded",
                &uuid::Uuid::new_v4().to_string(),
                "txn_a",
                5000,
            ),
            "unknown_pledge",
        ),
        (
            payment_event("payment.succeeded", &other, "txn_b", 4999),
            "amount_mismatch",
        ),
        (usd, "currency_mismatch"),
        (
            payment_event("payment.succeeded", &paid, "txn_c", 5000),
            "duplicate_payment",
        ),
        (
            payment_event("refund.succeeded", &other, "rf_a", 100),
            "refund_without_gift",
        ),
        (
            payment_event("refund.succeeded", &paid, "rf_b", 5001),
            "refund_exceeds_gift",
        ),
    ];
    for (event, kind) in &cases {
        let (status, reply) = app.webhook(event).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(
            (reply["outcome"].clone(), reply["exception"].clone()),
            (json!("exception"), json!(kind))
        );
    }
    // After close, a payment is still recorded, as an exception.
    app.close_forced("campaign").await;
    let (_, reply) = app
        .webhook(&payment_event(
            "payment.succeeded",
            &other,
            "txn_late",
            5000,
        ))
        .await;
    assert_eq!(reply["exception"], "payment_after_close");

    assert_eq!(
        app.count("select count(*) from payment_exceptions").await,
        7
    );
    assert_eq!(app.count("select count(*) from gifts").await, 1);
    assert_eq!(app.count("select count(*) from refunds").await, 0);
    let (stream, _) = wait_for_confirmed(&app, 5000).await;
    assert_eq!(stream["gifts"], 1);
    assert_eq!(stream["refunded"], 0);
}

/// The ledger of one pledge: gift amount, refunded total, net match, pledge status.
async fn ledger_of(app: &TestApp, pledge: &str) -> (i64, i64, i64, String) {
    sqlx::query_as(
        "select coalesce((select amount::bigint from gifts where pledge_id = $1::uuid), 0), \
                coalesce((select sum(r.amount)::bigint from refunds r join gifts g on g.id = r.gift_id \
                          where g.pledge_id = $1::uuid), 0), \
                coalesce((select sum(m.amount)::bigint from matching_entries m join gifts g on g.id = m.gift_id \
                          where g.pledge_id = $1::uuid), 0), \
                (select status from pledges where id = $1::uuid)",
    )
    .bind(pledge)
    .fetch_one(&app.db)
    .await
    .expect("ledger")
}

#[sqlx::test]
async fn shuffled_events_leave_the_same_ledger_as_in_order(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let script = |pledge: &str, tag: &str| {
        vec![
            payment_event("payment.succeeded", pledge, &format!("pay_{tag}"), 4000),
            payment_event("refund.succeeded", pledge, &format!("rf1_{tag}"), 1000),
            payment_event("refund.succeeded", pledge, &format!("rf2_{tag}"), 500),
            payment_event("payment.failed", pledge, &format!("pay_{tag}"), 4000),
        ]
    };
    let in_order = app.pledged("stream", 4000).await;
    for event in script(&in_order, "a") {
        let (status, reply) = app.webhook(&event).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let expected = ledger_of(&app, &in_order).await;
    // Matched at 50 %: 2000, of which 1500/4000 goes back with the refunds.
    assert_eq!(expected, (4000, 1500, 1250, "confirmed".into()));

    for (n, order) in [[3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]]
        .iter()
        .enumerate()
    {
        let pledge = app.pledged("stream", 4000).await;
        let events = script(&pledge, &format!("s{n}"));
        for &i in order {
            let (status, reply) = app.webhook(&events[i]).await;
            assert_eq!(status, StatusCode::OK, "{reply}");
        }
        assert_eq!(ledger_of(&app, &pledge).await, expected, "order {order:?}");
    }
    // Refunds parked before their payment are resolved, not left as exceptions.
    assert_eq!(
        app.count("select count(*) from payment_exceptions where resolved_at is null")
            .await,
        0
    );
}

#[sqlx::test]
async fn matching_stops_exactly_at_the_cap_under_concurrent_confirmations(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    // A second gateway settles concurrently on the same database.
    let other = app.another_gateway(db).await;
    app.create_fund("fund").await;
    let mut campaign = common::campaign_body("campaign", "fund");
    campaign["matching"] = json!({"sponsor": "暖阳科技", "ratio_percent": 100, "cap": 10_000});
    let (status, _) = app.operator_post("/api/v1/campaigns", &campaign).await;
    assert_eq!(status, StatusCode::CREATED);
    app.create_stream("stream", "campaign").await;

    let mut pledges = Vec::new();
    for _ in 0..12 {
        pledges.push(app.pledged("stream", 1500).await);
    }
    let deliveries = pledges.iter().enumerate().map(|(i, p)| {
        let gateway = if i % 2 == 0 { &app } else { &other };
        let event = payment_event("payment.succeeded", p, &format!("txn_{i}"), 1500);
        async move { gateway.webhook(&event).await }
    });
    for (status, reply) in futures_util::future::join_all(deliveries).await {
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    assert_eq!(
        app.count("select coalesce(sum(amount), 0)::bigint from matching_entries")
            .await,
        10_000
    );
    assert_eq!(app.count("select spent from matching_pools").await, 10_000);
    let (_, campaign_totals) = wait_for_confirmed(&app, 18_000).await;
    assert_eq!(campaign_totals["matched"], 10_000);
    assert_eq!(
        campaign_totals["matching_remaining"], 0,
        "the pool is spent"
    );

    // A refund gives its match back to the pool.
    let (_, reply) = app
        .webhook(&payment_event(
            "refund.succeeded",
            &pledges[0],
            "rf_0",
            1500,
        ))
        .await;
    assert_eq!(reply["outcome"], "refund");
    let spent = app.count("select spent from matching_pools").await;
    assert!(spent < 10_000, "the pool has room again ({spent})");
    assert_eq!(
        app.count("select coalesce(sum(amount), 0)::bigint from matching_entries")
            .await,
        spent
    );
    let (campaign, _) = app.get("/api/v1/campaigns/campaign").await;
    assert_eq!(campaign, StatusCode::OK);
}

#[sqlx::test]
async fn without_postgresql_the_webhook_answers_503_and_nothing_changes(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    let unreachable = livefund::connect_postgres(&format!(
        "postgres://postgres@127.0.0.1:{}/x",
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port")
    ))
    .expect("lazy pool");
    let down = app.another_gateway(unreachable).await;
    let before = app.totals("stream").await;
    let (status, reply) = down
        .webhook(&payment_event("payment.succeeded", &pledge, "txn_1", 5000))
        .await;
    assert_eq!(
        (status, code(&reply)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert_eq!(
        app.totals("stream").await,
        before,
        "nothing in Redis changed"
    );
    assert_eq!(app.count("select count(*) from payment_events").await, 0);
    // The provider delivers again once the database is back: now it counts.
    let (status, reply) = app
        .webhook(&payment_event("payment.succeeded", &pledge, "txn_1", 5000))
        .await;
    assert_eq!(
        (status, reply["outcome"].clone()),
        (StatusCode::OK, json!("gift"))
    );
}

#[sqlx::test]
async fn signed_events_that_cannot_be_understood_are_recorded_with_their_body(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    eventually("the pledge written behind", || async {
        app.count("select count(*) from pledges").await == 1
    })
    .await;
    let mut no_amount = payment_event("payment.succeeded", &pledge, "txn_1", 5000);
    no_amount.as_object_mut().map(|e| e.remove("amount"));
    let bodies = [
        json!({"event_id": "evt_1", "type": "payment.maybe"}).to_string(),
        no_amount.to_string(),
        "not json at all".to_owned(),
        payment_event("payment.succeeded", &pledge, "txn\u{0}nul", 5000).to_string(),
    ];
    for body in &bodies {
        let header = livefund::payments::signature::sign(
            &livefund::config::Secret::new(common::WEBHOOK_SECRET),
            now(),
            body.as_bytes(),
        );
        for _ in 0..2 {
            let (status, reply) = app
                .deliver_raw(body.clone().into_bytes(), Some(header.clone()))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}: {reply}");
            assert_eq!(
                (reply["outcome"].clone(), reply["exception"].clone()),
                (json!("exception"), json!("invalid_event")),
                "{body}"
            );
        }
    }
    let recorded: Vec<(Vec<u8>, Option<i64>)> = sqlx::query_as(
        "select raw_body, campaign_id from payment_exceptions where kind = 'invalid_event' order by id",
    )
    .fetch_all(&app.db)
    .await
    .expect("exceptions");
    let raw: Vec<&[u8]> = recorded.iter().map(|(b, _)| b.as_slice()).collect();
    let sent: Vec<&[u8]> = bodies.iter().map(|b| b.as_bytes()).collect();
    assert_eq!(raw, sent, "each body once, as it came");
    assert!(
        recorded[1].1.is_some(),
        "the pledge it names tells its campaign"
    );
    assert_eq!(app.count("select count(*) from gifts").await, 0);
    let (stream, _) = app.totals("stream").await;
    assert_eq!(stream["confirmed"], 0, "it changes no total");
}

#[sqlx::test]
async fn concurrent_partial_refunds_on_two_gateways_never_exceed_the_gift(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let other = app.another_gateway(db).await;
    // No sponsor: the matching pool's lock would serialize the refunds by itself.
    app.create_fund("fund").await;
    let mut campaign = common::campaign_body("campaign", "fund");
    campaign.as_object_mut().map(|c| c.remove("matching"));
    let (status, _) = app.operator_post("/api/v1/campaigns", &campaign).await;
    assert_eq!(status, StatusCode::CREATED);
    app.create_stream("stream", "campaign").await;
    let mut pledges = Vec::new();
    for i in 0..8 {
        let pledge = app.pledged("stream", 10_000).await;
        let (_, reply) = app
            .webhook(&payment_event(
                "payment.succeeded",
                &pledge,
                &format!("pay_{i}"),
                10_000,
            ))
            .await;
        assert_eq!(reply["outcome"], "gift");
        pledges.push(pledge);
    }
    let races = pledges.iter().enumerate().map(|(i, p)| {
        let a = payment_event("refund.succeeded", p, &format!("rf_a_{i}"), 6000);
        let b = payment_event("refund.succeeded", p, &format!("rf_b_{i}"), 6000);
        let (app, other) = (&app, &other);
        async move { tokio::join!(app.webhook(&a), other.webhook(&b)) }
    });
    for ((sa, ra), (sb, rb)) in futures_util::future::join_all(races).await {
        assert_eq!((sa, sb), (StatusCode::OK, StatusCode::OK), "{ra} {rb}");
        let mut outcomes = [ra["exception"].clone(), rb["exception"].clone()];
        outcomes.sort_by_key(|v| v.to_string());
        assert_eq!(
            outcomes,
            [json!("refund_exceeds_gift"), Value::Null],
            "{ra} {rb}"
        );
    }
    let over: i64 = app
        .count(
            "select count(*) from gifts g where (select coalesce(sum(amount), 0) \
             from refunds r where r.gift_id = g.id) > g.amount",
        )
        .await;
    assert_eq!(over, 0, "no gift is refunded beyond its amount");
    assert_eq!(
        app.count("select coalesce(sum(amount), 0)::bigint from refunds")
            .await,
        48_000
    );
}

#[sqlx::test]
async fn a_malformed_event_is_recorded_alone(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut pledges = Vec::new();
    for _ in 0..5 {
        pledges.push(app.pledged("stream", 5000).await);
    }
    let mut bad = payment_event("payment.failed", &pledges[0], "", 5000);
    bad["provider_txn_id"] = json!("");
    bad["currency"] = json!("CN\u{0}Y");
    let good = pledges[1..]
        .iter()
        .enumerate()
        .map(|(i, p)| payment_event("payment.succeeded", p, &format!("txn_{i}"), 5000));
    let good: Vec<Value> = good.collect();
    let (bad_reply, good_replies) = tokio::join!(
        app.webhook(&bad),
        futures_util::future::join_all(good.iter().map(|e| app.webhook(e)))
    );
    assert_eq!(
        (bad_reply.0, bad_reply.1["exception"].clone()),
        (StatusCode::OK, json!("invalid_event"))
    );
    for (status, reply) in good_replies {
        assert_eq!(
            (status, reply["outcome"].clone()),
            (StatusCode::OK, json!("gift"))
        );
    }
}
