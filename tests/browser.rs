//! The UI in a real browser: `orch dev` (the real binary) in a throwaway project, driven in
//! headless Chromium through chromedriver's WebDriver protocol. It opens the lineage, clicks an
//! asset, materializes it, sees the run succeed on the run page, and saves screenshots of the
//! main pages (the folder is printed; under the cargo target directory).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/ensure-chromium` installs them;
//! `scripts/test` runs it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::util::Project;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A WebDriver session on chromedriver.
struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
}

impl Browser {
    async fn start(driver_port: u16, profile: &Path) -> Browser {
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{driver_port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not start on {base}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         format!("--user-data-dir={}", profile.display())]
            }
        } } });
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {response}"))
            .to_owned();
        Browser {
            http,
            session,
            base,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        if response["value"].get("error").is_some() {
            panic!("WebDriver {method} {path} failed: {}", response["value"]);
        }
        response["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    async fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let element = self
            .call(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    async fn exists(&self, css: &str) -> bool {
        let found = self
            .call(
                "POST",
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        found.as_array().is_some_and(|a| !a.is_empty())
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call("GET", &format!("/element/{id}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn screenshot(&self, dir: &Path, name: &str) {
        let png = self.call("GET", "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{name} is not a PNG");
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn quit(&self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_click_materialize_and_watch_the_run() {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).exists(),
            "{bin} is missing: run scripts/ensure-chromium (apt-get install chromium chromium-driver)"
        );
    }
    let project = Project::empty();
    let web_port = free_port();
    let addr = format!("127.0.0.1:{web_port}");
    let _dev = Guard(
        project
            .command(&["dev", "--addr", &addr, "--hours", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start orch dev"),
    );
    let origin = format!("http://{addr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(format!("{origin}/api/v1/overview"))
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "orch dev did not answer on {origin}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // orch dev queued the first hours' materialization of every asset at start.
    let first: Value = http
        .get(format!("{origin}/api/v1/runs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["runs"][0]["selection"], "*",
        "orch dev queues every asset: {first}"
    );

    let driver_port = free_port();
    let _driver = Guard(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::start(driver_port, profile.path()).await;
    let shots = screenshots_dir();
    let result = async {
        browser.goto(&format!("{origin}/lineage")).await;
        browser.find("#lineage-svg").await;
        browser.screenshot(&shots, "lineage").await;
        browser
            .click("a.node[data-key='staging/listen_events']")
            .await;
        assert!(
            browser
                .url()
                .await
                .ends_with("/assets/staging/listen_events")
        );
        assert_eq!(browser.text("#asset-key").await, "staging/listen_events");
        browser.screenshot(&shots, "asset").await;
        browser.click("#materialize").await;
        assert!(
            browser.url().await.contains("/runs/"),
            "Materialize opens the new run"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = browser.text("#run-status").await;
            if status == "SUCCESS" {
                break;
            }
            assert!(
                ["QUEUED", "STARTING", "STARTED"].contains(&status.as_str()),
                "the run ended {status}"
            );
            assert!(
                Instant::now() < deadline,
                "the run is still {status} after a minute"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Once over, the page reloads itself with the final timeline and the re-execute button.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !browser.exists("#reexecute").await {
            assert!(
                Instant::now() < deadline,
                "the finished run's page did not reload"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        browser.find("#gantt svg.gantt").await;
        assert!(browser.text("main").await.contains("ASSET_MATERIALIZATION"));
        browser.screenshot(&shots, "run").await;
        for (page, name) in [
            ("/", "overview"),
            ("/runs", "runs"),
            ("/assets", "assets"),
            ("/schedules", "schedules"),
            ("/dashboards", "dashboards"),
        ] {
            browser.goto(&format!("{origin}{page}")).await;
            browser.find("main h1").await;
            browser.screenshot(&shots, name).await;
        }
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    browser.quit().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    let runs: Value = http
        .get(format!("{origin}/api/v1/runs?asset=staging/listen_events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"][0]["status"], "SUCCESS", "{runs}");
    assert_eq!(runs["runs"][0]["tags"]["orch/launched_by"], "web");
    eprintln!("browser screenshots in {}", shots.display());
}
