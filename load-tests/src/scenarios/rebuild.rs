//! `rebuild`: a ledger of many gifts (across the demo's streams, every designation and
//! none, some anonymous, some donors without a ref, a few refunds, the sponsor's matching
//! up to its cap), Redis flushed, then `livefund rebuild-counters` timed as an operator runs
//! it, and the rebuilt totals checked against the ledger through the public API. Baselines
//! in the same run: the SQL aggregate of the same rows (what the totals need), and reading
//! every gift row into a client (what the leaderboards and donors need).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use livefund::domain::PledgeStatus;
use serde_json::Value;
use sqlx::{PgPool, Row};

use crate::harness::tree_cpu;
use crate::harness::{Bench, Usage, livefund_binary};
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Gifts in the ledger.
    #[arg(long, default_value_t = 1_000_000)]
    gifts: u64,
    /// One gift in this many is refunded (alternately in full and in half).
    #[arg(long, default_value_t = 200)]
    refund_every: u64,
}

/// Gifts written per transaction while the ledger is filled (not measured).
const FILL_CHUNK: u64 = 100_000;
/// The longest the rebuild may take before it is killed.
const REBUILD_LIMIT: Duration = Duration::from_secs(600);
/// HyperLogLog's error on unique donors (0.81 % standard error): beyond 2 %, a mismatch.
const DONORS_TOLERANCE: f64 = 0.02;

pub async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    let bench = Bench::start(work).await?;
    let result = measure(args, &bench).await;
    bench.stop().await?;
    result
}

