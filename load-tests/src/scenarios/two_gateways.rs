//! `two_gateways`: fan-out with the overlays split over two `serve` processes on one Redis
//! and one PostgreSQL (pledges sent to both, each confirmation to the gateway its pledge
//! did not go to): the figures of `fanout` against the same bare broadcast baseline, and
//! how many sockets saw a set of gift seqs other than their stream's (should be none).

use std::path::Path;

use super::fanout::{self, Load};
use crate::harness::Bench;
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    load: Load,
}

pub async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    let bench = Bench::start(work).await?;
    let result = measure(args, &bench, work).await;
    bench.stop().await?;
    result
}

async fn measure(args: &Args, bench: &Bench, work: &Path) -> anyhow::Result<Report> {
    let first = bench.gateway("gateway-a", &[]).await?;
    let second = bench.gateway("gateway-b", &[]).await?;
    fanout::compare("two_gateways", bench, vec![first, second], &args.load, work).await
}
