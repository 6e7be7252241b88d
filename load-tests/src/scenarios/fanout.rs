//! `fanout`: K overlay sockets on S streams while gifts flow at R/s, open loop (each gift a
//! pledge over a stream socket, then its signed confirmation): deliveries a second, server
//! CPU per delivered frame, pledge → overlay and webhook → overlay latency (each gift's
//! message carries a token, `lt:<n>`, that the overlays look up), pledge acks under the same
//! load, events missed and sockets closed. Baseline in the same run: the bare broadcast
//! server sending the frames one overlay of each stream got, at the same times, to as many
//! sockets. `--capacity` instead steps the gift rate up for a few shapes and reports the
//! highest rate whose pledge → overlay p99 stays within the SLO. The phase code here is
//! shared with `two_gateways`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

use crate::bare::Bare;
use crate::clients::{self, Ws};
use crate::harness::{Bench, Gateway, Usage, WEBHOOK_SECRET};
use crate::report::{Latency, Report};

/// The load of one measured run, shared with `two_gateways`.
#[derive(Debug, Clone, clap::Args)]
pub struct Load {
    /// Overlay sockets, spread evenly over the streams.
    #[arg(long, default_value_t = 5000)]
    pub watchers: usize,
    /// Streams watched (the demo has 3; more are created).
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Gifts a second, open loop: each a pledge over a socket, then its signed confirmation.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Sockets the pledges are sent on (rounded up to a multiple of streams × gateways).
    #[arg(long, default_value_t = 16)]
    pub pledgers: usize,
    /// Sockets connecting at once while the overlays open.
    #[arg(long, default_value_t = 500)]
    pub burst: usize,
    /// Longest wait, after the load, for the last acks, confirmations and frames.
    #[arg(long, default_value_t = 10)]
    pub drain: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub load: Load,
    /// Instead of one measured run against the baseline: for each shape, the highest gift
    /// rate whose pledge → overlay p99 stays within the SLO.
    #[arg(long)]
    capacity: bool,
    /// Shapes for --capacity, STREAMSxOVERLAYS_PER_STREAM, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_shape, default_value = "1x2000,100x100")]
    shapes: Vec<Shape>,
    /// Gift rates tried in turn for --capacity, stopping at the first over the SLO.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "20,50,100,200,400,800,1600"
    )]
    rates: Vec<f64>,
    /// Seconds measured at each rate of --capacity (after --warmup).
    #[arg(long, default_value_t = 5)]
    step_seconds: u64,
    /// The SLO: pledge → overlay p99, in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    slo_ms: f64,
}

/// Streams × overlays on each.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    streams: usize,
    per_stream: usize,
}

fn parse_shape(text: &str) -> Result<Shape, String> {
    let (streams, per_stream) = text
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("{text}: expected STREAMSxOVERLAYS, e.g. 1x2000"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{text}: {s} is not a positive number"))
    };
    Ok(Shape {
        streams: number(streams)?,
        per_stream: number(per_stream)?,
    })
}

pub async fn run(args: &Args, work: &Path) -> anyhow::Result<Report> {
    let bench = Bench::start(work).await?;
    let result = if args.capacity {
        capacity(args, &bench).await
    } else {
        match bench.gateway("gateway", &[]).await {
            Ok(gateway) => compare("fanout", &bench, vec![gateway], &args.load, work).await,
            Err(e) => Err(e),
        }
    };
    bench.stop().await?;
    result
}

// ---------------------------------------------------------------------------------------
// The measured run against the bare broadcast (fanout and two_gateways).

