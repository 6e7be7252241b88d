//! A real WebSocket client (tokio-tungstenite) for the live tests.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = connect_async(url).await.expect("websocket connect");
        Client { ws }
    }

    /// The next text frame as JSON; panics on close or after [`WAIT`].
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("the socket is open")
                .expect("a valid frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next frame of `kind`, skipping others (totals arrive whenever totals change).
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next totals frame whose stream `pledged` is `pledged`.
    pub async fn totals_with_pledged(&mut self, pledged: i64) -> Value {
        loop {
            let frame = self.next_of("totals").await;
            if frame["stream"]["pledged"] == pledged {
                return frame;
            }
        }
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.ws
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("send");
    }

    /// Reads until the server closes; returns the close frame it sent, if any.
    pub async fn closed(&mut self, within: Duration) -> Option<CloseFrame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the socket was not closed within {within:?}"),
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    eprintln!("socket ended with an error: {e}");
                    return None;
                }
                Ok(Some(Ok(Message::Close(frame)))) => return frame,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// True when nothing but totals frames arrives for `quiet`.
    pub async fn silent_or_totals_for(&mut self, quiet: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    if frame["type"] != "totals" {
                        eprintln!("unexpected frame {frame}");
                        return false;
                    }
                }
                Ok(Some(Ok(_))) => continue,
                Ok(_) => return false,
            }
        }
    }

    /// True when no frame arrives for `quiet` (the socket stays open and silent).
    pub async fn silent_for(&mut self, quiet: Duration) -> bool {
        tokio::time::timeout(quiet, self.ws.next()).await.is_err()
    }
}
