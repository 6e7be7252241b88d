//! The `livefund` command: parse the configuration, then hand over to the library.

use clap::Parser;
use std::process::ExitCode;

use livefund::config::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    livefund::telemetry::init_logging();
    let result = match cli.command {
        Command::Serve(args) => livefund::cli::serve(args).await,
        Command::Migrate(args) => livefund::cli::migrate(args).await,
        Command::RebuildCounters(args) => livefund::cli::rebuild_counters(args).await,
        Command::Demo(args) => livefund::demo::run(args).await,
        Command::Reconcile(args) => livefund::cli::reconcile::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livefund: {e:#}");
            ExitCode::FAILURE
        }
    }
}
