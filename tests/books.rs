//! The operators' side against real PostgreSQL and Redis: statements reconciled with the
//! ledger class by class, malformed statements reported by line, the close and its
//! digest (recomputed here from the CSV export, independently), the export, and the
//! public disclosure, which carries no name, message or id.

mod common;

use common::process::livefund;
use common::tempdir::TempDir;
use common::{OPERATOR_TOKEN, TestApp, code, database_url, eventually, payment_event, pledge_body};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::io::Write;

const HEADER: &str = "provider_txn_id,pledge_id,type,amount,currency,fee,occurred_at";
const AT: &str = "2026-06-01T12:00:00Z";

/// Uploads `csv` as the campaign's statement; the status and the report.
async fn upload(app: &TestApp, campaign: &str, csv: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(&format!("/api/v1/campaigns/{campaign}/statements")))
        .bearer_auth(OPERATOR_TOKEN)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .expect("upload");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

/// Uploads `csv` to the campaign `campaign`; the report's body as sent.
async fn upload_text(app: &TestApp, csv: &str) -> String {
    app.client
        .post(app.url("/api/v1/campaigns/campaign/statements"))
        .bearer_auth(OPERATOR_TOKEN)
        .body(csv.to_owned())
        .send()
        .await
        .expect("upload")
        .text()
        .await
        .expect("body")
}

async fn operator_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("get")
}

async fn close(app: &TestApp, body: Value) -> (StatusCode, Value) {
    app.operator_post("/api/v1/campaigns/campaign/close", &body)
        .await
}

/// A pledge of `amount` paid as `txn`: settled, and its effect on the live counters.
async fn paid(app: &TestApp, amount: i64, txn: &str) -> String {
    let pledge = app.pledged("stream", amount).await;
    let (status, reply) = app
        .webhook(&payment_event("payment.succeeded", &pledge, txn, amount))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    pledge
}

fn row(txn: &str, pledge: &str, kind: &str, amount: i64, fee: i64) -> String {
    format!("{txn},{pledge},{kind},{amount},CNY,{fee},{AT}")
}

/// The `(provider_txn_id, line)` of each entry of a report's list.
fn listed(report: &Value, list: &str) -> Vec<(String, Option<i64>)> {
    report[list]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|d| {
            (
                d["provider_txn_id"].as_str().unwrap_or_default().to_owned(),
                d["line"].as_i64(),
            )
        })
        .collect()
}

async fn live_settled(app: &TestApp) {
    eventually("the outbox applied", || async {
        app.count("select count(*) from outbox").await == 0
    })
    .await;
}

