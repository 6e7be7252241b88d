//! Ledger integrity end to end: refunds aimed at the payment they name, an outbox that
//! loses no alert (a gateway killed between its commit and Redis, Redis flushed with
//! effects pending), drift repair racing a stream of gifts, refunds after close, and
//! donors that mean the same live and after a rebuild.

mod common;

use common::process::{livefund, start};
use common::ws::Client;
use common::{Options, TestApp, database_url, eventually, payment_event};
use livefund::counters::Keys;
use livefund::domain::Slug;
use livefund::ledger::{self, CampaignLock};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;

/// A refund of `amount` that names the payment `of`.
fn refund_of(pledge: &str, txn: &str, of: &str, amount: i64) -> Value {
    let mut event = payment_event("refund.succeeded", pledge, txn, amount);
    event["refunded_txn_id"] = json!(of);
    event
}

/// Delivers `event`; asserts 200 and returns the receipt's outcome (or exception kind).
async fn outcome(app: &TestApp, event: &Value) -> String {
    let (status, reply) = app.webhook(event).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let word = reply["exception"]
        .as_str()
        .or(reply["outcome"].as_str())
        .unwrap_or("?");
    word.to_owned()
}

/// Waits until every live effect has been applied.
async fn drained(app: &TestApp) {
    eventually("the outbox applied", || async {
        app.count("select count(*) from outbox").await == 0
    })
    .await;
}

async fn campaign_id(app: &TestApp) -> i64 {
    app.count("select id from campaigns where slug = 'campaign'")
        .await
}

fn keys(app: &TestApp) -> Keys {
    Keys::new(app.prefix.clone())
}

fn slug(s: &str) -> Slug {
    Slug::parse("slug", s).expect("slug")
}

/// The frames of `kind` in a stream's log, in order.
async fn logged(app: &TestApp, stream: &str, kind: &str) -> Vec<Value> {
    let key = keys(app)
        .campaign(&slug("campaign"))
        .stream_log(&slug(stream));
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut app.redis().await)
        .await
        .expect("xrange");
    entries
        .into_iter()
        .filter_map(|(_, fields)| fields.into_iter().find(|(k, _)| k == "f"))
        .map(|(_, frame)| serde_json::from_str::<Value>(&frame).expect("frame"))
        .filter(|f| f["type"] == kind)
        .collect()
}

/// The gift frames of a stream's log, in order.
async fn logged_gifts(app: &TestApp, stream: &str) -> Vec<Value> {
    logged(app, stream, "gift").await
}

/// Deletes every key of the app's prefix: Redis lost everything.
async fn lose_redis(app: &TestApp) {
    let mut redis = app.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", app.prefix))
        .query_async(&mut redis)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut redis)
            .await
            .expect("del");
    }
}

#[sqlx::test]
async fn a_refund_of_a_duplicate_charge_leaves_the_gift_and_resolves_the_charge(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    let pay = |txn: &str| payment_event("payment.succeeded", &pledge, txn, 5000);
    assert_eq!(outcome(&app, &pay("t1")).await, "gift");
    assert_eq!(outcome(&app, &pay("t2")).await, "duplicate_payment");
    drained(&app).await;
    let before = app.totals("stream").await;
    assert_eq!(before.0["confirmed"], 5000);

    let refund = refund_of(&pledge, "rf_dup", "t2", 5000);
    assert_eq!(outcome(&app, &refund).await, "exception_refund");
    drained(&app).await;
    assert_eq!(app.totals("stream").await, before, "totals unchanged");
    let (_, read) = app.get(&format!("/api/v1/pledges/{pledge}")).await;
    assert_eq!(read["status"], "confirmed", "the pledge stays confirmed");
    let resolution: (Option<String>, Option<String>) = sqlx::query_as(
        "select resolution, resolved_by from payment_exceptions where provider_txn_id = 't2'",
    )
    .fetch_one(&app.db)
    .await
    .expect("exception");
    assert_eq!(
        resolution,
        (
            Some("refunded".into()),
            refund["event_id"].as_str().map(str::to_owned)
        )
    );
    assert_eq!(app.count("select count(*) from refunds").await, 0);
    assert_eq!(app.count("select count(*) from exception_refunds").await, 1);
    assert_eq!(
        app.count("select spent from matching_pools").await,
        2500,
        "the sponsor's match stays with the real gift"
    );
    // The same refund delivered again changes nothing.
    let mut again = refund.clone();
    again["event_id"] = json!("evt_again");
    assert_eq!(outcome(&app, &again).await, "ignored");
}

