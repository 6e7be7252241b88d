//! Health, readiness (503 when PostgreSQL or Redis does not answer), metrics and the
//! OpenAPI document.

mod common;

use common::{Options, TestApp, code, eventually};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::process::{Child, Command, Stdio};

#[sqlx::test]
async fn healthz_readyz_metrics_and_openapi(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"postgres": "ok", "redis": "ok"}))
    );

    app.seed().await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"livefund_http_requests_total{method="POST",route="/api/v1/funds",status="201"}"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE livefund_http_requests_total counter"));

    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/v1/funds",
        "/api/v1/campaigns",
        "/api/v1/campaigns/{campaign}",
        "/api/v1/campaigns/{campaign}/streams",
        "/api/v1/streams/{stream}",
        "/readyz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("Totals").is_some());
}

#[sqlx::test]
async fn readyz_is_503_while_redis_is_down_and_recovers(db: PgPool) {
    let port = free_port();
    let mut redis = start_redis(port);
    wait_for_redis(port).await;
    let options = Options {
        redis_url: format!("redis://127.0.0.1:{port}"),
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);

    redis.kill().expect("kill redis");
    redis.wait().expect("reap redis");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"postgres": "ok", "redis": "unavailable"}));
    // Reads that need the live counters say so, and never as a 500.
    let (status, body) = app.get("/api/v1/campaigns/campaign").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );

    let mut redis = start_redis(port);
    wait_for_redis(port).await;
    eventually("readyz to recover after Redis came back", || async {
        app.get("/readyz").await.0 == StatusCode::OK
    })
    .await;
    redis.kill().expect("kill redis");
    redis.wait().expect("reap redis");
}

#[sqlx::test]
async fn readyz_is_503_while_postgres_is_unreachable(db: PgPool) {
    // A pool aimed at a port nobody listens on.
    let unreachable =
        livefund::connect_postgres(&format!("postgres://postgres@127.0.0.1:{}/x", free_port()))
            .expect("lazy pool");
    drop(db);
    let app = TestApp::spawn(unreachable).await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"postgres": "unavailable", "redis": "ok"}));
    let (status, body) = app.get("/api/v1/campaigns/anything").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("127.0.0.1"),
        "no connection details leak: {message}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_redis(port: u16) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed")
}

async fn wait_for_redis(port: u16) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
    eventually("redis-server to start", || async {
        match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;
}
