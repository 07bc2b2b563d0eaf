//! A headless Chromium for one test: `chromedriver` (Debian's `chromium-driver`) on a free
//! port, a WebDriver session through fantoccini, waits that poll the page with a script
//! (bounded: a wait that runs out fails the test, saying what it waited for and what it
//! saw last), and screenshots into `target/ui-screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::binary::{Binary, free_port};

/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Chromium showing `url`.
    pub async fn open(url: &str) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let deadline = Instant::now() + WAIT;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        client.goto(url).await.unwrap();
        Self { client, driver }
    }

    /// Runs `script` in the page; its `return` value.
    pub async fn run(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `script`'s value satisfies `done`.
    pub async fn until(&self, what: &str, script: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let seen = self.client.execute(script, Vec::new()).await;
            if seen.as_ref().is_ok_and(&done) {
                return;
            }
            if Instant::now() > deadline {
                let notices = self
                    .run("return document.getElementById('notices')?.textContent ?? ''")
                    .await;
                panic!("timed out waiting for {what}: last {seen:?}; notices: {notices}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page's WebSocket is connected.
    pub async fn until_live(&self) {
        let state = "return document.getElementById('conn').textContent";
        self.until("the WebSocket", state, |v| v == "live").await;
    }

    /// Waits until afw answers `path` with a body that satisfies `done`.
    pub async fn until_api(&self, afw: &Binary, path: &str, done: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = afw.get(path);
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && done(&body) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {path}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let element = self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Saves the page as `target/ui-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
