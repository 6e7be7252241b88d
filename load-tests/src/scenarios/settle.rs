//! `settle`: signed `payment.succeeded` confirmations, one per pledge made over HTTP,
//! delivered closed-loop at fixed numbers in flight and open-loop at fixed rates: gifts
//! settled a second, webhook latency, whether an answer ever came before its commit, and
//! the CPU of the gateway, PostgreSQL, Redis and the load generator. Baseline in the same
//! run: `COPY` of as many rows into the same tables (payment events and gifts, then with
//! their pledge rows too), one transaction each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use livefund::demo::seed::DESIGNATIONS;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::clients;
use crate::harness::{Bench, Gateway, Usage, WEBHOOK_SECRET, tree_cpu};
use crate::report::{Latency, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Confirmations per closed-loop phase (and rows of each COPY baseline).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Webhooks in flight in the closed-loop phases, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 512])]
    in_flight: Vec<usize>,
    /// Offered rates (webhooks a second) of the open-loop phases, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000u64, 2000, 4000])]
    rates: Vec<u64>,
    /// Seconds each open-loop phase offers its rate.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Pledge requests in flight while the pledges are made (not measured).
    #[arg(long, default_value_t = 128)]
    pledge_concurrency: usize,
}

/// Every this many gift answers, the ledger is read at once for the gift: a 2xx must come
/// only after the commit.
const CHECK_EVERY: usize = 50;
/// The longest one delivery may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a phase may last, whatever its size.
const PHASE_LIMIT: Duration = Duration::from_secs(600);
/// Open loop: the most deliveries in flight; past it the generator waits (and says so).
const OPEN_IN_FLIGHT: usize = 8192;
/// Open loop: a send more than this late ends the phase (the generator cannot keep up).
const OPEN_LATE_LIMIT: Duration = Duration::from_secs(10);
/// How long the write-behind and the relay may take to catch up between phases.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A pledge to confirm.
#[derive(Debug, Clone)]
struct Pledge {
    id: String,
    amount: i64,
}

#[derive(Debug, Clone, Copy)]
enum Load {
    /// This many deliveries in flight at all times.
    Closed(usize),
    /// This many deliveries a second, each sent on time whatever the answers.
    Open(u64),
}

impl Load {
    fn name(&self) -> String {
        match self {
            Load::Closed(k) => format!("{k} in flight"),
            Load::Open(r) => format!("{r}/s offered"),
        }
    }
}

struct Phase {
    load: Load,
    pledges: Vec<Pledge>,
}

/// What the deliveries of a phase came to.
#[derive(Default)]
struct Tally {
    /// 2xx whose outcome was `gift`.
    gifts: u64,
    /// 2xx with another outcome.
    other: BTreeMap<String, u64>,
    /// Not 2xx, by status or error.
    failed: BTreeMap<String, u64>,
    latency: Latency,
    /// Gifts read from the ledger right after their answer, and those not found there.
    checked: u64,
    uncommitted: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.gifts += other.gifts;
        for (k, v) in other.other {
            *self.other.entry(k).or_default() += v;
        }
        for (k, v) in other.failed {
            *self.failed.entry(k).or_default() += v;
        }
        self.latency.add(&other.latency);
        self.checked += other.checked;
        self.uncommitted += other.uncommitted;
    }

    fn failures(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.other.values().sum::<u64>()
    }
}

/// CPU of everything that works for a phase, read before and after it.
struct Cpu {
    gateway: Duration,
    postgres: Duration,
    redis: Duration,
    own: Duration,
}

impl Cpu {
    fn now(bench: &Bench, gateway: &Gateway) -> anyhow::Result<Cpu> {
        let (postgres, redis) = bench.service_pids();
        Ok(Cpu {
            gateway: gateway.usage()?.cpu,
            postgres: tree_cpu(postgres)?,
            redis: tree_cpu(redis)?,
            own: Usage::own()?.cpu,
        })
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            gateway: self.gateway.saturating_sub(before.gateway),
            postgres: self.postgres.saturating_sub(before.postgres),
            redis: self.redis.saturating_sub(before.redis),
            own: self.own.saturating_sub(before.own),
        }
    }
}

