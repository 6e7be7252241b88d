//! The live WebSocket over real sockets: snapshot, pledges, fan-out across two gateways,
//! resume with `since`, and the limits (frame size, rate, Origin, slow readers).

mod common;

use common::ws::{Client, WAIT};
use common::{Options, TestApp, pledge_body, settle_gift};
use futures_util::SinkExt;
use livefund::config::Limits;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn ws_pledge(amount: i64) -> Value {
    let mut body = pledge_body("stream", amount);
    body.as_object_mut().map(|b| b.remove("stream"));
    body["type"] = json!("pledge");
    body
}

#[sqlx::test]
async fn a_socket_gets_a_snapshot_then_its_pledges_and_totals(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut client = Client::connect(&app.ws_url("stream", None)).await;
    let snapshot = client.next().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["seq"], 0);
    assert_eq!(snapshot["stream"]["goal"], 300_000);
    assert_eq!(snapshot["campaign"]["pledged"], 0);
    assert_eq!(snapshot["recent"], json!([]));
    assert_eq!(snapshot["gap"], false);

    let pledge = ws_pledge(5000);
    client.send_json(&pledge).await;
    let accepted = client.next_of("pledge_accepted").await;
    assert_eq!(accepted["ref"], pledge["idempotency_key"]);
    assert!(accepted["pledge_id"].as_str().is_some());
    assert!(accepted["checkout_url"].as_str().is_some());
    let totals = client.totals_with_pledged(5000).await;
    assert_eq!(totals["campaign"]["pledged"], 5000);

    // The same key over HTTP is the same pledge.
    let mut http = pledge_body("stream", 5000);
    for key in [
        "donor_name",
        "message",
        "designation",
        "donor_ref",
        "idempotency_key",
        "anonymous",
    ] {
        http[key] = pledge[key].clone();
    }
    let (status, again) = app.pledge(&http).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["pledge_id"], accepted["pledge_id"]);

    // A refusal answers with the code and the ref, and counts nothing.
    let mut bad = ws_pledge(1);
    bad["idempotency_key"] = json!("refused-key-1");
    client.send_json(&bad).await;
    let error = client.next_of("error").await;
    assert_eq!(error["code"], "amount_out_of_range");
    assert_eq!(error["ref"], "refused-key-1");
    client.send_json(&json!({"type": "ping"})).await;
    client.next_of("pong").await;
    assert_eq!(app.totals("stream").await.0["pledged"], 5000);

    // A settled gift reaches the socket once, with its seq, then the new totals.
    let seq = settle_gift(&app, "campaign", "stream", 5000).await;
    let gift = client.next_of("gift").await;
    assert_eq!(gift["seq"], seq);
    assert_eq!(gift["donor"], "小明");
    assert_eq!(gift["amount"], 5000);
    assert_eq!(gift["test"], false);
    loop {
        let totals = client.next_of("totals").await;
        if totals["stream"]["confirmed"] == 5000 {
            assert_eq!(totals["seq"], seq);
            break;
        }
    }
}

