//! The real `livefund` binary: help, `migrate`, and `serve` on a real port until SIGTERM.

mod common;

use common::database_url;
use common::process::{livefund, start};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;

#[test]
fn help_lists_the_subcommands_and_every_variable() {
    let out = livefund().arg("--help").output().expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "migrate", "demo"] {
        assert!(help.contains(sub), "{sub} missing from:\n{help}");
    }
    let out = livefund()
        .args(["serve", "--help"])
        .output()
        .expect("run serve --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DATABASE_URL",
        "REDIS_URL",
        "LIVEFUND_LISTEN",
        "LIVEFUND_PUBLIC_URL",
        "LIVEFUND_OPERATOR_TOKEN",
        "LIVEFUND_WEBHOOK_SECRET",
        "LIVEFUND_ALLOWED_ORIGINS",
        "LIVEFUND_SANDBOX_PAYMENTS",
        "LIVEFUND_REDIS_PREFIX",
        "--livefund-listen",
        "--database-url",
    ] {
        assert!(help.contains(var), "{var} missing from:\n{help}");
    }
}

#[test]
fn serve_without_required_settings_says_what_is_missing() {
    let out = livefund().arg("serve").output().expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--database-url"), "{err}");
}

#[test]
fn secrets_are_never_printed() {
    let out = livefund()
        .arg("serve")
        .env("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x")
        .env("REDIS_URL", "redis://:hunter3@127.0.0.1:1")
        .env("LIVEFUND_WEBHOOK_SECRET", "whsec_hunter4")
        .env("LIVEFUND_OPERATOR_TOKEN", "op_hunter5")
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "nothing listens on port 1");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["hunter2", "hunter3", "hunter4", "hunter5"] {
        assert!(!printed.contains(secret), "{secret} printed in:\n{printed}");
    }
}

#[sqlx::test(migrations = false)]
async fn migrate_then_serve_then_stop_on_sigterm(db: PgPool) {
    let url = database_url(&db);
    let out = livefund()
        .arg("migrate")
        .env("DATABASE_URL", &url)
        .output()
        .expect("run migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_name = 'gifts'",
    )
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(tables, 1);

    let mut command = livefund();
    command
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", common::redis_url())
        .env("LIVEFUND_WEBHOOK_SECRET", "whsec_a,whsec_b")
        .env("LIVEFUND_OPERATOR_TOKEN", "binary-test-token")
        .env("LIVEFUND_LISTEN", "127.0.0.1:0")
        .env("LIVEFUND_REDIS_PREFIX", common::unique_prefix());
    let mut running = start(command, "listening on", Duration::from_secs(30));
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{}/readyz", running.base_url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    let created = client
        .post(format!("{}/api/v1/funds", running.base_url))
        .bearer_auth("binary-test-token")
        .json(&json!({"slug": "ciai", "name": "慈爱助孤基金", "charity": "联合会"}))
        .send()
        .await
        .expect("create fund");
    assert_eq!(created.status(), StatusCode::CREATED);

    let status = running.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    assert!(status.success(), "graceful exit, got {status:?}");
    let printed = running.drain_output().join("\n");
    assert!(!printed.contains("binary-test-token"), "{printed}");
    assert!(!printed.contains("whsec_a"), "{printed}");
}