/// One phase measured.
struct Measured {
    load: Load,
    events: usize,
    tally: Tally,
    /// From the first send until the last answer.
    elapsed: Duration,
    cpu: Cpu,
    /// Settlement batches committed, and the events in them (from the gateway's metrics).
    batches: f64,
    batched: f64,
    /// Gifts the ledger holds of the phase's pledges.
    in_ledger: i64,
    /// Open loop: sends the generator never made (it fell too far behind), and whether it
    /// had to wait for room.
    unsent: usize,
    saturated: bool,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.tally.gifts as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn per_event_us(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / (self.tally.gifts.max(1) as f64)
    }

    fn cores(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn kept_up(&self) -> bool {
        match self.load {
            Load::Closed(_) => true,
            Load::Open(rate) => {
                self.unsent == 0 && self.tally.failures() == 0 && self.rate() >= 0.95 * rate as f64
            }
        }
    }
}

pub async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    let bench = Bench::start(work).await?;
    let result = measure(args, &bench).await;
    bench.stop().await?;
    result
}

async fn measure(args: &Args, bench: &Bench) -> anyhow::Result<Report> {
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    let gateway = bench.gateway("gateway", &[]).await?;
    let result = phases(args, bench, &gateway).await;
    gateway.stop().await?;
    result
}