async fn measure(args: &Args, bench: &Bench) -> anyhow::Result<Report> {
    if args.gifts == 0 || args.refund_every == 0 {
        bail!("--gifts and --refund-every must be at least 1");
    }
    let (campaign_id, streams): (i64, Vec<i64>) = {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "select c.id, s.id from campaigns c join streams s on s.campaign_id = c.id \
             where c.slug = $1 order by s.id",
        )
        .bind(&bench.campaign)
        .fetch_all(&bench.db)
        .await?;
        let campaign = rows
            .first()
            .context("the seeded campaign has no streams")?
            .0;
        (campaign, rows.into_iter().map(|(_, s)| s).collect())
    };

    eprintln!("rebuild: filling the ledger with {} gifts", args.gifts);
    let filling = Instant::now();
    let matched_gifts = fill(&bench.db, campaign_id, &streams, args).await?;
    let filled = filling.elapsed();
    let refunds: i64 = sqlx::query_scalar("select count(*) from refunds")
        .fetch_one(&bench.db)
        .await?;

    // No response timeout: Redis may be busy for seconds with a rebuild's transaction.
    let unbounded = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut redis = bench
        .redis
        .get_multiplexed_async_connection_with_config(&unbounded)
        .await?;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;

    eprintln!("rebuild: baselines");
    let (aggregate, expected) = time_aggregate(&bench.db, campaign_id).await?;
    let (read_rows, rows_read) = time_read_rows(&bench.db, campaign_id).await?;

    eprintln!("rebuild: livefund rebuild-counters");
    let (postgres_pid, redis_pid) = bench.service_pids();
    let before = Cpu::now(postgres_pid, redis_pid, children_cpu()?)?;
    let (elapsed, output) = rebuild(bench).await?;
    // Redis answers once it has run whatever the rebuild sent, even if the rebuild gave up.
    let waiting = Instant::now();
    let _: String = tokio::time::timeout(REBUILD_LIMIT, redis::cmd("PING").query_async(&mut redis))
        .await
        .context("Redis stayed busy")??;
    let redis_busy = elapsed + waiting.elapsed();
    let cli = Timed {
        elapsed,
        cpu: Cpu::now(postgres_pid, redis_pid, children_cpu()?)?.since(&before),
        result: output.clone().map(|_| ()),
    };
    // When the command fails, the same code is timed as a library call on a connection
    // with no response timeout: what the rebuild costs, apart from the client's limit.
    let library = match &output {
        Ok(_) => None,
        Err(failed) => {
            eprintln!("rebuild: livefund rebuild-counters failed after {elapsed:?}: {failed}");
            eprintln!(
                "rebuild: the same rebuild as a library call, with no Redis response timeout"
            );
            let _: () = redis::cmd("FLUSHALL").query_async(&mut redis).await?;
            Some(rebuild_in_process(bench, postgres_pid, redis_pid).await?)
        }
    };
    let counted = library.as_ref().unwrap_or(&cli);
    let (used, peak) = redis_memory(&mut redis).await?;
    let redis_rss = Usage::of(redis_pid)?.rss_kib;

    // A gateway finding the counters missing would rebuild them itself: read only after a
    // rebuild that succeeded.
    let rebuilt = counted.result.is_ok();
    let mismatches = if rebuilt {
        let gateway = bench.gateway("reader", &[]).await?;
        let checked = check_totals(bench, &gateway, &expected).await;
        gateway.stop().await?;
        checked?
    } else {
        Vec::new()
    };

    let seconds = counted.elapsed.as_secs_f64();
    let mut report = Report::new("rebuild");
    report.cheaper(
        "rebuild time (vs SQL aggregate of the same rows)",
        "s",
        seconds,
        aggregate.as_secs_f64(),
    );
    report.cheaper(
        "rebuild time (vs reading every gift row)",
        "s",
        seconds,
        read_rows.as_secs_f64(),
    );
    if rebuilt {
        report.figure(
            "gifts rebuilt a second",
            "/s",
            args.gifts as f64 / seconds.max(1e-9),
        );
    }
    report.figure(
        "rebuild CPU (its process)",
        "s",
        counted.cpu.process.as_secs_f64(),
    );
    report.figure(
        "PostgreSQL CPU during rebuild",
        "s",
        counted.cpu.postgres.as_secs_f64(),
    );
    report.figure(
        "Redis CPU during rebuild",
        "s",
        counted.cpu.redis.as_secs_f64(),
    );
    report.figure("Redis memory after rebuild", "MiB", used as f64 / 1048576.0);
    report.figure("Redis peak memory", "MiB", peak as f64 / 1048576.0);
    report.figure(
        "rebuild-counters failed",
        "yes=1",
        if cli.result.is_ok() { 0.0 } else { 1.0 },
    );
    if rebuilt {
        report.figure(
            "totals differing from the ledger",
            "fields",
            mismatches.len() as f64,
        );
    }
    report.note(format!(
        "ledger filled in SQL in {:.1} s (not measured): {} gifts over {} streams with their pledges and payment events, {} refunded (alternately in full and in half), the first {matched_gifts} matched up to the sponsor's cap, running totals and milestones as settlement keeps them; VACUUM ANALYZE after; then FLUSHALL",
        filled.as_secs_f64(),
        args.gifts,
        streams.len(),
        refunds,
    ));
    report.note(format!(
        "`livefund rebuild-counters --campaign {}` timed from spawn to exit: {}",
        bench.campaign,
        match &output {
            Ok(printed) => format!("{:.2} s; it printed: {printed}", elapsed.as_secs_f64()),
            Err(failed) => format!(
                "IT FAILED after {:.2} s ({failed}); Redis went on with what it had been sent until {:.2} s (CPU then: the command {:.2} s, PostgreSQL {:.2} s, Redis {:.2} s)",
                elapsed.as_secs_f64(),
                redis_busy.as_secs_f64(),
                cli.cpu.process.as_secs_f64(),
                cli.cpu.postgres.as_secs_f64(),
                cli.cpu.redis.as_secs_f64(),
            ),
        }
    ));
    if let Some(library) = &library {
        report.note(match &library.result {
            Ok(()) => format!(
                "so the rebuild figures are of the same code (livefund::ledger::rebuild_campaign) called in this process on a Redis connection with no response timeout, after a second FLUSHALL: {:.2} s; the totals checked are from that rebuild",
                library.elapsed.as_secs_f64()
            ),
            Err(e) => format!(
                "the same code called in this process with no Redis response timeout failed too, after {:.2} s: {e}",
                library.elapsed.as_secs_f64()
            ),
        });
    }
    report.note(format!(
        "Redis after the rebuild: {:.0} MiB used, RSS {} MiB",
        used as f64 / 1048576.0,
        redis_rss / 1024
    ));
    report.note(format!(
        "baselines: one SQL statement summing gifts, refunds and matching per stream, with unique donors ({:.3} s); fetching every gift row of the campaign with its net to the client ({rows_read} rows, {:.3} s)",
        aggregate.as_secs_f64(),
        read_rows.as_secs_f64()
    ));
    if rebuilt && mismatches.is_empty() {
        report.note(
            "rebuilt totals (campaign and each stream: pledged, confirmed, matched, refunded, gifts; donors within HyperLogLog's error) equal the ledger's, read through GET /api/v1/campaigns and /api/v1/streams",
        );
    } else if !mismatches.is_empty() {
        report.note(format!(
            "rebuilt totals differ from the ledger: {mismatches:?}"
        ));
    }
    Ok(report)
}