/// Opens `load.watchers` overlays split over `gateways` (overlay i on stream i mod S and
/// gateway ⌊i / S⌋ mod G), runs the gift load through them, then the bare broadcast server
/// with the frames one overlay of each stream got, and reports the two side by side.
pub(crate) async fn compare(
    name: &str,
    bench: &Bench,
    gateways: Vec<Gateway>,
    load: &Load,
    work: &Path,
) -> anyhow::Result<Report> {
    if load.rate <= 0.0 || load.watchers == 0 {
        bail!("--rate and --watchers must be positive");
    }
    let first = gateways.first().context("no gateway")?;
    let streams = streams(bench, first, load.streams).await?;
    let count = streams.len();
    let places: Vec<Place> = (0..load.watchers)
        .map(|i| {
            let (stream, gateway) = (i % count, (i / count) % gateways.len());
            Place {
                server: gateways[gateway].addr,
                url: gateways[gateway].ws_url(&streams[stream], None),
                stream,
                gateway,
            }
        })
        .collect();
    let opened = open(places, load.burst).await;
    if opened.overlays.is_empty() {
        bail!("no overlay got its snapshot ({} failed)", opened.failed);
    }
    let spec = Spec::of(load, load.seconds);
    let http = reqwest::Client::new();
    let counters_before = gateway_counters(&http, &gateways).await;
    let pids: Vec<u32> = gateways.iter().map(|g| g.pid).collect();
    let mut ours = phase(
        opened.overlays,
        &spec,
        Driver::Gifts {
            gateways: &gateways,
            streams: &streams,
            pledgers: load.pledgers,
            base: 0,
        },
        &pids,
        Some(&bench.redis),
    )
    .await?;
    let counters_after = gateway_counters(&http, &gateways).await;
    let held = ours.overlays.len();
    let captures = std::mem::take(&mut ours.captures);
    drop(std::mem::take(&mut ours.overlays));
    for gateway in gateways {
        gateway.stop().await?;
    }

    let bare = Bare::start(opened.snapshot.as_deref(), work).await?;
    let places: Vec<Place> = (0..load.watchers)
        .map(|i| Place {
            server: bare.addr,
            url: bare.ws_url(&streams[i % count]),
            stream: i % count,
            gateway: 0,
        })
        .collect();
    let mut theirs_opened = open(places, load.burst).await;
    // The bare server sends stream 0's snapshot to every stream: its seqs mean nothing,
    // the first event each socket gets starts its sequence.
    for overlay in &mut theirs_opened.overlays {
        overlay.last_seq = None;
    }
    let theirs = phase(
        theirs_opened.overlays,
        &spec,
        Driver::Replay {
            bare: &bare,
            streams: &streams,
            frames: &captures,
            base: 0,
        },
        &[bare.pid],
        None,
    )
    .await?;
    drop(theirs.overlays);
    bare.stop().await?;

    let mut report = Report::new(name);
    let flow = ours.flow.clone().unwrap_or_default();
    let window = ours.window;
    report.faster(
        "deliveries",
        "/s",
        ours.delivered as f64 / window,
        theirs.delivered as f64 / theirs.window,
    );
    report.cheaper(
        "server CPU per delivered frame",
        "µs",
        per_frame(ours.server_cpu, ours.delivered),
        per_frame(theirs.server_cpu, theirs.delivered),
    );
    report.cheaper(
        "server CPU",
        "cores",
        ours.server_cpu / window,
        theirs.server_cpu / theirs.window,
    );
    report.cheaper(
        "webhook → overlay p50",
        "ms",
        ours.sent_to_overlay.ms(0.5),
        theirs.sent_to_overlay.ms(0.5),
    );
    report.cheaper(
        "webhook → overlay p99",
        "ms",
        ours.sent_to_overlay.ms(0.99),
        theirs.sent_to_overlay.ms(0.99),
    );
    report.figure("pledge → overlay p50", "ms", ours.to_overlay.ms(0.5));
    report.figure("pledge → overlay p99", "ms", ours.to_overlay.ms(0.99));
    report.figure("pledge ack p50", "ms", flow.acks.ms(0.5));
    report.figure("pledge ack p99", "ms", flow.acks.ms(0.99));
    report.figure("webhook answered p50", "ms", flow.confirms.ms(0.5));
    report.figure("webhook answered p99", "ms", flow.confirms.ms(0.99));
    report.figure(
        "ack → webhook sent p99 (load generator)",
        "ms",
        flow.queued.ms(0.99),
    );
    report.figure(
        "gifts settled",
        "/s",
        flow.settled_in_window as f64 / window,
    );
    report.figure(
        "pledges unanswered",
        "",
        flow.sent.saturating_sub(flow.answered) as f64,
    );
    report.figure(
        "pledges refused",
        "",
        flow.refused.values().sum::<u64>() as f64,
    );
    report.cheaper("seq gaps", "events", ours.gaps as f64, theirs.gaps as f64);
    report.cheaper(
        "gift frames missing",
        "",
        ours.missing as f64,
        theirs.missing as f64,
    );
    report.cheaper(
        "sockets closed",
        "",
        ours.closed as f64,
        theirs.closed as f64,
    );
    report.cheaper(
        "sockets that saw other gifts",
        "",
        ours.differ as f64,
        theirs.differ as f64,
    );
    report.cheaper(
        "load generator CPU",
        "cores",
        ours.own_cpu / window,
        theirs.own_cpu / theirs.window,
    );
    let gateways_word = if pids.len() == 1 {
        "one gateway".to_owned()
    } else {
        format!("{} gateways on one Redis", pids.len())
    };
    report.note(format!(
        "{} overlays ({} opened, {} failed) on {} stream(s), {gateways_word}; {} gifts/s open loop from {} pledging sockets, {} s measured after {} s warm-up; baseline: the bare broadcast server sent the frames one overlay of each stream got, each event when it reached Redis pub/sub and each totals frame when it reached the overlay, to {} sockets ({} failed)",
        load.watchers,
        held,
        opened.failed,
        count,
        load.rate,
        flow.pledgers,
        load.seconds,
        load.warmup,
        load.watchers - theirs_opened.failed,
        theirs_opened.failed,
    ));
    report.note(format!(
        "frames delivered in the window by type (gift, totals, milestone, other): livefund {:?}, bare {:?}",
        ours.kinds, theirs.kinds
    ));
    report.note(
        "livefund's server CPU also takes the pledges and confirmations; the bare server only broadcasts. Webhook → overlay is publish → overlay for the bare server. The load generator shares the cores.",
    );
    report.note(format!(
        "pledges sent {}, not sent (pledging socket gone or its queue full) {}, accepted {}, refused {:?}; confirmations answered 2xx {}, failed {}; gift frames to settle: {} per overlay",
        flow.sent,
        flow.skipped,
        flow.accepted,
        flow.refused,
        flow.confirmed,
        flow.unconfirmed,
        ours.settled_per_stream_text(),
    ));
    report.note(format!(
        "gateway metrics during the run: frames dropped {}, sockets closed as slow {}; repeated events seen: livefund {}, bare {}; sockets closed: livefund {:?}, bare {:?}",
        counters_after[0] - counters_before[0],
        counters_after[1] - counters_before[1],
        ours.repeats,
        theirs.repeats,
        ours.closes,
        theirs.closes,
    ));
    Ok(report)
}

fn per_frame(cpu: f64, frames: u64) -> f64 {
    cpu * 1e6 / frames.max(1) as f64
}

/// The bench's streams, with more created through `via` when `count` asks for them.
pub(crate) async fn streams(
    bench: &Bench,
    via: &Gateway,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut streams = bench.streams.clone();
    if count > streams.len() {
        let more = bench.add_streams(via, count - streams.len()).await?;
        streams.extend(more);
    }
    streams.truncate(count.max(1));
    Ok(streams)
}

/// livefund's counters of frames dropped and of sockets closed as slow, summed over
/// `gateways` (0 where a gateway does not answer).
pub(crate) async fn gateway_counters(http: &reqwest::Client, gateways: &[Gateway]) -> [f64; 2] {
    let mut sums = [0.0; 2];
    for gateway in gateways {
        let Ok(response) = http.get(gateway.url("/metrics")).send().await else {
            continue;
        };
        let Ok(text) = response.text().await else {
            continue;
        };
        for (i, name) in [
            "livefund_ws_frames_dropped_total",
            "livefund_ws_closed_slow_total",
        ]
        .iter()
        .enumerate()
        {
            sums[i] += text
                .lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with([' ', '{']))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
    }
    sums
}

// ---------------------------------------------------------------------------------------
// Capacity at the SLO.

