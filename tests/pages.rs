//! The pages in a real headless Chromium against the real service: the landing page, a
//! pledge from the viewer's page paid at the sandbox checkout, refusals in the page's
//! language, anonymity on the overlay, and the overlay riding out a gateway that dies.

mod common;

use common::browser::Browser;
use common::process::{livefund, start};
use common::{Options, TestApp, database_url, eventually, pledge_body};
use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::Duration;

const STREAM: &str = "xiangxi-live-01";

/// The service with sandbox payments, seeded with the demo's fund, campaign and streams.
async fn demo_app(db: PgPool) -> TestApp {
    let options = Options {
        sandbox_payments: true,
        ..Options::default()
    };
    let app = TestApp::spawn_with(db, options).await;
    livefund::demo::seed::seed(&app.db).await.expect("seed");
    app
}

/// Records every gift the overlay puts on screen in `window.alertsShown`: each alert, and
/// each gift of a summary of gifts that came too fast to be shown one by one.
async fn record_alerts(overlay: &Browser) {
    overlay
        .run(
            r#"window.alertsShown = [];
               const kinds = '[data-testid=alert], [data-testid=alert-summary]';
               const seen = (node) => node.matches(kinds)
                   ? [node] : [...node.querySelectorAll(kinds)];
               const shown = (alert) => alert.dataset.testid === 'alert'
                   ? [alert.dataset.giftId]
                   : alert.dataset.giftIds.split(' ').filter(Boolean);
               new MutationObserver((changes) => {
                   for (const change of changes) for (const node of change.addedNodes) {
                       if (node.nodeType !== 1) continue;
                       for (const alert of seen(node)) for (const gift of shown(alert)) {
                           window.alertsShown.push({ gift, test: alert.dataset.test || '',
                               summary: alert.dataset.testid !== 'alert',
                               text: alert.innerText });
                       }
                   }
               }).observe(document.body, { childList: true, subtree: true });"#,
            vec![],
        )
        .await;
}

/// A 1280×720 overlay of `url` (the overlay's full URL), recording its alerts.
async fn watching_overlay(url: &str) -> Browser {
    let overlay = Browser::start(1280, 720).await;
    overlay.open(url).await;
    record_alerts(&overlay).await;
    overlay
}

/// The alerts shown so far for `gift_id`.
async fn alerts_for(overlay: &Browser, gift_id: &str) -> usize {
    let shown = overlay
        .run(
            "return window.alertsShown.filter((a) => a.gift === arguments[0]).length;",
            vec![json!(gift_id)],
        )
        .await;
    shown.as_u64().unwrap_or(0) as usize
}

async fn gift_of(app: &TestApp, pledge_id: &str) -> String {
    let query = "select id::text from gifts where pledge_id = $1::uuid";
    eventually("the gift is settled", || async {
        sqlx::query_scalar::<_, String>(query)
            .bind(pledge_id)
            .fetch_optional(&app.db)
            .await
            .expect("gift")
            .is_some()
    })
    .await;
    sqlx::query_scalar(query)
        .bind(pledge_id)
        .fetch_one(&app.db)
        .await
        .expect("gift")
}

/// Pledges over the API and pays the pledge in the sandbox; returns the pledge id.
async fn paid_pledge(app: &TestApp, body: Value) -> String {
    let (status, pledge) = app.pledge(&body).await;
    assert_eq!(status, StatusCode::CREATED, "{pledge}");
    let id = pledge["pledge_id"].as_str().expect("pledge id").to_owned();
    let paid = app
        .client
        .post(app.url(&format!("/sandbox/checkout/{id}/pay")))
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status(), StatusCode::OK);
    id
}

fn visible(css: &str) -> String {
    format!(
        "(el => !!el && !el.hidden && getComputedStyle(el).display !== 'none' \
         && getComputedStyle(el).visibility !== 'hidden')(document.querySelector(\"{css}\"))"
    )
}