async fn phases(args: &Args, bench: &Bench, gateway: &Gateway) -> anyhow::Result<Report> {
    let mut loads: Vec<(Load, usize)> = args
        .in_flight
        .iter()
        .map(|k| (Load::Closed((*k).max(1)), args.events))
        .collect();
    loads.extend(args.rates.iter().map(|r| {
        let rate = (*r).max(1);
        (Load::Open(rate), (rate * args.seconds.max(1)) as usize)
    }));
    let total: usize = loads.iter().map(|(_, n)| n).sum();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    eprintln!("settle: making {total} pledges over HTTP");
    let made_at = Instant::now();
    let mut pledges = make_pledges(
        gateway,
        &bench.streams,
        total,
        args.pledge_concurrency,
        &tag,
    )
    .await?;
    let pledging = made_at.elapsed();
    let written = wait_written(&bench.db, total).await?;
    let mut plan = Vec::with_capacity(loads.len());
    for (load, n) in loads {
        let rest = pledges.split_off(n.min(pledges.len()));
        plan.push(Phase {
            load,
            pledges: std::mem::replace(&mut pledges, rest),
        });
    }

    let mut measured = Vec::with_capacity(plan.len());
    for (i, phase) in plan.into_iter().enumerate() {
        eprintln!(
            "settle: phase {}: {} confirmations, {}",
            i + 1,
            phase.pledges.len(),
            phase.load.name()
        );
        let m = run_phase(bench, gateway, phase, &format!("{tag}-{i}")).await?;
        eprintln!(
            "settle:   {:.0} settled/s, p50 {:.1} ms, p99 {:.1} ms, {} failed",
            m.rate(),
            m.tally.latency.ms(0.5),
            m.tally.latency.ms(0.99),
            m.tally.failures()
        );
        measured.push(m);
        drain_outbox(&bench.db).await?;
    }
    let written_rows = rows_written(&bench.db).await?;

    eprintln!("settle: COPY baselines, {} events each", args.events);
    let plain = copy_baseline(bench, args.events, false, &format!("{tag}-copy")).await?;
    let with_pledges = copy_baseline(bench, args.events, true, &format!("{tag}-copyp")).await?;

    let mut report = Report::new("settle");
    let mut failures = 0;
    let mut mismatches = 0;
    let (mut checked, mut uncommitted) = (0, 0);
    for m in &measured {
        let name = m.load.name();
        failures += m.tally.failures();
        mismatches += (m.in_ledger - m.events as i64).unsigned_abs();
        checked += m.tally.checked;
        uncommitted += m.tally.uncommitted;
        match m.load {
            Load::Closed(_) => {
                report.faster(
                    &format!("settled at {name} (vs COPY events + gifts)"),
                    "/s",
                    m.rate(),
                    plain.events_per_s(),
                );
                report.figure(
                    &format!("webhook p50 at {name}"),
                    "ms",
                    m.tally.latency.ms(0.5),
                );
                report.figure(
                    &format!("webhook p99 at {name}"),
                    "ms",
                    m.tally.latency.ms(0.99),
                );
                report.cheaper(
                    &format!("PostgreSQL CPU per event at {name}"),
                    "µs",
                    m.per_event_us(m.cpu.postgres),
                    plain.postgres_us_per_event(),
                );
                report.figure(
                    &format!("gateway CPU per event at {name}"),
                    "µs",
                    m.per_event_us(m.cpu.gateway),
                );
            }
            Load::Open(_) => {
                report.figure(&format!("settled at {name}"), "/s", m.rate());
                report.figure(
                    &format!("webhook p50 at {name}"),
                    "ms",
                    m.tally.latency.ms(0.5),
                );
                report.figure(
                    &format!("webhook p99 at {name}"),
                    "ms",
                    m.tally.latency.ms(0.99),
                );
                report.figure(
                    &format!("kept up at {name}"),
                    "yes=1",
                    if m.kept_up() { 1.0 } else { 0.0 },
                );
            }
        }
    }
    if let Some(top) = measured
        .iter()
        .filter(|m| matches!(m.load, Load::Closed(_)))
        .max_by_key(|m| match m.load {
            Load::Closed(k) => k,
            Load::Open(_) => 0,
        })
    {
        report.faster(
            &format!("settled at {} (vs COPY with pledge rows)", top.load.name()),
            "/s",
            top.rate(),
            with_pledges.events_per_s(),
        );
        report.figure(
            &format!("load generator CPU at {}", top.load.name()),
            "cores",
            top.cores(top.cpu.own),
        );
    }
    report.figure("non-gift answers", "webhooks", failures as f64);
    report.figure("ledger mismatches", "gifts", mismatches as f64);
    report.figure("2xx before commit", "of sampled", uncommitted as f64);

    report.note(format!(
        "{total} pledges made over HTTP first ({:.0}/s, {} in flight; written behind to PostgreSQL {}), then one signed payment.succeeded per pledge; closed loop: {} events per phase; open loop: {} s per rate, latency from each send's due time; a gift answer in {CHECK_EVERY} is looked up in the ledger at once ({checked} looked up)",
        total as f64 / pledging.as_secs_f64().max(1e-9),
        args.pledge_concurrency,
        if written {
            "before the first confirmation"
        } else {
            "NOT in full within the wait: settlement read some from Redis"
        },
        args.events,
        args.seconds,
    ));
    for m in &measured {
        let mean_batch = if m.batches > 0.0 {
            m.batched / m.batches
        } else {
            0.0
        };
        report.note(format!(
            "{}: {} events in {:.2} s, {:.0} settled/s, p50 {:.1} / p99 {:.1} / max {:.1} ms; {:.0} batches (mean {:.0} events, {:.0} commits/s); CPU cores: gateway {:.2}, PostgreSQL {:.2}, Redis {:.2}, load generator {:.2}{}{}{}",
            m.load.name(),
            m.events,
            m.elapsed.as_secs_f64(),
            m.rate(),
            m.tally.latency.ms(0.5),
            m.tally.latency.ms(0.99),
            m.tally.latency.ms(1.0),
            m.batches,
            mean_batch,
            m.batches / m.elapsed.as_secs_f64().max(1e-9),
            m.cores(m.cpu.gateway),
            m.cores(m.cpu.postgres),
            m.cores(m.cpu.redis),
            m.cores(m.cpu.own),
            if m.tally.failed.is_empty() && m.tally.other.is_empty() {
                String::new()
            } else {
                format!("; failed {:?}, other outcomes {:?}", m.tally.failed, m.tally.other)
            },
            if m.unsent > 0 {
                format!("; {} never sent (the generator fell behind)", m.unsent)
            } else {
                String::new()
            },
            if m.saturated {
                format!("; {OPEN_IN_FLIGHT} in flight reached")
            } else {
                String::new()
            },
        ));
    }
    report.note(format!(
        "rows settlement left for {} payments: {written_rows}; each batch also updates payment_events.outcome and pledges.status per event, stream_confirmed / campaign_confirmed / matching_pools once, and the relay deletes the outbox rows",
        measured.iter().map(|m| m.events).sum::<usize>()
    ));
    report.note(format!(
        "COPY baselines, one transaction each, into the same tables of the same database: payment_events + gifts: {} events in {:.3} s = {:.0} events/s (PostgreSQL {:.1} µs/event); with their pledge rows: {:.3} s = {:.0} events/s (PostgreSQL {:.1} µs/event)",
        plain.events,
        plain.elapsed.as_secs_f64(),
        plain.events_per_s(),
        plain.postgres_us_per_event(),
        with_pledges.elapsed.as_secs_f64(),
        with_pledges.events_per_s(),
        with_pledges.postgres_us_per_event(),
    ));
    Ok(report)
}

