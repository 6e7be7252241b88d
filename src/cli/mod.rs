//! The `serve`, `migrate`, `rebuild-counters` and `reconcile` subcommands, and the
//! shutdown signal they share.

pub mod reconcile;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{MigrateArgs, RebuildArgs, ServeArgs};
use crate::counters::Keys;
use crate::domain::Slug;
use crate::{bind, connect_postgres, connect_redis, migrate as run_migrations, serve as serve_on};

/// `livefund serve`: runs pending migrations, then serves until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (database_url, redis_url) = args.backends.required()?;
    let webhook_secrets = args.webhook.required()?.clone();
    let db = connect_postgres(database_url.expose()).context("DATABASE_URL")?;
    run_migrations(&db)
        .await
        .context("running the database migrations")?;
    let redis = connect_redis(redis_url.expose()).context("REDIS_URL")?;
    let listener = bind(args.settings.listen, args.settings.listen_backlog)
        .await
        .with_context(|| format!("binding {}", args.settings.listen))?;
    let bound = listener.local_addr()?;
    let config = args.settings.resolve(bound, webhook_secrets);
    let shutdown = shutdown_on_signal();
    tracing::info!(address = %bound, "livefund listening on http://{bound}");
    serve_on(listener, db, redis, config, shutdown).await?;
    tracing::info!("livefund stopped");
    Ok(())
}

/// `livefund migrate`: runs pending migrations and exits.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let db = connect_postgres(args.database.required()?.expose()).context("DATABASE_URL")?;
    run_migrations(&db)
        .await
        .context("running the database migrations")?;
    tracing::info!("migrations are up to date");
    Ok(())
}

/// `livefund rebuild-counters`: recomputes the live counters from the ledger.
pub async fn rebuild_counters(args: RebuildArgs) -> anyhow::Result<()> {
    let (database_url, redis_url) = args.backends.required()?;
    let db = connect_postgres(database_url.expose()).context("DATABASE_URL")?;
    let client = connect_redis(redis_url.expose()).context("REDIS_URL")?;
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let keys = Keys::new(args.prefix.redis_prefix);
    let campaigns: Vec<String> = match args.campaign {
        Some(one) => vec![one],
        None => sqlx::query_scalar(r#"select slug::text from campaigns order by id"#)
            .fetch_all(&db)
            .await
            .context("listing the campaigns")?,
    };
    for campaign in campaigns {
        let slug = Slug::parse("campaign", &campaign).map_err(anyhow::Error::msg)?;
        let totals = crate::ledger::rebuild_campaign(&db, &mut redis, &keys, &slug)
            .await
            .with_context(|| format!("rebuilding {campaign}"))?;
        println!(
            "{campaign}: confirmed {} matched {} refunded {} gifts {}",
            totals.campaign.confirmed,
            totals.campaign.matched,
            totals.campaign.refunded,
            totals.campaign.gifts
        );
    }
    Ok(())
}

/// A token cancelled on the first SIGINT (Ctrl-C) or SIGTERM; every part of the
/// process that must stop cleanly watches it.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            // Without Unix signal handlers, fall back to Ctrl-C alone.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