#[sqlx::test]
async fn a_refund_of_a_wrong_payment_that_came_first_never_touches_the_gift(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    let early = refund_of(&pledge, "rf_w", "t_wrong", 4000);
    assert_eq!(outcome(&app, &early).await, "refund_without_gift");
    let wrong = payment_event("payment.succeeded", &pledge, "t_wrong", 4000);
    assert_eq!(outcome(&app, &wrong).await, "amount_mismatch");
    let right = payment_event("payment.succeeded", &pledge, "t_right", 5000);
    assert_eq!(outcome(&app, &right).await, "gift");
    drained(&app).await;
    let (stream, _) = app.totals("stream").await;
    assert_eq!(
        (stream["confirmed"].clone(), stream["refunded"].clone()),
        (json!(5000), json!(0))
    );
    let (_, read) = app.get(&format!("/api/v1/pledges/{pledge}")).await;
    assert_eq!(read["status"], "confirmed");
    assert_eq!(
        app.count("select count(*) from payment_exceptions where resolved_at is null")
            .await,
        0,
        "the parked refund applied, and the wrong payment is refunded in full"
    );
    let early_outcome: String =
        sqlx::query_scalar("select outcome from payment_events where provider_txn_id = 'rf_w'")
            .fetch_one(&app.db)
            .await
            .expect("outcome");
    assert_eq!(early_outcome, "exception_refund");
}

#[sqlx::test]
async fn a_parked_refund_whose_refund_exists_already_is_answered_not_retried(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let paid = app.pledged("stream", 5000).await;
    let unpaid = app.pledged("stream", 3000).await;
    eventually("pledges written behind", || async {
        app.count("select count(*) from pledges").await == 2
    })
    .await;
    let pay = payment_event("payment.succeeded", &paid, "t1", 5000);
    assert_eq!(outcome(&app, &pay).await, "gift");
    assert_eq!(
        outcome(
            &app,
            &payment_event("refund.succeeded", &paid, "rf_1", 1000)
        )
        .await,
        "refund"
    );
    // A refund with the same transaction left parked on the other pledge, as a ledger
    // written before refunds were deduplicated could hold it.
    for sql in [
        "insert into payment_events (event_id, type, pledge_id, provider_txn_id, amount, currency, \
                                     occurred_at, outcome) \
         values ('evt_old', 'refund.succeeded', $1::uuid, 'rf_1', 1000, 'CNY', now(), 'exception')",
        "insert into payment_exceptions (event_id, campaign_id, pledge_id, provider_txn_id, kind, \
                                         amount, currency) \
         select 'evt_old', campaign_id, id, 'rf_1', 'refund_without_gift', 1000, 'CNY' \
         from pledges where id = $1::uuid",
    ] {
        sqlx::query(sql)
            .bind(&unpaid)
            .execute(&app.db)
            .await
            .expect(sql);
    }
    let late = payment_event("payment.succeeded", &unpaid, "t2", 3000);
    assert_eq!(outcome(&app, &late).await, "gift", "answered, never 503");
    let resolution: Option<String> =
        sqlx::query_scalar("select resolution from payment_exceptions where event_id = 'evt_old'")
            .fetch_one(&app.db)
            .await
            .expect("resolution");
    assert_eq!(resolution.as_deref(), Some("replayed"));
    assert_eq!(app.count("select count(*) from refunds").await, 1);
}