/// Makes `count` pledges over HTTP, `concurrency` at a time, spread over `streams`.
async fn make_pledges(
    gateway: &Gateway,
    streams: &[String],
    count: usize,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<Vec<Pledge>> {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(gateway.url("/api/v1/pledges"));
    let streams = Arc::new(streams.to_vec());
    let until = Instant::now() + PHASE_LIMIT;
    let mut workers = Vec::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (http, next, url, streams) = (http.clone(), next.clone(), url.clone(), streams.clone());
        let tag = tag.to_owned();
        workers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if Instant::now() > until {
                    bail!("making pledges took over {PHASE_LIMIT:?}");
                }
                let body = pledge_body(i, &streams[i % streams.len()], &tag);
                let amount = body["amount"].as_i64().context("amount")?;
                let response = http.post(url.as_str()).json(&body).send().await?;
                let status = response.status();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                if !status.is_success() {
                    bail!("pledge {i} refused: {status} {answer}");
                }
                let id = answer["pledge_id"]
                    .as_str()
                    .with_context(|| format!("pledge {i}: no pledge_id in {answer}"))?
                    .to_owned();
                made.push((i, Pledge { id, amount }));
            }
            Ok(made)
        }));
    }
    let mut all = Vec::with_capacity(count);
    for worker in workers {
        all.extend(worker.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, p)| p).collect())
}

/// The i-th pledge: amounts from ¥5 to ¥200, every designation and none, one in five
/// anonymous, donors giving about twice each.
fn pledge_body(i: usize, stream: &str, tag: &str) -> Value {
    let amount = 500 + ((i as i64 * 7919) % 40) * 500;
    let designation = DESIGNATIONS
        .get(i % (DESIGNATIONS.len() + 1))
        .map(|(code, _)| *code);
    json!({
        "stream": stream,
        "amount": amount,
        "currency": "CNY",
        "donor_name": format!("观众{}", i % 5000),
        "anonymous": i.is_multiple_of(5),
        "message": "孩子们冬天快乐，加油！",
        "designation": designation,
        "donor_ref": format!("settle-donor-{}", i / 2),
        "idempotency_key": format!("settle-{tag}-{i}"),
    })
}