#[sqlx::test]
async fn the_landing_page_lists_the_live_campaign_its_fund_and_every_streams_pages(db: PgPool) {
    let app = demo_app(db).await;
    paid_pledge(&app, pledge_body(STREAM, 880_000)).await;
    let browser = Browser::start(1280, 1000).await;
    browser.open(&app.url("/")).await;
    let card = "[data-testid=campaign][data-slug='warm-winter-2026']";
    let title = browser.text(card).await;
    assert!(title.contains("温暖冬日"), "{title}");
    assert!(title.contains("慈爱助孤基金"), "the fund is named: {title}");
    let designations = browser
        .client
        .find_all(Locator::Css("[data-testid=designation]"))
        .await
        .expect("designations");
    assert_eq!(designations.len(), 6, "the fund's program areas");
    let raised = browser.text("[data-testid=campaign-confirmed]").await;
    assert!(raised.contains("¥8,800.00"), "{raised}");
    for stream in ["xiangxi-live-01", "liangshan-live-02", "nujiang-live-03"] {
        let entry = format!("[data-testid=stream][data-slug='{stream}']");
        for (link, path) in [("give-link", "give"), ("overlay-link", "overlay")] {
            let href = browser
                .find(&format!("{entry} a[data-testid={link}]"))
                .await
                .attr("href")
                .await
                .expect("href")
                .unwrap_or_default();
            assert!(href.ends_with(&format!("/{path}/{stream}")), "{href}");
        }
    }
    browser.screenshot("landing").await;

    browser.open(&app.url("/?lang=en")).await;
    let lang = browser
        .run("return document.documentElement.lang;", vec![])
        .await;
    assert_eq!(lang, json!("en"));
    browser.screenshot("landing-en").await;
    browser.quit().await;
}

#[sqlx::test]
async fn a_pledge_from_the_give_page_paid_at_the_checkout_is_confirmed_and_alerted_once(
    db: PgPool,
) {
    let app = demo_app(db).await;
    let overlay = watching_overlay(&app.url(&format!("/overlay/{STREAM}?alert_seconds=3"))).await;

    let phone = Browser::start(390, 844).await;
    phone.open(&app.url(&format!("/give/{STREAM}"))).await;
    phone.screenshot("give").await;
    phone
        .click("[data-testid=preset][data-amount='2000']")
        .await;
    phone
        .find("select[data-testid=designation]")
        .await
        .select_by_value("education")
        .await
        .expect("designation");
    let name = phone.find("[data-testid=donor-name]").await;
    name.send_keys("小红").await.expect("name");
    let message = phone.find("[data-testid=message]").await;
    message
        .send_keys("愿孩子们冬天温暖")
        .await
        .expect("message");
    let count = phone.text("[data-testid=message-count]").await;
    assert!(
        count.contains("8/140"),
        "a live count of characters: {count}"
    );
    phone.screenshot("give-filled").await;
    let give_window = phone.client.window().await.expect("window");
    phone.click("[data-testid=submit]").await;
    let checkout = phone.find("a[data-testid=checkout-link]").await;
    let href = checkout
        .attr("href")
        .await
        .expect("href")
        .unwrap_or_default();
    assert!(href.contains("/sandbox/checkout/"), "{href}");
    let pledge_id = href.rsplit('/').next().unwrap_or_default().to_owned();

    // The checkout opens in a window of its own (the page opens it, else the link does).
    if phone.client.windows().await.expect("windows").len() < 2 {
        checkout.click().await.expect("open the checkout");
    }
    eventually("the checkout window", || async {
        phone.client.windows().await.expect("windows").len() == 2
    })
    .await;
    let windows = phone.client.windows().await.expect("windows");
    let other = windows
        .into_iter()
        .find(|w| *w != give_window)
        .expect("checkout window");
    phone.client.switch_to_window(other).await.expect("switch");
    phone.find("body[data-ready='1']").await;
    let amount = phone.text("[data-testid=checkout-amount]").await;
    assert!(amount.contains("¥20.00"), "{amount}");
    phone.screenshot("checkout").await;
    phone.click("[data-testid=pay]").await;
    phone
        .find("[data-testid=checkout-result][data-outcome='gift']")
        .await;

    phone
        .client
        .switch_to_window(give_window)
        .await
        .expect("back to the pledge page");
    phone
        .find("[data-testid=pledge-status][data-status='confirmed']")
        .await;
    phone.screenshot("give-confirmed").await;

    let gift = gift_of(&app, &pledge_id).await;
    let alert = format!("[data-testid=alert][data-gift-id='{gift}']");
    let shown = overlay.content(&alert).await;
    for part in ["小红", "¥20.00", "愿孩子们冬天温暖", "教育助学"] {
        assert!(shown.contains(part), "{part} in the alert: {shown}");
    }
    overlay.backdrop().await;
    overlay.screenshot("overlay").await;
    overlay
        .until(
            "the stream's confirmed total",
            "document.querySelector('[data-testid=total-confirmed]').innerText.includes('¥20.00')",
        )
        .await;
    // Long after the alert's few seconds, it was shown once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(alerts_for(&overlay, &gift).await, 1);
    phone.quit().await;
    overlay.quit().await;
}

