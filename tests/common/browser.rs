//! A real headless Chromium for the page tests, driven over WebDriver: each `Browser`
//! runs its own chromedriver on a free loopback port and one browser session, both ended
//! when it is dropped. Screenshots go to `target/test-output/pages/`.

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a page has to show what a test waits for.
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Browser {
    pub client: Client,
    driver: Child,
}

/// A program on the PATH (or in /usr/bin), or a clear failure: the page tests need a
/// real browser, and `scripts/test` installs one.
fn program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} not found: the page tests need chromium and chromium-driver (scripts/test installs them)")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// A browser with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new(program("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": program("chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run", "--mute-audio",
                    "--hide-scrollbars", format!("--window-size={width},{height}"),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connected = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(client) => break client,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("no browser session from chromedriver: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Browser { client, driver }
    }

    /// Opens `url` and waits until the page has rendered its first data.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open page");
        self.find("body[data-ready='1']").await;
    }

    /// The first element matching `css`, waiting for it.
    pub async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
    }

    /// Clicks the first element matching `css`, waiting for it.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// The text of the first element matching `css`, waiting for it.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// The text content of the first element matching `css`, waiting for it (shown or
    /// still fading in: WebDriver's own text is empty for an element not yet visible).
    pub async fn content(&self, css: &str) -> String {
        let element = self.find(css).await;
        let text = self
            .run(
                "return arguments[0].textContent;",
                vec![serde_json::to_value(&element).expect("element reference")],
            )
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` in the page (with `args` as `arguments`) and returns its value.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` (an expression) is truthy in the page.
    pub async fn until(&self, what: &str, expression: &str) {
        let script = format!("return !!({expression});");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if self.run(&script, vec![]).await == json!(true) {
                return;
            }
            if std::time::Instant::now() > deadline {
                let page = self.run("return document.body.innerText;", vec![]).await;
                panic!("{what}: not within {WAIT:?}; the page shows:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The whole DOM as HTML.
    pub async fn dom(&self) -> String {
        let html = self
            .run("return document.documentElement.outerHTML;", vec![])
            .await;
        html.as_str().unwrap_or_default().to_owned()
    }

    /// Paints a dark scene behind a transparent page (the overlay), as a stream would be,
    /// for the screenshots that follow.
    pub async fn backdrop(&self) {
        self.run(
            "document.documentElement.style.background = '#33413f';",
            vec![],
        )
        .await;
    }

    /// Saves a screenshot of the window as `target/test-output/pages/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-output/pages");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

impl Browser {
    /// Ends the browser session, then the driver.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked to stop, chromedriver ends the browsers it started; killed, it could not.
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(self.driver.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.driver.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
