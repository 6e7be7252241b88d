//! The operator API (funds, campaigns, streams) and the public read API, against real
//! PostgreSQL and Redis, including every error class of CONTRACT §3 they can produce.

mod common;

use common::{OPERATOR_TOKEN, Options, TestApp, campaign_body, code, fund_body};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

#[sqlx::test]
async fn creates_and_reads_fund_campaign_and_stream(db: PgPool) {
    let app = TestApp::spawn(db).await;

    let fund = app.create_fund("ciai-zhugu").await;
    assert_eq!(fund["slug"], "ciai-zhugu");
    assert_eq!(fund["designations"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        fund["designations"][0],
        json!({"code": "education", "name": "教育助学"})
    );

    let campaign = app.create_campaign("warm-winter", "ciai-zhugu").await;
    assert_eq!(campaign["fund"], "ciai-zhugu");
    assert_eq!(campaign["currency"], "CNY");
    assert_eq!(campaign["status"], "live");
    assert_eq!(
        campaign["matching"],
        json!({"sponsor": "暖阳科技", "ratio_percent": 50, "cap": 1_000_000, "remaining": 1_000_000})
    );

    let stream = app.create_stream("xiangxi-live-01", "warm-winter").await;
    assert_eq!(stream["campaign"], "warm-winter");
    assert_eq!(stream["goal"], 300_000);
    let key = stream["moderation_key"].as_str().expect("a moderation key");

    let (status, campaign) = app.get("/api/v1/campaigns/warm-winter").await;
    assert_eq!(status, StatusCode::OK);
    let codes: Vec<&str> = campaign["designations"]
        .as_array()
        .expect("designations")
        .iter()
        .filter_map(|d| d["code"].as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "education",
            "daily_care",
            "counselling",
            "enrichment",
            "social_practice",
            "employment"
        ]
    );
    assert_eq!(campaign["streams"][0]["slug"], "xiangxi-live-01");
    let zero = json!({"goal": 10_000_000, "pledged": 0, "confirmed": 0, "matched": 0,
                      "refunded": 0, "gifts": 0, "donors": 0, "matching_remaining": 1_000_000});
    assert_eq!(campaign["totals"], zero);

    let (status, read) = app.get("/api/v1/streams/xiangxi-live-01").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["campaign"], "warm-winter");
    assert_eq!(read["campaign_totals"], zero);
    assert_eq!(read["totals"]["goal"], 300_000);
    assert!(
        read.get("moderation_key").is_none(),
        "the key is shown only once"
    );

    // Only the key's hash is stored.
    let stored: Vec<u8> = sqlx::query_scalar(
        "select moderation_key_hash from streams where slug = 'xiangxi-live-01'",
    )
    .fetch_one(&app.db)
    .await
    .expect("stream row");
    assert_eq!(stored, Sha256::digest(key.as_bytes()).to_vec());
}

#[sqlx::test]
async fn totals_come_from_the_live_counters(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut redis = app.redis().await;
    let campaign_key = format!("{}:{{c:campaign}}:totals", app.prefix);
    let stream_key = format!("{}:{{c:campaign}}:s:stream:totals", app.prefix);
    let _: () = redis
        .hset_multiple(
            &campaign_key,
            &[("pledged", 700), ("confirmed", 500), ("gifts", 2)],
        )
        .await
        .expect("hset");
    let _: () = redis
        .hset_multiple(
            &stream_key,
            &[("confirmed", 300), ("matched", 150), ("refunded", 20)],
        )
        .await
        .expect("hset");
    let _: () = redis
        .pfadd(
            format!("{}:{{c:campaign}}:donors", app.prefix),
            &["a", "b", "c"],
        )
        .await
        .expect("pfadd");

    let (_, stream) = app.get("/api/v1/streams/stream").await;
    assert_eq!(
        stream["totals"],
        json!({"goal": 300_000, "pledged": 0, "confirmed": 300, "matched": 150,
               "refunded": 20, "gifts": 0, "donors": 0})
    );
    assert_eq!(
        stream["campaign_totals"],
        json!({"goal": 10_000_000, "pledged": 700, "confirmed": 500, "matched": 0,
               "refunded": 0, "gifts": 2, "donors": 3, "matching_remaining": 1_000_000})
    );
    let (_, campaign) = app.get("/api/v1/campaigns/campaign").await;
    assert_eq!(campaign["totals"]["confirmed"], 500);
    assert_eq!(campaign["streams"][0]["totals"]["matched"], 150);
}

#[sqlx::test]
async fn malformed_json_and_unknown_fields_are_400_naming_the_field(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app
        .post_raw(
            "/api/v1/funds",
            b"{\"slug\": ".to_vec(),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "invalid_request");

    let mut fund = fund_body("ciai");
    fund["colour"] = json!("red");
    let (status, body) = app.operator_post("/api/v1/funds", &fund).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "colour");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("colour"))
    );

    app.create_fund("ciai").await;
    let mut campaign = campaign_body("c1", "ciai");
    campaign["matching"]["cap"] = json!("lots");
    let (status, body) = app.operator_post("/api/v1/campaigns", &campaign).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "matching.cap");

    let mut campaign = campaign_body("c1", "ciai");
    campaign["goal"] = json!(12.5);
    let (status, body) = app.operator_post("/api/v1/campaigns", &campaign).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a float is never money");
    assert_eq!(body["error"]["field"], "goal");

    let mut campaign = campaign_body("c1", "ciai");
    campaign.as_object_mut().map(|c| c.remove("title"));
    let (status, body) = app.operator_post("/api/v1/campaigns", &campaign).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("title"))
    );
}

