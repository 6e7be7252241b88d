//! Load-generator clients: WebSockets opened from several loopback source addresses (each
//! has its own ~28k ephemeral ports), pledge frames, and signed webhooks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use livefund::config::Secret;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Source addresses handed out in turn: 127.0.0.2 to 127.0.0.17.
pub fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 16) as u8))
}

/// Bytes a socket reads at a time, on both sides of the baseline. tungstenite zeroes its
/// read buffer up to this much on every read attempt, and its default (128 KiB) made that
/// `memset` most of a reader's CPU; the frames here are far smaller.
pub const READ_BUFFER: usize = 8 * 1024;

/// Opens a WebSocket to `url` (on `server`) from `from`, reading [`READ_BUFFER`] at a time:
/// thousands of sockets read here, on the cores the servers measured also use.
pub async fn connect(server: SocketAddr, url: &str, from: IpAddr) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(server).await?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(tcp), Some(config))
            .await
            .with_context(|| format!("upgrading {url}"))?;
    Ok(ws)
}

/// The next text frame as JSON, within `within`.
pub async fn next_json(ws: &mut Ws, within: Duration) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&next_text(ws, within).await?)?)
}

/// Opens a socket and reads its snapshot.
pub async fn watcher(server: SocketAddr, url: &str, from: IpAddr) -> anyhow::Result<(Ws, Value)> {
    let mut ws = connect(server, url, from).await?;
    let snapshot = next_json(&mut ws, Duration::from_secs(30)).await?;
    if snapshot["type"] != "snapshot" {
        bail!("the first frame was not a snapshot: {snapshot}");
    }
    Ok((ws, snapshot))
}

/// A pledge frame as a viewer's page sends it; `key` is its idempotency key (and `ref`).
pub fn pledge_frame(key: &str, amount: i64, donor: usize) -> String {
    json!({
        "type": "pledge",
        "amount": amount,
        "currency": "CNY",
        "donor_name": format!("观众{donor}"),
        "anonymous": donor.is_multiple_of(5),
        "message": "加油",
        "designation": "education",
        "donor_ref": format!("load-donor-{donor}"),
        "idempotency_key": key,
    })
    .to_string()
}

/// Sends a text frame.
pub async fn send(ws: &mut Ws, text: String) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await?;
    Ok(())
}

/// A confirmation event for `pledge_id` with its `Livefund-Signature` header value.
pub fn signed_payment(pledge_id: &str, amount: i64, txn: &str, secret: &str) -> (Vec<u8>, String) {
    let body = json!({
        "event_id": format!("evt_{txn}"),
        "type": "payment.succeeded",
        "pledge_id": pledge_id,
        "provider_txn_id": txn,
        "amount": amount,
        "currency": "CNY",
        "fee": amount / 100,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
    .to_string()
    .into_bytes();
    let now = chrono::Utc::now().timestamp();
    let header = livefund::payments::signature::sign(&Secret::new(secret), now, &body);
    (body, header)
}

/// Sockets opened by [`open_many`]: those that got their snapshot, and how long it took.
pub struct Opened {
    pub sockets: Vec<Ws>,
    /// From the first connect until the last snapshot.
    pub elapsed: Duration,
    /// Each socket's connect-to-snapshot time.
    pub latency: crate::report::Latency,
    pub failed: usize,
    /// The raw text of the first snapshot read.
    pub snapshot: Option<String>,
}

/// Opens `count` watchers, `url(i)` for the i-th, at most `burst` connecting at once,
/// spread over the loopback source addresses.
pub async fn open_many(
    server: SocketAddr,
    count: usize,
    burst: usize,
    url: impl Fn(usize) -> String,
) -> Opened {
    use std::sync::Arc;
    use tokio::sync::Semaphore;
    let gate = Arc::new(Semaphore::new(burst.max(1)));
    let started = std::time::Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let gate = gate.clone();
        let url = url(i);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            let began = std::time::Instant::now();
            let mut ws = connect(server, &url, source(i)).await.ok()?;
            let text = next_text(&mut ws, Duration::from_secs(60)).await.ok()?;
            text.starts_with(r#"{"type":"snapshot""#)
                .then(|| (ws, began.elapsed(), text))
        }));
    }
    let mut opened = Opened {
        sockets: Vec::with_capacity(count),
        elapsed: Duration::ZERO,
        latency: crate::report::Latency::new(),
        failed: 0,
        snapshot: None,
    };
    for task in tasks {
        match task.await.ok().flatten() {
            Some((ws, took, text)) => {
                opened.latency.record(took);
                opened.sockets.push(ws);
                opened.snapshot.get_or_insert(text);
            }
            None => opened.failed += 1,
        }
    }
    opened.elapsed = started.elapsed();
    opened
}

/// The next text frame as it came, within `within`.
pub async fn next_text(ws: &mut Ws, within: Duration) -> anyhow::Result<String> {
    loop {
        let frame = tokio::time::timeout(within, ws.next())
            .await
            .context("no frame in time")?
            .context("the socket closed")??;
        match frame {
            Message::Text(text) => return Ok(text.to_string()),
            Message::Close(close) => bail!("closed by the server: {close:?}"),
            _ => continue,
        }
    }
}