#[sqlx::test]
async fn refunds_after_close_are_post_close_adjustments_and_leave_the_digest(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    let other = app.pledged("stream", 3000).await;
    let pay = payment_event("payment.succeeded", &pledge, "t1", 5000);
    assert_eq!(outcome(&app, &pay).await, "gift");
    let at_close = app.close_forced("campaign").await;
    let refund = payment_event("refund.succeeded", &pledge, "rf_1", 2000);
    assert_eq!(
        outcome(&app, &refund).await,
        "refund",
        "real money returned is recorded"
    );
    let late = payment_event("payment.succeeded", &other, "t_late", 3000);
    assert_eq!(outcome(&app, &late).await, "payment_after_close");
    let back = refund_of(&other, "rf_late", "t_late", 3000);
    assert_eq!(outcome(&app, &back).await, "exception_refund");
    let post_close: bool = sqlx::query_scalar("select post_close from refunds")
        .fetch_one(&app.db)
        .await
        .expect("refund");
    assert!(post_close);
    let digest: String = sqlx::query_scalar("select ledger_digest from campaigns")
        .fetch_one(&app.db)
        .await
        .expect("digest");
    assert_eq!(digest, at_close, "the digest given at close is kept");
    // And the ledger it covers still computes to it: the refund after close is beside it.
    let mut conn = app.db.acquire().await.expect("conn");
    let gifts = livefund::closing::gifts(&mut conn, campaign_id(&app).await)
        .await
        .expect("gifts");
    assert_eq!(
        livefund::closing::ledger_digest("campaign", &gifts),
        at_close
    );
    assert_eq!(gifts[0].refunded_after_close, 2000);
    drained(&app).await;
    let (stream, _) = app.totals("stream").await;
    assert_eq!(
        (stream["confirmed"].clone(), stream["refunded"].clone()),
        (json!(3000), json!(2000))
    );
}

#[sqlx::test]
async fn donors_are_those_with_a_settled_gift_live_and_after_a_rebuild(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut pledges = Vec::new();
    for donor in ["alice", "alice", "bob", "carol"] {
        let mut body = common::pledge_body("stream", 1000);
        body["donor_ref"] = json!(donor);
        let (status, reply) = app.pledge(&body).await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        pledges.push(reply["pledge_id"].as_str().expect("id").to_owned());
    }
    // Carol never pays.
    for (i, pledge) in pledges.iter().take(3).enumerate() {
        let pay = payment_event("payment.succeeded", pledge, &format!("t{i}"), 1000);
        assert_eq!(outcome(&app, &pay).await, "gift");
    }
    drained(&app).await;
    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        (stream["donors"].clone(), campaign["donors"].clone()),
        (json!(2), json!(2))
    );
    eventually("every pledge written behind", || async {
        app.count("select count(*) from pledges").await == 4
    })
    .await;
    lose_redis(&app).await;
    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        (stream["donors"].clone(), campaign["donors"].clone()),
        (json!(2), json!(2)),
        "the same after a rebuild"
    );
    assert_eq!(stream["confirmed"], 3000);
}

#[sqlx::test]
async fn a_gateway_killed_between_its_commit_and_redis_loses_no_alert(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    eventually("the pledge written behind", || async {
        app.count("select count(*) from pledges").await == 1
    })
    .await;
    let mut overlay = Client::connect(&app.ws_url("stream", None)).await;
    assert_eq!(overlay.next().await["type"], "snapshot");

    // No relay can apply the campaign's effects while the test holds its lock: the gift
    // is committed and its alert waits in the outbox.
    let held = CampaignLock::acquire(&app.db, campaign_id(&app).await, Duration::from_secs(5))
        .await
        .expect("lock");
    let mut command = livefund();
    command
        .arg("serve")
        .env("DATABASE_URL", database_url(&db))
        .env("REDIS_URL", common::redis_url())
        .env("LIVEFUND_WEBHOOK_SECRET", common::WEBHOOK_SECRET)
        .env("LIVEFUND_LISTEN", "127.0.0.1:0")
        .env("LIVEFUND_REDIS_PREFIX", &app.prefix);
    let mut gateway = start(command, "listening on", Duration::from_secs(30));
    let event = payment_event("payment.succeeded", &pledge, "t1", 5000);
    let body = event.to_string().into_bytes();
    let now = chrono::Utc::now().timestamp();
    let signed = livefund::payments::signature::sign(
        &livefund::config::Secret::new(common::WEBHOOK_SECRET),
        now,
        &body,
    );
    let answer = reqwest::Client::new()
        .post(format!("{}/api/v1/webhooks/payments", gateway.base_url))
        .header("Livefund-Signature", signed)
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(answer.status(), StatusCode::OK, "committed");
    assert_eq!(app.count("select count(*) from outbox").await, 1);
    let killed = gateway.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
    assert!(!killed.success());
    held.release().await.expect("release");

    let gift = overlay.next_of("gift").await;
    assert_eq!(
        (gift["amount"].clone(), gift["test"].clone()),
        (json!(5000), json!(false))
    );
    assert!(
        overlay
            .silent_or_totals_for(Duration::from_millis(1500))
            .await,
        "the alert arrives once"
    );
    drained(&app).await;
    assert_eq!(logged_gifts(&app, "stream").await.len(), 1);
    assert_eq!(app.totals("stream").await.0["confirmed"], 5000);
}