/// Fills the ledger in set-based SQL, `FILL_CHUNK` gifts a transaction: pledges, payment
/// events, gifts and refunds; then matching, running totals and milestones. Returns how
/// many gifts were matched.
async fn fill(db: &PgPool, campaign_id: i64, streams: &[i64], args: &Args) -> anyhow::Result<u64> {
    let (ratio, cap): (i32, i64) = sqlx::query_as(
        "select ratio_percent, cap::bigint from matching_pools where campaign_id = $1",
    )
    .bind(campaign_id)
    .fetch_optional(db)
    .await?
    .unwrap_or((100, 0));
    // The first gifts are matched until the cap; refunds leave them alone, so no match is
    // reversed.
    let mut matched_gifts = 0u64;
    let mut spent = 0i64;
    while matched_gifts < args.gifts && spent < cap {
        spent += amount(matched_gifts) * i64::from(ratio) / 100;
        matched_gifts += 1;
    }
    let mut conn = db.acquire().await?;
    sqlx::query("set synchronous_commit = off")
        .execute(&mut *conn)
        .await?;
    let mut lo = 0;
    while lo < args.gifts {
        let hi = (lo + FILL_CHUNK).min(args.gifts);
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        for statement in [
            FILL_PLEDGES,
            FILL_PAYMENTS,
            FILL_REFUND_EVENTS,
            FILL_GIFTS,
            FILL_REFUNDS,
        ] {
            sqlx::query(statement)
                .bind(campaign_id)
                .bind(streams)
                .bind(lo as i64)
                .bind(hi as i64)
                .bind(args.refund_every as i64)
                .bind(matched_gifts as i64)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("filling gifts {lo}..{hi}"))?;
        }
        tx.commit().await?;
        lo = hi;
    }
    sqlx::query(FILL_MATCHING)
        .bind(campaign_id)
        .bind(cap)
        .bind(matched_gifts as i64)
        .bind(ratio)
        .execute(&mut *conn)
        .await?;
    for statement in [
        FILL_POOL,
        FILL_STREAM_CONFIRMED,
        FILL_CAMPAIGN_CONFIRMED,
        FILL_MILESTONES,
    ] {
        sqlx::query(statement)
            .bind(campaign_id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("reset synchronous_commit")
        .execute(&mut *conn)
        .await?;
    for statement in [
        "vacuum analyze pledges",
        "vacuum analyze payment_events",
        "vacuum analyze gifts",
        "vacuum analyze refunds",
        "vacuum analyze matching_entries",
    ] {
        sqlx::raw_sql(statement).execute(&mut *conn).await?;
    }
    Ok(matched_gifts)
}

/// The i-th gift's amount, as the fill's SQL has it (`100 + (i * 7919) % 50000`).
fn amount(i: u64) -> i64 {
    100 + ((i as i64).wrapping_mul(7919)) % 50_000
}

// The fill's statements share their parameters: $1 campaign, $2 stream ids, $3..$4 the
// gifts' numbers, $5 one in how many is refunded, $6 how many of the first are matched
// (never refunded). Gift i is refunded when `i % $5 = $5 - 1 and i >= $6`, in full when
// `(i / $5) % 2 = 0`, else in half.

const FILL_PLEDGES: &str = r#"
insert into pledges (id, campaign_id, stream_id, amount, currency, designation, donor_name,
                     anonymous, message, donor_ref, idempotency_key, status, created_at,
                     expires_at)
select md5('pledge-' || i)::uuid, $1, ($2::bigint[])[1 + i % array_length($2::bigint[], 1)],
       100 + (i * 7919) % 50000, 'CNY',
       (array['education', 'daily_care', 'counselling', 'enrichment', 'social_practice',
              'employment', null])[1 + i % 7],
       case when i % 5 = 0 then null else '观众' || (i % 100000) end,
       i % 5 = 0, '孩子们冬天快乐，加油！',
       case when i % 11 = 0 then null else 'donor-' || (i % 400000) end,
       'rebuild-' || i,
       case when i % $5 = $5 - 1 and i >= $6 and (i / $5) % 2 = 0 then 'refunded'
            else 'confirmed' end,
       now() - interval '2 days', now() - interval '2 days' + interval '30 minutes'
from generate_series($3::bigint, $4::bigint - 1) as i
"#;

const FILL_PAYMENTS: &str = r#"
insert into payment_events (event_id, type, pledge_id, provider_txn_id, amount, currency, fee,
                            occurred_at, test, outcome)
select 'evt-pay-' || i, 'payment.succeeded', md5('pledge-' || i)::uuid, 'txn-pay-' || i,
       100 + (i * 7919) % 50000, 'CNY', (100 + (i * 7919) % 50000) / 100,
       now() - interval '1 day', false, 'gift'
from generate_series($3::bigint, $4::bigint - 1) as i
"#;

const FILL_REFUND_EVENTS: &str = r#"
insert into payment_events (event_id, type, pledge_id, provider_txn_id, amount, currency, fee,
                            occurred_at, test, refunded_txn_id, outcome)
select 'evt-ref-' || i, 'refund.succeeded', md5('pledge-' || i)::uuid, 'txn-ref-' || i,
       case when (i / $5) % 2 = 0 then 100 + (i * 7919) % 50000
            else (100 + (i * 7919) % 50000) / 2 end,
       'CNY', 0, now() - interval '12 hours', false, 'txn-pay-' || i, 'refund'
from generate_series($3::bigint, $4::bigint - 1) as i
where i % $5 = $5 - 1 and i >= $6
"#;

const FILL_GIFTS: &str = r#"
insert into gifts (id, campaign_id, stream_id, pledge_id, provider_txn_id, event_id, amount, fee,
                   currency, designation, donor_name, anonymous, message, donor_ref, settled_at)
select md5('gift-' || i)::uuid, $1, ($2::bigint[])[1 + i % array_length($2::bigint[], 1)],
       md5('pledge-' || i)::uuid, 'txn-pay-' || i, 'evt-pay-' || i,
       100 + (i * 7919) % 50000, (100 + (i * 7919) % 50000) / 100, 'CNY',
       (array['education', 'daily_care', 'counselling', 'enrichment', 'social_practice',
              'employment', null])[1 + i % 7],
       case when i % 5 = 0 then null else '观众' || (i % 100000) end,
       i % 5 = 0, '孩子们冬天快乐，加油！',
       case when i % 11 = 0 then null else 'donor-' || (i % 400000) end,
       now() - interval '1 day' + i * interval '1 millisecond'
from generate_series($3::bigint, $4::bigint - 1) as i
"#;

const FILL_REFUNDS: &str = r#"
insert into refunds (id, gift_id, campaign_id, provider_txn_id, event_id, amount, currency,
                     refunded_at)
select md5('refund-' || i)::uuid, md5('gift-' || i)::uuid, $1, 'txn-ref-' || i, 'evt-ref-' || i,
       case when (i / $5) % 2 = 0 then 100 + (i * 7919) % 50000
            else (100 + (i * 7919) % 50000) / 2 end,
       'CNY', now() - interval '12 hours'
from generate_series($3::bigint, $4::bigint - 1) as i
where i % $5 = $5 - 1 and i >= $6
"#;

/// $1 campaign, $2 the cap, $3 how many of the first gifts are matched, $4 the ratio.
const FILL_MATCHING: &str = r#"
insert into matching_entries (campaign_id, gift_id, amount)
select $1, md5('gift-' || i)::uuid, least(m, $2 - (run - m))
from (select i, (100 + (i * 7919) % 50000) * $4::int / 100 as m,
             sum((100 + (i * 7919) % 50000) * $4::int / 100) over (order by i) as run
      from generate_series(0, $3::bigint - 1) as i) s
where run - m < $2 and least(m, $2 - (run - m)) > 0
"#;

const FILL_POOL: &str = r#"
update matching_pools
set spent = coalesce((select sum(amount) from matching_entries where campaign_id = $1), 0)
where campaign_id = $1
"#;

const FILL_STREAM_CONFIRMED: &str = r#"
insert into stream_confirmed (stream_id, confirmed)
select s.id,
       coalesce((select sum(amount) from gifts g where g.stream_id = s.id), 0)
       - coalesce((select sum(r.amount) from refunds r join gifts g on g.id = r.gift_id
                   where g.stream_id = s.id), 0)
from streams s where s.campaign_id = $1
on conflict (stream_id) do update set confirmed = excluded.confirmed
"#;

const FILL_CAMPAIGN_CONFIRMED: &str = r#"
insert into campaign_confirmed (campaign_id, confirmed)
select $1,
       coalesce((select sum(amount) from gifts where campaign_id = $1), 0)
       - coalesce((select sum(amount) from refunds where campaign_id = $1), 0)
on conflict (campaign_id) do update set confirmed = excluded.confirmed
"#;

const FILL_MILESTONES: &str = r#"
insert into milestones (campaign_id, stream_id, reached)
select c.id, null, pct
from campaigns c join campaign_confirmed t on t.campaign_id = c.id
cross join (values (25), (50), (75), (100)) as p(pct)
where c.id = $1 and t.confirmed::numeric * 100 >= c.goal::numeric * pct
union all
select s.campaign_id, s.id, pct
from streams s join stream_confirmed t on t.stream_id = s.id
cross join (values (25), (50), (75), (100)) as p(pct)
where s.campaign_id = $1 and s.goal is not null
  and t.confirmed::numeric * 100 >= s.goal::numeric * pct
on conflict do nothing
"#;

/// What the ledger says one stream's counters must be.
#[derive(Debug, Clone)]
struct Expected {
    stream: String,
    pledged: i64,
    confirmed: i64,
    matched: i64,
    refunded: i64,
    gifts: i64,
    donors: i64,
}

/// The baseline the totals need: one aggregate over the campaign's gifts, refunds and
/// matching, per stream, with unique donors (as the counters key them). Also what the
/// rebuilt counters are checked against.
async fn time_aggregate(
    db: &PgPool,
    campaign_id: i64,
) -> anyhow::Result<(Duration, Vec<Expected>)> {
    let started = Instant::now();
    let rows = sqlx::query(
        r#"with g as (
               select stream_id, count(*) as gifts, sum(amount) as gifted,
                      count(distinct coalesce('d:' || donor_ref, 'p:' || pledge_id::text)) as donors
               from gifts where campaign_id = $1 group by stream_id),
           r as (
               select g.stream_id, sum(r.amount) as refunded
               from refunds r join gifts g on g.id = r.gift_id
               where r.campaign_id = $1 group by g.stream_id),
           m as (
               select g.stream_id, sum(m.amount) as matched
               from matching_entries m join gifts g on g.id = m.gift_id
               where m.campaign_id = $1 group by g.stream_id),
           p as (
               select stream_id, sum(amount) as pledged
               from pledges where campaign_id = $1 and status = any($2) group by stream_id)
           select s.slug::text as stream,
                  coalesce(p.pledged, 0)::bigint as pledged,
                  (coalesce(g.gifted, 0) - coalesce(r.refunded, 0))::bigint as confirmed,
                  coalesce(m.matched, 0)::bigint as matched,
                  coalesce(r.refunded, 0)::bigint as refunded,
                  coalesce(g.gifts, 0)::bigint as gifts,
                  coalesce(g.donors, 0)::bigint as donors
           from streams s
           left join g on g.stream_id = s.id left join r on r.stream_id = s.id
           left join m on m.stream_id = s.id left join p on p.stream_id = s.id
           where s.campaign_id = $1 order by s.id"#,
    )
    .bind(campaign_id)
    .bind(PledgeStatus::pledged_words())
    .fetch_all(db)
    .await?;
    let elapsed = started.elapsed();
    let mut expected = Vec::with_capacity(rows.len());
    for row in rows {
        expected.push(Expected {
            stream: row.try_get("stream")?,
            pledged: row.try_get("pledged")?,
            confirmed: row.try_get("confirmed")?,
            matched: row.try_get("matched")?,
            refunded: row.try_get("refunded")?,
            gifts: row.try_get("gifts")?,
            donors: row.try_get("donors")?,
        });
    }
    Ok((elapsed, expected))
}

