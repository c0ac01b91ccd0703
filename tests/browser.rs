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
            "goog:loggingPrefs": { "browser": "ALL" },
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

    /// Waits (up to 20 s) for an element that a script draws.
    async fn wait_for(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.exists(css).await {
            assert!(Instant::now() < deadline, "no {css} after 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` (a function body) in the page and returns its value.
    async fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// The text of `css` read in one script (an element a live refresh swaps does not go
    /// stale between finding and reading it); empty when absent.
    async fn live_text(&self, css: &str) -> String {
        let script = format!(
            "var e = document.querySelector({}); return e ? e.textContent.trim() : '';",
            serde_json::to_string(css).unwrap()
        );
        self.eval(&script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Types `text` into the input `css`, replacing its value.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call("POST", &format!("/element/{id}/clear"), json!({}))
            .await;
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// The browser console's errors so far (CSP violations among them).
    async fn console_errors(&self) -> Vec<String> {
        let url = format!("{}/session/{}/se/log", self.base, self.session);
        let Ok(response) = self
            .http
            .post(url)
            .json(&json!({ "type": "browser" }))
            .send()
            .await
        else {
            return Vec::new();
        };
        let log: Value = response.json().await.unwrap_or_default();
        log["value"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["level"] == "SEVERE")
                    // A 400 answered on purpose (the bad partition), a missing favicon.
                    .filter(|e| {
                        !e["message"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("Failed to load resource")
                    })
                    .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
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
    // (The lake sensor may have queued runs of the hour's raw files since: newest first.)
    assert!(
        first["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["selection"] == "*" && r["tags"]["orch/launched_by"] == "dev"),
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
        browser.wait_for("#lineage-svg a.node").await;
        // Laid out by dagre: every node drawn, every edge with its arrowhead, inside its box.
        let drawn = browser
            .eval(
                "var box = document.getElementById('lineage');
                 var svg = document.getElementById('lineage-svg');
                 var b = box.getBoundingClientRect(), r = svg.getBoundingClientRect();
                 return { nodes: svg.querySelectorAll('a.node').length,
                          expected: Number(box.dataset.nodes),
                          edges: svg.querySelectorAll('.edges path').length,
                          arrows: svg.querySelectorAll('.edges path[marker-end]').length,
                          marker: !!svg.querySelector('marker#arrow path'),
                          groups: svg.querySelectorAll('.groups .group').length,
                          inside: r.width <= b.width + 1 && r.height <= b.height + 1,
                          ready_ms: Number(box.dataset.ready) };",
            )
            .await;
        let nodes = drawn["nodes"].as_u64().unwrap();
        assert!(nodes >= 8, "the platform's raw and staging assets: {drawn}");
        assert_eq!(drawn["nodes"], drawn["expected"], "{drawn}");
        assert!(drawn["edges"].as_u64().unwrap() >= nodes / 2, "{drawn}");
        assert_eq!(
            drawn["edges"], drawn["arrows"],
            "every edge has an arrowhead: {drawn}"
        );
        assert_eq!(drawn["marker"], true, "{drawn}");
        assert!(
            drawn["groups"].as_u64().unwrap() >= 2,
            "group boxes: {drawn}"
        );
        assert_eq!(drawn["inside"], true, "the graph fits its box: {drawn}");
        eprintln!(
            "lineage: {nodes} assets interactive in {} ms",
            drawn["ready_ms"]
        );
        // Search dims what does not match.
        browser.type_into("#lineage-search", "listen_events").await;
        let dimmed = browser
            .eval("return document.querySelectorAll('#lineage-svg a.node.dim').length;")
            .await;
        assert!(dimmed.as_u64().unwrap() > 0, "search dims the others");
        assert!(
            browser
                .exists("a.node.match[data-key='staging/listen_events']")
                .await
        );
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
        // A bad partition: the error beside the form, the input kept, the page kept.
        let good = browser
            .eval("return document.querySelector('#materialize-form input[name=partition]').value;")
            .await;
        browser
            .type_into("#materialize-form input[name=partition]", "2026-13-45")
            .await;
        browser.click("#materialize").await;
        browser.wait_for("#materialize-error .form-error").await;
        assert!(
            browser
                .text("#materialize-error")
                .await
                .contains("2026-13-45")
        );
        let kept = browser
            .eval("return document.querySelector('#materialize-form input[name=partition]').value;")
            .await;
        assert_eq!(kept, "2026-13-45", "the input is kept");
        assert!(
            browser
                .url()
                .await
                .ends_with("/assets/staging/listen_events")
        );
        browser.screenshot(&shots, "asset-error").await;
        browser
            .type_into(
                "#materialize-form input[name=partition]",
                good.as_str().unwrap(),
            )
            .await;
        browser.screenshot(&shots, "asset").await;
        browser.click("#materialize").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !browser.url().await.contains("/runs/") {
            assert!(Instant::now() < deadline, "Materialize opens the new run");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = browser.live_text("#run-status").await;
            if status == "SUCCESS" {
                break;
            }
            assert!(
                ["", "QUEUED", "STARTING", "STARTED"].contains(&status.as_str()),
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
        browser.wait_for("#gantt svg path").await;
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
        // The asset's history is charted by ECharts (under the CSP).
        browser
            .goto(&format!("{origin}/assets/staging/listen_events"))
            .await;
        browser.wait_for("#history-chart svg path").await;
        // Run ids are distinct at a glance.
        browser.goto(&format!("{origin}/runs")).await;
        let ids = browser
            .eval(
                "return Array.from(document.querySelectorAll('a.run-id')).map(a => a.textContent);",
            )
            .await;
        let ids: Vec<&str> = ids
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
        assert!(ids.len() >= 2, "{ids:?}");
        assert_eq!(distinct.len(), ids.len(), "{ids:?}");
        // Every chart with data has marks.
        browser.goto(&format!("{origin}/dashboards")).await;
        let charts = browser
            .eval(
                "return Array.from(document.querySelectorAll('.echart')).map(function (el) {
                   return el.querySelectorAll('svg path').length; });",
            )
            .await;
        for marks in charts.as_array().unwrap() {
            assert!(
                marks.as_u64().unwrap() > 0,
                "a chart without marks: {charts}"
            );
        }
        eprintln!(
            "dashboards: {} charts drawn",
            charts.as_array().unwrap().len()
        );
        let errors = browser.console_errors().await;
        assert!(errors.is_empty(), "console errors (CSP?): {errors:?}");
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