#[sqlx::test]
async fn two_gateways_show_the_same_events_and_totals(db: PgPool) {
    let a = TestApp::spawn(db.clone()).await;
    a.seed().await;
    let b = a.another_gateway(db).await;
    let mut on_a = Client::connect(&a.ws_url("stream", None)).await;
    let mut on_b = Client::connect(&b.ws_url("stream", None)).await;
    on_a.next_of("snapshot").await;
    on_b.next_of("snapshot").await;

    let (status, _) = a.pledge(&pledge_body("stream", 7000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let from_a = on_a.totals_with_pledged(7000).await;
    let from_b = on_b.totals_with_pledged(7000).await;
    assert_eq!(from_a, from_b);

    for amount in [100, 200, 300] {
        settle_gift(&a, "campaign", "stream", amount).await;
    }
    for expected in [(1, 100), (2, 200), (3, 300)] {
        let ga = on_a.next_of("gift").await;
        let gb = on_b.next_of("gift").await;
        assert_eq!(
            (ga["seq"].clone(), ga["amount"].clone()),
            (json!(expected.0), json!(expected.1))
        );
        assert_eq!(ga, gb, "the same frame on both gateways");
    }
}

#[sqlx::test]
async fn a_socket_that_reconnects_with_since_gets_each_missed_event_once(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut client = Client::connect(&app.ws_url("stream", None)).await;
    client.next_of("snapshot").await;
    settle_gift(&app, "campaign", "stream", 100).await;
    let last = client.next_of("gift").await["seq"].as_u64().expect("seq");
    drop(client);

    for amount in [200, 300, 400] {
        settle_gift(&app, "campaign", "stream", amount).await;
    }
    let mut client = Client::connect(&app.ws_url("stream", Some(last))).await;
    let snapshot = client.next().await;
    assert_eq!(
        (snapshot["type"].clone(), snapshot["seq"].clone()),
        (json!("snapshot"), json!(4))
    );
    assert_eq!(snapshot["gap"], false);
    assert_eq!(
        snapshot["recent"][0]["amount"], 400,
        "recent gifts, newest first"
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let frame = client.next_of("gift").await;
        seen.push((frame["seq"].as_u64(), frame["amount"].as_i64()));
    }
    assert_eq!(
        seen,
        [
            (Some(2), Some(200)),
            (Some(3), Some(300)),
            (Some(4), Some(400))
        ]
    );
    settle_gift(&app, "campaign", "stream", 500).await;
    let next = client.next_of("gift").await;
    assert_eq!(next["seq"], 5, "then live, with nothing repeated");

    // Older than the log reaches: the snapshot says so.
    let mut redis = app.redis().await;
    let log = format!("{}:{{c:campaign}}:s:stream:log", app.prefix);
    let _: i64 = redis::cmd("XTRIM")
        .arg(&log)
        .arg("MAXLEN")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("trim");
    let mut late = Client::connect(&app.ws_url("stream", Some(1))).await;
    let snapshot = late.next().await;
    assert_eq!(snapshot["gap"], true);
}

#[sqlx::test]
async fn oversized_frames_close_with_1009(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut client = Client::connect(&app.ws_url("stream", None)).await;
    client.next_of("snapshot").await;
    let mut huge = ws_pledge(100);
    huge["message"] = json!("x".repeat(17 * 1024));
    client.send_json(&huge).await;
    let close = client.closed(WAIT).await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Size);
    assert_eq!(app.totals("stream").await.0["pledged"], 0);
}

#[sqlx::test]
async fn a_flood_is_rate_limited_then_closed_with_1008(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut client = Client::connect(&app.ws_url("stream", None)).await;
    client.next_of("snapshot").await;
    for _ in 0..6 {
        client.send_json(&ws_pledge(100)).await;
    }
    for _ in 0..5 {
        client.next_of("pledge_accepted").await;
    }
    let limited = client.next_of("error").await;
    assert_eq!(limited["code"], "rate_limited");
    for _ in 0..30 {
        if client
            .ws
            .send(tokio_tungstenite::tungstenite::Message::Text(
                r#"{"type":"ping"}"#.into(),
            ))
            .await
            .is_err()
        {
            break;
        }
    }
    let close = client.closed(WAIT).await.expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(
        app.totals("stream").await.0["pledged"],
        500,
        "only the allowed pledges"
    );
}

#[sqlx::test]
async fn foreign_origins_are_refused_before_the_upgrade(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = app
        .ws_url("stream", None)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    let mut request = app
        .ws_url("stream", None)
        .into_client_request()
        .expect("request");
    let own = format!("http://{}", app.addr);
    request
        .headers_mut()
        .insert("origin", own.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("own origin");
    use futures_util::StreamExt;
    assert!(ws.next().await.is_some());
    let (status, _) = app.get("/api/v1/streams/nope/live").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A plain GET of a live socket's address is told what it is, not upgraded.
    let (status, body) = app.get("/api/v1/streams/stream/live").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("WebSocket"), "{body}");
}

#[sqlx::test]
async fn a_socket_that_never_reads_is_closed_while_others_keep_receiving(db: PgPool) {
    let options = Options {
        limits: Limits {
            ws_queue: 64,
            ws_send_timeout_ms: 300,
            socket_send_buffer: 16 * 1024,
            http_pledges_per_ip: 0,
            ..Limits::default()
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;

    // The slow client: a tiny receive buffer, and it never reads after the handshake.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(app.addr).await.expect("connect");
    let (mut slow, _) = tokio_tungstenite::client_async(app.ws_url("stream", None), stream)
        .await
        .expect("handshake");
    let mut fast = Client::connect(&app.ws_url("stream", None)).await;
    fast.next_of("snapshot").await;

    let events = 3000;
    let producer = {
        let prefix = app.prefix.clone();
        let url = app.redis_url.clone();
        tokio::spawn(async move {
            use livefund::counters::{Keys, SettledGift, gift_settled};
            use livefund::domain::{Money, Slug};
            let campaign = Slug::parse("c", "campaign").expect("slug");
            let stream = Slug::parse("s", "stream").expect("slug");
            let keys = Keys::new(prefix).campaign(&campaign);
            let client = redis::Client::open(url).expect("url");
            let mut redis = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let message = "加油".repeat(60);
            for _ in 0..events {
                let gift_id = uuid::Uuid::new_v4().to_string();
                let gift = SettledGift {
                    pledge_id: gift_id.clone(),
                    gift_id,
                    stream: stream.clone(),
                    amount: Money::from_stored(100),
                    matched: Money::ZERO,
                    currency: "CNY".into(),
                    donor_ref: None,
                    anonymous: true,
                    public_name: None,
                    message: Some(message.clone()),
                    designation: None,
                };
                gift_settled(&mut redis, &keys, &gift).await.expect("gift");
            }
        })
    };
    let mut last = 0;
    while last < events {
        let gift = fast.next_of("gift").await;
        let seq = gift["seq"].as_u64().expect("seq");
        assert_eq!(seq, last + 1, "the fast socket misses nothing");
        last = seq;
    }
    producer.await.expect("producer");

    // The slow socket was closed: reading it now drains what the kernel held, then ends.
    use futures_util::StreamExt;
    let mut gifts = 0;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(message) = slow.next().await {
            match message {
                Ok(tokio_tungstenite::tungstenite::Message::Text(t)) if t.contains("\"gift\"") => {
                    gifts += 1
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the slow socket is closed, not left open (got {gifts} gifts)"
    );
    assert!(
        gifts < events,
        "the slow socket did not get everything ({gifts})"
    );
}

#[sqlx::test]
async fn a_socket_that_misses_two_pongs_is_closed(db: PgPool) {
    let options = Options {
        limits: Limits {
            ws_ping_secs: 1,
            http_pledges_per_ip: 0,
            ..Limits::default()
        },
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    // This client answers pings (tungstenite does while reading) and stays open.
    let mut alive = Client::connect(&app.ws_url("stream", None)).await;
    alive.next_of("snapshot").await;
    // This one never reads, so never answers.
    let mut silent = Client::connect(&app.ws_url("stream", None)).await;
    let reading = async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = alive.ws.next().await {}
    };
    let _ = tokio::time::timeout(Duration::from_millis(3500), reading).await;
    // Closed: with a 1008 frame, or (when the client's late pong hits the closed
    // connection first) with a broken pipe; `closed` panics if it stays open.
    if let Some(close) = silent.closed(WAIT).await {
        assert_eq!(close.code, CloseCode::Policy);
    }
    alive.send_json(&json!({"type": "ping"})).await;
    alive.next_of("pong").await;
}

#[sqlx::test]
async fn a_pledge_paid_in_the_sandbox_reaches_the_socket_as_a_gift(db: PgPool) {
    let options = Options {
        sandbox_payments: true,
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    app.seed().await;
    let mut client = Client::connect(&app.ws_url("stream", None)).await;
    client.next_of("snapshot").await;
    let mut pledge = ws_pledge(5000);
    pledge["anonymous"] = json!(true);
    client.send_json(&pledge).await;
    let accepted = client.next_of("pledge_accepted").await;
    let pledge_id = accepted["pledge_id"].as_str().expect("pledge id");

    let paid = app
        .client
        .post(app.url(&format!("/sandbox/checkout/{pledge_id}/pay")))
        .send()
        .await
        .expect("sandbox pay");
    assert_eq!(paid.status(), StatusCode::OK);

    let gift = client.next_of("gift").await;
    assert_eq!(gift["amount"], 5000);
    assert_eq!(gift["seq"], 1);
    assert_eq!(
        gift["donor"],
        Value::Null,
        "an anonymous gift never shows a name"
    );
    assert_eq!(gift["matched"], 2500);
    assert_eq!(gift["test"], false);
    loop {
        let totals = client.next_of("totals").await;
        if totals["stream"]["confirmed"] == 5000 {
            assert_eq!(totals["campaign"]["matched"], 2500);
            assert_eq!(totals["seq"], 1);
            break;
        }
    }
    let donor: Option<String> = sqlx::query_scalar("select donor_name from gifts")
        .fetch_one(&app.db)
        .await
        .expect("gift row");
    assert_eq!(donor, None, "nor is its name kept");
}

#[sqlx::test]
async fn totals_frames_carry_the_streams_latest_seq(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    for amount in [100, 200, 300] {
        settle_gift(&app, "campaign", "stream", amount).await;
    }
    let mut client = Client::connect(&app.ws_url("stream", None)).await;
    let snapshot = client.next_of("snapshot").await;
    assert_eq!(snapshot["seq"], 3);
    let pledged = snapshot["stream"]["pledged"].as_i64().unwrap_or(0);
    let (status, _) = app.pledge(&pledge_body("stream", 5000)).await;
    assert_eq!(status, StatusCode::CREATED);
    let totals = client.totals_with_pledged(pledged + 5000).await;
    assert_eq!(totals["seq"], 3, "the latest seq, not the hub's own count");
}
