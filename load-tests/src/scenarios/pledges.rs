//! `pledges`: N sockets pledging across S streams, one pledge in flight per socket: accepted
//! pledges a second, ack latency and refusals by code. Baseline in the same run: the
//! project's own pledge script run alone by `redis-benchmark` via EVALSHA, with the same
//! key shapes and as many connections.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use livefund::counters::{Keys, PledgeWrite, pledge_call, pledge_script_source};
use livefund::domain::{Currency, Money, PledgeRecord, PledgeStatus, Slug};
use tokio::sync::Mutex;

use crate::clients::{self, Ws};
use crate::harness::{Bench, Usage};
use crate::report::{Latency, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Pledging sockets (and redis-benchmark connections).
    #[arg(long, default_value_t = 64)]
    sockets: usize,
    /// Streams the sockets are spread over (the demo has 3; more are created).
    #[arg(long, default_value_t = 3)]
    streams: usize,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

/// What the pledging sockets counted while measuring.
#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: BTreeMap<String, u64>,
    acks: Latency,
}

pub async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    let bench = Bench::start(work).await?;
    let result = measure(args, &bench).await;
    bench.stop().await?;
    result
}

async fn measure(args: &Args, bench: &Bench) -> anyhow::Result<Report> {
    let gateway = bench.gateway("gateway", &[]).await?;
    let mut streams = bench.streams.clone();
    if args.streams > streams.len() {
        let more = bench
            .add_streams(&gateway, args.streams - streams.len())
            .await?;
        streams.extend(more);
    }
    streams.truncate(args.streams.max(1));

    let mut sockets = Vec::with_capacity(args.sockets);
    for i in 0..args.sockets {
        let stream = &streams[i % streams.len()];
        let url = gateway.ws_url(stream, None);
        let (ws, _) = clients::watcher(gateway.addr, &url, clients::source(i)).await?;
        sockets.push(ws);
    }

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(args.warmup);
    let until = measure_from + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        tasks.push(tokio::spawn(pledge_loop(
            i,
            ws,
            measure_from,
            until,
            tally.clone(),
        )));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let redis_pid = bench.service_pids().1;
    let (gw_before, own_before, redis_before) =
        (gateway.usage()?, Usage::own()?, Usage::of(redis_pid)?);
    tokio::time::sleep_until(until.into()).await;
    let (gw_after, own_after, redis_after) =
        (gateway.usage()?, Usage::own()?, Usage::of(redis_pid)?);
    for task in tasks {
        task.await??;
    }
    gateway.stop().await?;

    let tally = tally.lock().await;
    let seconds = args.seconds as f64;
    let rate = tally.accepted as f64 / seconds;
    let alone = script_alone(bench, &streams, args.sockets, tally.accepted.max(50_000)).await?;

    let mut report = Report::new("pledges");
    report.faster("accepted pledges", "/s", rate, alone.rate);
    report.cheaper("ack p50", "ms", tally.acks.ms(0.5), alone.p50_ms);
    report.cheaper("ack p99", "ms", tally.acks.ms(0.99), alone.p99_ms);
    let gw_cpu = (gw_after.cpu - gw_before.cpu).as_secs_f64();
    report.figure(
        "gateway CPU per pledge",
        "µs",
        gw_cpu * 1e6 / tally.accepted.max(1) as f64,
    );
    report.figure("gateway CPU", "cores", gw_cpu / seconds);
    report.figure(
        "Redis CPU",
        "cores",
        (redis_after.cpu - redis_before.cpu).as_secs_f64() / seconds,
    );
    report.figure(
        "load generator CPU",
        "cores",
        (own_after.cpu - own_before.cpu).as_secs_f64() / seconds,
    );
    let refused: u64 = tally.refused.values().sum();
    report.figure("refused", "pledges", refused as f64);
    report.note(format!(
        "{} sockets on {} streams, one pledge in flight each, {} s measured after {} s warm-up; baseline: redis-benchmark -c {} EVALSHA of the pledge script ({} calls, same key shapes)",
        args.sockets,
        streams.len(),
        args.seconds,
        args.warmup,
        args.sockets,
        alone.calls
    ));
    if !tally.refused.is_empty() {
        report.note(format!("refused by code: {:?}", tally.refused));
    }
    Ok(report)
}

/// Pledges on one socket, one at a time, until `until`; counts what lands after `from`.
async fn pledge_loop(
    socket: usize,
    mut ws: Ws,
    from: Instant,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    let mut mine = Tally::default();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let key = format!("load-{socket}-{n}");
        let amount = 100 + ((socket as i64 * 7919 + n as i64 * 104_729) % 50_000);
        let sent = Instant::now();
        clients::send(&mut ws, clients::pledge_frame(&key, amount, socket)).await?;
        let answer = loop {
            let frame = clients::next_json(&mut ws, Duration::from_secs(30)).await?;
            if frame["ref"] == key.as_str() {
                break frame;
            }
        };
        if sent < from {
            continue;
        }
        match answer["type"].as_str() {
            Some("pledge_accepted") => {
                mine.accepted += 1;
                mine.acks.record(sent.elapsed());
            }
            _ => {
                let code = answer["code"].as_str().unwrap_or("unknown").to_owned();
                *mine.refused.entry(code).or_default() += 1;
            }
        }
    }
    let mut tally = tally.lock().await;
    tally.accepted += mine.accepted;
    tally.acks.add(&mine.acks);
    for (code, count) in mine.refused {
        *tally.refused.entry(code).or_default() += count;
    }
    Ok(())
}