/// Waits until PostgreSQL holds at least `count` pledges (the write-behind caught up);
/// false if it did not within [`CATCH_UP`].
async fn wait_written(db: &PgPool, count: usize) -> anyhow::Result<bool> {
    let until = Instant::now() + CATCH_UP;
    loop {
        let stored: i64 = sqlx::query_scalar("select count(*) from pledges")
            .fetch_one(db)
            .await?;
        if stored >= count as i64 {
            return Ok(true);
        }
        if Instant::now() > until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the relay applied every live effect, so phases do not overlap.
async fn drain_outbox(db: &PgPool) -> anyhow::Result<()> {
    let until = Instant::now() + CATCH_UP;
    loop {
        let left: i64 = sqlx::query_scalar("select count(*) from outbox")
            .fetch_one(db)
            .await?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{left} live effects still in the outbox after {CATCH_UP:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rows settlement left in the ledger's tables, for the report.
async fn rows_written(db: &PgPool) -> anyhow::Result<String> {
    let (events, gifts, matching, milestones, confirmed): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "select (select count(*) from payment_events), (select count(*) from gifts), \
             (select count(*) from matching_entries), (select count(*) from milestones), \
             (select count(*) from pledges where status = 'confirmed')",
        )
        .fetch_one(db)
        .await?;
    Ok(format!(
        "{events} payment_events, {gifts} gifts, {matching} matching_entries (the sponsor's cap), {milestones} milestones, {confirmed} pledges confirmed"
    ))
}

async fn run_phase(
    bench: &Bench,
    gateway: &Gateway,
    phase: Phase,
    tag: &str,
) -> anyhow::Result<Measured> {
    let events = phase.pledges.len();
    let ids: Vec<uuid::Uuid> = phase
        .pledges
        .iter()
        .map(|p| p.id.parse())
        .collect::<Result<_, _>>()?;
    let target = Target {
        http: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(usize::MAX)
            .build()?,
        url: gateway.url("/api/v1/webhooks/payments"),
        db: bench.db.clone(),
        tag: tag.to_owned(),
    };
    let target = Arc::new(target);
    let pledges = Arc::new(phase.pledges);
    let (batches_before, batched_before) = batch_metrics(gateway).await?;
    let cpu_before = Cpu::now(bench, gateway)?;
    let (tally, elapsed, unsent, saturated) = match phase.load {
        Load::Closed(k) => {
            let (tally, elapsed) = closed_loop(target, pledges, k).await?;
            (tally, elapsed, 0, false)
        }
        Load::Open(rate) => open_loop(target, pledges, rate).await?,
    };
    let cpu = Cpu::now(bench, gateway)?.since(&cpu_before);
    let (batches_after, batched_after) = batch_metrics(gateway).await?;
    let in_ledger: i64 = sqlx::query_scalar("select count(*) from gifts where pledge_id = any($1)")
        .bind(&ids)
        .fetch_one(&bench.db)
        .await?;
    Ok(Measured {
        load: phase.load,
        events,
        tally,
        elapsed,
        cpu,
        batches: batches_after - batches_before,
        batched: batched_after - batched_before,
        in_ledger,
        unsent,
        saturated,
    })
}

/// Where and how a phase delivers.
struct Target {
    http: reqwest::Client,
    url: String,
    db: PgPool,
    tag: String,
}

/// What one delivery came to.
enum Answer {
    Gift,
    Other(String),
    Failed(String),
}

impl Target {
    /// Delivers the confirmation of the i-th pledge; a sampled gift answer is then looked
    /// up in the ledger (the returned task says whether it was there).
    async fn deliver(&self, i: usize, pledge: &Pledge) -> (Answer, Option<JoinHandle<bool>>) {
        let txn = format!("settle-{}-{i}", self.tag);
        let (body, signature) =
            clients::signed_payment(&pledge.id, pledge.amount, &txn, WEBHOOK_SECRET);
        let sent = self
            .http
            .post(&self.url)
            .header("Livefund-Signature", signature)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return (Answer::Failed(error_kind(&e)), None),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return (Answer::Failed(error_kind(&e)), None),
        };
        if !status.is_success() {
            return (Answer::Failed(status.as_u16().to_string()), None);
        }
        let text = String::from_utf8_lossy(&body);
        if !text.contains(r#""outcome":"gift""#) {
            let outcome = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["outcome"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "unreadable".into());
            return (Answer::Other(outcome), None);
        }
        let check = i.is_multiple_of(CHECK_EVERY).then(|| {
            let db = self.db.clone();
            let event_id = format!("evt_{txn}");
            tokio::spawn(async move {
                sqlx::query_scalar::<_, bool>(
                    "select exists (select 1 from gifts where event_id = $1)",
                )
                .bind(event_id)
                .fetch_one(&db)
                .await
                .unwrap_or(false)
            })
        });
        (Answer::Gift, check)
    }
}

fn error_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

impl Tally {
    fn record(&mut self, answer: Answer, took: Duration) {
        match answer {
            Answer::Gift => {
                self.gifts += 1;
                self.latency.record(took);
            }
            Answer::Other(outcome) => *self.other.entry(outcome).or_default() += 1,
            Answer::Failed(why) => *self.failed.entry(why).or_default() += 1,
        }
    }

    async fn collect_checks(&mut self, checks: Vec<JoinHandle<bool>>) {
        for check in checks {
            self.checked += 1;
            if !check.await.unwrap_or(false) {
                self.uncommitted += 1;
            }
        }
    }
}

/// `in_flight` workers, each sending the next confirmation as soon as its last is answered.
async fn closed_loop(
    target: Arc<Target>,
    pledges: Arc<Vec<Pledge>>,
    in_flight: usize,
) -> anyhow::Result<(Tally, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + PHASE_LIMIT;
    let mut workers = Vec::with_capacity(in_flight);
    for _ in 0..in_flight.min(pledges.len()).max(1) {
        let (target, pledges, next) = (target.clone(), pledges.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut checks = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(pledge) = pledges.get(i) else { break };
                if Instant::now() > until {
                    tally.record(Answer::Failed("phase time limit".into()), Duration::ZERO);
                    continue;
                }
                let sent = Instant::now();
                let (answer, check) = target.deliver(i, pledge).await;
                tally.record(answer, sent.elapsed());
                checks.extend(check);
            }
            (tally, checks, started.elapsed())
        }));
    }
    let mut tally = Tally::default();
    let mut elapsed = Duration::ZERO;
    let mut checks = Vec::new();
    for worker in workers {
        let (mine, my_checks, done) = worker.await?;
        tally.add(mine);
        checks.extend(my_checks);
        elapsed = elapsed.max(done);
    }
    tally.collect_checks(checks).await;
    Ok((tally, elapsed))
}