/// The baseline the leaderboards and donors need: every gift row of the campaign, with its
/// net of refunds, fetched to the client (and dropped as it comes).
async fn time_read_rows(db: &PgPool, campaign_id: i64) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut rows = sqlx::query(
        r#"select s.slug::text as stream, g.id::text as gift_id, g.pledge_id::text as pledge_id,
                  g.anonymous, g.donor_ref, g.donor_name,
                  (g.amount - coalesce((select sum(amount) from refunds r where r.gift_id = g.id), 0))::bigint as net
           from gifts g join streams s on s.id = g.stream_id
           where g.campaign_id = $1"#,
    )
    .bind(campaign_id)
    .fetch(db);
    let mut count = 0u64;
    while let Some(row) = rows.try_next().await? {
        let _net: i64 = row.try_get("net")?;
        count += 1;
    }
    Ok((started.elapsed(), count))
}

/// Runs `livefund rebuild-counters --campaign <slug>` on the bench's services: its wall
/// time, and what it printed (stdout when it succeeded, stderr when it failed).
async fn rebuild(bench: &Bench) -> anyhow::Result<(Duration, Result<String, String>)> {
    let mut command = tokio::process::Command::new(livefund_binary()?);
    command
        .args(["rebuild-counters", "--campaign", &bench.campaign])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", bench.database_url())
        .env("REDIS_URL", bench.redis_url())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let child = command
        .spawn()
        .context("starting livefund rebuild-counters")?;
    let output = tokio::time::timeout(REBUILD_LIMIT, child.wait_with_output())
        .await
        .with_context(|| format!("the rebuild took over {REBUILD_LIMIT:?}"))??;
    let elapsed = started.elapsed();
    let printed = if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        // Its last line is the error; the lines before it are its logs.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        Err(format!("{}: {}", output.status, last.unwrap_or("").trim()))
    };
    Ok((elapsed, printed))
}