#[sqlx::test]
async fn redis_lost_with_effects_pending_counts_once_and_announces_once(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let first = app.pledged("stream", 2000).await;
    let second = app.pledged("stream", 3000).await;
    let pay = payment_event("payment.succeeded", &first, "t1", 2000);
    assert_eq!(outcome(&app, &pay).await, "gift");
    drained(&app).await;

    let held = CampaignLock::acquire(&app.db, campaign_id(&app).await, Duration::from_secs(5))
        .await
        .expect("lock");
    let pay = payment_event("payment.succeeded", &second, "t2", 3000);
    assert_eq!(outcome(&app, &pay).await, "gift");
    assert_eq!(app.count("select count(*) from outbox").await, 1, "pending");
    lose_redis(&app).await;
    held.release().await.expect("release");

    // The relay finds the counters gone, a rebuild counts both gifts from the ledger, and
    // the pending one is still announced, once.
    drained(&app).await;
    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        (
            stream["confirmed"].clone(),
            stream["gifts"].clone(),
            campaign["confirmed"].clone()
        ),
        (json!(5000), json!(2), json!(5000)),
        "counted once"
    );
    let gifts = logged_gifts(&app, "stream").await;
    assert_eq!(gifts.len(), 1, "announced once: {gifts:?}");
    assert_eq!(gifts[0]["amount"], 3000);
}

#[sqlx::test]
async fn drift_repairs_racing_a_stream_of_gifts_leave_the_totals_exact(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.seed().await;
    let mut pledges = Vec::new();
    for _ in 0..300 {
        pledges.push(app.pledged("stream", 100).await);
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let repairs = {
        let (db, keys, done) = (db.clone(), keys(&app), done.clone());
        let mut redis = app.redis().await;
        tokio::spawn(async move {
            let campaign = slug("campaign");
            let mut count = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                ledger::repair_campaign(&db, &mut redis, &keys, &campaign)
                    .await
                    .expect("repair");
                count += 1;
                // Back to back, but not so tight that the relay never gets the lock.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            count
        })
    };
    // Only gifts flow, so the live total may only grow: a repair that wrote an older
    // ledger over a gift counted after its read would show as a fall.
    let watcher = {
        let (key, done) = (
            keys(&app).campaign(&slug("campaign")).totals(),
            done.clone(),
        );
        let mut redis = app.redis().await;
        tokio::spawn(async move {
            let (mut high, mut falls) = (0i64, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let now: Option<i64> = redis::cmd("HGET")
                    .arg(&key)
                    .arg("confirmed")
                    .query_async(&mut redis)
                    .await
                    .expect("hget");
                let now = now.unwrap_or(0);
                if now < high {
                    falls.push((high, now));
                }
                high = high.max(now);
            }
            falls
        })
    };
    for (chunk, batch) in pledges.chunks(10).enumerate() {
        let deliveries = batch.iter().enumerate().map(|(i, p)| {
            let event = payment_event("payment.succeeded", p, &format!("t{chunk}_{i}"), 100);
            let app = &app;
            async move { app.webhook(&event).await }
        });
        for (status, reply) in futures_util::future::join_all(deliveries).await {
            assert_eq!(
                (status, reply["outcome"].clone()),
                (StatusCode::OK, json!("gift"))
            );
        }
    }
    drained(&app).await;
    done.store(true, std::sync::atomic::Ordering::Release);
    let repaired = repairs.await.expect("repairs");
    assert!(repaired > 1, "repairs ran during the stream ({repaired})");
    let falls = watcher.await.expect("watcher");
    assert!(falls.is_empty(), "a repair lost counted gifts: {falls:?}");
    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        (
            stream["confirmed"].clone(),
            stream["gifts"].clone(),
            campaign["matched"].clone()
        ),
        (json!(30_000), json!(300), json!(15_000))
    );
    let drift = ledger::drift_of(
        &app.db,
        &mut app.redis().await,
        &keys(&app),
        &slug("campaign"),
    )
    .await
    .expect("drift");
    assert_eq!(drift, 0);
    assert_eq!(
        logged_gifts(&app, "stream").await.len(),
        300,
        "each announced once"
    );
}