#[sqlx::test]
async fn refusals_are_explained_in_the_pages_language(db: PgPool) {
    let app = demo_app(db).await;
    let phone = Browser::start(390, 844).await;
    for lang in ["zh", "en"] {
        phone
            .open(&app.url(&format!("/give/{STREAM}?lang={lang}")))
            .await;
        let custom = phone.find("[data-testid=custom-amount]").await;
        custom.send_keys("0.5").await.expect("amount");
        phone.click("[data-testid=submit]").await;
        let error = phone
            .text("[data-testid=error][data-code='amount_out_of_range']")
            .await;
        assert!(
            error.contains("¥1.00"),
            "{lang}: the allowed range in {error}"
        );
        if lang == "zh" {
            phone.screenshot("give-refused").await;
        }

        // A program area the fund does not have (the page offers none such: the
        // server refuses it).
        custom.clear().await.expect("clear");
        custom.send_keys("10").await.expect("amount");
        phone
            .run(
                r#"const select = document.querySelector('select[data-testid=designation]');
                   select.add(new Option('astronomy', 'astronomy'));
                   select.value = 'astronomy';
                   select.dispatchEvent(new Event('change', { bubbles: true }));"#,
                vec![],
            )
            .await;
        phone.click("[data-testid=submit]").await;
        let error = phone
            .text("[data-testid=error][data-code='unknown_designation']")
            .await;
        assert!(!error.trim().is_empty());
        let english = lang == "en";
        let chinese = error
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        assert_eq!(chinese, !english, "{lang}: {error}");
    }
    let pledges: i64 = sqlx::query_scalar("select count(*) from pledges")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(pledges, 0, "nothing refused was pledged");
    phone.quit().await;
}

#[sqlx::test]
async fn an_anonymous_gift_shows_anonymous_and_its_name_nowhere(db: PgPool) {
    let app = demo_app(db).await;
    let overlay = watching_overlay(&app.url(&format!("/overlay/{STREAM}?alert_seconds=3"))).await;
    let mut body = pledge_body(STREAM, 6600);
    body["donor_name"] = json!("秘密的名字");
    body["anonymous"] = json!(true);
    let pledge_id = paid_pledge(&app, body).await;
    let gift = gift_of(&app, &pledge_id).await;
    let alert = format!("[data-testid=alert][data-gift-id='{gift}']");
    let donor = overlay
        .content(&format!("{alert} [data-testid=alert-donor]"))
        .await;
    assert_eq!(donor.trim(), "匿名");
    overlay
        .until(
            "the anonymous donor on the board",
            "[...document.querySelectorAll('[data-testid=top-donor]')].some(d => d.innerText.includes('匿名'))",
        )
        .await;
    assert!(!overlay.dom().await.contains("秘密的名字"));

    // Reloaded, from the snapshot: still no name.
    overlay.open(&app.url(&format!("/overlay/{STREAM}"))).await;
    overlay.find("[data-testid=top-donor]").await;
    assert!(!overlay.dom().await.contains("秘密的名字"));
    overlay.quit().await;
}

