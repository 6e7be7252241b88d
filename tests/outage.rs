//! PostgreSQL stopped under a stream of webhooks, on a private server: every delivery is
//! answered 503 within a couple of seconds while it is down, `/readyz` says so, nothing
//! answered 2xx is lost, and once it is back the provider's retries settle everything
//! exactly once.

mod common;

use common::tempdir::TempDir;
use common::{Options, TestApp, eventually, payment_event};
use futures_util::StreamExt;
use livefund::demo::services::LocalServices;
use reqwest::StatusCode;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most a delivery may wait for its answer while the database is gone.
const PROMPT: Duration = Duration::from_secs(3);
/// How many deliveries are in flight at once, and how long each waits before it starts.
const IN_FLIGHT: usize = 8;
const PACE: Duration = Duration::from_millis(50);
/// How many payments flow.
const PAYMENTS: usize = 64;

/// Every answer the provider got: its status, how long it took, and whether the database
/// was stopped when it was sent.
type Answers = Arc<Mutex<Vec<(StatusCode, Duration)>>>;

/// Delivers `event` as a provider does, again after every answer that is not 2xx, until
/// one is (bounded).
async fn deliver_until_settled(app: &TestApp, event: &Value, answers: &Answers) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // A steady stream, not one burst: the outage comes while it flows.
    tokio::time::sleep(PACE).await;
    loop {
        let started = Instant::now();
        let (status, _) = app.webhook(event).await;
        if let Ok(mut seen) = answers.lock() {
            seen.push((status, started.elapsed()));
        }
        if status == StatusCode::OK {
            return;
        }
        assert!(Instant::now() < deadline, "never settled: {event}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    for i in 0..PAYMENTS {
        let pledge = app.pledged("stream", 1000).await;
        events.push(payment_event(
            "payment.succeeded",
            &pledge,
            &format!("t{i}"),
            1000,
        ));
    }
    eventually("the pledges written behind", || async {
        app.count("select count(*) from pledges").await == PAYMENTS as i64
    })
    .await;

    let answers: Answers = Arc::default();
    let provider = futures_util::stream::iter(&events)
        .map(|e| deliver_until_settled(&app, e, &answers))
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<()>>();
    let outage = async {
        eventually("some webhooks settled", || async {
            answers.lock().map(|a| a.len() >= 10).unwrap_or(false)
        })
        .await;
        services.stop_postgres().await.expect("stop PostgreSQL");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (ready, _) = app.get("/readyz").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        services
            .start_postgres_again()
            .await
            .expect("start PostgreSQL");
        ready
    };
    let (_, ready_while_down) = tokio::join!(provider, outage);
    assert_eq!(ready_while_down, StatusCode::SERVICE_UNAVAILABLE);

    let answers = answers.lock().expect("answers").clone();
    let refused: Vec<Duration> = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
        .map(|(status, took)| {
            assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
            *took
        })
        .collect();
    assert!(!refused.is_empty(), "deliveries met the outage");
    for took in &refused {
        assert!(*took < PROMPT, "a 503 took {took:?}");
    }
    let (ready, _) = app.get("/readyz").await;
    assert_eq!(ready, StatusCode::OK);
    let payments = PAYMENTS as i64;
    assert_eq!(
        app.count("select count(*) from gifts").await,
        payments,
        "each once"
    );
    assert_eq!(
        app.count("select count(*) from payment_events").await,
        payments
    );
    eventually("the outbox applied", || async {
        app.count("select count(*) from outbox").await == 0
    })
    .await;
    let (stream, _) = app.totals("stream").await;
    let expected = (Value::from(payments * 1000), Value::from(payments));
    assert_eq!(
        (stream["confirmed"].clone(), stream["gifts"].clone()),
        expected
    );
    app.stop().await;
    db.close().await;
    services.stop().await.expect("stop the services");
}