/// A rebuild timed, and the CPU it took.
struct Timed {
    elapsed: Duration,
    cpu: Cpu,
    result: Result<(), String>,
}

/// CPU time of the rebuild's own process, PostgreSQL and Redis.
struct Cpu {
    process: Duration,
    postgres: Duration,
    redis: Duration,
}

impl Cpu {
    fn now(postgres: u32, redis: u32, process: Duration) -> anyhow::Result<Cpu> {
        Ok(Cpu {
            process,
            postgres: tree_cpu(postgres)?,
            redis: tree_cpu(redis)?,
        })
    }

    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            process: self.process.saturating_sub(before.process),
            postgres: self.postgres.saturating_sub(before.postgres),
            redis: self.redis.saturating_sub(before.redis),
        }
    }
}

/// Runs what `rebuild-counters` runs (`livefund::ledger::rebuild_campaign`) in this
/// process, on a Redis connection without the client's default 500 ms response timeout.
async fn rebuild_in_process(bench: &Bench, postgres: u32, redis_pid: u32) -> anyhow::Result<Timed> {
    let unbounded = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let mut redis = bench
        .redis
        .get_multiplexed_async_connection_with_config(&unbounded)
        .await?;
    let keys = livefund::counters::Keys::new("lf");
    let slug =
        livefund::domain::Slug::parse("campaign", &bench.campaign).map_err(anyhow::Error::msg)?;
    let before = Cpu::now(postgres, redis_pid, Usage::own()?.cpu)?;
    let started = Instant::now();
    let rebuilt = tokio::time::timeout(
        REBUILD_LIMIT,
        livefund::ledger::rebuild_campaign(&bench.db, &mut redis, &keys, &slug),
    )
    .await
    .with_context(|| format!("the rebuild took over {REBUILD_LIMIT:?}"))?;
    let elapsed = started.elapsed();
    Ok(Timed {
        elapsed,
        cpu: Cpu::now(postgres, redis_pid, Usage::own()?.cpu)?.since(&before),
        result: rebuilt.map(|_| ()).map_err(|e| e.to_string()),
    })
}

