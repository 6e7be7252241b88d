//! What a scenario measures: a private PostgreSQL and Redis on free loopback ports, the
//! demo fund seeded into them, and gateways (the release `livefund serve`, each its own
//! process so its CPU and memory can be read from `/proc`), all stopped when the bench ends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use livefund::demo::seed;
use livefund::demo::services::LocalServices;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::{Child, Command};

/// The operator token and webhook secret every gateway of a bench is started with.
const OPERATOR_TOKEN: &str = "load-tests-operator-token-0123456789";
pub const WEBHOOK_SECRET: &str = "load-tests-webhook-secret-0123456789";

/// Private services with the demo fund, and the gateways started on them.
pub struct Bench {
    services: Option<LocalServices>,
    pub db: PgPool,
    pub redis: redis::Client,
    pub campaign: String,
    pub streams: Vec<String>,
    work: PathBuf,
    http: reqwest::Client,
}

impl Bench {
    /// Starts PostgreSQL and Redis under `work` (emptied first) and seeds the demo fund.
    pub async fn start(work: &Path) -> anyhow::Result<Bench> {
        if work.exists() {
            std::fs::remove_dir_all(work)
                .with_context(|| format!("emptying {}", work.display()))?;
        }
        std::fs::create_dir_all(work)?;
        let services = LocalServices::start(&work.join("services"))
            .await
            .context("starting a private PostgreSQL and Redis")?;
        let db = livefund::connect_postgres(services.database_url())?;
        livefund::migrate(&db).await?;
        let seeded = seed::seed(&db).await?;
        let redis = livefund::connect_redis(services.redis_url())?;
        Ok(Bench {
            services: Some(services),
            db,
            redis,
            campaign: seeded.campaign,
            streams: seeded.streams,
            work: work.to_owned(),
            http: reqwest::Client::new(),
        })
    }

    pub fn database_url(&self) -> &str {
        self.services().database_url()
    }

    pub fn redis_url(&self) -> &str {
        self.services().redis_url()
    }

    /// Process ids of PostgreSQL's postmaster and of Redis.
    pub fn service_pids(&self) -> (u32, u32) {
        self.services().pids()
    }

    fn services(&self) -> &LocalServices {
        self.services
            .as_ref()
            .expect("services run until the bench stops")
    }

    /// Starts a gateway on a free loopback port with limits opened for load (per-socket
    /// and per-IP pledge limits off) and `env` on top, and waits until it is ready.
    pub async fn gateway(&self, name: &str, env: &[(&str, String)]) -> anyhow::Result<Gateway> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = std::fs::File::create(self.work.join(format!("{name}.log")))?;
        let mut command = Command::new(livefund_binary()?);
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", self.database_url())
            .env("REDIS_URL", self.redis_url())
            .env("LIVEFUND_LISTEN", addr.to_string())
            .env("LIVEFUND_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("LIVEFUND_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("LIVEFUND_WS_PLEDGES", "1000000")
            .env("LIVEFUND_WS_MESSAGES", "1000000")
            .env("LIVEFUND_HTTP_PLEDGES_PER_IP", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().context("starting livefund serve")?;
        let pid = child.id().context("the gateway exited at once")?;
        let mut gateway = Gateway {
            child,
            addr,
            pid,
            http: self.http.clone(),
        };
        gateway.wait_ready(Duration::from_secs(60)).await?;
        Ok(gateway)
    }

    /// Creates `count` more streams in the seeded campaign through the operator API.
    pub async fn add_streams(&self, via: &Gateway, count: usize) -> anyhow::Result<Vec<String>> {
        let mut made = Vec::with_capacity(count);
        for i in 0..count {
            let slug = format!("load-{i:04}");
            let response = self
                .http
                .post(via.url(&format!("/api/v1/campaigns/{}/streams", self.campaign)))
                .bearer_auth(OPERATOR_TOKEN)
                .json(&json!({"slug": slug, "streamer": format!("主播{i}"), "goal": 1_000_000}))
                .send()
                .await?;
            if !response.status().is_success() {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                bail!("creating stream {slug}: {body}");
            }
            made.push(slug);
        }
        Ok(made)
    }

    /// Stops every service the bench started and removes its data.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.db.close().await;
        if let Some(services) = self.services.take() {
            services.stop().await?;
        }
        let _ = std::fs::remove_dir_all(self.work.join("services"));
        Ok(())
    }
}