#[sqlx::test]
async fn a_statement_is_classified_row_by_row_against_the_ledger(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let p1 = paid(&app, 5000, "t1").await;
    let p2 = paid(&app, 3000, "t2").await;
    paid(&app, 4000, "t3").await;
    let p5 = paid(&app, 1000, "t5").await;
    // The donor charged twice: the second charge is a duplicate_payment exception.
    let (status, _) = app
        .webhook(&payment_event("payment.succeeded", &p5, "t5b", 1000))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut refund = payment_event("refund.succeeded", &p1, "r1", 1000);
    refund["refunded_txn_id"] = json!("t1");
    assert_eq!(app.webhook(&refund).await.0, StatusCode::OK);
    let never_paid = app.pledged("stream", 700).await;
    live_settled(&app).await;

    let statement = [
        HEADER.to_owned(),
        row("t1", &p1, "payment", 5000, 30), // line 2: matched
        row("t2", &p2, "payment", 2900, 30), // 3: amount differs
        row("t-ghost", &never_paid, "payment", 700, 4), // 4: money with no gift
        row("t5", &p5, "payment", 1000, 30), // 5: matched
        row("t5b", &p5, "payment", 1000, 30), // 6: a second charge (an exception)
        row("t1", &p1, "payment", 5000, 30), // 7: t1 again
        format!("r1,{p1},refund,1000,CNY,0,{AT}"), // 8: matched
        "t9,x,payment,ten,CNY,0,2026-06-01T12:00:00Z".to_owned(), // 9: unreadable
    ]
    .join("\n");
    let (status, report) = upload(&app, "campaign", &statement).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        listed(&report, "missing_in_ledger"),
        [("t-ghost".into(), Some(4))]
    );
    assert_eq!(listed(&report, "amount_mismatch"), [("t2".into(), Some(3))]);
    assert_eq!(report["amount_mismatch"][0]["ledger"]["amount"], 3000);
    assert_eq!(report["amount_mismatch"][0]["statement"]["amount"], 2900);
    assert_eq!(
        listed(&report, "missing_in_statement"),
        [("t3".into(), None)]
    );
    assert_eq!(
        listed(&report, "duplicates"),
        [("t5b".into(), Some(6)), ("t1".into(), Some(7))]
    );
    let kinds: Vec<&str> = report["exceptions"]
        .as_array()
        .expect("exceptions")
        .iter()
        .filter_map(|x| x["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["duplicate_payment"]);
    assert_eq!(report["bad_rows"][0]["line"], 9);
    assert_eq!(report["matched"], json!({"count": 3, "amount": 7000}));
    assert_eq!(report["ledger"]["gifts"], 4);
    assert_eq!(report["ledger"]["net"], 13_000 - 1000);
    assert_eq!(report["statement"]["rows"], 7);
    assert_eq!(report["live_drift"], 0);
    assert_eq!(report["live"]["confirmed"], 12_000);
    assert_eq!(
        report["by_stream"]["stream"],
        json!({"gifts": 4, "net": 12_000})
    );
    assert_eq!(report["by_designation"]["education"]["gifts"], 4);
    assert_eq!(report["unpaid_pledges"]["count"], 1);
    assert_eq!(report["unpaid_pledges"]["amount"], 700);
    assert_eq!(report["clean"], false);

    // The same statement again: byte for byte the same report but for `generated_at`.
    let first = upload_text(&app, &statement).await;
    let second = upload_text(&app, &statement).await;
    let without_time = |text: &str| {
        let at = text.find("\"generated_at\"").expect("generated_at");
        let end = at + text[at..].find("Z\"").expect("a time") + 2;
        format!("{}{}", &text[..at], &text[end..])
    };
    assert_eq!(without_time(&first), without_time(&second));
    assert_ne!(first, second, "made at another moment");

    // The latest report reads back as it was made, and as CSV, a discrepancy a row.
    let latest = operator_get(&app, "/api/v1/campaigns/campaign/reconciliation").await;
    assert_eq!(latest.status(), StatusCode::OK);
    let csv = operator_get(&app, "/api/v1/campaigns/campaign/reconciliation?format=csv")
        .await
        .text()
        .await
        .expect("csv");
    let classes: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(
        classes,
        [
            "missing_in_ledger",
            "missing_in_statement",
            "amount_mismatch",
            "duplicates",
            "duplicates",
            "exception",
            "bad_row"
        ]
    );
}

#[sqlx::test]
async fn malformed_statements_are_reported_by_line_never_dropped(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let bad_lines = [
        "t1,p,payment,5000,CNY,30".to_owned(),
        format!("t2,p,payment,50.5,CNY,0,{AT}"),
        format!("t3,p,chargeback,5000,CNY,0,{AT}"),
        "t4,p,payment,5000,CNY,0,yesterday".to_owned(),
    ];
    let body = format!("\u{feff}{HEADER}\r\n{}\r\n", bad_lines.join("\r\n"));
    let (status, report) = upload(&app, "campaign", &body).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let lines: Vec<i64> = report["bad_rows"]
        .as_array()
        .expect("bad rows")
        .iter()
        .filter_map(|b| b["line"].as_i64())
        .collect();
    assert_eq!(lines, [2, 3, 4, 5], "{report}");
    assert_eq!(report["clean"], false);

    let (_, empty) = upload(&app, "campaign", "").await;
    assert_eq!(empty["bad_rows"][0]["line"], 1);
    assert_eq!(empty["clean"], false);

    let (_, header_only) = upload(&app, "campaign", &format!("{HEADER}\n")).await;
    assert_eq!(header_only["bad_rows"], json!([]));
    assert_eq!(header_only["statement"]["rows"], 0);
    assert_eq!(header_only["clean"], true, "nothing on either side");

    let (status, unknown) = upload(&app, "no-such-campaign", &format!("{HEADER}\n")).await;
    assert_eq!(
        (status, code(&unknown)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let anonymous = app
        .client
        .post(app.url("/api/v1/campaigns/campaign/statements"))
        .body(HEADER)
        .send()
        .await
        .expect("upload");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// The ledger digest recomputed from the CSV export as the README describes it, with
/// nothing of the service's code.
fn digest_of_export(slug: &str, csv: &str) -> String {
    let csv = csv.strip_prefix('\u{feff}').expect("a byte-order mark");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let at = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let unquote = |cell: &str| cell.strip_prefix('\'').unwrap_or(cell).to_owned();
    let mut chain: Vec<u8> = Sha256::digest(format!("livefund-ledger-v1:{slug}")).to_vec();
    for record in reader.records() {
        let r = record.expect("row");
        let number = |name: &str| r[at(name)].parse::<i64>().expect(name);
        let fields = [
            r[at("gift_id")].to_owned(),
            r[at("pledge_id")].to_owned(),
            unquote(&r[at("provider_txn_id")]),
            r[at("stream")].to_owned(),
            r[at("amount")].to_owned(),
            r[at("fee")].to_owned(),
            r[at("currency")].to_owned(),
            unquote(&r[at("designation")]),
            unquote(&r[at("donor")]),
            r[at("anonymous")].to_owned(),
            unquote(&r[at("message")]),
            (number("matched") - number("matched_after_close")).to_string(),
            (number("refunded") - number("refunded_after_close")).to_string(),
            r[at("settled_at")].to_owned(),
        ];
        let line = format!("{}\n", fields.join("\u{1f}"));
        let mut next = Sha256::new();
        next.update(&chain);
        next.update(line.as_bytes());
        chain = next.finalize().to_vec();
    }
    hex::encode(chain)
}

async fn export_csv(app: &TestApp) -> String {
    let response = operator_get(app, "/api/v1/campaigns/campaign/gifts?format=csv").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("csv")
}

#[sqlx::test]
async fn a_clean_report_closes_the_campaign_and_the_export_recomputes_its_digest(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut named = pledge_body("stream", 8800);
    named["donor_name"] = json!("=HYPERLINK(\"x\")");
    named["message"] = json!("孩子们加油");
    let (_, pledge) = app.pledge(&named).await;
    let p1 = pledge["pledge_id"].as_str().expect("pledge").to_owned();
    let (status, _) = app
        .webhook(&payment_event("payment.succeeded", &p1, "c1", 8800))
        .await;
    assert_eq!(status, StatusCode::OK);
    let p2 = paid(&app, 1200, "c2").await;
    live_settled(&app).await;

    let (status, refused) = close(&app, json!({})).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "not_reconciled")
    );
    let statement = [
        HEADER.to_owned(),
        row("c1", &p1, "payment", 8800, 30),
        row("c2", &p2, "payment", 1200, 30),
    ]
    .join("\n");
    let (_, report) = upload(&app, "campaign", &statement).await;
    assert_eq!(report["clean"], true, "{report}");

    let export = export_csv(&app).await;
    assert!(
        export.contains("'=HYPERLINK"),
        "a formula is kept from spreadsheets"
    );
    assert!(export.contains("孩子们加油"));
    let (status, closed) = close(&app, json!({"by": "财务 王老师"})).await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(
        (closed["gifts"].clone(), closed["net"].clone()),
        (json!(2), json!(10_000))
    );
    let digest = closed["ledger_digest"].as_str().expect("digest").to_owned();
    assert_eq!(digest_of_export("campaign", &export), digest);
    let (closed_by, forced): (String, bool) =
        sqlx::query_as("select closed_by, close_forced from campaigns")
            .fetch_one(&app.db)
            .await
            .expect("close record");
    assert_eq!((closed_by.as_str(), forced), ("财务 王老师", false));

    // Closed: pledges refused; a late payment kept as an exception; a refund is a
    // post-close adjustment that leaves the digest, and the export still recomputes it.
    let (status, refused) = app.pledge(&pledge_body("stream", 500)).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "campaign_closed")
    );
    let late = uuid::Uuid::new_v4().to_string();
    let (status, _) = app
        .webhook(&payment_event("payment.succeeded", &late, "c-late", 900))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut refund = payment_event("refund.succeeded", &p2, "c2-back", 200);
    refund["refunded_txn_id"] = json!("c2");
    assert_eq!(app.webhook(&refund).await.0, StatusCode::OK);
    let (_, again) = close(&app, json!({})).await;
    assert_eq!(
        again["ledger_digest"],
        json!(digest),
        "a repeated close answers the same"
    );
    assert_eq!(
        digest_of_export("campaign", &export_csv(&app).await),
        digest
    );
    let (status, disclosure) = app.get("/api/v1/campaigns/campaign/disclosure").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(disclosure["ledger_digest"], json!(digest));
    assert_eq!(
        disclosure["post_close_adjustments"],
        json!({"count": 1, "amount": 200, "matched_reversed": 100}),
        "the sponsor's 50 % of it taken back too"
    );
    assert_eq!(disclosure["status"], "closed");
}

