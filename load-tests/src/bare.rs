//! The baseline: a minimal tokio-tungstenite broadcast server with no stores. A watcher
//! connecting to `/<anything>` gets the snapshot frame it was started with, then every
//! frame a publisher sends on `/publish/<same thing>`; a watcher that finds several frames
//! queued feeds them all and flushes once. It reads in small chunks, as the gateway does. It runs as its own process (`load-tests
//! bare-server`), so its CPU and memory are read like a gateway's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::harness::Usage;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// A file whose text is sent to every watcher first, as livefund sends its snapshot.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// Frames a path's broadcast queue holds; a watcher further behind is closed.
    #[arg(long, default_value_t = 512)]
    queue: usize,
}

/// Bytes read at a time, as the gateway reads its overlays (`src/http/live.rs`): tungstenite
/// zeroes up to this much each time a watcher's read side is polled, which here is once per
/// frame sent.
const READ_BUFFER: usize = 512;

type Channels = Arc<Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>>;

/// Serves until killed.
pub async fn serve(args: &Args) -> anyhow::Result<()> {
    let snapshot: Utf8Bytes = match &args.snapshot {
        Some(path) => std::fs::read_to_string(path)?.into(),
        None => r#"{"type":"snapshot"}"#.into(),
    };
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(args.listen)?;
    let listener = socket.listen(4096)?;
    println!("listening on {}", listener.local_addr()?);
    let channels: Channels = Arc::default();
    loop {
        let (tcp, _) = listener.accept().await?;
        let channels = channels.clone();
        let snapshot = snapshot.clone();
        let queue = args.queue;
        tokio::spawn(async move {
            let _ = connection(tcp, channels, snapshot, queue).await;
        });
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's own
async fn connection(
    tcp: TcpStream,
    channels: Channels,
    snapshot: Utf8Bytes,
    queue: usize,
) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let mut path = String::new();
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        tcp,
        |request: &Request, response: Response| {
            path = request.uri().path().to_owned();
            Ok(response)
        },
        Some(config),
    )
    .await?;
    let (publish, name) = match path.strip_prefix("/publish") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, path),
    };
    let sender = channels
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .entry(name)
        .or_insert_with(|| broadcast::channel(queue).0)
        .clone();
    let (mut write, mut read) = ws.split();
    if publish {
        while let Some(frame) = read.next().await {
            if let Message::Text(text) = frame? {
                let _ = sender.send(text);
            }
        }
        return Ok(());
    }
    let mut rx = sender.subscribe();
    drop(sender);
    write.send(Message::Text(snapshot)).await?;
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Ok(frame) = frame else { break };
                write.feed(Message::Text(frame)).await?;
                while let Ok(more) = rx.try_recv() {
                    write.feed(Message::Text(more)).await?;
                }
                write.flush().await?;
            }
            incoming = read.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    Ok(())
}

/// The bare server running as a child process.
pub struct Bare {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
}

impl Bare {
    /// Starts `load-tests bare-server` on a free port, sending `snapshot` to each watcher.
    pub async fn start(snapshot: Option<&str>, work: &std::path::Path) -> anyhow::Result<Bare> {
        let port = crate::harness::free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["bare-server", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(text) = snapshot {
            let path = work.join("bare-snapshot.json");
            std::fs::write(&path, text)?;
            command.arg("--snapshot").arg(path);
        }
        let mut child = command.spawn()?;
        let pid = child.id().context("the bare server exited at once")?;
        let stdout = child.stdout.take().context("the bare server's output")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .context("the bare server did not start")??;
        if !first.is_some_and(|l| l.starts_with("listening")) {
            anyhow::bail!("the bare server did not start");
        }
        Ok(Bare { child, addr, pid })
    }

    /// A watcher's URL for `stream`.
    pub fn ws_url(&self, stream: &str) -> String {
        format!("ws://{}/{stream}", self.addr)
    }

    /// The URL a publisher sends `stream`'s frames to.
    pub fn publish_url(&self, stream: &str) -> String {
        format!("ws://{}/publish/{stream}", self.addr)
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(self.pid)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
