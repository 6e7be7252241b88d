//! `livefund demo`: everything local. It starts its own PostgreSQL and Redis (unless
//! given URLs), seeds the 慈爱助孤 fund, serves with sandbox payments on, prints the
//! URLs to open, and stops all it started on Ctrl-C.

pub mod seed;
pub mod services;
mod simulate;

use anyhow::Context;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::{DemoArgs, Secret, WebhookSecrets};
use crate::{cli, connect_postgres, connect_redis, migrate, serve};
use services::LocalServices;

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let given = (
        &args.backends.database.database_url,
        &args.backends.redis.redis_url,
    );
    let (services, database_url, redis_url) = match given {
        (Some(db), Some(redis)) => (None, db.expose().to_owned(), redis.expose().to_owned()),
        (Some(_), None) | (None, Some(_)) => {
            anyhow::bail!(
                "give both DATABASE_URL and REDIS_URL, or neither (the demo starts its own)"
            )
        }
        (None, None) => {
            println!(
                "Starting PostgreSQL and Redis in {} ...",
                args.data_dir.display()
            );
            let services = LocalServices::start(&args.data_dir).await?;
            let urls = (
                services.database_url().to_owned(),
                services.redis_url().to_owned(),
            );
            (Some(services), urls.0, urls.1)
        }
    };
    let result = serve_demo(&args, &database_url, &redis_url).await;
    if let Some(services) = services {
        println!("Stopping PostgreSQL and Redis ...");
        services.stop().await?;
    }
    result
}

async fn serve_demo(args: &DemoArgs, database_url: &str, redis_url: &str) -> anyhow::Result<()> {
    let db = connect_postgres(database_url)?;
    migrate(&db)
        .await
        .context("running the database migrations")?;
    let seeded = seed::seed(&db).await.context("seeding the demo fund")?;
    let redis = connect_redis(redis_url)?;

    let mut settings = args.settings.clone();
    settings.sandbox_payments = true;
    if args.simulate > 0 {
        // The simulated viewers all pledge from this machine's address, and are paid a
        // moment after they pledge.
        settings.limits.http_pledges_per_ip = 0;
        if settings.limits.sandbox_autopay_ms == 0 {
            settings.limits.sandbox_autopay_ms = simulate::PAY_AFTER_MS;
        }
    }
    let operator_token = match &settings.operator_token {
        Some(token) => token.clone(),
        None => kept_secret(&args.data_dir.join("operator-token"))?,
    };
    settings.operator_token = Some(operator_token);
    let webhook_secrets = match &args.webhook.webhook_secret {
        Some(secrets) => secrets.clone(),
        None => WebhookSecrets::new(vec![kept_secret(&args.data_dir.join("webhook-secret"))?])
            .map_err(anyhow::Error::msg)?,
    };

    let listener = crate::bind(settings.listen, settings.listen_backlog).await.with_context(|| {
        format!(
            "binding {} (is another livefund running? choose a port with --listen 127.0.0.1:PORT)",
            settings.listen
        )
    })?;
    let bound = listener.local_addr()?;
    let config = settings.resolve(bound, webhook_secrets);
    let base = config.public_url.clone();
    let shutdown = cli::shutdown_on_signal();

    print_welcome(&base, &seeded, args);
    if args.simulate > 0 {
        tokio::spawn(simulate::run(
            base.clone(),
            seeded.streams.clone(),
            args.simulate,
            shutdown.clone(),
        ));
    }

    serve(listener, db, redis, config, shutdown).await?;
    Ok(())
}

/// What to open: the pages first, then the API.
fn print_welcome(base: &str, seeded: &seed::Seeded, args: &DemoArgs) {
    println!();
    println!("livefund demo is running. Open {base}/");
    println!();
    for stream in &seeded.streams {
        println!("  {stream}");
        println!("    give (viewers)       {base}/give/{stream}");
        println!("    overlay (OBS source) {base}/overlay/{stream}");
    }
    println!();
    println!("  pledges are paid at the sandbox checkout the pledge page opens");
    if args.simulate > 0 {
        println!(
            "  simulating {} made-up viewer pledge(s) a second (the per-IP limit is off)",
            args.simulate
        );
    }
    println!(
        "  API        {base}/openapi.json, e.g. {base}/api/v1/campaigns/{}",
        seeded.campaign
    );
    println!("  ready      {base}/readyz    metrics {base}/metrics");
    println!(
        "  operator token: in {}",
        args.data_dir.join("operator-token").display()
    );
    println!("Press Ctrl-C to stop.");
    let _ = std::io::stdout().flush();
}

/// Reads a secret kept in `path`, creating it (readable by the owner only) on first use,
/// so restarts of the demo keep the same token.
fn kept_secret(path: &Path) -> anyhow::Result<Secret> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && !existing.trim().is_empty()
    {
        return Ok(Secret::new(existing.trim()));
    }
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let value = hex::encode(bytes);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{value}")?;
    Ok(Secret::new(value))
}
