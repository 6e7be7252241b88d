//! Command line and environment configuration (CONTRACT §2), and the resolved settings.
//!
//! Every variable is also a `--flag` of the same name in kebab case; the short
//! forms (`--listen`, `--operator-token`, ...) are aliases. Secrets are held in
//! [`Secret`], whose `Debug` never shows the value.

use clap::{Args, Parser, Subcommand};

mod limits;

pub use limits::Limits;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// livefund: charity fundraising through live streams.
#[derive(Debug, Parser)]
#[command(name = "livefund", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run pending migrations, then serve the API and the live WebSockets.
    Serve(ServeArgs),
    /// Run pending migrations on the fund database and exit.
    Migrate(MigrateArgs),
    /// Recompute the live counters (totals, donors, leaderboards) from the ledger in
    /// PostgreSQL, for every campaign or one; for when Redis was lost or drifted.
    RebuildCounters(RebuildArgs),
    /// Everything local: its own PostgreSQL and Redis, a seeded fund, campaign and
    /// streams, sandbox payments; prints the URLs to open. Ctrl-C stops it all.
    Demo(DemoArgs),
    /// Reconcile a campaign's ledger with the provider's statement and its live totals:
    /// the report on stdout, a summary on stderr; exits 1 when the report is not clean.
    Reconcile(ReconcileArgs),
}

/// A setting a subcommand needs that was not given.
#[derive(Debug, thiserror::Error)]
#[error("{variable} is required: set it, or pass {flag}")]
pub struct Missing {
    pub variable: &'static str,
    pub flag: &'static str,
}

/// PostgreSQL, the fund database. Declared once: `serve` and `migrate` require it, the
/// demo takes it or starts its own.
#[derive(Debug, Clone, Args)]
pub struct Database {
    /// PostgreSQL, the fund database (source of truth); required by `serve` and `migrate`.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
}

impl Database {
    pub fn required(&self) -> Result<&Secret, Missing> {
        self.database_url.as_ref().ok_or(Missing {
            variable: "DATABASE_URL",
            flag: "--database-url",
        })
    }
}

/// Redis, what is live.
#[derive(Debug, Clone, Args)]
pub struct Redis {
    /// Redis, the live counters and fan-out; required by `serve`.
    #[arg(long = "redis-url", env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
}

impl Redis {
    pub fn required(&self) -> Result<&Secret, Missing> {
        self.redis_url.as_ref().ok_or(Missing {
            variable: "REDIS_URL",
            flag: "--redis-url",
        })
    }
}

/// The two backends a gateway needs.
#[derive(Debug, Clone, Args)]
pub struct Backends {
    #[command(flatten)]
    pub database: Database,
    #[command(flatten)]
    pub redis: Redis,
}

impl Backends {
    /// Both URLs, or what is missing.
    pub fn required(&self) -> Result<(&Secret, &Secret), Missing> {
        Ok((self.database.required()?, self.redis.required()?))
    }
}

/// The prefix of every Redis key.
#[derive(Debug, Clone, Args)]
pub struct RedisPrefix {
    /// Prefix of every Redis key, so several deployments or test runs share one Redis.
    #[arg(
        long = "livefund-redis-prefix",
        visible_alias = "redis-prefix",
        env = "LIVEFUND_REDIS_PREFIX",
        default_value = "lf",
        value_parser = parse_redis_prefix
    )]
    pub redis_prefix: String,
}

/// The secret(s) the payment provider signs its webhooks with.
#[derive(Debug, Clone, Args)]
pub struct WebhookSecret {
    /// HMAC secret shared with the payment provider; several, comma-separated, during
    /// rotation. Required by `serve`; the demo makes one when absent.
    #[arg(
        long = "livefund-webhook-secret",
        visible_alias = "webhook-secret",
        env = "LIVEFUND_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub webhook_secret: Option<WebhookSecrets>,
}

impl WebhookSecret {
    pub fn required(&self) -> Result<&WebhookSecrets, Missing> {
        self.webhook_secret.as_ref().ok_or(Missing {
            variable: "LIVEFUND_WEBHOOK_SECRET",
            flag: "--livefund-webhook-secret",
        })
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub backends: Backends,
    #[command(flatten)]
    pub webhook: WebhookSecret,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: Database,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub backends: Backends,
    #[command(flatten)]
    pub prefix: RedisPrefix,
    /// Only this campaign (its slug); default every campaign.
    #[arg(long)]
    pub campaign: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub backends: Backends,
    #[command(flatten)]
    pub prefix: RedisPrefix,
    /// The campaign's slug.
    #[arg(long)]
    pub campaign: String,
    /// The provider's statement (CSV, CONTRACT §8).
    #[arg(long, value_name = "FILE")]
    pub statement: std::path::PathBuf,
    /// How the report is written to stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub format: ReportFormat,
}

/// A report's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// PostgreSQL and Redis to use instead of starting its own (both, or neither).
    #[command(flatten)]
    pub backends: Backends,
    /// Where the demo keeps the PostgreSQL and Redis it starts, and its generated secrets.
    #[arg(
        long = "data-dir",
        env = "LIVEFUND_DEMO_DIR",
        default_value = "livefund-demo-data"
    )]
    pub data_dir: PathBuf,
    /// The sandbox provider's webhook secret(s); generated when absent.
    #[command(flatten)]
    pub webhook: WebhookSecret,
    /// Made-up viewers pledging this many times a second across the seeded streams
    /// (most paid by the sandbox a moment later, some failed), so an overlay can be
    /// watched moving; 0 simulates no one.
    #[arg(long = "simulate", value_name = "N", default_value_t = 0)]
    pub simulate: u32,
    #[command(flatten)]
    pub settings: Settings,
}