async fn capacity(args: &Args, bench: &Bench) -> anyhow::Result<Report> {
    if args.rates.is_empty() || args.rates.iter().any(|r| *r <= 0.0) {
        bail!("--rates must be positive gift rates");
    }
    let gateway = bench.gateway("gateway", &[]).await?;
    let most = args.shapes.iter().map(|s| s.streams).max().unwrap_or(1);
    let all = streams(bench, &gateway, most).await?;
    let gateways = [gateway];
    let mut report = Report::new("fanout-capacity");
    let mut base = 0;
    for shape in &args.shapes {
        let streams = &all[..shape.streams.min(all.len())];
        let count = streams.len();
        let places: Vec<Place> = (0..count * shape.per_stream)
            .map(|i| Place {
                server: gateways[0].addr,
                url: gateways[0].ws_url(&streams[i % count], None),
                stream: i % count,
                gateway: 0,
            })
            .collect();
        let opened = open(places, args.load.burst).await;
        let mut overlays = opened.overlays;
        let label = format!("{} stream(s) × {} overlays", count, shape.per_stream);
        let mut best: Option<(f64, f64)> = None;
        let mut steps = Vec::new();
        let mut pledgers = 0;
        let mut over = false;
        for &rate in &args.rates {
            if overlays.is_empty() {
                break;
            }
            let load = Load {
                rate,
                ..args.load.clone()
            };
            let spec = Spec::of(&load, args.step_seconds);
            let step = phase(
                overlays,
                &spec,
                Driver::Gifts {
                    gateways: &gateways,
                    streams,
                    pledgers: load.pledgers,
                    base,
                },
                &[gateways[0].pid],
                None,
            )
            .await?;
            base += spec.gifts() + 1;
            let flow = step.flow.clone().unwrap_or_default();
            pledgers = flow.pledgers;
            let p99 = step.to_overlay.ms(0.99);
            let settled = flow.settled_in_window as f64 / step.window;
            let held = p99 <= args.slo_ms
                && step.to_overlay.count() > 0
                && step.closed == 0
                && step.missing == 0
                && settled >= 0.95 * rate;
            steps.push(format!(
                "{rate}/s: pledge → overlay p99 {p99:.1} ms, ack p99 {:.1} ms, generator's ack → webhook p99 {:.1} ms, settled {settled:.0}/s, {:.0} deliveries/s, gateway {:.2} cores, load generator {:.2} cores, closed {}, missing {}{}",
                flow.acks.ms(0.99),
                flow.queued.ms(0.99),
                step.delivered as f64 / step.window,
                step.server_cpu / step.window,
                step.own_cpu / step.window,
                step.closed,
                step.missing,
                if held { "" } else { " — over" },
            ));
            if !step.closes.is_empty() {
                steps.push(format!("{rate}/s closed {:?}", step.closes));
            }
            overlays = step.overlays;
            if !held {
                over = true;
                break;
            }
            best = Some((rate, p99));
        }
        drop(overlays);
        report.figure(
            &format!("capacity at p99 ≤ {} ms, {label}", args.slo_ms),
            "gifts/s",
            best.map(|(rate, _)| rate).unwrap_or(0.0),
        );
        report.figure(
            &format!("pledge → overlay p99 at that rate, {label}"),
            "ms",
            best.map(|(_, p99)| p99).unwrap_or(0.0),
        );
        report.note(format!(
            "{label} ({} failed to open, {pledgers} pledging sockets){}: {}",
            opened.failed,
            if over {
                ""
            } else {
                " held at every rate tried, so its capacity is at least the last"
            },
            steps.join("; ")
        ));
    }
    report.note(format!(
        "each rate: {} s warm-up, {} s measured, on the same open overlays; a rate holds when pledge → overlay p99 ≤ {} ms, no socket closed, no gift frame missing, and ≥ 95 % of the offered gifts settled in the window",
        args.load.warmup, args.step_seconds, args.slo_ms
    ));
    let [gateway] = gateways;
    gateway.stop().await?;
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// Overlays.

/// Where one socket connects.
pub(crate) struct Place {
    pub server: SocketAddr,
    pub url: String,
    pub stream: usize,
    pub gateway: usize,
}

/// An open socket that got its snapshot, with the newest event seq it has seen.
pub(crate) struct Overlay {
    ws: Ws,
    pub stream: usize,
    pub gateway: usize,
    pub last_seq: Option<u64>,
}

pub(crate) struct Opened {
    pub overlays: Vec<Overlay>,
    pub failed: usize,
    /// The first snapshot read, as it came.
    pub snapshot: Option<String>,
}

/// Opens a socket at each place, at most `burst` connecting at once, and reads its
/// snapshot (its seq starts the socket's sequence).
pub(crate) async fn open(places: Vec<Place>, burst: usize) -> Opened {
    let gate = Arc::new(Semaphore::new(burst.max(1)));
    let mut tasks = Vec::with_capacity(places.len());
    for (i, place) in places.into_iter().enumerate() {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            let mut ws = clients::connect(place.server, &place.url, clients::source(i))
                .await
                .ok()?;
            let text = clients::next_text(&mut ws, Duration::from_secs(60))
                .await
                .ok()?;
            if !text.starts_with(r#"{"type":"snapshot""#) {
                return None;
            }
            let overlay = Overlay {
                ws,
                stream: place.stream,
                gateway: place.gateway,
                last_seq: number_after(&text, SEQ),
            };
            Some((overlay, text))
        }));
    }
    let mut opened = Opened {
        overlays: Vec::with_capacity(tasks.len()),
        failed: 0,
        snapshot: None,
    };
    for task in tasks {
        match task.await.ok().flatten() {
            Some((overlay, text)) => {
                opened.overlays.push(overlay);
                opened.snapshot.get_or_insert(text);
            }
            None => opened.failed += 1,
        }
    }
    opened
}

// ---------------------------------------------------------------------------------------
// Frames, read cheaply: the type, the seq and the gift's token found by substring.

const TYPE: &str = r#""type":""#;
const SEQ: &str = r#""seq":"#;
const TOKEN: &str = r#""message":"lt:"#;
/// The idempotency key of gift n is this and n.
const KEY: &str = "lt-gift-";

const GIFT: usize = 0;
const TOTALS: usize = 1;
const KINDS: usize = 4;

/// gift, totals, milestone, anything else.
fn kind_of(text: &str) -> usize {
    let Some(at) = text.find(TYPE) else {
        return 3;
    };
    let rest = &text[at + TYPE.len()..];
    if rest.starts_with("gift\"") {
        GIFT
    } else if rest.starts_with("totals\"") {
        TOTALS
    } else if rest.starts_with("milestone\"") {
        2
    } else {
        3
    }
}

