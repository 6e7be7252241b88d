//! `connect`: sockets connecting in bursts, as overlays do when a gateway restarts: the time
//! until every one has its snapshot, against the bare broadcast server taking the same
//! sockets with a snapshot of the same text.

use std::path::Path;

use crate::bare::Bare;
use crate::clients;
use crate::harness::Bench;
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Sockets to connect.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Sockets connecting at once.
    #[arg(long, default_value_t = 1_000)]
    burst: usize,
    /// Gifts settled on each stream first, so snapshots carry recent gifts and top donors.
    #[arg(long, default_value_t = 20)]
    gifts: usize,
}

pub async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    let bench = Bench::start(work).await?;
    let result = measure(args, &bench, work).await;
    bench.stop().await?;
    result
}

async fn measure(args: &Args, bench: &Bench, work: &Path) -> anyhow::Result<Report> {
    let gateway = bench.gateway("gateway", &[]).await?;
    for stream in &bench.streams {
        gateway.gifts(stream, args.gifts).await?;
    }
    let streams = bench.streams.clone();
    let ours = clients::open_many(gateway.addr, args.sockets, args.burst, |i| {
        gateway.ws_url(&streams[i % streams.len()], None)
    })
    .await;
    let snapshot = ours.snapshot.clone();
    drop(ours.sockets);
    gateway.stop().await?;

    let bare = Bare::start(snapshot.as_deref(), work).await?;
    let theirs = clients::open_many(bare.addr, args.sockets, args.burst, |i| {
        bare.ws_url(&streams[i % streams.len()])
    })
    .await;
    drop(theirs.sockets);
    bare.stop().await?;

    let mut report = Report::new("connect");
    report.cheaper(
        &format!("{} sockets with their snapshot", args.sockets),
        "s",
        ours.elapsed.as_secs_f64(),
        theirs.elapsed.as_secs_f64(),
    );
    report.cheaper(
        "connect → snapshot p50",
        "ms",
        ours.latency.ms(0.5),
        theirs.latency.ms(0.5),
    );
    report.cheaper(
        "connect → snapshot p99",
        "ms",
        ours.latency.ms(0.99),
        theirs.latency.ms(0.99),
    );
    report.cheaper(
        "sockets that failed",
        "",
        ours.failed as f64,
        theirs.failed as f64,
    );
    report.note(format!(
        "{} sockets, {} connecting at once, over {} streams with {} gifts each; snapshot {} bytes, sent as-is by the bare server",
        args.sockets,
        args.burst,
        streams.len(),
        args.gifts,
        snapshot.map(|s| s.len()).unwrap_or(0)
    ));
    Ok(report)
}