/// A fund, and a campaign of it whose goal is `goal` (no sponsor), with one stream.
async fn small_campaign(app: &TestApp, goal: i64) {
    app.create_fund("fund").await;
    let mut campaign = common::campaign_body("campaign", "fund");
    campaign["goal"] = json!(goal);
    campaign.as_object_mut().map(|c| c.remove("matching"));
    let (status, body) = app.operator_post("/api/v1/campaigns", &campaign).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.create_stream("stream", "campaign").await;
}

/// The milestone frames of a stream's log, as `<scope> <percent>`.
async fn logged_milestones(app: &TestApp, stream: &str) -> Vec<String> {
    let milestones = logged(app, stream, "milestone").await;
    milestones
        .iter()
        .map(|f| format!("{} {}", f["scope"].as_str().unwrap_or("?"), f["reached"]))
        .collect()
}

#[sqlx::test]
async fn two_gateways_settling_one_campaign_reach_each_milestone_once(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let other = app.another_gateway(db).await;
    // 40 gifts of 250 reach the campaign's goal of 10,000 exactly.
    small_campaign(&app, 10_000).await;
    let mut pledges = Vec::new();
    for _ in 0..40 {
        pledges.push(app.pledged("stream", 250).await);
    }
    for (round, batch) in pledges.chunks(8).enumerate() {
        let deliveries = batch.iter().enumerate().map(|(i, p)| {
            let gateway = if i % 2 == 0 { &app } else { &other };
            let event = payment_event("payment.succeeded", p, &format!("t{round}_{i}"), 250);
            async move { gateway.webhook(&event).await }
        });
        for (status, reply) in futures_util::future::join_all(deliveries).await {
            assert_eq!(
                (status, reply["outcome"].clone()),
                (StatusCode::OK, json!("gift"))
            );
        }
    }
    drained(&app).await;
    let reached: Vec<i32> = sqlx::query_scalar(
        "select reached from milestones where stream_id is null order by reached",
    )
    .fetch_all(&app.db)
    .await
    .expect("milestones");
    assert_eq!(reached, [25, 50, 75, 100], "the campaign reached its goal");
    let campaign: Vec<String> = logged_milestones(&app, "stream")
        .await
        .into_iter()
        .filter(|m| m.starts_with("campaign"))
        .collect();
    assert_eq!(
        campaign,
        ["campaign 25", "campaign 50", "campaign 75", "campaign 100"]
    );
    let confirmed: i64 = app.count("select confirmed from campaign_confirmed").await;
    assert_eq!(confirmed, 10_000);
}

