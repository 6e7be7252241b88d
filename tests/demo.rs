//! `livefund demo` with no environment: it starts its own PostgreSQL and Redis, seeds the
//! fund, serves the pages and the API, simulates viewers when asked, and on Ctrl-C
//! (SIGINT) stops everything it started.

mod common;

use common::process::{livefund, start};
use reqwest::StatusCode;
use std::path::Path;
use std::time::Duration;

/// The pids of the processes whose parent is `parent`, with their command names.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..].split_whitespace().nth(1);
        if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            found.push((pid, comm));
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    // A zombie has no cmdline left; treat it as gone.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[tokio::test]
async fn demo_starts_everything_serves_the_seeded_campaign_simulates_viewers_and_stops_clean() {
    let data_dir =
        std::env::temp_dir().join(format!("livefund-demo-test-{}", uuid::Uuid::new_v4()));
    let mut command = livefund();
    command
        .arg("demo")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--simulate", "5"])
        .env("LIVEFUND_LISTEN", "127.0.0.1:0")
        .env_remove("LIVEFUND_OPERATOR_TOKEN")
        .env_remove("LIVEFUND_WEBHOOK_SECRET");
    let mut running = start(
        command,
        "livefund demo is running",
        Duration::from_secs(120),
    );
    let base = running.base_url.clone();
    let children = children_of(running.child.id());
    let names: Vec<&str> = children.iter().map(|(_, name)| name.as_str()).collect();
    assert!(
        names.iter().any(|n| n.starts_with("postgres"))
            && names.iter().any(|n| n.starts_with("redis")),
        "the demo runs its own PostgreSQL and Redis: {children:?}"
    );

    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let landing = client
        .get(format!("{base}/"))
        .send()
        .await
        .expect("landing");
    assert_eq!(landing.status(), StatusCode::OK);
    assert!(
        landing.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("text/html"))
    );
    let campaign: serde_json::Value = client
        .get(format!("{base}/api/v1/campaigns/warm-winter-2026"))
        .send()
        .await
        .expect("campaign")
        .json()
        .await
        .expect("json");
    assert_eq!(campaign["fund"], "ciai-zhugu");
    assert_eq!(campaign["designations"].as_array().map(Vec::len), Some(6));
    assert_eq!(campaign["streams"].as_array().map(Vec::len), Some(3));
    assert_eq!(campaign["status"], "live");
    assert!(
        campaign["matching"]["cap"]
            .as_i64()
            .is_some_and(|cap| cap > 0)
    );
    assert!(campaign["goal"].as_i64().is_some_and(|goal| goal > 0));

    // The operator token is kept in the data folder, readable by its owner only.
    let token_file = data_dir.join("operator-token");
    let token = std::fs::read_to_string(&token_file).expect("operator token file");
    assert_mode_600(&token_file);
    let stream = client
        .post(format!("{base}/api/v1/campaigns/warm-winter-2026/streams"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({"slug": "extra-live-04", "streamer": "测试"}))
        .send()
        .await
        .expect("create stream");
    assert_eq!(stream.status(), StatusCode::CREATED);

    // Totals move on a stream's socket when a pledge is sent, and a pledge paid in the
    // sandbox reaches the ledger and the socket as a gift (on the new stream, which the
    // simulated viewers do not know).
    let ws = base.replacen("http", "ws", 1);
    let mut socket =
        common::ws::Client::connect(&format!("{ws}/api/v1/streams/extra-live-04/live")).await;
    let snapshot = socket.next_of("snapshot").await;
    let pledged = snapshot["stream"]["pledged"].as_i64().unwrap_or(0);
    let pledge: serde_json::Value = client
        .post(format!("{base}/api/v1/pledges"))
        .json(&common::pledge_body("extra-live-04", 8800))
        .send()
        .await
        .expect("pledge")
        .json()
        .await
        .expect("json");
    socket.totals_with_pledged(pledged + 8800).await;
    let pledge_id = pledge["pledge_id"].as_str().expect("pledge id");
    let paid = client
        .post(format!("{base}/sandbox/checkout/{pledge_id}/pay"))
        .send()
        .await
        .expect("sandbox pay");
    assert_eq!(paid.status(), StatusCode::OK);
    let gift = socket.next_of("gift").await;
    assert_eq!(gift["amount"], 8800);

    // Meanwhile the made-up viewers pledged on the seeded streams, and were paid.
    common::eventually("simulated gifts settled", || async {
        let stream: serde_json::Value = client
            .get(format!("{base}/api/v1/streams/xiangxi-live-01"))
            .send()
            .await
            .expect("stream")
            .json()
            .await
            .expect("json");
        stream["campaign_totals"]["gifts"]
            .as_i64()
            .is_some_and(|gifts| gifts >= 4)
    })
    .await;

    let printed = running.drain_output().join("\n");
    assert!(
        !printed.contains(token.trim()),
        "the token is never printed"
    );

    let status = running.stop_with(nix::sys::signal::Signal::SIGINT, Duration::from_secs(30));
    assert!(
        status.success(),
        "the demo exits cleanly on Ctrl-C: {status:?}"
    );
    let left: Vec<_> = children.iter().filter(|(pid, _)| alive(*pid)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&data_dir);
}

fn assert_mode_600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
}
