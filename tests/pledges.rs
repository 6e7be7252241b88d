//! Pledge intake over HTTP against real Redis and PostgreSQL: acceptance, every refusal
//! (with nothing counted), idempotency, write-behind, expiry, rate and Origin limits.

mod common;

use common::{Options, TestApp, code, eventually, pledge_body};
use livefund::config::Limits;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

async fn pledge_rows(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from pledges")
        .fetch_one(&app.db)
        .await
        .expect("count")
}

#[sqlx::test]
async fn a_pledge_is_accepted_counted_and_written_behind(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let body = pledge_body("stream", 5000);
    let (status, accepted) = app.pledge(&body).await;
    assert_eq!(status, StatusCode::CREATED, "{accepted}");
    assert_eq!(accepted["status"], "pending");
    assert_eq!(accepted["amount"], 5000);
    assert_eq!(accepted["currency"], "CNY");
    let id = accepted["pledge_id"]
        .as_str()
        .expect("pledge id")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(
        accepted["checkout_url"],
        app.url(&format!("/sandbox/checkout/{id}"))
    );
    assert!(
        accepted["expires_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let (status, read) = app.get(&format!("/api/v1/pledges/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["status"], "pending");
    assert_eq!(read["amount"], 5000);
    assert_eq!(read["stream"], "stream");
    assert_eq!(read["designation"], "education");

    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        (stream["pledged"].clone(), stream["donors"].clone()),
        (json!(5000), json!(0)),
        "donors are those with a settled gift"
    );
    assert_eq!(campaign["pledged"], 5000);
    assert_eq!(stream["confirmed"], 0, "a pledge is not money until paid");

    eventually("the pledge row", || async { pledge_rows(&app).await == 1 }).await;
    let row: (
        String,
        i64,
        String,
        Option<String>,
        Option<String>,
        bool,
        String,
    ) = sqlx::query_as(
        "select p.status, p.amount::bigint, s.slug::text, p.designation, p.donor_name, \
         p.anonymous, p.currency::text from pledges p join streams s on s.id = p.stream_id \
         where p.id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .expect("pledge row");
    assert_eq!(
        row,
        (
            "pending".into(),
            5000,
            "stream".into(),
            Some("education".into()),
            Some("小明".into()),
            false,
            "CNY".into()
        )
    );

    let (status, body) = app
        .get(&format!("/api/v1/pledges/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[sqlx::test]
async fn every_refusal_has_its_code_and_counts_nothing(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let with = |key: &str, value: serde_json::Value| {
        let mut body = pledge_body("stream", 5000);
        body[key] = value;
        body
    };
    let cases = [
        (
            with("amount", json!(99)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_out_of_range",
        ),
        (
            with("amount", json!(500_001)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_out_of_range",
        ),
        (
            with("amount", json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_out_of_range",
        ),
        (
            with("currency", json!("USD")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency_mismatch",
        ),
        (
            with("designation", json!("sports")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_designation",
        ),
        (
            with("donor_name", json!("名".repeat(33))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            with("message", json!("加".repeat(141))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            with("idempotency_key", json!("short")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            with("amount", json!(12.5)),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("colour", json!("red")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("stream", json!("no-such-stream")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    for (body, status, expected) in cases {
        let (got, reply) = app.pledge(&body).await;
        assert_eq!((got, code(&reply)), (status, expected), "{body} → {reply}");
    }
    // Unicode limits count characters: 32 and 140 are fine.
    let mut body = pledge_body("stream", 5000);
    body["donor_name"] = json!("名".repeat(32));
    body["message"] = json!("加".repeat(140));
    body["amount"] = json!(100);
    let (status, _) = app.pledge(&body).await;
    assert_eq!(status, StatusCode::CREATED);

    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        (stream["pledged"].clone(), campaign["pledged"].clone()),
        (json!(100), json!(100))
    );
    eventually("one pledge row", || async { pledge_rows(&app).await == 1 }).await;
}

#[sqlx::test]
async fn campaigns_not_live_or_closed_refuse_pledges(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.create_fund("fund").await;
    let mut later = common::campaign_body("later", "fund");
    later["starts_at"] = json!("2099-01-01T00:00:00Z");
    let (status, _) = app.operator_post("/api/v1/campaigns", &later).await;
    assert_eq!(status, StatusCode::CREATED);
    app.create_stream("later-live", "later").await;
    let (status, body) = app.pledge(&pledge_body("later-live", 5000)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "campaign_not_live")
    );

    app.create_campaign("closed", "fund").await;
    app.create_stream("closed-live", "closed").await;
    app.close_forced("closed").await;
    let (status, body) = app.pledge(&pledge_body("closed-live", 5000)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "campaign_closed")
    );
    assert_eq!(app.totals("closed-live").await.0["pledged"], 0);
}

#[sqlx::test]
async fn the_same_key_gives_the_same_pledge_and_another_body_a_conflict(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.seed().await;
    // A second gateway on the same PostgreSQL and Redis (same prefix): one cluster.
    let other = app.another_gateway(db).await;
    let body = pledge_body("stream", 5000);
    let (status, first) = app.pledge(&body).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, again) = app.pledge(&body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first, "a retry gets the first answer");
    let (status, elsewhere) = other.pledge(&body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        elsewhere["pledge_id"], first["pledge_id"],
        "across gateways too"
    );

    let mut changed = body.clone();
    changed["amount"] = json!(6000);
    for gateway in [&app, &other] {
        let (status, reply) = gateway.pledge(&changed).await;
        assert_eq!(
            (status, code(&reply)),
            (StatusCode::CONFLICT, "idempotency_conflict")
        );
    }
    assert_eq!(
        app.totals("stream").await.0["pledged"],
        5000,
        "counted once"
    );
    // Written behind once, though each retry queued it again.
    eventually("the pledge row", || async { pledge_rows(&app).await == 1 }).await;
    let status: String = sqlx::query_scalar("select status from pledges")
        .fetch_one(&app.db)
        .await
        .expect("row");
    assert_eq!(status, "pending");
}

#[sqlx::test]
async fn a_pending_pledge_expires_and_leaves_pledged(db: PgPool) {
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
    let (_, accepted) = app.pledge(&pledge_body("stream", 5000)).await;
    let id = accepted["pledge_id"].as_str().expect("id").to_owned();
    assert_eq!(app.totals("stream").await.0["pledged"], 5000);
    eventually("the pledge to expire", || async {
        app.get(&format!("/api/v1/pledges/{id}")).await.1["status"] == "expired"
    })
    .await;
    let (stream, campaign) = app.totals("stream").await;
    assert_eq!(
        (stream["pledged"].clone(), campaign["pledged"].clone()),
        (json!(0), json!(0))
    );
    eventually("the expired status in PostgreSQL", || async {
        sqlx::query_scalar::<_, String>("select status from pledges")
            .fetch_optional(&app.db)
            .await
            .ok()
            .flatten()
            .as_deref()
            == Some("expired")
    })
    .await;
}

#[sqlx::test]
async fn one_address_is_rate_limited(db: PgPool) {
    let options = Options {
        limits: Limits {
            http_pledges_per_ip: 3,
            ..Limits::default()
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    for _ in 0..3 {
        let (status, _) = app.pledge(&pledge_body("stream", 100)).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = app.pledge(&pledge_body("stream", 100)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert_eq!(app.totals("stream").await.0["pledged"], 300);
}

#[sqlx::test]
async fn browsers_from_foreign_origins_are_refused(db: PgPool) {
    let options = Options {
        allowed_origins: vec!["https://overlay.example".into()],
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    let send = |origin: &'static str| {
        app.client
            .post(app.url("/api/v1/pledges"))
            .header("origin", origin)
            .json(&pledge_body("stream", 100))
            .send()
    };
    let refused = send("https://evil.example").await.expect("post");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let allowed = send("https://overlay.example").await.expect("post");
    assert_eq!(allowed.status(), StatusCode::CREATED);
    assert_eq!(app.totals("stream").await.0["pledged"], 100);
}

#[sqlx::test]
async fn allowed_origins_may_pledge_from_a_browser(db: PgPool) {
    let options = Options {
        allowed_origins: vec!["https://overlay.example".into()],
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/pledges"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://overlay.example")
        .await
        .expect("preflight");
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://overlay.example")
    );
    let foreign = preflight("https://evil.example").await.expect("preflight");
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
