//! Test harness: the real app on a real port (port 0), a fresh migrated database per
//! test (from `#[sqlx::test]`), a unique Redis key prefix per test, and typed helpers.
#![allow(dead_code)]

pub mod browser;
pub mod process;
pub mod tempdir;
pub mod ws;

use livefund::config::{Config, Limits, Secret, WebhookSecrets};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const OPERATOR_TOKEN: &str = "test-operator-token";
pub const WEBHOOK_SECRET: &str = "whsec_test";

/// Waits (bounded, 10 s) until `probe` returns true; for effects that land after an
/// answer (the write-behind, the live counters after a commit, the expiry sweep).
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !probe().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The Redis the tests use: `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The URL of the database a `#[sqlx::test]` pool points at.
pub fn database_url(db: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let name = db
        .connect_options()
        .get_database()
        .expect("a test database name")
        .to_owned();
    let base = base.split('?').next().unwrap_or(&base);
    let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(base);
    format!("{server}/{name}")
}

/// A unique key prefix, so tests sharing one Redis never see each other's keys.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// How to start a test app; `Default` is the usual set-up.
pub struct Options {
    pub operator_token: Option<String>,
    pub redis_url: String,
    pub prefix: String,
    pub limits: Limits,
    pub allowed_origins: Vec<String>,
    /// The webhook secrets the app accepts (the first one signs in `webhook`).
    pub webhook_secrets: Vec<String>,
    /// Whether the built-in sandbox payment provider is on.
    pub sandbox_payments: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            operator_token: Some(OPERATOR_TOKEN.into()),
            redis_url: redis_url(),
            prefix: unique_prefix(),
            // Tests pledge fast from one address; the limit itself has its own test.
            limits: Limits {
                http_pledges_per_ip: 0,
                ..Limits::default()
            },
            allowed_origins: Vec::new(),
            webhook_secrets: vec![WEBHOOK_SECRET.into()],
            sandbox_payments: false,
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: PgPool,
    pub prefix: String,
    pub redis_url: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(db: PgPool) -> TestApp {
        Self::spawn_with(db, Options::default()).await
    }