#[sqlx::test]
async fn running_totals_that_differ_from_the_ledger_are_rewritten(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let paid = app.pledged("stream", 1200).await;
    let pay = payment_event("payment.succeeded", &paid, "t1", 1200);
    assert_eq!(outcome(&app, &pay).await, "gift");
    let campaign = slug("campaign");
    let fixed = ledger::verify_running_totals(&app.db, &campaign)
        .await
        .expect("verify");
    assert_eq!(fixed, 0, "totals settlement kept are right");
    sqlx::query("update stream_confirmed set confirmed = 1")
        .execute(&app.db)
        .await
        .expect("corrupt");
    sqlx::query("delete from campaign_confirmed")
        .execute(&app.db)
        .await
        .expect("corrupt");
    let fixed = ledger::verify_running_totals(&app.db, &campaign)
        .await
        .expect("verify");
    assert_eq!(fixed, 2, "the stream's and the campaign's");
    let totals: i64 = app
        .count(
            "select ((select sum(confirmed) from stream_confirmed) \
             + (select sum(confirmed) from campaign_confirmed))::bigint",
        )
        .await;
    assert_eq!(totals, 2400);
    let fixed = ledger::verify_running_totals(&app.db, &campaign)
        .await
        .expect("verify");
    assert_eq!(fixed, 0);
}

#[sqlx::test]
async fn a_pledge_the_live_store_garbled_is_delivered_again_not_made_an_exception(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    // Unreadable, or readable but refused by the ledger's rules: the live store's record
    // is at fault, not the provider's event.
    let garblings = [
        ("amount", "eight hundred"),
        ("amount", "-800"),
        ("campaign_id", "999999"),
    ];
    for (i, (field, garbled_value)) in garblings.iter().enumerate() {
        let garbled = app.pledged("stream", 800).await;
        let fine = app.pledged("stream", 300).await;
        eventually("both written behind", || async {
            app.count("select count(*) from pledges where status = 'pending'")
                .await
                == 2
        })
        .await;
        // Known only to the live store, as before the write-behind, and garbled there.
        sqlx::query("delete from pledges where id = $1::uuid")
            .bind(&garbled)
            .execute(&app.db)
            .await
            .expect("delete");
        let hash = keys(&app).campaign(&slug("campaign")).pledge(&garbled);
        let mut redis = app.redis().await;
        let right: String = redis::cmd("HGET")
            .arg(&hash)
            .arg(field)
            .query_async(&mut redis)
            .await
            .expect("read");
        set_field(&mut redis, &hash, field, garbled_value).await;
        let bad = payment_event("payment.succeeded", &garbled, &format!("tg{i}"), 800);
        let good = payment_event("payment.succeeded", &fine, &format!("tf{i}"), 300);
        let ((bad_status, bad_reply), (good_status, good_reply)) =
            tokio::join!(app.webhook(&bad), app.webhook(&good));
        assert_eq!(
            bad_status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{field} {garbled_value}: delivered again later, not {bad_reply}"
        );
        assert_eq!(
            (good_status, good_reply["outcome"].clone()),
            (StatusCode::OK, json!("gift"))
        );
        assert_eq!(
            app.count("select count(*) from payment_exceptions").await,
            0
        );
        set_field(&mut redis, &hash, field, &right).await;
        assert_eq!(outcome(&app, &bad).await, "gift", "settled once mended");
    }
}

async fn set_field(
    redis: &mut redis::aio::MultiplexedConnection,
    hash: &str,
    field: &str,
    value: &str,
) {
    let _: () = redis::cmd("HSET")
        .arg(hash)
        .arg(field)
        .arg(value)
        .query_async(redis)
        .await
        .expect("hset");
}

