//! `idle`: overlay sockets left open on a busy stream (recent gifts in the snapshot, gifts
//! arriving while they are open): the gateway's resident memory per socket, against the bare
//! broadcast server holding the same sockets and sent the same frames.

use std::path::Path;
use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use crate::bare::Bare;
use crate::clients;
use crate::harness::Bench;
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Idle sockets.
    #[arg(long, default_value_t = 15_000)]
    sockets: usize,
    /// Gifts settled before the sockets connect.
    #[arg(long, default_value_t = 50)]
    gifts: usize,
    /// Gifts settled while they are open.
    #[arg(long, default_value_t = 10)]
    more: usize,
    /// Sockets connecting at once.
    #[arg(long, default_value_t = 500)]
    burst: usize,
}

pub async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    let bench = Bench::start(work).await?;
    let result = measure(args, &bench, work).await;
    bench.stop().await?;
    result
}

/// Memory is read this long after the last frame, once allocations have settled.
const SETTLE: Duration = Duration::from_secs(3);

async fn measure(args: &Args, bench: &Bench, work: &Path) -> anyhow::Result<Report> {
    let stream = bench.streams[0].clone();
    let gateway = bench.gateway("gateway", &[]).await?;
    gateway.gifts(&stream, args.gifts).await?;
    tokio::time::sleep(SETTLE).await;
    let before = gateway.usage()?.rss_kib;
    let mut ours = clients::open_many(gateway.addr, args.sockets, args.burst, |_| {
        gateway.ws_url(&stream, None)
    })
    .await;
    gateway.gifts(&stream, args.more).await?;
    // One socket reads what the others were sent, for the bare server to send the same.
    let mut frames = Vec::new();
    if let Some(ws) = ours.sockets.first_mut() {
        while let Ok(text) = clients::next_text(ws, Duration::from_millis(500)).await {
            frames.push(text);
        }
    }
    tokio::time::sleep(SETTLE).await;
    let after = gateway.usage()?.rss_kib;
    let held = ours.sockets.len();
    drop(ours.sockets);
    gateway.stop().await?;

    let bare = Bare::start(ours.snapshot.as_deref(), work).await?;
    let bare_before = bare.usage()?.rss_kib;
    let theirs = clients::open_many(bare.addr, args.sockets, args.burst, |_| {
        bare.ws_url(&stream)
    })
    .await;
    let mut publisher =
        clients::connect(bare.addr, &bare.publish_url(&stream), clients::source(0)).await?;
    for frame in &frames {
        publisher.send(Message::text(frame.clone())).await?;
    }
    tokio::time::sleep(SETTLE).await;
    let bare_after = bare.usage()?.rss_kib;
    let bare_held = theirs.sockets.len();
    drop(theirs.sockets);
    bare.stop().await?;

    let per =
        |before: u64, after: u64, n: usize| after.saturating_sub(before) as f64 / n.max(1) as f64;
    let mut report = Report::new("idle");
    report.cheaper(
        "RSS per idle socket",
        "KiB",
        per(before, after, held),
        per(bare_before, bare_after, bare_held),
    );
    report.cheaper("sockets held", "", held as f64, bare_held as f64);
    report.note(format!(
        "{} sockets on one stream with {} gifts before and {} while open ({} frames each after the snapshot of {} bytes); gateway RSS {before} → {after} KiB, bare {bare_before} → {bare_after} KiB",
        args.sockets,
        args.gifts,
        args.more,
        frames.len(),
        ours.snapshot.as_ref().map(|s| s.len()).unwrap_or(0),
    ));
    Ok(report)
}