    pub async fn spawn_with(db: PgPool, options: Options) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let config = Config {
            public_url: format!("http://{addr}"),
            operator_token: options.operator_token.map(Secret::new),
            webhook_secrets: WebhookSecrets::new(
                options.webhook_secrets.iter().map(Secret::new).collect(),
            )
            .expect("at least one secret"),
            allowed_origins: [vec![format!("http://{addr}")], options.allowed_origins].concat(),
            sandbox_payments: options.sandbox_payments,
            redis_prefix: options.prefix.clone(),
            checkout_url: format!("http://{addr}/sandbox/checkout"),
            limits: options.limits,
        };
        let redis = livefund::connect_redis(&options.redis_url).expect("redis url");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(livefund::serve(
            listener,
            db.clone(),
            redis,
            config,
            shutdown.clone(),
        ));
        TestApp {
            addr,
            db,
            prefix: options.prefix,
            redis_url: options.redis_url,
            client: reqwest::Client::new(),
            shutdown,
            server: Some(server),
        }
    }

    /// Another gateway of the same cluster: the same Redis prefix, over `db` (the same
    /// database, or one that is down).
    pub async fn another_gateway(&self, db: PgPool) -> TestApp {
        let options = Options {
            prefix: self.prefix.clone(),
            ..Options::default()
        };
        TestApp::spawn_with(db, options).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A connection to the Redis the app uses.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        into_parts(response).await
    }

    /// POSTs raw bytes with an optional bearer token.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        into_parts(request.send().await.expect("POST")).await
    }

    /// POSTs JSON as the operator.
    pub async fn operator_post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, body.to_string().into_bytes(), Some(OPERATOR_TOKEN))
            .await
    }

    pub async fn create_fund(&self, slug: &str) -> Value {
        let (status, body) = self.operator_post("/api/v1/funds", &fund_body(slug)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn create_campaign(&self, slug: &str, fund: &str) -> Value {
        let (status, body) = self
            .operator_post("/api/v1/campaigns", &campaign_body(slug, fund))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn create_stream(&self, slug: &str, campaign: &str) -> Value {
        let (status, body) = self
            .operator_post(
                &format!("/api/v1/campaigns/{campaign}/streams"),
                &json!({"slug": slug, "streamer": "湘西支教小队", "goal": 300_000}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Closes `campaign` as an operator, by force (no statement reconciled); returns the
    /// digest given at close.
    pub async fn close_forced(&self, campaign: &str) -> String {
        let (status, closed) = self
            .operator_post(
                &format!("/api/v1/campaigns/{campaign}/close"),
                &json!({"force": true, "reason": "closed by the test"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{closed}");
        closed["ledger_digest"].as_str().expect("digest").to_owned()
    }

    /// A fund `fund`, its campaign `campaign` and a stream `stream`.
    pub async fn seed(&self) {
        self.create_fund("fund").await;
        self.create_campaign("campaign", "fund").await;
        self.create_stream("stream", "campaign").await;
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn into_parts(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub fn fund_body(slug: &str) -> Value {
    json!({
        "slug": slug,
        "name": "慈爱助孤基金",
        "charity": "慈爱助孤公益联合会",
        "designations": [
            {"code": "education", "name": "教育助学"},
            {"code": "daily_care", "name": "生活照料"},
            {"code": "counselling", "name": "心理疏导"},
            {"code": "enrichment", "name": "兴趣拓展"},
            {"code": "social_practice", "name": "社会实践"},
            {"code": "employment", "name": "就业指导"}
        ]
    })
}

pub fn campaign_body(slug: &str, fund: &str) -> Value {
    json!({
        "slug": slug,
        "fund": fund,
        "title": "温暖冬日",
        "currency": "CNY",
        "goal": 10_000_000,
        "min_amount": 100,
        "max_amount": 500_000,
        "matching": {"sponsor": "暖阳科技", "ratio_percent": 50, "cap": 1_000_000}
    })
}

/// The error code of a contract error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// A pledge body for `stream` with its own idempotency key.
pub fn pledge_body(stream: &str, amount: i64) -> Value {
    json!({
        "stream": stream,
        "amount": amount,
        "currency": "CNY",
        "donor_name": "小明",
        "anonymous": false,
        "message": "加油",
        "designation": "education",
        "donor_ref": format!("browser-{}", uuid::Uuid::new_v4().simple()),
        "idempotency_key": format!("key-{}", uuid::Uuid::new_v4().simple()),
    })
}

impl TestApp {
    /// POSTs a pledge as a viewer would.
    pub async fn pledge(&self, body: &Value) -> (StatusCode, Value) {
        self.post_raw("/api/v1/pledges", body.to_string().into_bytes(), None)
            .await
    }

    /// The stream's totals and its campaign's, as the public API reads them.
    pub async fn totals(&self, stream: &str) -> (Value, Value) {
        let (status, body) = self.get(&format!("/api/v1/streams/{stream}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["totals"].clone(), body["campaign_totals"].clone())
    }

    pub fn ws_url(&self, stream: &str, since: Option<u64>) -> String {
        let query = since.map(|s| format!("?since={s}")).unwrap_or_default();
        format!("ws://{}/api/v1/streams/{stream}/live{query}", self.addr)
    }
}

/// Applies a gift to the live counters the way the outbox relay does after its commit, so
/// the live tests can produce `gift` events. Returns the event's seq.
pub async fn settle_gift(app: &TestApp, campaign: &str, stream: &str, amount: i64) -> u64 {
    use livefund::counters::{Applied, Keys, SettledGift, gift_settled};
    use livefund::domain::{Money, Slug};
    let campaign = Slug::parse("campaign", campaign).expect("slug");
    let stream = Slug::parse("stream", stream).expect("slug");
    let keys = Keys::new(app.prefix.clone()).campaign(&campaign);
    let gift = SettledGift {
        gift_id: uuid::Uuid::new_v4().to_string(),
        pledge_id: uuid::Uuid::new_v4().to_string(),
        stream,
        amount: Money::from_stored(amount),
        matched: Money::ZERO,
        currency: "CNY".into(),
        donor_ref: Some("donor-1".into()),
        anonymous: false,
        public_name: Some("小明".into()),
        message: Some("加油".into()),
        designation: Some("education".into()),
    };
    let mut redis = app.redis().await;
    match gift_settled(&mut redis, &keys, &gift)
        .await
        .expect("gift script")
    {
        Applied::Announced(seq) => seq,
        other => panic!("the gift was not counted: {other:?}"),
    }
}

/// A provider event for `pledge_id`.
pub fn payment_event(kind: &str, pledge_id: &str, txn: &str, amount: i64) -> Value {
    json!({
        "event_id": format!("evt_{}", uuid::Uuid::new_v4().simple()),
        "type": kind,
        "pledge_id": pledge_id,
        "provider_txn_id": txn,
        "amount": amount,
        "currency": "CNY",
        "fee": 30,
        "occurred_at": "2026-06-01T12:00:00Z",
    })
}

impl TestApp {
    /// Delivers `event` signed with `secret` at `at` (unix seconds), as a provider would.
    pub async fn deliver(&self, event: &Value, secret: &str, at: i64) -> (StatusCode, Value) {
        let body = event.to_string().into_bytes();
        let header = livefund::payments::signature::sign(&Secret::new(secret), at, &body);
        self.deliver_raw(body, Some(header)).await
    }

    /// Delivers `event` signed with the test secret, now.
    pub async fn webhook(&self, event: &Value) -> (StatusCode, Value) {
        self.deliver(event, WEBHOOK_SECRET, chrono::Utc::now().timestamp())
            .await
    }

    pub async fn deliver_raw(
        &self,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(self.url("/api/v1/webhooks/payments"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("Livefund-Signature", signature);
        }
        into_parts(request.send().await.expect("POST webhook")).await
    }

    /// Pledges `amount` on `stream` and returns the pledge id.
    pub async fn pledged(&self, stream: &str, amount: i64) -> String {
        let (status, body) = self.pledge(&pledge_body(stream, amount)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["pledge_id"].as_str().expect("pledge id").to_owned()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db)
            .await
            .expect("count query")
    }
}