/// Sends confirmation i at `start + i / rate` whatever the answers; latency counts from
/// that due time, so a late send counts against the service as its own wait would.
async fn open_loop(
    target: Arc<Target>,
    pledges: Arc<Vec<Pledge>>,
    rate: u64,
) -> anyhow::Result<(Tally, Duration, usize, bool)> {
    let gate = Arc::new(Semaphore::new(OPEN_IN_FLIGHT));
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(20);
    let mut sends = Vec::with_capacity(pledges.len());
    let (mut unsent, mut saturated) = (0, false);
    for i in 0..pledges.len() {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        if due.elapsed() > OPEN_LATE_LIMIT || start.elapsed() > PHASE_LIMIT {
            unsent = pledges.len() - i;
            break;
        }
        let permit = match gate.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                saturated = true;
                gate.clone().acquire_owned().await?
            }
        };
        let (target, pledges) = (target.clone(), pledges.clone());
        sends.push(tokio::spawn(async move {
            let _permit = permit;
            let (answer, check) = target.deliver(i, &pledges[i]).await;
            (answer, due.elapsed(), check, start.elapsed())
        }));
    }
    let mut tally = Tally::default();
    let mut checks = Vec::new();
    let mut elapsed = Duration::ZERO;
    for send in sends {
        let (answer, took, check, done) = send.await?;
        tally.record(answer, took);
        checks.extend(check);
        elapsed = elapsed.max(done);
    }
    tally.collect_checks(checks).await;
    Ok((tally, elapsed, unsent, saturated))
}