/// CPU time (user + system) of this process's children that have exited.
fn children_cpu() -> anyhow::Result<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// Redis's `used_memory` and `used_memory_peak`, in bytes.
async fn redis_memory(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<(u64, u64)> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("used_memory"), field("used_memory_peak")))
}

/// Compares the totals the public API serves (campaign and each stream) with the ledger's;
/// returns the fields that differ.
async fn check_totals(
    bench: &Bench,
    gateway: &crate::harness::Gateway,
    expected: &[Expected],
) -> anyhow::Result<Vec<String>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut differ = Vec::new();
    let mut campaign = Expected {
        stream: bench.campaign.clone(),
        pledged: 0,
        confirmed: 0,
        matched: 0,
        refunded: 0,
        gifts: 0,
        donors: 0,
    };
    for e in expected {
        campaign.pledged += e.pledged;
        campaign.confirmed += e.confirmed;
        campaign.matched += e.matched;
        campaign.refunded += e.refunded;
        campaign.gifts += e.gifts;
        let body: Value = http
            .get(gateway.url(&format!("/api/v1/streams/{}", e.stream)))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        compare(e, &body["totals"], &mut differ);
    }
    // Donors are unique over the campaign, not the sum of the streams'.
    campaign.donors = sqlx::query_scalar(
        "select count(distinct coalesce('d:' || donor_ref, 'p:' || pledge_id::text)) \
         from gifts g join campaigns c on c.id = g.campaign_id where c.slug = $1",
    )
    .bind(&bench.campaign)
    .fetch_one(&bench.db)
    .await?;
    let body: Value = http
        .get(gateway.url(&format!("/api/v1/campaigns/{}", bench.campaign)))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    compare(&campaign, &body["totals"], &mut differ);
    Ok(differ)
}

fn compare(expected: &Expected, totals: &Value, differ: &mut Vec<String>) {
    let exact = [
        ("pledged", expected.pledged),
        ("confirmed", expected.confirmed),
        ("matched", expected.matched),
        ("refunded", expected.refunded),
        ("gifts", expected.gifts),
    ];
    for (field, want) in exact {
        let got = totals[field].as_i64();
        if got != Some(want) {
            differ.push(format!(
                "{} {field}: ledger {want}, live {got:?}",
                expected.stream
            ));
        }
    }
    let got = totals["donors"].as_i64().unwrap_or(-1);
    let off = (got - expected.donors).abs() as f64 / expected.donors.max(1) as f64;
    if got < 0 || off > DONORS_TOLERANCE {
        differ.push(format!(
            "{} donors: ledger {}, live {got}",
            expected.stream, expected.donors
        ));
    }
}