/// The unsigned integer right after `key`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// A seq's share of a socket's fingerprint: sums of these compare sets of seqs.
fn mix(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn amount(n: u64) -> i64 {
    500 + (n % 20) as i64 * 100
}

/// Gift n's pledge frame: its message is its token.
fn pledge_frame(n: u64) -> String {
    json!({
        "type": "pledge",
        "amount": amount(n),
        "currency": "CNY",
        "donor_name": format!("观众{}", n % 997),
        "anonymous": n.is_multiple_of(5),
        "message": format!("lt:{n}"),
        "designation": "education",
        "donor_ref": format!("lt-donor-{}", n % 997),
        "idempotency_key": format!("{KEY}{n:010}"),
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------
// One phase: overlays read while a driver makes frames, measured in a window.

/// A phase's timing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    pub rate: f64,
    pub warmup: Duration,
    pub seconds: Duration,
    pub drain: Duration,
}

impl Spec {
    pub fn of(load: &Load, seconds: u64) -> Spec {
        Spec {
            rate: load.rate,
            warmup: Duration::from_secs(load.warmup),
            seconds: Duration::from_secs(seconds.max(1)),
            drain: Duration::from_secs(load.drain),
        }
    }

    /// Gifts offered over the warm-up and the window.
    pub fn gifts(&self) -> u64 {
        (self.rate * (self.warmup + self.seconds).as_secs_f64()).round() as u64
    }
}

/// What makes the frames.
pub(crate) enum Driver<'a> {
    /// Gifts at `spec.rate`: pledges over `pledgers` sockets (each stream has some on each
    /// gateway), confirmations alternating to the other gateway. Gifts are numbered from
    /// `base`, which must not repeat within a bench.
    Gifts {
        gateways: &'a [Gateway],
        streams: &'a [String],
        pledgers: usize,
        base: u64,
    },
    /// The frames captured from livefund (per stream: offset from the phase start in µs,
    /// text), sent to the bare server at the same offsets.
    Replay {
        bare: &'a Bare,
        streams: &'a [String],
        frames: &'a [Vec<(u64, String)>],
        base: u64,
    },
}

/// When each gift was pledged and confirmed (or published), in µs since the phase's epoch,
/// plus one (0: not yet).
struct Table {
    base: u64,
    pledged: Vec<AtomicU64>,
    confirmed: Vec<AtomicU64>,
}

impl Table {
    fn new(base: u64, len: usize) -> Table {
        Table {
            base,
            pledged: (0..len).map(|_| AtomicU64::new(0)).collect(),
            confirmed: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self, n: u64) -> Option<usize> {
        let i = usize::try_from(n.checked_sub(self.base)?).ok()?;
        (i < self.pledged.len()).then_some(i)
    }

    fn set(slots: &[AtomicU64], i: usize, at: u64) {
        slots[i].store(at + 1, Ordering::Release);
    }

    fn get(slots: &[AtomicU64], i: usize) -> Option<u64> {
        slots[i].load(Ordering::Acquire).checked_sub(1)
    }
}

const SHARDS: usize = 16;
/// Latencies a reader keeps before adding them to its shard.
const FLUSH: usize = 256;

/// What the phase's tasks share.
struct Ctx {
    epoch: Instant,
    /// µs since `epoch`: the load starts, measuring starts, measuring ends.
    start: u64,
    from: u64,
    until: u64,
    table: Table,
    /// pledge → overlay, and webhook (or publish) → overlay.
    shards: Vec<Mutex<(Latency, Latency)>>,
    /// Gift frames of this phase delivered, over all overlays.
    seen: AtomicU64,
    /// Overlays open, and gifts settled (or published), per stream.
    watching: Vec<AtomicU64>,
    settled: Vec<AtomicU64>,
    stop: watch::Sender<bool>,
    /// Sockets closed during the phase, by kind and reason.
    closes: Mutex<BTreeMap<String, u64>>,
}

impl Ctx {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn at(&self, us: u64) -> tokio::time::Instant {
        (self.epoch + Duration::from_micros(us)).into()
    }

    fn closed(&self, socket: &str, why: String) {
        if let Ok(mut closes) = self.closes.lock() {
            *closes.entry(format!("{socket}: {why}")).or_default() += 1;
        }
    }

    fn expected(&self) -> u64 {
        self.watching
            .iter()
            .zip(&self.settled)
            .map(|(w, s)| w.load(Ordering::Acquire) * s.load(Ordering::Acquire))
            .sum()
    }
}

/// The pledge side of a phase, once it is over.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flow {
    pub pledgers: usize,
    pub sent: u64,
    pub skipped: u64,
    pub answered: u64,
    pub accepted: u64,
    pub refused: BTreeMap<String, u64>,
    pub confirmed: u64,
    pub unconfirmed: u64,
    /// Confirmed gifts pledged in the window.
    pub settled_in_window: u64,
    /// Pledge sent → `pledge_accepted`.
    pub acks: LatencyBox,
    /// Webhook sent → its 2xx.
    pub confirms: LatencyBox,
    /// `pledge_accepted` read → webhook sent: the load generator's own delay.
    pub queued: LatencyBox,
}

/// A [`Latency`] that can be cloned (by value) into a [`Flow`].
#[derive(Default)]
pub(crate) struct LatencyBox(Latency);

impl Clone for LatencyBox {
    fn clone(&self) -> Self {
        let mut copy = Latency::new();
        copy.add(&self.0);
        LatencyBox(copy)
    }
}

impl std::fmt::Debug for LatencyBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Latency({} values)", self.0.count())
    }
}

impl LatencyBox {
    pub fn ms(&self, q: f64) -> f64 {
        self.0.ms(q)
    }
}

/// The pledge side while it runs.
#[derive(Default)]
struct FlowCounters {
    sent: AtomicU64,
    skipped: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    confirmed: AtomicU64,
    unconfirmed: AtomicU64,
    settled_in_window: AtomicU64,
    refused: Mutex<BTreeMap<String, u64>>,
    acks: Mutex<Latency>,
    confirms: Mutex<Latency>,
    queued: Mutex<Latency>,
}

/// What a phase measured.
pub(crate) struct Phase {
    /// The overlays still open, for the next phase.
    pub overlays: Vec<Overlay>,
    /// Seconds measured.
    pub window: f64,
    /// Frames delivered to the overlays in the window, and by kind.
    pub delivered: u64,
    pub kinds: [u64; KINDS],
    /// CPU seconds in the window: the servers' summed, and the load generator's.
    pub server_cpu: f64,
    pub own_cpu: f64,
    /// Of gifts pledged in the window: pledge → overlay, webhook (publish) → overlay.
    pub to_overlay: Latency,
    pub sent_to_overlay: Latency,
    pub flow: Option<Flow>,
    /// Gifts settled (published) per stream.
    pub settled: Vec<u64>,
    /// Events missing from the overlays' sequences, and events seen again.
    pub gaps: u64,
    pub repeats: u64,
    /// Gift frames of settled gifts an open overlay did not get.
    pub missing: u64,
    /// Overlays closed by the server (or failed) during the phase.
    pub closed: u64,
    /// Sockets closed (overlays and pledgers), by reason.
    pub closes: BTreeMap<String, u64>,
    /// Overlays whose set of gift seqs differs from their stream's most complete one.
    pub differ: u64,
    /// Per stream, what one overlay got (when asked to capture).
    pub captures: Vec<Vec<(u64, String)>>,
}

