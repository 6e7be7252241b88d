//! `load-tests`: livefund's benchmarks. Each scenario starts what it measures (private
//! PostgreSQL and Redis, the demo fund, release gateways), loads it over loopback with
//! bounded counts and times, measures a baseline in the same run, prints a table and writes
//! JSON; `--runs N` repeats it and reports the median. `scripts/bench <scenario>` builds and
//! runs one.

mod bare;
mod clients;
mod harness;
mod report;
mod scenarios;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use report::Report;

#[derive(Parser)]
#[command(
    name = "load-tests",
    about = "livefund's benchmarks, each against a same-run baseline"
)]
struct Cli {
    /// Runs of the scenario; the table shows the median of each figure.
    #[arg(long, default_value_t = 3, global = true)]
    runs: usize,
    /// Folder for the JSON results.
    #[arg(long, default_value = "target/load-tests/results", global = true)]
    results: PathBuf,
    /// Folder for the services' data and the gateways' logs while a run lasts.
    #[arg(long, default_value = "target/load-tests/work", global = true)]
    work: PathBuf,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N sockets pledging across S streams, against the pledge script alone in redis-benchmark.
    Pledges(scenarios::pledges::Args),
    /// K overlays on S streams while gifts flow, against a bare tokio-tungstenite broadcast.
    Fanout(scenarios::fanout::Args),
    /// Sockets connecting in bursts (a gateway restart): time until all have their snapshot.
    Connect(scenarios::connect::Args),
    /// Signed confirmations at several concurrencies, against COPY of the same rows.
    Settle(scenarios::settle::Args),
    /// Idle overlay sockets on a busy stream: RSS per socket, against the bare server's.
    Idle(scenarios::idle::Args),
    /// A large ledger with Redis flushed: time to rebuild the live counters.
    Rebuild(scenarios::rebuild::Args),
    /// Fan-out with the sockets split over two gateways on one Redis.
    TwoGateways(scenarios::two_gateways::Args),
    /// The baseline broadcast server alone (run by the scenarios as a child process).
    #[command(hide = true)]
    BareServer(bare::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    harness::raise_fd_limit()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Scenario::BareServer(args) = &cli.scenario {
        return bare::serve(args).await;
    }
    let mut runs = Vec::new();
    for i in 0..cli.runs.max(1) {
        eprintln!("== run {} of {}", i + 1, cli.runs.max(1));
        let report = once(&cli.scenario, &cli.work).await?;
        println!("{}", report.table());
        runs.push(report);
    }
    let median = Report::median(&runs);
    if runs.len() > 1 {
        println!("median of {} runs:\n\n{}", runs.len(), median.table());
    }
    let path = Report::write(&cli.results, &runs, &median)?;
    eprintln!("results written to {path}");
    Ok(())
}

async fn once(scenario: &Scenario, work: &Path) -> anyhow::Result<Report> {
    match scenario {
        Scenario::Pledges(args) => scenarios::pledges::run(args, work).await,
        Scenario::Fanout(args) => scenarios::fanout::run(args, work).await,
        Scenario::Connect(args) => scenarios::connect::run(args, work).await,
        Scenario::Settle(args) => scenarios::settle::run(args, work).await,
        Scenario::Idle(args) => scenarios::idle::run(args, work).await,
        Scenario::Rebuild(args) => scenarios::rebuild::run(args, work).await,
        Scenario::TwoGateways(args) => scenarios::two_gateways::run(args, work).await,
        Scenario::BareServer(_) => unreachable!("served above"),
    }
}
