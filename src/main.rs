//! The `livefund` command: parse the configuration, then hand over to the library.

use clap::Parser;
use std::process::ExitCode;

use livefund::config::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    livefund::telemetry::init_logging();
    raise_open_files();
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

/// Every socket is a file: a gateway holding thousands of overlays needs the most open
/// files it is allowed, not the shell's default soft limit.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
    }
}