impl Phase {
    fn settled_per_stream_text(&self) -> String {
        if self.settled.len() <= 4 {
            format!("{:?}", self.settled)
        } else {
            format!(
                "{} over {} streams",
                self.settled.iter().sum::<u64>(),
                self.settled.len()
            )
        }
    }
}

/// Runs one phase: every overlay read by its own task, the driver started, CPU of
/// `servers` (pids) and of this process sampled at the window's edges, then a drain until
/// every settled gift reached every open overlay (or `spec.drain` passed).
pub(crate) async fn phase(
    overlays: Vec<Overlay>,
    spec: &Spec,
    driver: Driver<'_>,
    servers: &[u32],
    capture: Option<&redis::Client>,
) -> anyhow::Result<Phase> {
    let streams = match &driver {
        Driver::Gifts { streams, .. } | Driver::Replay { streams, .. } => streams.len(),
    };
    let base = match &driver {
        Driver::Gifts { base, .. } | Driver::Replay { base, .. } => *base,
    };
    // Sockets first, so the load starts on time.
    let prepared = match &driver {
        Driver::Gifts {
            gateways,
            streams: names,
            pledgers,
            ..
        } => {
            let per = names.len() * gateways.len();
            let count = (*pledgers).max(1).div_ceil(per) * per;
            let places = (0..count)
                .map(|p| {
                    let (stream, gateway) = (p % names.len(), (p / names.len()) % gateways.len());
                    Place {
                        server: gateways[gateway].addr,
                        url: gateways[gateway].ws_url(&names[stream], None),
                        stream,
                        gateway,
                    }
                })
                .collect();
            let opened = flow_runtime().spawn(open(places, 64)).await?;
            if opened.failed > 0 {
                bail!("{} pledging sockets did not open", opened.failed);
            }
            Prepared::Gifts(opened.overlays)
        }
        Driver::Replay {
            bare,
            streams: names,
            ..
        } => {
            let mut publishers = Vec::with_capacity(names.len());
            for (s, name) in names.iter().enumerate() {
                publishers.push(
                    clients::connect(bare.addr, &bare.publish_url(name), clients::source(s))
                        .await?,
                );
            }
            Prepared::Replay(publishers)
        }
    };

    let epoch = Instant::now();
    let start = 200_000;
    let from = start + spec.warmup.as_micros() as u64;
    let until = from + spec.seconds.as_micros() as u64;
    let (stop, _) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        epoch,
        start,
        from,
        until,
        table: Table::new(base, spec.gifts() as usize + 16),
        shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        seen: AtomicU64::new(0),
        watching: (0..streams).map(|_| AtomicU64::new(0)).collect(),
        settled: (0..streams).map(|_| AtomicU64::new(0)).collect(),
        stop,
        closes: Mutex::default(),
    });

    let mut captured = vec![false; streams];
    let mut readers = Vec::with_capacity(overlays.len());
    for (i, overlay) in overlays.into_iter().enumerate() {
        ctx.watching[overlay.stream].fetch_add(1, Ordering::AcqRel);
        let this = capture.is_some() && overlay.gateway == 0 && !captured[overlay.stream];
        captured[overlay.stream] |= this;
        readers.push(tokio::spawn(read(overlay, ctx.clone(), i % SHARDS, this)));
    }

    let published = match (capture, &driver) {
        (Some(redis), Driver::Gifts { streams: names, .. }) => {
            Some(publish_times(redis, names.to_vec(), ctx.clone()).await?)
        }
        _ => None,
    };

    let flow = Arc::new(FlowCounters::default());
    let mut pledger_count = 0;
    let running = match (prepared, &driver) {
        (Prepared::Gifts(pledgers), Driver::Gifts { gateways, .. }) => {
            pledger_count = pledgers.len();
            let urls: Vec<String> = gateways
                .iter()
                .map(|g| g.url("/api/v1/webhooks/payments"))
                .collect();
            launch_gifts(pledgers, &urls, ctx.clone(), flow.clone(), spec)
        }
        (Prepared::Replay(publishers), Driver::Replay { frames, .. }) => {
            launch_replay(publishers, frames, ctx.clone())
        }
        _ => bail!("a driver prepared for another"),
    };

    tokio::time::sleep_until(ctx.at(from)).await;
    let servers_before = cpu_of(servers)?;
    let own_before = Usage::own()?.cpu;
    tokio::time::sleep_until(ctx.at(until)).await;
    let server_cpu = (cpu_of(servers)? - servers_before).as_secs_f64();
    let own_cpu = (Usage::own()?.cpu - own_before).as_secs_f64();

    // Drain: the last answers, confirmations and frames, within bounds.
    let last_replay = match &driver {
        Driver::Replay { frames, .. } => frames
            .iter()
            .filter_map(|f| f.last().map(|(at, _)| *at))
            .max()
            .unwrap_or(0),
        Driver::Gifts { .. } => 0,
    };
    let deadline = (until + spec.drain.as_micros() as u64).max(start + last_replay + 2_000_000);
    loop {
        let driven = running.driver.is_finished();
        let answered = flow.answered.load(Ordering::Acquire) >= flow.sent.load(Ordering::Acquire);
        let confirmed = flow.confirmed.load(Ordering::Acquire)
            + flow.unconfirmed.load(Ordering::Acquire)
            >= flow.accepted.load(Ordering::Acquire);
        let delivered = ctx.seen.load(Ordering::Acquire) >= ctx.expected();
        if (driven && answered && confirmed && delivered) || ctx.now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Events that follow the last gift (totals, a milestone) come right after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = ctx.stop.send(true);

    let mut out = Phase {
        overlays: Vec::new(),
        window: spec.seconds.as_secs_f64(),
        delivered: 0,
        kinds: [0; KINDS],
        server_cpu,
        own_cpu,
        to_overlay: Latency::new(),
        sent_to_overlay: Latency::new(),
        flow: None,
        settled: ctx
            .settled
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .collect(),
        gaps: 0,
        repeats: 0,
        missing: 0,
        closed: 0,
        closes: BTreeMap::new(),
        differ: 0,
        captures: vec![Vec::new(); streams],
    };
    let published = match published {
        Some(task) => task.await?,
        None => HashMap::new(),
    };
    let mut fingerprints: Vec<(usize, (u64, u64))> = Vec::new();
    for reader in readers {
        let (overlay, stream, seen) = reader.await?;
        out.delivered += seen.delivered;
        for (sum, k) in out.kinds.iter_mut().zip(seen.kinds) {
            *sum += k;
        }
        out.gaps += seen.gaps;
        out.repeats += seen.repeats;
        fingerprints.push((stream, (seen.gifts, seen.fingerprint)));
        if let Some(mut capture) = seen.capture {
            at_publish_times(&mut capture, stream, &published);
            out.captures[stream] = capture;
        }
        match overlay {
            Some(overlay) => {
                out.missing += out.settled[stream].saturating_sub(seen.gifts);
                out.overlays.push(overlay);
            }
            None => out.closed += 1,
        }
    }
    out.differ = differing(&fingerprints);
    out.closes = ctx.closes.lock().map(|c| c.clone()).unwrap_or_default();
    for shard in &ctx.shards {
        let shard = shard.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        out.to_overlay.add(&shard.0);
        out.sent_to_overlay.add(&shard.1);
    }
    running.finish().await;
    if matches!(driver, Driver::Gifts { .. }) {
        let take = |l: &Mutex<Latency>| {
            let mut copy = Latency::new();
            if let Ok(l) = l.lock() {
                copy.add(&l);
            }
            LatencyBox(copy)
        };
        out.flow = Some(Flow {
            pledgers: pledger_count,
            sent: flow.sent.load(Ordering::Acquire),
            skipped: flow.skipped.load(Ordering::Acquire),
            answered: flow.answered.load(Ordering::Acquire),
            accepted: flow.accepted.load(Ordering::Acquire),
            refused: flow.refused.lock().map(|r| r.clone()).unwrap_or_default(),
            confirmed: flow.confirmed.load(Ordering::Acquire),
            unconfirmed: flow.unconfirmed.load(Ordering::Acquire),
            settled_in_window: flow.settled_in_window.load(Ordering::Acquire),
            acks: take(&flow.acks),
            confirms: take(&flow.confirms),
            queued: take(&flow.queued),
        });
    }
    Ok(out)
}

