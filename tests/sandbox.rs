//! The sandbox payment provider: its checkout actions pay, fail and refund pledges through
//! the real signed webhook over HTTP, retry like a provider, auto-pay, and do not exist
//! when sandbox payments are off.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use common::{Options, TestApp, WEBHOOK_SECRET, code, eventually, pledge_body};
use livefund::config::{Config, Limits, Secret, WebhookSecrets};
use livefund::domain::PledgeStatus;
use livefund::payments::signature;
use livefund::pledges::PledgeView;
use livefund::sandbox::{SandboxError, SandboxProvider, processing_fee};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;

async fn sandbox_app(db: PgPool) -> TestApp {
    let options = Options {
        sandbox_payments: true,
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    app
}

/// A new pledge of `amount` on the seeded stream, over HTTP.
async fn pledged(app: &TestApp, amount: i64) -> String {
    let (status, body) = app.pledge(&pledge_body("stream", amount)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["pledge_id"].as_str().expect("a pledge id").to_owned()
}

async fn checkout(app: &TestApp, pledge: &str, action: &str, body: &str) -> (StatusCode, Value) {
    app.post_raw(
        &format!("/sandbox/checkout/{pledge}/{action}"),
        body.as_bytes().to_vec(),
        None,
    )
    .await
}

/// The pledge's status, as its viewer reads it.
async fn status_of(app: &TestApp, pledge: &str) -> String {
    let (status, body) = app.get(&format!("/api/v1/pledges/{pledge}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["status"].as_str().unwrap_or("<none>").to_owned()
}

/// Waits (bounded) until the pledge's status is `want`; fails the test otherwise.
async fn status_becomes(app: &TestApp, pledge: &str, want: &str) -> String {
    eventually(&format!("pledge {pledge} to be {want}"), || async {
        status_of(app, pledge).await == want
    })
    .await;
    want.to_owned()
}

/// Pays `pledge` through the sandbox and waits until it reads `confirmed`.
async fn paid(app: &TestApp, pledge: &str) -> Value {
    let (status, body) = checkout(app, pledge, "pay", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhook_response"]["outcome"], "gift", "{body}");
    assert_eq!(status_becomes(app, pledge, "confirmed").await, "confirmed");
    body
}

#[sqlx::test]
async fn paying_settles_one_gift_through_the_signed_webhook(db: PgPool) {
    let app = sandbox_app(db).await;
    let pledge = pledged(&app, 5000).await;

    let (status, body) = checkout(&app, &pledge, "pay", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhook_status"], 200, "{body}");
    assert_eq!(body["webhook_response"]["outcome"], "gift", "{body}");
    let event = &body["event"];
    assert_eq!(event["type"], "payment.succeeded");
    assert_eq!(event["pledge_id"], pledge.as_str());
    assert_eq!(event["amount"], 5000);
    assert_eq!(event["currency"], "CNY");
    assert_eq!(event["fee"], 30);
    assert_eq!(event["test"], false);
    let event_id = event["event_id"].as_str().expect("event id");
    let txn = event["provider_txn_id"].as_str().expect("txn id");
    assert!(
        event_id.starts_with("evt_sbx_") && event_id.len() == 40,
        "{event_id}"
    );
    assert!(txn.starts_with("txn_sbx_") && txn.len() == 40, "{txn}");
    assert_eq!(body["webhook_response"]["event_id"], event_id);

    assert_eq!(
        status_becomes(&app, &pledge, "confirmed").await,
        "confirmed"
    );
    let gifts: Vec<(String, i64, i64, String)> =
        sqlx::query_as("select pledge_id::text, amount::bigint, fee, provider_txn_id from gifts")
            .fetch_all(&app.db)
            .await
            .expect("gifts");
    assert_eq!(gifts, [(pledge.clone(), 5000, 30, txn.to_owned())]);
    let recorded = app
        .count(&format!(
            "select count(*) from payment_events where event_id = '{event_id}'"
        ))
        .await;
    assert_eq!(recorded, 1, "the webhook recorded the sandbox's event");

    // Paying again is refused before anything is sent; never a second gift.
    let (status, again) = checkout(&app, &pledge, "pay", "").await;
    assert_eq!(
        (status, code(&again)),
        (StatusCode::CONFLICT, "invalid_request"),
        "{again}"
    );
    let message = again["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("confirmed") && message.contains("pending"),
        "{message}"
    );
    // So is declining a paid pledge.
    let (status, _) = checkout(&app, &pledge, "fail", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(app.count("select count(*) from gifts").await, 1);
    assert_eq!(app.count("select count(*) from payment_events").await, 1);

    let (totals, _) = app.totals("stream").await;
    assert_eq!(totals["confirmed"], 5000, "{totals}");
    assert_eq!(totals["gifts"], 1, "{totals}");
}

#[sqlx::test]
async fn failing_declines_a_pending_pledge(db: PgPool) {
    let app = sandbox_app(db).await;
    let pledge = pledged(&app, 5000).await;

    let (status, body) = checkout(&app, &pledge, "fail", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhook_status"], 200, "{body}");
    assert_eq!(body["webhook_response"]["outcome"], "failed", "{body}");
    assert_eq!(body["event"]["type"], "payment.failed");
    assert_eq!(body["event"]["fee"], 0);
    assert_eq!(status_becomes(&app, &pledge, "failed").await, "failed");

    for action in ["pay", "fail", "refund"] {
        let (status, reply) = checkout(&app, &pledge, action, "").await;
        assert_eq!(status, StatusCode::CONFLICT, "{action}: {reply}");
    }
    assert_eq!(app.count("select count(*) from gifts").await, 0);
}

#[sqlx::test]
async fn refunds_take_a_gift_back_in_part_or_whole(db: PgPool) {
    let app = sandbox_app(db).await;
    let pledge = pledged(&app, 5000).await;

    // Only a paid pledge can be refunded.
    let (status, body) = checkout(&app, &pledge, "refund", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    paid(&app, &pledge).await;

    for (bad, want) in [
        (r#"{"amount": 0}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": 5001}"#, StatusCode::UNPROCESSABLE_ENTITY),
        (r#"{"amount": "10"}"#, StatusCode::BAD_REQUEST),
        (r#"{"amuont": 10}"#, StatusCode::BAD_REQUEST),
        ("{", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = checkout(&app, &pledge, "refund", bad).await;
        assert_eq!(status, want, "{bad}: {body}");
        assert_eq!(code(&body), "invalid_request", "{bad}: {body}");
    }
    assert_eq!(app.count("select count(*) from refunds").await, 0);

    let (status, body) = checkout(&app, &pledge, "refund", r#"{"amount": 2000}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhook_status"], 200, "{body}");
    assert_eq!(body["webhook_response"]["outcome"], "refund", "{body}");
    assert_eq!(body["event"]["type"], "refund.succeeded");
    assert_eq!(body["event"]["amount"], 2000);
    let refund_txn = body["event"]["provider_txn_id"].as_str().expect("txn");
    assert!(refund_txn.starts_with("txn_sbx_rf_"), "{refund_txn}");
    let refunds: Vec<(i64, String)> =
        sqlx::query_as("select amount::bigint, provider_txn_id from refunds")
            .fetch_all(&app.db)
            .await
            .expect("refunds");
    assert_eq!(refunds, [(2000, refund_txn.to_owned())]);
    // A partial refund leaves the pledge confirmed.
    let (_, read) = app.get(&format!("/api/v1/pledges/{pledge}")).await;
    assert_eq!(read["status"], "confirmed", "{read}");

    let (status, body) = checkout(&app, &pledge, "refund", r#"{"amount": 3000}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["webhook_response"]["outcome"], "refund", "{body}");
    assert_eq!(status_becomes(&app, &pledge, "refunded").await, "refunded");
    assert_eq!(app.count("select count(*) from refunds").await, 2);
    let (status, body) = checkout(&app, &pledge, "refund", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Without a body, the whole amount.
    let whole = pledged(&app, 1200).await;
    paid(&app, &whole).await;
    let (status, body) = checkout(&app, &whole, "refund", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event"]["amount"], 1200);
    assert_eq!(body["webhook_response"]["outcome"], "refund", "{body}");
    assert_eq!(status_becomes(&app, &whole, "refunded").await, "refunded");
    assert_eq!(app.count("select count(*) from refunds").await, 3);
    assert_eq!(app.count("select count(*) from gifts").await, 2);
}

#[sqlx::test]
async fn unknown_pledges_are_not_found(db: PgPool) {
    let app = sandbox_app(db).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for pledge in [unknown.as_str(), "not-a-uuid"] {
        for action in ["pay", "fail", "refund"] {
            let (status, body) = checkout(&app, pledge, action, "").await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::NOT_FOUND, "not_found"),
                "{pledge}/{action}: {body}"
            );
        }
    }
    assert_eq!(app.count("select count(*) from payment_events").await, 0);
}

#[sqlx::test]
async fn without_sandbox_payments_the_checkout_does_not_exist(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let pledge = pledged(&app, 5000).await;
    for action in ["pay", "fail", "refund"] {
        let (status, body) = checkout(&app, &pledge, action, "").await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{action}: {body}"
        );
    }
    assert_eq!(app.count("select count(*) from payment_events").await, 0);
    let (_, read) = app.get(&format!("/api/v1/pledges/{pledge}")).await;
    assert_eq!(read["status"], "pending");
}

#[sqlx::test]
async fn the_sandbox_is_in_the_openapi_document(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for action in ["pay", "fail", "refund"] {
        let path = format!("/sandbox/checkout/{{pledge_id}}/{action}");
        assert_eq!(doc["paths"][&path]["post"]["tags"][0], "sandbox", "{path}");
    }
}

fn config_for(public_url: String) -> Config {
    Config {
        public_url,
        operator_token: None,
        webhook_secrets: WebhookSecrets::new(vec![Secret::new(WEBHOOK_SECRET)]).expect("a secret"),
        allowed_origins: Vec::new(),
        sandbox_payments: true,
        redis_prefix: "unused".into(),
        checkout_url: String::new(),
        limits: Limits::default(),
    }
}

fn a_pledge(amount: i64) -> PledgeView {
    PledgeView {
        pledge_id: uuid::Uuid::new_v4().to_string(),
        status: PledgeStatus::Pending,
        amount,
        currency: "CNY".into(),
        campaign: "campaign".into(),
        stream: "stream".into(),
        designation: None,
        anonymous: false,
        checkout_url: String::new(),
        expires_at: chrono::Utc::now(),
    }
}

/// A fake webhook that answers each delivery with the next status of `answers` (the
/// last one repeated), recording every delivery's body and signature check.
async fn fake_webhook(answers: Vec<u16>) -> (String, Arc<Mutex<Vec<(Value, bool)>>>) {
    let seen: Arc<Mutex<Vec<(Value, bool)>>> = Arc::default();
    let recorded = seen.clone();
    let app = axum::Router::new().route(
        "/api/v1/webhooks/payments",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = recorded.clone();
            let answers = answers.clone();
            async move {
                let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
                let secrets =
                    WebhookSecrets::new(vec![Secret::new(WEBHOOK_SECRET)]).expect("a secret");
                let signed =
                    signature::verify(header, &body, &secrets, chrono::Utc::now().timestamp())
                        .is_ok();
                let event: Value = serde_json::from_slice(&body).expect("a JSON event");
                let n = {
                    let mut seen = seen.lock().expect("lock");
                    seen.push((event, signed));
                    seen.len()
                };
                let status = answers[(n - 1).min(answers.len() - 1)];
                (
                    StatusCode::from_u16(status).expect("a status"),
                    axum::Json(json!({"outcome": "gift", "attempt": n})),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), seen)
}

#[tokio::test]
async fn deliveries_are_retried_after_a_5xx_with_the_same_event() {
    let (url, seen) = fake_webhook(vec![503, 500, 200]).await;
    let provider = SandboxProvider::new(&config_for(url.clone())).expect("a provider");
    assert_eq!(
        provider.webhook_url(),
        format!("{}api/v1/webhooks/payments", url)
    );
    let pledge = a_pledge(12_345);
    let delivery = provider
        .pay(&pledge)
        .await
        .expect("delivered on the third try");
    assert_eq!(delivery.status, 200);
    assert_eq!(delivery.body["attempt"], 3);
    assert_eq!(delivery.outcome(), Some("gift"));
    assert_eq!(delivery.event.fee, processing_fee(12_345));
    assert_eq!(delivery.event.fee, 74);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    for (event, signed) in &seen {
        assert!(signed, "every delivery is signed");
        assert_eq!(event, &seen[0].0, "the same event every time");
    }
    assert_eq!(seen[0].0["event_id"], delivery.event.event_id.as_str());
}

#[tokio::test]
async fn a_4xx_is_final_and_a_persistent_5xx_gives_up_after_three_attempts() {
    let (url, seen) = fake_webhook(vec![401]).await;
    let provider = SandboxProvider::new(&config_for(url)).expect("a provider");
    let delivery = provider.fail(&a_pledge(100)).await.expect("an answer");
    assert_eq!(delivery.status, 401);
    assert!(!delivery.accepted());
    assert_eq!(seen.lock().expect("lock").len(), 1, "no retry after a 4xx");

    let (url, seen) = fake_webhook(vec![503]).await;
    let provider = SandboxProvider::new(&config_for(url)).expect("a provider");
    match provider.pay(&a_pledge(100)).await {
        Err(SandboxError::Rejected {
            attempts, status, ..
        }) => assert_eq!((attempts, status), (3, 503)),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(seen.lock().expect("lock").len(), 3);

    // Nobody listening: three attempts, then unreachable.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let provider = SandboxProvider::new(&config_for(format!("http://{addr}"))).expect("a provider");
    match provider.refund(&a_pledge(100), "txn_paid", 100, None).await {
        Err(SandboxError::Unreachable { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected unreachable, got {other:?}"),
    }
}

/// How many auto-payments ended with `result`, per the gateway's metrics.
async fn autopaid(app: &TestApp, result: &str) -> u64 {
    let (status, body) = app.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap_or_default();
    let label = format!("result=\"{result}\"");
    text.lines()
        .filter(|l| l.starts_with("livefund_sandbox_autopay_total") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[sqlx::test]
async fn autopay_pays_a_pledge_still_pending_after_the_delay(db: PgPool) {
    let options = Options {
        sandbox_payments: true,
        limits: Limits {
            http_pledges_per_ip: 0,
            // Long enough that a pledge is seen pending, and declined, well before it.
            sandbox_autopay_ms: 1500,
            ..Limits::default()
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    let (paid_before, skipped_before) = (
        autopaid(&app, "paid").await,
        autopaid(&app, "skipped").await,
    );
    let pending = pledged(&app, 5000).await;
    let declined = pledged(&app, 3000).await;
    assert_eq!(
        status_of(&app, &pending).await,
        "pending",
        "not before the delay"
    );
    let (status, body) = checkout(&app, &declined, "fail", "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(status_becomes(&app, &declined, "failed").await, "failed");

    assert_eq!(
        status_becomes(&app, &pending, "confirmed").await,
        "confirmed"
    );
    // Both auto-payments have run: one paid, one found its pledge declined and left it.
    eventually("both auto-payments", || async {
        autopaid(&app, "paid").await == paid_before + 1
            && autopaid(&app, "skipped").await == skipped_before + 1
    })
    .await;
    assert_eq!(app.count("select count(*) from gifts").await, 1);
    assert_eq!(
        status_of(&app, &declined).await,
        "failed",
        "a declined pledge is not paid"
    );
}