/// What redis-benchmark measured of the pledge script alone.
struct Alone {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    calls: u64,
}

/// Runs the pledge script alone: `redis-benchmark -c <sockets> EVALSHA` with a pledge's keys
/// and arguments as the gateway builds them, a fresh pledge id and idempotency key per call.
async fn script_alone(
    bench: &Bench,
    streams: &[String],
    connections: usize,
    calls: u64,
) -> anyhow::Result<Alone> {
    let mut conn = bench.redis.get_multiplexed_async_connection().await?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(pledge_script_source())
        .query_async(&mut conn)
        .await?;
    let (campaign_id, stream_id): (i64, i64) = sqlx::query_as(
        "SELECT c.id, s.id FROM campaigns c JOIN streams s ON s.campaign_id = c.id \
         WHERE c.slug = $1 AND s.slug = $2",
    )
    .bind(&bench.campaign)
    .bind(&streams[0])
    .fetch_one(&bench.db)
    .await
    .context("reading the seeded campaign")?;

    let id = uuid::Uuid::new_v4();
    let key = "bench-idempotency-key";
    let record = PledgeRecord {
        id,
        campaign_id,
        campaign: Slug::parse("campaign", &bench.campaign)?,
        stream_id,
        stream: Slug::parse("stream", &streams[0])?,
        amount: Money::positive("amount", 5000)?,
        currency: Currency::CNY,
        designation: Some("education".into()),
        donor_name: Some("观众1".into()),
        anonymous: false,
        message: Some("加油".into()),
        donor_ref: Some("load-donor-1".into()),
        idempotency_key: Some(key.into()),
        status: PledgeStatus::Pending,
        created_at: chrono::Utc::now(),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(30),
    };
    let write = PledgeWrite {
        pledge: &record,
        idempotency_key: key,
        fingerprint: "9f2c4e0d6a1b3c5e7f9a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e",
        idempotency_ttl_secs: 86_400,
        pledge_ttl_secs: 1800,
    };
    let keys = Keys::new("lf").campaign(&record.campaign);
    let (script_keys, script_args) = pledge_call(&keys, &write);
    // Every call a new pledge: redis-benchmark puts a random 12-digit number in place of
    // each __rand_int__, here the last group of the pledge's uuid and the key's tail (its
    // -r must stay below 2^31: a larger keyspace wraps and every number comes out 0).
    let fresh = |s: &String| {
        s.replace(
            &id.to_string(),
            &format!("{}-__rand_int__", &id.to_string()[..23]),
        )
        .replace(key, "bench-key-__rand_int__")
    };
    let mut command = tokio::process::Command::new("redis-benchmark");
    let redis_port = port_of(bench.redis_url())?;
    command
        .args(["-h", "127.0.0.1", "-p", &redis_port.to_string()])
        .args(["-c", &connections.to_string(), "-n", &calls.to_string()])
        .args(["-r", "2000000000", "--csv", "EVALSHA", &sha])
        .arg(script_keys.len().to_string())
        .args(script_keys.iter().map(fresh))
        .args(script_args.iter().map(fresh));
    let pending_before: u64 = redis::cmd("ZCARD")
        .arg(&script_keys[4])
        .query_async(&mut conn)
        .await?;
    let output = command
        .output()
        .await
        .context("running redis-benchmark (package redis-tools)")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row = text
        .lines()
        .filter(|l| !l.starts_with("\"test\""))
        .find(|l| l.starts_with('"'))
        .with_context(|| format!("reading redis-benchmark's output: {text}"))?;
    let cells: Vec<f64> = row
        .split(',')
        .skip(1)
        .map(|c| c.trim_matches('"').parse().unwrap_or(0.0))
        .collect();
    let pending_after: u64 = redis::cmd("ZCARD")
        .arg(&script_keys[4])
        .query_async(&mut conn)
        .await?;
    // Random ids may collide now and then; anything more means the script took a short cut.
    if (pending_after - pending_before) * 100 < calls * 99 {
        bail!(
            "the baseline's calls recorded {} pledges of {calls}: it did not run the script's whole path",
            pending_after - pending_before
        );
    }
    Ok(Alone {
        rate: cells.first().copied().unwrap_or(0.0),
        p50_ms: cells.get(3).copied().unwrap_or(0.0),
        p99_ms: cells.get(5).copied().unwrap_or(0.0),
        calls,
    })
}

pub fn port_of(url: &str) -> anyhow::Result<u16> {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .with_context(|| format!("the port of {url}"))
}