/// A close frame's code and reason.
fn why(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(frame) => format!("{} {}", u16::from(frame.code), frame.reason),
        None => "closed".into(),
    }
}

fn cpu_of(pids: &[u32]) -> anyhow::Result<Duration> {
    let mut sum = Duration::ZERO;
    for pid in pids {
        sum += Usage::of(*pid)?.cpu;
    }
    Ok(sum)
}

/// How many sockets' gift seqs differ from their stream's reference: the fingerprint
/// with the most gifts, the most common among those.
fn differing(fingerprints: &[(usize, (u64, u64))]) -> u64 {
    let mut counts: HashMap<usize, HashMap<(u64, u64), u64>> = HashMap::new();
    for (stream, print) in fingerprints {
        *counts
            .entry(*stream)
            .or_default()
            .entry(*print)
            .or_default() += 1;
    }
    counts
        .values()
        .map(|prints| {
            let total: u64 = prints.values().sum();
            let reference = prints
                .iter()
                .max_by_key(|((gifts, _), n)| (*gifts, **n))
                .map(|(_, n)| *n)
                .unwrap_or(0);
            total - reference
        })
        .sum()
}

enum Prepared {
    Gifts(Vec<Overlay>),
    Replay(Vec<Ws>),
}

/// A phase's driver tasks.
struct Running {
    /// Done once every frame or pledge has been sent.
    driver: JoinHandle<()>,
    /// Tasks that end when the phase stops.
    others: Vec<JoinHandle<()>>,
}

