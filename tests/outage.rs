//! PostgreSQL stopped under a stream of webhooks, on a private server: every delivery is
//! answered 503 within a couple of seconds while it is down, `/readyz` says so, nothing
//! answered 2xx is lost, and once it is back the provider's retries settle everything
//! exactly once.

mod common;

use common::tempdir::TempDir;
use common::{Options, TestApp, eventually, payment_event};
use livefund::demo::services::LocalServices;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The most a delivery may wait for its answer while the database is gone.
const PROMPT: Duration = Duration::from_secs(3);

/// Delivers every event concurrently; returns each one's status and how long it took.
async fn deliver_all(app: &TestApp, events: &[Value]) -> Vec<(StatusCode, Duration)> {
    let deliveries = events.iter().map(|e| async move {
        let started = Instant::now();
        let (status, _) = app.webhook(e).await;
        (status, started.elapsed())
    });
    futures_util::future::join_all(deliveries).await
}

#[tokio::test]
async fn postgresql_stopped_under_webhooks_answers_503_at_once_and_loses_nothing() {
    let dir = TempDir::new("outage");
    let mut services = LocalServices::start(dir.path())
        .await
        .expect("private PostgreSQL and Redis");
    let db = livefund::connect_postgres(services.database_url()).expect("pool");
    livefund::migrate(&db).await.expect("migrations");
    let options = Options {
        redis_url: services.redis_url().to_owned(),
        ..Options::default()
    };
    let app = TestApp::spawn_with(db.clone(), options).await;
    app.seed().await;
    let mut events = Vec::new();
    for i in 0..30 {
        let pledge = app.pledged("stream", 1000).await;
        events.push(payment_event(
            "payment.succeeded",
            &pledge,
            &format!("t{i}"),
            1000,
        ));
    }
    eventually("the pledges written behind", || async {
        app.count("select count(*) from pledges").await == 30
    })
    .await;

    for (status, _) in deliver_all(&app, &events[..10]).await {
        assert_eq!(status, StatusCode::OK);
    }
    services.stop_postgres().await.expect("stop PostgreSQL");
    let refused = deliver_all(&app, &events[10..]).await;
    for (status, took) in &refused {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(*took < PROMPT, "answered in {took:?}");
    }
    let (ready, _) = app.get("/readyz").await;
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);

    services
        .start_postgres_again()
        .await
        .expect("start PostgreSQL");
    // The provider delivers again what was not acknowledged, and (being at least once)
    // some of what was.
    let mut pending: Vec<Value> = events[5..].to_vec();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "retries kept failing");
        let answers = deliver_all(&app, &pending).await;
        pending = pending
            .into_iter()
            .zip(answers)
            .filter(|(_, (status, _))| *status != StatusCode::OK)
            .map(|(event, _)| event)
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ready, _) = app.get("/readyz").await;
    assert_eq!(ready, StatusCode::OK);
    assert_eq!(
        app.count("select count(*) from gifts").await,
        30,
        "each once"
    );
    assert_eq!(app.count("select count(*) from payment_events").await, 30);
    eventually("the outbox applied", || async {
        app.count("select count(*) from outbox").await == 0
    })
    .await;
    let (stream, _) = app.totals("stream").await;
    assert_eq!(stream["confirmed"], 30_000);
    assert_eq!(stream["gifts"], 30);
    app.stop().await;
    db.close().await;
    services.stop().await.expect("stop the services");
}