/// Settings shared by `serve` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to bind (port 0 picks a free port).
    #[arg(
        long = "livefund-listen",
        visible_alias = "listen",
        env = "LIVEFUND_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Connections the kernel queues for acceptance: a burst of reconnecting overlays
    /// (a gateway restart) must not wait for SYN retransmits (capped by the kernel's
    /// `net.core.somaxconn`).
    #[arg(
        long = "livefund-listen-backlog",
        env = "LIVEFUND_LISTEN_BACKLOG",
        default_value_t = 4096
    )]
    pub listen_backlog: u32,
    /// Base URL used in links handed out (checkout); default `http://` + the bound address.
    #[arg(
        long = "livefund-public-url",
        visible_alias = "public-url",
        env = "LIVEFUND_PUBLIC_URL"
    )]
    pub public_url: Option<String>,
    /// Bearer token accepted for operator calls; without it the operator API is disabled.
    #[arg(
        long = "livefund-operator-token",
        visible_alias = "operator-token",
        env = "LIVEFUND_OPERATOR_TOKEN",
        hide_env_values = true
    )]
    pub operator_token: Option<Secret>,
    /// Origins allowed to open a WebSocket or call the pledge API from a browser
    /// (comma-separated); the service's own origin is always allowed.
    #[arg(
        long = "livefund-allowed-origins",
        visible_alias = "allowed-origins",
        env = "LIVEFUND_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Enable the built-in sandbox payment provider.
    #[arg(
        long = "livefund-sandbox-payments",
        visible_alias = "sandbox-payments",
        env = "LIVEFUND_SANDBOX_PAYMENTS"
    )]
    pub sandbox_payments: bool,
    #[command(flatten)]
    pub prefix: RedisPrefix,
    /// Where viewers pay: the pledge id is appended as a path segment. Default: the
    /// sandbox checkout of this service.
    #[arg(
        long = "livefund-checkout-url",
        visible_alias = "checkout-url",
        env = "LIVEFUND_CHECKOUT_URL"
    )]
    pub checkout_url: Option<String>,
    #[command(flatten)]
    pub limits: Limits,
}

impl Settings {
    /// Resolves the settings once the listener is bound, so port 0 yields a usable URL.
    pub fn resolve(&self, bound: SocketAddr, webhook_secrets: WebhookSecrets) -> Config {
        let public_url = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let public_url = public_url.trim_end_matches('/').to_owned();
        let mut allowed_origins: Vec<String> = self
            .allowed_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        allowed_origins.push(public_url.clone());
        let checkout_url = self
            .checkout_url
            .clone()
            .unwrap_or_else(|| format!("{public_url}/sandbox/checkout"))
            .trim_end_matches('/')
            .to_owned();
        Config {
            checkout_url,
            limits: self.limits.clone(),
            public_url,
            operator_token: self.operator_token.clone(),
            webhook_secrets,
            allowed_origins,
            sandbox_payments: self.sandbox_payments,
            redis_prefix: self.prefix.redis_prefix.clone(),
        }
    }
}

/// The settings the running service uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub public_url: String,
    pub operator_token: Option<Secret>,
    pub webhook_secrets: WebhookSecrets,
    /// Exact origins (scheme://host[:port]) allowed for browsers, the public URL included.
    pub allowed_origins: Vec<String>,
    pub sandbox_payments: bool,
    pub redis_prefix: String,
    /// Base of the checkout links handed to viewers (`<base>/<pledge_id>`).
    pub checkout_url: String,
    pub limits: Limits,
}

impl Config {
    /// Whether a browser page from `origin` may open a socket or pledge.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        self.allowed_origins.iter().any(|o| o == origin)
    }
}

/// A secret value (token, password-bearing URL, HMAC key). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        Ok(Secret(s.to_owned()))
    }
}

/// One or more webhook HMAC secrets; several are accepted during rotation.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WebhookSecrets(Vec<Secret>);

impl WebhookSecrets {
    pub fn new(secrets: Vec<Secret>) -> Result<Self, String> {
        if secrets.is_empty() {
            return Err("at least one webhook secret is needed".into());
        }
        Ok(Self(secrets))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }

    /// The secret a sender signs with: the first one listed.
    pub fn signing(&self) -> &Secret {
        &self.0[0]
    }
}

impl FromStr for WebhookSecrets {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let secrets = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Secret::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        WebhookSecrets::new(secrets)
    }
}

fn parse_redis_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' and '.'".into())
    }
}

#[cfg(test)]
mod tests;