impl Running {
    async fn finish(self) {
        let mut all = self.others;
        all.push(self.driver);
        for task in all {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Overlay readers.

/// What one overlay saw in a phase.
#[derive(Default)]
struct Seen {
    delivered: u64,
    kinds: [u64; KINDS],
    /// Gift frames of this phase's gifts, and the sum of their seqs' mixes.
    gifts: u64,
    fingerprint: u64,
    gaps: u64,
    repeats: u64,
    capture: Option<Vec<(u64, String)>>,
}

/// Reads one overlay until the phase stops or the server closes it; hands the overlay
/// back while it is open.
async fn read(
    mut overlay: Overlay,
    ctx: Arc<Ctx>,
    shard: usize,
    capture: bool,
) -> (Option<Overlay>, usize, Seen) {
    let mut stop = ctx.stop.subscribe();
    let mut seen = Seen {
        capture: capture.then(Vec::new),
        ..Seen::default()
    };
    let mut latencies: Vec<(u32, u32)> = Vec::with_capacity(FLUSH);
    let mut open = true;
    loop {
        let message = tokio::select! {
            message = overlay.ws.next() => message,
            _ = stop.changed() => break,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let now = ctx.now();
                seen.frame(&text, now, &ctx, &mut overlay.last_seq, &mut latencies);
                if latencies.len() >= FLUSH {
                    flush(&ctx, shard, &mut latencies);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                open = false;
                ctx.watching[overlay.stream].fetch_sub(1, Ordering::AcqRel);
                ctx.closed("overlay", why(frame));
                break;
            }
            Some(Err(e)) => {
                open = false;
                ctx.watching[overlay.stream].fetch_sub(1, Ordering::AcqRel);
                ctx.closed("overlay", e.to_string());
                break;
            }
            None => {
                open = false;
                ctx.watching[overlay.stream].fetch_sub(1, Ordering::AcqRel);
                ctx.closed("overlay", "ended".into());
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    flush(&ctx, shard, &mut latencies);
    let stream = overlay.stream;
    (open.then_some(overlay), stream, seen)
}

impl Seen {
    fn frame(
        &mut self,
        text: &str,
        now: u64,
        ctx: &Ctx,
        last_seq: &mut Option<u64>,
        latencies: &mut Vec<(u32, u32)>,
    ) {
        let kind = kind_of(text);
        if (ctx.from..ctx.until).contains(&now) {
            self.delivered += 1;
            self.kinds[kind] += 1;
        }
        if let Some(capture) = &mut self.capture {
            capture.push((now.saturating_sub(ctx.start), text.to_owned()));
        }
        if kind == TOTALS {
            return;
        }
        let seq = number_after(text, SEQ);
        if let Some(seq) = seq {
            match *last_seq {
                Some(last) if seq <= last => self.repeats += 1,
                Some(last) => {
                    self.gaps += seq - last - 1;
                    *last_seq = Some(seq);
                }
                None => *last_seq = Some(seq),
            }
        }
        if kind != GIFT {
            return;
        }
        let Some(slot) = number_after(text, TOKEN).and_then(|n| ctx.table.slot(n)) else {
            return;
        };
        self.gifts += 1;
        self.fingerprint = self.fingerprint.wrapping_add(mix(seq.unwrap_or(u64::MAX)));
        ctx.seen.fetch_add(1, Ordering::AcqRel);
        let Some(pledged) = Table::get(&ctx.table.pledged, slot) else {
            return;
        };
        if pledged < ctx.from {
            return;
        }
        let since = |t: u64| now.saturating_sub(t).clamp(1, u32::MAX as u64) as u32;
        let confirmed = Table::get(&ctx.table.confirmed, slot).map_or(0, since);
        latencies.push((since(pledged), confirmed));
    }
}

fn flush(ctx: &Ctx, shard: usize, latencies: &mut Vec<(u32, u32)>) {
    if latencies.is_empty() {
        return;
    }
    if let Ok(mut shard) = ctx.shards[shard].lock() {
        for (pledged, confirmed) in latencies.drain(..) {
            shard.0.record(Duration::from_micros(pledged as u64));
            if confirmed > 0 {
                shard.1.record(Duration::from_micros(confirmed as u64));
            }
        }
    }
    latencies.clear();
}

// ---------------------------------------------------------------------------------------
// The gift driver: pledges over sockets, confirmations over HTTP.

/// A pledging socket's answer.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "ref")]
    reference: Option<String>,
    pledge_id: Option<String>,
    code: Option<String>,
}

fn launch_gifts(
    pledgers: Vec<Overlay>,
    urls: &[String],
    ctx: Arc<Ctx>,
    flow: Arc<FlowCounters>,
    spec: &Spec,
) -> Running {
    let rt = flow_runtime().handle();
    let gateways = urls.len().max(1);
    // Pledger p's stream, and where its gifts are confirmed: the next gateway.
    let targets: Arc<Vec<(usize, String)>> = Arc::new(
        pledgers
            .iter()
            .map(|p| (p.stream, urls[(p.gateway + 1) % gateways].clone()))
            .collect(),
    );
    let (confirm_tx, confirm_rx) = mpsc::unbounded_channel();
    let mut others = Vec::new();
    let mut writers = Vec::with_capacity(pledgers.len());
    for pledger in pledgers {
        let (mut sink, stream) = pledger.ws.split();
        let (tx, mut rx) = mpsc::channel::<String>(4096);
        writers.push(tx);
        others.push(rt.spawn(async move {
            while let Some(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        }));
        others.push(rt.spawn(answers(
            stream,
            ctx.clone(),
            flow.clone(),
            confirm_tx.clone(),
        )));
    }
    drop(confirm_tx);
    others.push(rt.spawn(confirm_all(confirm_rx, ctx.clone(), flow.clone(), targets)));
    let driver = rt.spawn(offer(writers, ctx, flow, spec.rate, spec.gifts()));
    Running { driver, others }
}

/// The gift flow's own runtime on its own thread: pledges, their acks and the
/// confirmations are sent and timed there, not queued behind thousands of overlay readers,
/// so their latencies are the gateway's rather than this process's.
fn flow_runtime() -> &'static tokio::runtime::Runtime {
    static FLOW: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    FLOW.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gift-flow")
            .enable_all()
            .build()
            .expect("a runtime for the gift flow")
    })
}

/// Offers gifts open loop: gift i's pledge is due at start + i / rate, and its time is
/// the due time, however late the sending.
async fn offer(
    writers: Vec<mpsc::Sender<String>>,
    ctx: Arc<Ctx>,
    flow: Arc<FlowCounters>,
    rate: f64,
    count: u64,
) {
    for i in 0..count {
        let due = ctx.start + (i as f64 * 1e6 / rate) as u64;
        tokio::time::sleep_until(ctx.at(due)).await;
        let n = ctx.table.base + i;
        if let Some(slot) = ctx.table.slot(n) {
            Table::set(&ctx.table.pledged, slot, due);
        }
        let writer = &writers[(i % writers.len() as u64) as usize];
        match writer.try_send(pledge_frame(n)) {
            Ok(()) => flow.sent.fetch_add(1, Ordering::AcqRel),
            Err(_) => flow.skipped.fetch_add(1, Ordering::AcqRel),
        };
    }
}

/// Reads a pledging socket: the answers to its pledges (the stream's frames it also gets
/// are skipped); each accepted pledge is passed on to be confirmed.
async fn answers(
    mut stream: SplitStream<Ws>,
    ctx: Arc<Ctx>,
    flow: Arc<FlowCounters>,
    confirm: mpsc::UnboundedSender<(u64, String, u64)>,
) {
    let mut stop = ctx.stop.subscribe();
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = stop.changed() => break,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                ctx.closed("pledger", why(frame));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                ctx.closed("pledger", e.to_string());
                break;
            }
            None => {
                ctx.closed("pledger", "ended".into());
                break;
            }
        };
        if !(text.starts_with(r#"{"type":"pledge_accepted""#)
            || text.starts_with(r#"{"type":"error""#))
        {
            continue;
        }
        let now = ctx.now();
        let Ok(answer) = serde_json::from_str::<Answer>(&text) else {
            continue;
        };
        let Some(n) = answer
            .reference
            .as_deref()
            .and_then(|r| r.strip_prefix(KEY))
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        flow.answered.fetch_add(1, Ordering::AcqRel);
        let pledged = ctx
            .table
            .slot(n)
            .and_then(|slot| Table::get(&ctx.table.pledged, slot));
        match (answer.kind.as_str(), answer.pledge_id) {
            ("pledge_accepted", Some(pledge_id)) => {
                flow.accepted.fetch_add(1, Ordering::AcqRel);
                if let Some(pledged) = pledged.filter(|p| *p >= ctx.from)
                    && let Ok(mut acks) = flow.acks.lock()
                {
                    acks.record(Duration::from_micros(now.saturating_sub(pledged)));
                }
                let _ = confirm.send((n, pledge_id, now));
            }
            _ => {
                let code = answer.code.unwrap_or_else(|| "unknown".into());
                if let Ok(mut refused) = flow.refused.lock() {
                    *refused.entry(code).or_default() += 1;
                }
            }
        }
    }
}

/// Confirmations in flight at once: enough for rate × webhook latency under overload
/// (400/s × 250 ms needs 100), so the generator does not hold gifts back.
const CONFIRMING: usize = 1024;

/// Confirms accepted pledges with signed webhooks, at most [`CONFIRMING`] in flight.
async fn confirm_all(
    mut accepted: mpsc::UnboundedReceiver<(u64, String, u64)>,
    ctx: Arc<Ctx>,
    flow: Arc<FlowCounters>,
    targets: Arc<Vec<(usize, String)>>,
) {
    let http = reqwest::Client::new();
    let gate = Arc::new(Semaphore::new(CONFIRMING));
    let mut tasks = JoinSet::new();
    while let Some((n, pledge_id, acked)) = accepted.recv().await {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let i = n.saturating_sub(ctx.table.base);
        let (stream, url) = targets[(i % targets.len() as u64) as usize].clone();
        let (http, ctx, flow) = (http.clone(), ctx.clone(), flow.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let txn = format!("lt-txn-{n:010}");
            let (body, signature) =
                clients::signed_payment(&pledge_id, amount(n), &txn, WEBHOOK_SECRET);
            let slot = ctx.table.slot(n);
            let sent = ctx.now();
            if let Some(slot) = slot {
                Table::set(&ctx.table.confirmed, slot, sent);
            }
            let ok = http
                .post(url)
                .header("Livefund-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !ok {
                flow.unconfirmed.fetch_add(1, Ordering::AcqRel);
                return;
            }
            let answered = ctx.now();
            ctx.settled[stream].fetch_add(1, Ordering::AcqRel);
            let measured = slot
                .and_then(|slot| Table::get(&ctx.table.pledged, slot))
                .is_some_and(|p| p >= ctx.from && p < ctx.until);
            if measured {
                flow.settled_in_window.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut confirms) = flow.confirms.lock() {
                    confirms.record(Duration::from_micros(answered.saturating_sub(sent)));
                }
                if let Ok(mut queued) = flow.queued.lock() {
                    queued.record(Duration::from_micros(sent.saturating_sub(acked)));
                }
            }
            flow.confirmed.fetch_add(1, Ordering::AcqRel);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

// ---------------------------------------------------------------------------------------
// The baseline's driver: captured frames replayed to the bare server.

/// When each event reached Redis pub/sub, as a subscriber beside the gateways saw it: per
/// (stream index, seq), the offset in µs. The bare server gets each event at that time, when
/// a gateway could first have sent it, rather than when it reached an overlay (after the
/// gateway's own delays and batching, and the overlay's reads running frames together).
async fn publish_times(
    redis: &redis::Client,
    names: Vec<String>,
    ctx: Arc<Ctx>,
) -> anyhow::Result<tokio::task::JoinHandle<HashMap<(usize, u64), u64>>> {
    use livefund::counters::channel::Message;
    let mut pubsub = redis.get_async_pubsub().await?;
    pubsub.psubscribe("*:events").await?;
    let mut stop = ctx.stop.subscribe();
    Ok(tokio::spawn(async move {
        let mut times = HashMap::new();
        let mut messages = pubsub.on_message();
        loop {
            let message = tokio::select! {
                m = messages.next() => m,
                _ = stop.changed() => break,
            };
            let Some(message) = message else { break };
            let now = ctx.now().saturating_sub(ctx.start);
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            let Some(Message::Event { stream, frame }) = Message::decode(&payload) else {
                continue;
            };
            let (Some(index), Some(seq)) = (
                names.iter().position(|n| n == stream),
                number_after(frame, SEQ),
            ) else {
                continue;
            };
            times.entry((index, seq)).or_insert(now);
        }
        times
    }))
}

/// Moves each captured event to the time it was published, keeping the order of frames
/// sent at the same time.
fn at_publish_times(
    capture: &mut [(u64, String)],
    stream: usize,
    published: &HashMap<(usize, u64), u64>,
) {
    for (offset, text) in capture.iter_mut() {
        if kind_of(text) == TOTALS {
            continue;
        }
        if let Some(at) = number_after(text, SEQ).and_then(|seq| published.get(&(stream, seq))) {
            *offset = (*offset).min(*at);
        }
    }
    capture.sort_by_key(|(offset, _)| *offset);
}

fn launch_replay(publishers: Vec<Ws>, frames: &[Vec<(u64, String)>], ctx: Arc<Ctx>) -> Running {
    let mut tasks = Vec::with_capacity(publishers.len());
    for (stream, mut ws) in publishers.into_iter().enumerate() {
        let frames = frames.get(stream).cloned().unwrap_or_default();
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            for (offset, text) in frames {
                tokio::time::sleep_until(ctx.at(ctx.start + offset)).await;
                if kind_of(&text) == GIFT
                    && let Some(slot) = number_after(&text, TOKEN).and_then(|n| ctx.table.slot(n))
                {
                    let now = ctx.now();
                    Table::set(&ctx.table.pledged, slot, now);
                    Table::set(&ctx.table.confirmed, slot, now);
                    ctx.settled[stream].fetch_add(1, Ordering::AcqRel);
                }
                if ws.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            // Held open until the phase stops: closing would not end the watchers, but
            // keeps the server's publisher side as it was during the run.
            let mut stop = ctx.stop.subscribe();
            let _ = stop.changed().await;
        }));
    }
    let driver = tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
    });
    Running {
        driver,
        others: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_by_substring() {
        let gift = r#"{"amount":700,"currency":"CNY","designation":"education","donor":null,"gift_id":"x","matched":0,"message":"lt:1234","seq":17,"test":false,"type":"gift"}"#;
        assert_eq!(kind_of(gift), GIFT);
        assert_eq!(number_after(gift, SEQ), Some(17));
        assert_eq!(number_after(gift, TOKEN), Some(1234));
        let totals = r#"{"type":"totals","seq":17,"stream":{},"campaign":{}}"#;
        assert_eq!(kind_of(totals), TOTALS);
        let test_alert = r#"{"type":"gift","seq":null}"#;
        assert_eq!(number_after(test_alert, SEQ), None);
    }

    #[test]
    fn sockets_differ_from_the_most_complete_set() {
        let prints = [(0, (3, 9)), (0, (3, 9)), (0, (2, 5)), (1, (1, 1))];
        assert_eq!(differing(&prints), 1);
    }

    #[test]
    fn shapes_parse() {
        let shape = parse_shape("100x100").expect("a shape");
        assert_eq!((shape.streams, shape.per_stream), (100, 100));
        assert!(parse_shape("0x5").is_err());
    }
}