#[sqlx::test]
async fn a_late_payment_for_an_expired_pledge_is_pledged_once_after_a_rebuild(db: PgPool) {
    let mut options = Options::default();
    options.limits.pledge_ttl_secs = 1;
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    let late = app.pledged("stream", 900).await;
    eventually("the pledge expired", || async {
        app.count("select count(*) from pledges where status = 'expired'")
            .await
            == 1
    })
    .await;
    let (stream, _) = app.totals("stream").await;
    assert_eq!(stream["pledged"], 0);
    // The counters are lost (the pledge's own record is not): the relay rebuilds them
    // from the ledger, which counts the late gift's pledge, before it applies the gift.
    let built = keys(&app).campaign(&slug("campaign")).built();
    let mut redis = app.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(&built)
        .query_async(&mut redis)
        .await
        .expect("del");
    let pay = payment_event("payment.succeeded", &late, "t-late", 900);
    assert_eq!(outcome(&app, &pay).await, "gift");
    drained(&app).await;
    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        [
            &stream["pledged"],
            &stream["confirmed"],
            &campaign["pledged"]
        ],
        [&json!(900), &json!(900), &json!(900)],
        "pledged once"
    );
}

/// Advisory locks held in the test's database.
async fn advisory_locks(app: &TestApp) -> i64 {
    app.count(
        "select count(*) from pg_locks l join pg_database d on d.oid = l.database \
         where l.locktype = 'advisory' and d.datname = current_database()",
    )
    .await
}

#[sqlx::test]
async fn readers_that_give_up_waiting_for_a_rebuild_leave_no_lock_behind(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = app.pledged("stream", 5000).await;
    eventually("the pledge written behind", || async {
        app.count("select count(*) from pledges").await == 1
    })
    .await;
    let held = CampaignLock::acquire(&app.db, campaign_id(&app).await, Duration::from_secs(5))
        .await
        .expect("lock");
    lose_redis(&app).await;
    // Readers wait for the counters (another holds the campaign's lock) and give up.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let gives_up = (0..40).map(|_| impatient.get(app.url("/api/v1/campaigns/campaign")).send());
    for answer in futures_util::future::join_all(gives_up).await {
        assert!(answer.is_err(), "they time out waiting");
    }
    // Meanwhile the ledger takes payments: no connection is held by the waiters.
    let pay = payment_event("payment.succeeded", &pledge, "t1", 5000);
    assert_eq!(outcome(&app, &pay).await, "gift");
    held.release().await.expect("release");
    drained(&app).await;
    let (stream, _) = app.totals("stream").await;
    assert_eq!(stream["confirmed"], 5000, "rebuilt, counted once");
    eventually("no advisory lock left", || async {
        advisory_locks(&app).await == 0
    })
    .await;
}

#[sqlx::test]
async fn a_drift_check_on_lost_counters_rebuilds_them_whole(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let paid = app.pledged("stream", 5000).await;
    app.pledged("stream", 700).await;
    let mut overlay = Client::connect(&app.ws_url("stream", None)).await;
    assert_eq!(overlay.next().await["type"], "snapshot");
    let pay = payment_event("payment.succeeded", &paid, "t1", 5000);
    assert_eq!(outcome(&app, &pay).await, "gift");
    let seen = overlay.next_of("gift").await["seq"].as_u64().expect("seq");
    drained(&app).await;
    eventually("every pledge written behind", || async {
        app.count("select count(*) from pledges").await == 2
    })
    .await;
    lose_redis(&app).await;
    let campaign = slug("campaign");
    let mut redis = app.redis().await;
    let found = ledger::check_and_repair(&app.db, &mut redis, &keys(&app), &campaign)
        .await
        .expect("check");
    assert!(found > 0);
    let seq: u64 = redis::cmd("GET")
        .arg(keys(&app).campaign(&campaign).stream_seq(&slug("stream")))
        .query_async(&mut redis)
        .await
        .expect("seq");
    assert!(
        seq > seen,
        "seqs start above what clients saw ({seq} > {seen})"
    );
    let (stream, _) = app.totals("stream").await;
    assert_eq!(
        (stream["pledged"].clone(), stream["confirmed"].clone()),
        (json!(5700), json!(5000)),
        "the pending pledge is back in pledged"
    );
}