#[sqlx::test]
async fn a_burst_of_gifts_is_shown_once_each_the_overflow_in_a_summary(db: PgPool) {
    let app = demo_app(db).await;
    let overlay = watching_overlay(&app.url(&format!("/overlay/{STREAM}?alert_seconds=2"))).await;
    let pledges = futures_util::future::join_all(
        (0..14).map(|i| paid_pledge(&app, pledge_body(STREAM, 1000 + i))),
    )
    .await;
    let mut gifts = Vec::new();
    for pledge in &pledges {
        gifts.push(gift_of(&app, pledge).await);
    }
    overlay
        .until(
            "every gift on screen",
            &format!(
                "{} .every(g => window.alertsShown.some(a => a.gift === g))",
                json!(gifts)
            ),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for gift in &gifts {
        assert_eq!(alerts_for(&overlay, gift).await, 1, "{gift} once");
    }
    let summarized = overlay
        .run(
            "return window.alertsShown.filter(a => a.summary).length;",
            vec![],
        )
        .await;
    assert!(
        summarized.as_u64().is_some_and(|n| n > 0),
        "a burst beyond the queue is summarized, not left ever further behind"
    );
    overlay.quit().await;
}

#[sqlx::test]
async fn the_overlay_shows_its_gateway_died_and_then_every_missed_gift_once(db: PgPool) {
    let app = demo_app(db.clone()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let gateway = |db: &PgPool| {
        let mut command = livefund();
        command
            .arg("serve")
            .env("DATABASE_URL", database_url(db))
            .env("REDIS_URL", common::redis_url())
            .env("LIVEFUND_WEBHOOK_SECRET", common::WEBHOOK_SECRET)
            .env("LIVEFUND_LISTEN", format!("127.0.0.1:{port}"))
            .env("LIVEFUND_REDIS_PREFIX", &app.prefix);
        start(command, "listening on", Duration::from_secs(30))
    };
    let mut served = gateway(&db);
    let overlay_url = format!("{}/overlay/{STREAM}?alert_seconds=1", served.base_url);
    let overlay = watching_overlay(&overlay_url).await;
    let before = paid_pledge(&app, pledge_body(STREAM, 1100)).await;
    let before = gift_of(&app, &before).await;
    overlay
        .find(&format!("[data-testid=alert][data-gift-id='{before}']"))
        .await;

    let killed = served.stop_with(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10));
    assert!(!killed.success());
    let badge = visible("[data-testid=reconnecting]");
    overlay.until("the reconnecting badge", &badge).await;
    overlay.backdrop().await;
    overlay.screenshot("overlay-reconnecting").await;
    // Gifts while the overlay's gateway is down, settled through another gateway.
    let mut missed = Vec::new();
    for amount in [3300, 4400] {
        let id = paid_pledge(&app, pledge_body(STREAM, amount)).await;
        missed.push(gift_of(&app, &id).await);
    }

    let mut served = gateway(&db);
    overlay.until("the badge gone", &format!("!{badge}")).await;
    for gift in &missed {
        overlay
            .until(
                "the missed gift alerted",
                &format!("window.alertsShown.some(a => a.gift === '{gift}')"),
            )
            .await;
    }
    overlay
        .until(
            "the total with the missed gifts",
            "document.querySelector('[data-testid=total-confirmed]').innerText.includes('¥88.00')",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for gift in missed.iter().chain([&before]) {
        assert_eq!(alerts_for(&overlay, gift).await, 1, "{gift} once");
    }
    overlay.quit().await;
    served.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
}

#[sqlx::test]
async fn pages_of_what_does_not_exist_say_so_with_404(db: PgPool) {
    let app = demo_app(db).await;
    for path in [
        "/give/no-such-stream",
        "/overlay/no-such-stream",
        "/sandbox/checkout/00000000-0000-0000-0000-000000000000",
        "/assets/no-such-file.js",
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let page = app.client.get(app.url("/")).send().await.expect("landing");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let browser = Browser::start(390, 844).await;
    browser
        .client
        .goto(&app.url("/give/no-such-stream"))
        .await
        .expect("open");
    browser.find("[data-testid=not-found]").await;
    browser.quit().await;
}

#[sqlx::test]
async fn the_disclosure_page_shows_the_money_the_digest_once_closed_and_no_names(db: PgPool) {
    let app = demo_app(db).await;
    let mut body = pledge_body(STREAM, 123_400);
    body["donor_name"] = json!("不公开的捐赠人");
    body["message"] = json!("不公开的留言");
    paid_pledge(&app, body).await;
    let browser = Browser::start(1280, 1000).await;
    let page = app.url("/disclosure/warm-winter-2026");
    browser.open(&page).await;
    let raised = browser.text("[data-testid=total-raised]").await;
    assert!(raised.contains("¥1,234.00"), "{raised}");
    browser
        .find("[data-testid=area][data-code='education']")
        .await;
    browser
        .find(&format!("[data-testid=stream-row][data-slug='{STREAM}']"))
        .await;
    let closed = app
        .operator_post(
            "/api/v1/campaigns/warm-winter-2026/close",
            &json!({"force": true, "reason": "the test closes it"}),
        )
        .await;
    assert_eq!(closed.0, StatusCode::OK);
    let digest = closed.1["ledger_digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    browser.open(&page).await;
    let shown = browser.content("[data-testid=ledger-digest]").await;
    assert_eq!(shown.trim(), digest);
    browser.screenshot("disclosure").await;
    let dom = browser.dom().await;
    assert!(!dom.contains("不公开的捐赠人") && !dom.contains("不公开的留言"));
    browser.open(&format!("{page}?lang=en")).await;
    browser.screenshot("disclosure-en").await;
    browser.quit().await;
}
