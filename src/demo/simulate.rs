//! `livefund demo --simulate N`: made-up viewers pledge N times a second across the
//! seeded streams, over the public API like any client. The sandbox pays most pledges by
//! itself a moment later; about one in ten is failed at the checkout instead, so the
//! overlay's pledged bar moves back as well as forward.

use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::seed::DESIGNATIONS;

/// How long the sandbox waits before it pays a simulated pledge.
pub const PAY_AFTER_MS: u64 = 1500;
/// The most pledges in flight at once; a tick finding more skips its pledge.
const IN_FLIGHT: usize = 64;
/// How many different made-up viewers give (so unique donors grow, then level off).
const VIEWERS: u32 = 300;

const NAMES: [&str; 16] = [
    "小明",
    "王阿姨",
    "李老师",
    "张同学",
    "陈先生",
    "刘女士",
    "星星妈妈",
    "阿杰",
    "小雨",
    "老周",
    "晓燕",
    "大熊",
    "林林",
    "Mia",
    "Tom",
    "一位路过的观众",
];
const MESSAGES: [&str; 10] = [
    "加油！",
    "孩子们冬天要暖暖的",
    "希望每个孩子都能上学",
    "一点心意",
    "主播辛苦了",
    "愿你们被温柔以待",
    "为山里的孩子们",
    "",
    "",
    "",
];
const AMOUNTS: [i64; 8] = [500, 500, 2000, 2000, 5000, 10000, 20000, 50000];

/// Pledges until `stop`.
pub async fn run(base: String, streams: Vec<String>, per_second: u32, stop: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the viewer simulation could not start");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        while in_flight.try_join_next().is_some() {}
        if in_flight.len() >= IN_FLIGHT {
            continue;
        }
        let (client, base) = (client.clone(), base.clone());
        let (body, fail) = made_up_pledge(&streams);
        in_flight.spawn(async move {
            if let Err(e) = pledge(&client, &base, &body, fail).await {
                tracing::warn!(error = %e, "a simulated pledge failed");
            }
        });
    }
    in_flight.shutdown().await;
}

/// One viewer's pledge, and whether its payment is to fail.
fn made_up_pledge(streams: &[String]) -> (Value, bool) {
    let mut rng = rand::rng();
    let viewer = rng.random_range(0..VIEWERS);
    let anonymous = rng.random_bool(0.25);
    let name = NAMES[viewer as usize % NAMES.len()];
    let message = MESSAGES.choose(&mut rng).copied().unwrap_or_default();
    let designation = match rng.random_range(0..=DESIGNATIONS.len()) {
        0 => None,
        i => Some(DESIGNATIONS[i - 1].0),
    };
    let body = json!({
        "stream": streams.choose(&mut rng),
        "amount": AMOUNTS.choose(&mut rng),
        "currency": "CNY",
        "donor_name": (!anonymous).then_some(name),
        "anonymous": anonymous,
        "message": (!message.is_empty()).then_some(message),
        "designation": designation,
        "donor_ref": format!("simulated-viewer-{viewer}"),
        "idempotency_key": format!("sim-{}", uuid::Uuid::new_v4().simple()),
    });
    (body, rng.random_bool(0.1))
}

async fn pledge(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
    fail: bool,
) -> reqwest::Result<()> {
    let accepted: Value = client
        .post(format!("{base}/api/v1/pledges"))
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    if fail && let Some(id) = accepted["pledge_id"].as_str() {
        client
            .post(format!("{base}/sandbox/checkout/{id}/fail"))
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(())
}