#[sqlx::test]
async fn a_payment_and_the_refund_naming_it_on_two_gateways_settle_in_turn(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let other = app.another_gateway(db).await;
    app.seed().await;
    for i in 0..20 {
        // A payment for a pledge the service never saw: a charge, refunded at once.
        let unknown = uuid::Uuid::new_v4().to_string();
        let pay = payment_event("payment.succeeded", &unknown, &format!("w{i}"), 900);
        let back = refund_of(&unknown, &format!("rw{i}"), &format!("w{i}"), 900);
        let (a, b) = tokio::join!(app.webhook(&pay), other.webhook(&back));
        assert_eq!(
            (a.0, b.0),
            (StatusCode::OK, StatusCode::OK),
            "{} {}",
            a.1,
            b.1
        );
    }
    assert_eq!(
        app.count("select count(*) from payment_exceptions where resolved_at is null")
            .await,
        0,
        "every refund found its payment, whichever came first"
    );
    assert_eq!(
        app.count("select count(*) from exception_refunds").await,
        20
    );
}

#[sqlx::test]
async fn a_refund_naming_its_payment_but_not_its_pledge_settles_in_turn_with_it(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let other = app.another_gateway(db).await;
    app.seed().await;
    let mut pledges = Vec::new();
    for _ in 0..20 {
        pledges.push(app.pledged("stream", 700).await);
    }
    eventually("every pledge written behind", || async {
        app.count("select count(*) from pledges").await == 20
    })
    .await;
    for (i, pledge) in pledges.iter().enumerate() {
        let pay = payment_event("payment.succeeded", pledge, &format!("k{i}"), 700);
        // The refund names the payment; its pledge id is missing or wrong, so no pledge
        // row is shared with the payment.
        let wrong = if i % 2 == 0 {
            String::new()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let back = refund_of(&wrong, &format!("rk{i}"), &format!("k{i}"), 700);
        let (a, b) = tokio::join!(app.webhook(&pay), other.webhook(&back));
        assert_eq!(
            (a.0, b.0),
            (StatusCode::OK, StatusCode::OK),
            "{} {}",
            a.1,
            b.1
        );
    }
    assert_eq!(
        app.count("select count(*) from payment_exceptions where resolved_at is null")
            .await,
        0,
        "every refund found its payment, whichever came first"
    );
    assert_eq!(
        app.count("select count(*) from refunds r join gifts g on g.id = r.gift_id")
            .await,
        20,
        "each refund is on its gift"
    );
}

#[sqlx::test]
async fn an_event_the_database_refuses_on_its_own_is_recorded_and_the_rest_settle(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    // A database rule that refuses one event's data, as a constraint would.
    for sql in [
        "create function refuse_poison() returns trigger language plpgsql as $$ begin \
           if new.event_id = 'evt_poison' then \
             raise exception 'poisoned' using errcode = '22023'; \
           end if; return new; end $$",
        "create trigger refuse_poison before insert on payment_events \
         for each row execute function refuse_poison()",
    ] {
        sqlx::query(sql).execute(&app.db).await.expect(sql);
    }
    let mut pledges = Vec::new();
    for _ in 0..6 {
        pledges.push(app.pledged("stream", 5000).await);
    }
    let mut poison = payment_event("payment.succeeded", &pledges[0], "t_poison", 5000);
    poison["event_id"] = json!("evt_poison");
    let good: Vec<Value> = pledges[1..]
        .iter()
        .enumerate()
        .map(|(i, p)| payment_event("payment.succeeded", p, &format!("t{i}"), 5000))
        .collect();
    let (bad, fine) = tokio::join!(
        app.webhook(&poison),
        futures_util::future::join_all(good.iter().map(|e| app.webhook(e)))
    );
    assert_eq!(
        (bad.0, bad.1["exception"].clone()),
        (StatusCode::OK, json!("invalid_event")),
        "answered, never retried for days"
    );
    for (status, reply) in fine {
        assert_eq!(
            (status, reply["outcome"].clone()),
            (StatusCode::OK, json!("gift"))
        );
    }
    let raw: Vec<u8> =
        sqlx::query_scalar("select raw_body from payment_exceptions where kind = 'invalid_event'")
            .fetch_one(&app.db)
            .await
            .expect("recorded");
    let recorded: Value = serde_json::from_slice(&raw).expect("the body as signed");
    assert_eq!(recorded["event_id"], "evt_poison");
}