#[sqlx::test]
async fn a_close_is_refused_on_an_unclean_or_stale_report_and_forced_only_with_a_reason(
    db: PgPool,
) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let p1 = paid(&app, 5000, "u1").await;
    live_settled(&app).await;
    let (_, report) = upload(&app, "campaign", &format!("{HEADER}\n")).await;
    assert_eq!(
        report["clean"], false,
        "the gift is missing in the statement"
    );
    let (status, refused) = close(&app, json!({})).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "not_reconciled")
    );

    // Clean, then the ledger moves on: the report no longer stands for it.
    let statement = format!("{HEADER}\n{}\n", row("u1", &p1, "payment", 5000, 30));
    let (_, report) = upload(&app, "campaign", &statement).await;
    assert_eq!(report["clean"], true, "{report}");
    paid(&app, 700, "u2").await;
    let (status, refused) = close(&app, json!({})).await;
    assert_eq!(
        (status, code(&refused)),
        (StatusCode::CONFLICT, "not_reconciled")
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("changed"))
    );

    let (status, no_reason) = close(&app, json!({"force": true})).await;
    assert_eq!(
        (status, code(&no_reason)),
        (StatusCode::CONFLICT, "not_reconciled")
    );
    assert!(
        no_reason["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reason"))
    );
    let (status, closed) = close(
        &app,
        json!({"force": true, "reason": "the provider's statement is late; closing for the audit"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["forced"], true);
    assert_eq!(closed["gifts"], 2);
    let (status, again) = close(&app, json!({"force": true})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a repeated close answers the close: {again}"
    );
    assert_eq!(again["ledger_digest"], closed["ledger_digest"]);
    let reason: String = sqlx::query_scalar("select close_reason from campaigns")
        .fetch_one(&app.db)
        .await
        .expect("reason");
    assert!(reason.contains("late"));
}

#[sqlx::test]
async fn the_disclosure_shows_the_money_and_nothing_that_names_anyone(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let mut secret = pledge_body("stream", 6600);
    secret["donor_name"] = json!("张秘密");
    secret["message"] = json!("这是一条私人留言");
    secret["donor_ref"] = json!("browser-private-ref");
    let (_, pledge) = app.pledge(&secret).await;
    let pledge_id = pledge["pledge_id"].as_str().expect("pledge").to_owned();
    let (status, _) = app
        .webhook(&payment_event(
            "payment.succeeded",
            &pledge_id,
            "txn-private-1",
            6600,
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut unrestricted = pledge_body("stream", 400);
    unrestricted["designation"] = Value::Null;
    let (_, other) = app.pledge(&unrestricted).await;
    let other = other["pledge_id"].as_str().expect("pledge").to_owned();
    app.webhook(&payment_event(
        "payment.succeeded",
        &other,
        "txn-private-2",
        400,
    ))
    .await;
    let gift_id: String =
        sqlx::query_scalar("select id::text from gifts where pledge_id = $1::uuid")
            .bind(&pledge_id)
            .fetch_one(&app.db)
            .await
            .expect("gift");

    let (status, disclosure) = app.get("/api/v1/campaigns/campaign/disclosure").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(disclosure["totals"]["raised"], 7000);
    assert_eq!(disclosure["totals"]["gifts"], 2);
    assert_eq!(disclosure["totals"]["donors"], 2);
    assert_eq!(disclosure["totals"]["fees"], 60);
    assert_eq!(disclosure["totals"]["net"], 7000);
    assert_eq!(disclosure["by_designation"]["education"]["gifts"], 1);
    assert_eq!(disclosure["by_designation"]["unrestricted"]["net"], 400);
    assert_eq!(disclosure["by_stream"]["stream"]["gifts"], 2);
    assert_eq!(
        disclosure["ledger_digest"],
        Value::Null,
        "open: no digest yet"
    );
    let text = disclosure.to_string();
    for private in [
        "张秘密",
        "这是一条私人留言",
        "browser-private-ref",
        pledge_id.as_str(),
        gift_id.as_str(),
        "txn-private-1",
        "txn-private-2",
    ] {
        assert!(
            !text.contains(private),
            "{private} in the disclosure: {text}"
        );
    }
}

#[sqlx::test]
async fn the_export_lists_every_gift_in_the_digests_order(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    for (i, amount) in [300, 200, 100].into_iter().enumerate() {
        paid(&app, amount, &format!("e{i}")).await;
    }
    let response = operator_get(&app, "/api/v1/campaigns/campaign/gifts").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let amounts: Vec<i64> = body["gifts"]
        .as_array()
        .expect("gifts")
        .iter()
        .filter_map(|g| g["amount"].as_i64())
        .collect();
    assert_eq!(amounts, [300, 200, 100], "in the order they settled");
    assert_eq!(body["gifts"][0]["matched"], 150);
    let csv = export_csv(&app).await;
    assert_eq!(csv.lines().count(), 4, "a header and a row per gift");
    let anonymous = app
        .client
        .get(app.url("/api/v1/campaigns/campaign/gifts"))
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

/// `livefund reconcile` on `file`: its exit status, stdout and stderr.
fn reconcile_cli(
    app: &TestApp,
    db: &PgPool,
    file: &std::path::Path,
    format: &str,
) -> (i32, String, String) {
    let output = livefund()
        .args([
            "reconcile",
            "--campaign",
            "campaign",
            "--format",
            format,
            "--statement",
        ])
        .arg(file)
        .env("DATABASE_URL", database_url(db))
        .env("REDIS_URL", common::redis_url())
        .env("LIVEFUND_REDIS_PREFIX", &app.prefix)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run livefund reconcile");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[sqlx::test]
async fn the_reconcile_command_prints_the_report_a_summary_and_says_if_it_is_clean(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.seed().await;
    let p1 = paid(&app, 5000, "k1").await;
    live_settled(&app).await;
    let dir = TempDir::new("reconcile-cli");
    let clean = dir.path().join("clean.csv");
    std::fs::write(
        &clean,
        format!("{HEADER}\n{}\n", row("k1", &p1, "payment", 5000, 30)),
    )
    .expect("write");
    let (status, stdout, stderr) = reconcile_cli(&app, &db, &clean, "json");
    assert_eq!(status, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("the report on stdout");
    assert_eq!(report["clean"], true);
    assert!(stderr.contains("campaign: clean"), "{stderr}");
    assert!(stderr.contains("matched    1 rows, ¥50.00"), "{stderr}");

    let unclean = dir.path().join("unclean.csv");
    std::fs::write(
        &unclean,
        format!("{HEADER}\nk-ghost,,payment,900,CNY,0,{AT}\n"),
    )
    .expect("write");
    let (status, stdout, stderr) = reconcile_cli(&app, &db, &unclean, "csv");
    assert_eq!(status, 1, "a report that is not clean: {stderr}");
    assert!(stderr.contains("NOT clean"), "{stderr}");
    assert!(stdout.starts_with("class,provider_txn_id"), "{stdout}");
    assert!(stdout.contains("missing_in_ledger,k-ghost"), "{stdout}");
    assert!(stdout.contains("missing_in_statement,k1"), "{stdout}");
}

#[sqlx::test]
async fn a_statement_of_a_million_rows_is_reconciled(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.seed().await;
    // The provider's statement covers its whole account: a million rows of another
    // campaign's payments, and this campaign's one.
    app.create_campaign("other", "fund").await;
    app.create_stream("other-live", "other").await;
    let (_, theirs) = app.pledge(&pledge_body("other-live", 100)).await;
    let theirs = theirs["pledge_id"].as_str().expect("pledge").to_owned();
    let ours = paid(&app, 5000, "mine").await;
    live_settled(&app).await;
    eventually("the other pledge written behind", || async {
        app.count("select count(*) from pledges where status = 'pending'")
            .await
            == 1
    })
    .await;
    let dir = TempDir::new("million");
    let path = dir.path().join("statement.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
    writeln!(file, "{HEADER}").expect("write");
    for i in 0..1_000_000 {
        writeln!(file, "m{i},{theirs},payment,100,CNY,1,{AT}").expect("write");
    }
    writeln!(file, "{}", row("mine", &ours, "payment", 5000, 30)).expect("write");
    file.flush().expect("flush");
    drop(file);
    let (status, stdout, stderr) = reconcile_cli(&app, &db, &path, "json");
    assert_eq!(status, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["source"]["rows"], 1);
    assert_eq!(report["source"]["other_campaigns"], 1_000_000);
    assert_eq!(report["matched"]["count"], 1);
    let stored: i64 = app.count("select count(*) from statement_rows").await;
    assert_eq!(stored, 1_000_001, "every row stored");
}

#[sqlx::test]
async fn a_refund_is_checked_against_the_payment_it_refunds_and_types_are_kept_apart(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let p1 = paid(&app, 5000, "f1").await;
    let p2 = paid(&app, 3000, "f2").await;
    let mut refund = payment_event("refund.succeeded", &p1, "fr1", 1000);
    refund["refunded_txn_id"] = json!("f1");
    assert_eq!(app.webhook(&refund).await.0, StatusCode::OK);
    live_settled(&app).await;
    let statement = [
        format!("{HEADER},refunded_txn_id"),
        format!("{},", row("f1", &p1, "payment", 5000, 30)),
        // The statement says the refund was of the other payment.
        format!("fr1,{p2},refund,1000,CNY,0,{AT},f2"),
        // f2 stated as a refund, not as the payment it is.
        format!("{},", row("f2", &p2, "refund", 3000, 0)),
    ]
    .join("\n");
    let (_, report) = upload(&app, "campaign", &statement).await;
    assert_eq!(
        listed(&report, "amount_mismatch"),
        [("fr1".into(), Some(3))]
    );
    assert!(
        report["amount_mismatch"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("refunds f2") && d.contains("refunded f1")),
        "{report}"
    );
    assert_eq!(
        listed(&report, "missing_in_ledger"),
        [("f2".into(), Some(4))]
    );
    assert_eq!(
        listed(&report, "missing_in_statement"),
        [("f2".into(), None)]
    );
    assert_eq!(report["matched"]["count"], 1);
}

#[sqlx::test]
async fn rows_that_would_break_the_report_are_bad_rows_and_drift_is_a_csv_row(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let statement = format!(
        "{HEADER}\nnul\u{0}txn,p,payment,100,CNY,0,{AT}\n\
         big1,p,payment,9000000000000000000,CNY,0,{AT}\n\
         big2,p,payment,9000000000000000000,CNY,0,{AT}\n\r\n"
    );
    let (status, report) = upload(&app, "campaign", &statement).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let lines: Vec<i64> = report["bad_rows"]
        .as_array()
        .expect("bad rows")
        .iter()
        .filter_map(|b| b["line"].as_i64())
        .collect();
    assert_eq!(lines, [2, 3, 4]);

    // Live counters off from the ledger: the report says so, and so does its CSV.
    paid(&app, 900, "d1").await;
    live_settled(&app).await;
    let totals = livefund::counters::Keys::new(app.prefix.clone())
        .campaign(&livefund::domain::Slug::parse("campaign", "campaign").expect("slug"))
        .totals();
    let mut redis = app.redis().await;
    let _: () = redis::cmd("HSET")
        .arg(&totals)
        .arg("confirmed")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("drift");
    let p = app.count("select count(*) from gifts").await;
    assert_eq!(p, 1);
    let pledge: String = sqlx::query_scalar("select pledge_id::text from gifts")
        .fetch_one(&app.db)
        .await
        .expect("pledge");
    let (_, report) = upload(
        &app,
        "campaign",
        &format!("{HEADER}\n{}\n", row("d1", &pledge, "payment", 900, 30)),
    )
    .await;
    assert_ne!(report["live_drift"], 0, "{report}");
    assert_eq!(report["clean"], false);
    let csv = operator_get(&app, "/api/v1/campaigns/campaign/reconciliation?format=csv")
        .await
        .text()
        .await
        .expect("csv");
    assert!(csv.lines().any(|l| l.starts_with("live_drift,")), "{csv}");
}

#[sqlx::test]
async fn a_long_report_lists_the_first_of_each_class_and_its_csv_every_one(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.seed().await;
    let rows: Vec<String> = (0..12_000)
        .map(|i| format!("ghost-{i:05},,payment,100,CNY,1,{AT}"))
        .collect();
    let statement = format!("{HEADER}\n{}\n", rows.join("\n"));
    let (status, report) = upload(&app, "campaign", &statement).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        report["missing_in_ledger"].as_array().map(Vec::len),
        Some(10_000)
    );
    assert_eq!(report["not_listed"]["missing_in_ledger"], 2_000);
    let csv = operator_get(&app, "/api/v1/campaigns/campaign/reconciliation?format=csv")
        .await
        .text()
        .await
        .expect("csv");
    let missing = csv
        .lines()
        .filter(|l| l.starts_with("missing_in_ledger,"))
        .count();
    assert_eq!(missing, 12_000, "the CSV lists every one");
    assert!(
        csv.lines()
            .nth(1)
            .is_some_and(|l| l.contains("ghost-00000"))
    );
    assert!(
        csv.lines()
            .nth(12_000)
            .is_some_and(|l| l.contains("ghost-11999"))
    );
}