/// A running `livefund serve`.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    http: reqwest::Client,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, stream: &str, since: Option<u64>) -> String {
        match since {
            Some(seq) => format!(
                "ws://{}/api/v1/streams/{stream}/live?since={seq}",
                self.addr
            ),
            None => format!("ws://{}/api/v1/streams/{stream}/live", self.addr),
        }
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the gateway exited while starting: {status}");
            }
            if let Ok(response) = self.http.get(self.url("/readyz")).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if start.elapsed() > within {
                bail!("the gateway was not ready within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pledges `count` gifts on `stream` over HTTP and confirms each with a signed webhook,
    /// so the stream has recent gifts, top donors and a log to replay.
    pub async fn gifts(&self, stream: &str, count: usize) -> anyhow::Result<()> {
        for i in 0..count {
            let amount = 500 + (i as i64 % 20) * 500;
            let key = format!("busy-{stream}-{i}-{}", uuid::Uuid::new_v4().simple());
            let pledge: Value = self
                .http
                .post(self.url("/api/v1/pledges"))
                .json(&json!({
                    "stream": stream, "amount": amount, "currency": "CNY",
                    "donor_name": format!("热心观众{i}"), "anonymous": i % 4 == 0,
                    "message": "孩子们冬天快乐，加油！", "designation": "education",
                    "donor_ref": format!("busy-donor-{i}"), "idempotency_key": key,
                }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let pledge_id = pledge["pledge_id"].as_str().context("pledge_id")?;
            let txn = format!("busy-txn-{}", uuid::Uuid::new_v4().simple());
            let (body, signature) =
                crate::clients::signed_payment(pledge_id, amount, &txn, WEBHOOK_SECRET);
            self.http
                .post(self.url("/api/v1/webhooks/payments"))
                .header("Livefund-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await?
                .error_for_status()?;
        }
        Ok(())
    }

    /// CPU time and resident memory of the gateway process now.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(self.pid)
    }

    /// Stops the gateway with SIGTERM, killing it if it takes over 10 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// A process's CPU time (user + system) and resident set, read from `/proc`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub cpu: Duration,
    pub rss_kib: u64,
}

impl Usage {
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .context("reading /proc stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
        let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
            + fields.get(12).context("stime")?.parse::<u64>()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .context("reading VmRSS")?;
        Ok(Usage {
            cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64),
            rss_kib,
        })
    }

    /// This process (the load generator).
    pub fn own() -> anyhow::Result<Usage> {
        Usage::of(std::process::id())
    }
}

/// CPU time of a process and its children, those alive (from `/proc`) and those it reaped
/// (its `cutime` and `cstime`): PostgreSQL's postmaster and its backends, Redis and its
/// forks.
pub fn tree_cpu(root: u32) -> anyhow::Result<Duration> {
    let (_, own) = proc_ticks(root).with_context(|| format!("reading /proc/{root}/stat"))?;
    let mut ticks = own;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == root {
            continue;
        }
        // A process may end while it is read: it is then counted in its parent's cutime.
        if let Some((parent, child)) = proc_ticks(pid)
            && parent == root
        {
            ticks += child;
        }
    }
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// A process's parent and its CPU ticks (user + system, its own and its reaped children's).
fn proc_ticks(pid: u32) -> Option<(u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parent = fields.get(1)?.parse().ok()?;
    // utime, stime, cutime, cstime: fields 14 to 17 of the line, 11 to 14 after ')'.
    let mut ticks = 0u64;
    for i in 11..=14 {
        ticks += fields.get(i)?.parse::<u64>().ok()?;
    }
    Some((parent, ticks))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant of the running system.
    let ticks = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// The release `livefund` binary next to this one (`cargo build --release --workspace`).
pub fn livefund_binary() -> anyhow::Result<PathBuf> {
    let own = std::env::current_exe()?;
    let path = own
        .parent()
        .context("the load tests' own folder")?
        .join("livefund");
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release --workspace` (scripts/bench does)",
            path.display()
        );
    }
    Ok(path)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Raises this process's open-file limit to its hard limit: thousands of sockets.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}