/// The gateway's settlement batches so far and the events in them, from `/metrics`
/// (`livefund_settlement_batch_size`'s count and sum; zeros when it has none yet).
async fn batch_metrics(gateway: &Gateway) -> anyhow::Result<(f64, f64)> {
    let text = reqwest::Client::new()
        .get(gateway.url("/metrics"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let value = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    Ok((
        value("livefund_settlement_batch_size_count"),
        value("livefund_settlement_batch_size_sum"),
    ))
}

/// One COPY baseline.
struct Copied {
    events: usize,
    elapsed: Duration,
    postgres: Duration,
}

impl Copied {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn postgres_us_per_event(&self) -> f64 {
        self.postgres.as_secs_f64() * 1e6 / self.events.max(1) as f64
    }
}

/// `COPY ... FROM STDIN` of `events` payment events and their gifts (and their pledge
/// rows first when `with_pledges`), as settlement writes them, in one transaction on one
/// connection; the rows are made before the clock starts.
async fn copy_baseline(
    bench: &Bench,
    events: usize,
    with_pledges: bool,
    tag: &str,
) -> anyhow::Result<Copied> {
    let streams: Vec<(i64, i64)> = sqlx::query_as(
        "select s.id, s.campaign_id from streams s join campaigns c on c.id = s.campaign_id \
         where c.slug = $1 order by s.id",
    )
    .bind(&bench.campaign)
    .fetch_all(&bench.db)
    .await?;
    if streams.is_empty() {
        bail!("the seeded campaign has no streams");
    }
    let rows = CopyRows::make(events, &streams, tag);
    let (postgres_pid, _) = bench.service_pids();
    let mut conn = bench.db.acquire().await?;
    let cpu_before = tree_cpu(postgres_pid)?;
    let started = Instant::now();
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    if with_pledges {
        copy_in(
            &mut tx,
            "copy pledges (id, campaign_id, stream_id, amount, currency, designation, donor_name, \
             anonymous, message, donor_ref, idempotency_key, status, created_at, expires_at) \
             from stdin",
            &rows.pledges,
        )
        .await?;
    }
    copy_in(
        &mut tx,
        "copy payment_events (event_id, type, pledge_id, provider_txn_id, amount, currency, fee, \
         occurred_at, test, outcome) from stdin",
        &rows.events,
    )
    .await?;
    copy_in(
        &mut tx,
        "copy gifts (id, campaign_id, stream_id, pledge_id, provider_txn_id, event_id, amount, fee, \
         currency, designation, donor_name, anonymous, message, donor_ref) from stdin",
        &rows.gifts,
    )
    .await?;
    tx.commit().await?;
    let elapsed = started.elapsed();
    let postgres = tree_cpu(postgres_pid)?.saturating_sub(cpu_before);
    Ok(Copied {
        events,
        elapsed,
        postgres,
    })
}

async fn copy_in(
    conn: &mut sqlx::PgConnection,
    statement: &str,
    data: &[u8],
) -> anyhow::Result<()> {
    let mut copy = conn.copy_in_raw(statement).await?;
    for chunk in data.chunks(256 * 1024) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    Ok(())
}

/// Rows in COPY's text format (tab-separated, `\N` for null).
struct CopyRows {
    pledges: Vec<u8>,
    events: Vec<u8>,
    gifts: Vec<u8>,
}

impl CopyRows {
    fn make(events: usize, streams: &[(i64, i64)], tag: &str) -> CopyRows {
        let now = chrono::Utc::now();
        let created = now.to_rfc3339();
        let expires = (now + chrono::Duration::minutes(30)).to_rfc3339();
        let (mut pledges, mut payments, mut gifts) = (String::new(), String::new(), String::new());
        for i in 0..events {
            let (stream_id, campaign_id) = streams[i % streams.len()];
            let pledge_id = uuid::Uuid::new_v4();
            let gift_id = uuid::Uuid::new_v4();
            let amount = 500 + ((i as i64 * 7919) % 40) * 500;
            let fee = amount / 100;
            let designation = DESIGNATIONS
                .get(i % (DESIGNATIONS.len() + 1))
                .map(|(code, _)| *code)
                .unwrap_or(r"\N");
            let anonymous = i.is_multiple_of(5);
            let name = if anonymous {
                r"\N".to_owned()
            } else {
                format!("观众{}", i % 5000)
            };
            let message = "孩子们冬天快乐，加油！";
            let donor = format!("settle-donor-{tag}-{}", i / 2);
            let txn = format!("settle-{tag}-{i}");
            let event = format!("evt_{txn}");
            let _ = writeln!(
                pledges,
                "{pledge_id}\t{campaign_id}\t{stream_id}\t{amount}\tCNY\t{designation}\t{name}\t{anonymous}\t{message}\t{donor}\tsettle-{tag}-{i}\tconfirmed\t{created}\t{expires}"
            );
            let _ = writeln!(
                payments,
                "{event}\tpayment.succeeded\t{pledge_id}\t{txn}\t{amount}\tCNY\t{fee}\t{created}\tfalse\tgift"
            );
            let _ = writeln!(
                gifts,
                "{gift_id}\t{campaign_id}\t{stream_id}\t{pledge_id}\t{txn}\t{event}\t{amount}\t{fee}\tCNY\t{designation}\t{name}\t{anonymous}\t{message}\t{donor}"
            );
        }
        CopyRows {
            pledges: pledges.into_bytes(),
            events: payments.into_bytes(),
            gifts: gifts.into_bytes(),
        }
    }
}