#[sqlx::test]
async fn bad_slugs_and_amounts_are_422(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app
        .operator_post("/api/v1/funds", &fund_body("Not A Slug"))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    assert_eq!(body["error"]["field"], "slug");

    let mut fund = fund_body("ciai");
    fund["designations"][1]["code"] = json!("education");
    let (status, body) = app.operator_post("/api/v1/funds", &fund).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "designations[1].code");

    app.create_fund("ciai").await;
    let cases = [
        ("goal", json!(0), "goal"),
        ("min_amount", json!(-5), "min_amount"),
        ("max_amount", json!(50), "max_amount"),
        ("currency", json!("rmb"), "currency"),
        ("fund", json!("no-such-fund"), "fund"),
        ("ends_at", json!("2020-01-01T00:00:00Z"), "ends_at"),
    ];
    for (key, value, field) in cases {
        let mut campaign = campaign_body("c1", "ciai");
        campaign["starts_at"] = json!("2026-01-01T00:00:00Z");
        campaign[key] = value;
        let (status, body) = app.operator_post("/api/v1/campaigns", &campaign).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{key}: {body}");
        assert_eq!(body["error"]["field"], field, "{key}: {body}");
    }
    for (key, value) in [("ratio_percent", json!(0)), ("cap", json!(0))] {
        let mut campaign = campaign_body("c1", "ciai");
        campaign["matching"][key] = value;
        let (status, body) = app.operator_post("/api/v1/campaigns", &campaign).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{key}: {body}");
        assert_eq!(body["error"]["field"], format!("matching.{key}"));
    }

    app.create_campaign("c1", "ciai").await;
    let (status, body) = app
        .operator_post(
            "/api/v1/campaigns/c1/streams",
            &json!({"slug": "s1", "streamer": "x", "goal": -1}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    let (status, _) = app
        .operator_post(
            "/api/v1/campaigns/c1/streams",
            &json!({"slug": "s1", "streamer": "   "}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let count: i64 = sqlx::query_scalar("select count(*) from campaigns")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 1, "no refused campaign was written");
}

#[sqlx::test]
async fn duplicate_slugs_are_409(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let (status, body) = app.operator_post("/api/v1/funds", &fund_body("fund")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_exists")
    );
    let (status, body) = app
        .operator_post("/api/v1/campaigns", &campaign_body("campaign", "fund"))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_exists")
    );
    let (status, body) = app
        .operator_post(
            "/api/v1/campaigns/campaign/streams",
            &json!({"slug": "stream", "streamer": "someone else"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "already_exists")
    );
}

#[sqlx::test]
async fn unknown_campaigns_and_streams_are_404(db: PgPool) {
    let app = TestApp::spawn(db).await;
    for path in [
        "/api/v1/campaigns/nope",
        "/api/v1/streams/nope",
        "/api/v1/campaigns/NOT_A_SLUG",
        "/api/v1/no-such-route",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    let (status, body) = app
        .operator_post(
            "/api/v1/campaigns/nope/streams",
            &json!({"slug": "s1", "streamer": "x"}),
        )
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[sqlx::test]
async fn bodies_over_64_kib_are_413(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let mut fund = fund_body("ciai");
    fund["name"] = json!("a".repeat(70 * 1024));
    let (status, body) = app
        .post_raw(
            "/api/v1/funds",
            fund.to_string().into_bytes(),
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let count: i64 = sqlx::query_scalar("select count(*) from funds")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[sqlx::test]
async fn operator_calls_need_the_token_and_change_nothing_without_it(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let attempts = [
        ("/api/v1/funds", fund_body("other-fund")),
        ("/api/v1/campaigns", campaign_body("other-campaign", "fund")),
        (
            "/api/v1/campaigns/campaign/streams",
            json!({"slug": "other-stream", "streamer": "x"}),
        ),
    ];
    for (path, body) in &attempts {
        for token in [None, Some("wrong-token"), Some("")] {
            let (status, reply) = app
                .post_raw(path, body.to_string().into_bytes(), token)
                .await;
            assert_eq!(
                (status, code(&reply)),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "{path} with {token:?}"
            );
        }
    }
    // A refused call is refused before its body is even read.
    let (status, _) = app
        .post_raw("/api/v1/funds", b"not json".to_vec(), Some("wrong-token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let counts: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from funds), (select count(*) from campaigns), \
         (select count(*) from streams)",
    )
    .fetch_one(&app.db)
    .await
    .expect("counts");
    assert_eq!(counts, (1, 1, 1), "nothing changed");
}

#[sqlx::test]
async fn without_a_configured_token_the_operator_api_is_disabled(db: PgPool) {
    let options = Options {
        operator_token: None,
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    let (status, body) = app.operator_post("/api/v1/funds", &fund_body("ciai")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disabled"))
    );
}
