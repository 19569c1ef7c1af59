//! A headless Chromium for the web app's tests, driven through ChromeDriver (WebDriver).
//!
//! Every test that uses it checks the browser's console: any error (an uncaught exception, a
//! Content-Security-Policy violation, a failed request) fails the test unless the test expected
//! that exact request to fail. Screenshots of the key screens are kept under
//! `target/screenshots/` for people to look at.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource, KeyAction, KeyActions},
    elements::Element,
    wd::{Capabilities, WebDriverCompatibleCommand},
};
use poem::http::Method;
use serde_json::{Value, json};

/// How long the page gets to reach an expected state. Generous: CI machines are small and busy.
const PATIENCE: Duration = Duration::from_secs(20);

/// Only one browser at a time: two would fight over two cores with the rest of the suite.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Finds Chromium and ChromeDriver (`CHROME_BIN` and `CHROMEDRIVER` override the search). When
/// either is missing the test says so and is skipped, unless `TEST_REQUIRE_BROWSER=1` (as in
/// CI) makes that a failure.
fn tools() -> Option<(PathBuf, PathBuf)> {
    let find = |variable: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(path) = std::env::var(variable) {
            return Some(PathBuf::from(path));
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        names.iter().find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    let chromium = find(
        "CHROME_BIN",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find("CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            let message = "Chromium and ChromeDriver are needed for the web app's browser tests \
                           (Debian: apt install chromium chromium-driver)";
            if std::env::var("TEST_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("TEST_REQUIRE_BROWSER=1 but they are missing: {message}");
            }
            eprintln!("\nnote: skipping the browser test: {message}\n");
            None
        }
    }
}

/// axe-core's browser build: `AXE_CORE_JS`, or where `.ci/run` installs it from npm. When it
/// is missing the accessibility checks are skipped with a note, unless `TEST_REQUIRE_BROWSER=1`.
fn axe_source() -> Option<&'static str> {
    static SOURCE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    SOURCE
        .get_or_init(|| {
            let path = std::env::var_os("AXE_CORE_JS").map_or_else(
                || {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/notion-connect-axe/node_modules/axe-core/axe.min.js")
                },
                PathBuf::from,
            );
            let read = std::fs::read_to_string(&path);
            if let Err(e) = &read {
                let message = format!(
                    "axe-core is needed for the accessibility checks ({}: {e}); install it with \
                     npm install --prefix ~/.cache/notion-connect-axe axe-core, or set AXE_CORE_JS",
                    path.display()
                );
                if std::env::var("TEST_REQUIRE_BROWSER").as_deref() == Ok("1") {
                    panic!("{message}");
                }
                eprintln!("\nnote: skipping the accessibility checks: {message}\n");
            }
            read.ok()
        })
        .as_deref()
}

/// A browser session, with the origin of the app under test.
pub(super) struct Browser {
    client: Client,
    origin: String,
    /// Console entries read so far and not yet judged.
    console: Mutex<Vec<Value>>,
    screenshots: PathBuf,
    prefix: String,
    driver: Child,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// Starts ChromeDriver and a fresh headless Chromium, or `None` when they are not installed.
    /// `prefix` starts the names of this session's screenshots.
    pub(super) async fn start(origin: &str, prefix: &str) -> Option<Self> {
        let (chromium, driver_path) = tools()?;
        let turn = ONE_AT_A_TIME.lock().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that the browser it starts can be stopped with it.
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a profile directory");
        let capabilities: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--lang=en-US",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }))
        .expect("capabilities");

        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let attempt =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&url)
                    .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if Instant::now() > deadline => panic!("cannot start Chromium: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let screenshots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&screenshots).expect("screenshot directory");
        Some(Self {
            client,
            origin: origin.to_owned(),
            console: Mutex::default(),
            screenshots,
            prefix: prefix.to_owned(),
            driver,
            _profile: profile,
            _turn: turn,
        })
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// Opens a path of the app (`/`, `/#/connections`, ...).
    pub(super) async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.origin))
            .await
            .expect("navigate");
    }

    pub(super) async fn url(&self) -> url::Url {
        self.client.current_url().await.expect("current URL")
    }

    pub(super) async fn reload(&self) {
        self.client.refresh().await.expect("reload");
    }

    /// Waits until `css` matches a displayed element.
    pub(super) async fn find(&self, css: &str) -> Element {
        self.until(&format!("{css} to be shown"), || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) if element.is_displayed().await.unwrap_or(false) => Some(element),
                _ => None,
            }
        })
        .await
    }

    /// Waits until the first element matching `css` contains `text`.
    pub(super) async fn find_text(&self, css: &str, text: &str) -> Element {
        self.until(&format!("{css} to contain {text:?}"), || async {
            let element = self.client.find(Locator::Css(css)).await.ok()?;
            let shown = element.text().await.ok()?;
            shown.contains(text).then_some(element)
        })
        .await
    }

    /// Waits until `css` matches exactly `n` elements.
    pub(super) async fn wait_for_count(&self, css: &str, n: usize) {
        self.until(&format!("{n} of {css}"), || async {
            let found = self.client.find_all(Locator::Css(css)).await.ok()?;
            (found.len() == n).then_some(())
        })
        .await
    }

    /// Waits until `condition` (a JavaScript expression) is true in the page.
    pub(super) async fn wait_for_js(&self, condition: &str) {
        self.until(condition, || async {
            let value = self
                .client
                .execute(&format!("return Boolean({condition});"), vec![])
                .await
                .ok()?;
            (value == Value::Bool(true)).then_some(())
        })
        .await
    }

    /// Polls `probe` until it yields a value, or fails the test naming what it waited for.
    pub(super) async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("timeout").await;
                panic!(
                    "gave up waiting for {what}; the page is at {} (screenshot: {})",
                    self.url().await,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Replaces the text of an input.
    pub(super) async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.expect("clear");
        input.send_keys(text).await.expect("type");
    }

    pub(super) async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// Runs a script in the page and returns what it returns.
    pub(super) async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Presses one key wherever the focus is, as a person would.
    pub(super) async fn press(&self, key: char) {
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(keys).await.expect("key press");
    }

    /// Saves a PNG of the page as `target/screenshots/{prefix}-{name}.png`.
    pub(super) async fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.screenshots.join(format!("{}-{name}.png", self.prefix));
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::write(&path, png);
        }
        path
    }

    /// Renders like a phone (390 px wide) in the dark theme, or back to a light desktop window.
    pub(super) async fn emulate_phone_in_dark(&self, on: bool) {
        if on {
            self.emulate(Some(390), true).await;
        } else {
            self.emulate(None, false).await;
        }
    }

    /// Renders `width` px wide like a phone (`None`: the desktop window) in the dark or the
    /// light theme.
    pub(super) async fn emulate(&self, width: Option<u32>, dark: bool) {
        let metrics = match width {
            Some(width) => json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
                "width": width, "height": 844, "deviceScaleFactor": 1, "mobile": true } }),
            None => json!({ "cmd": "Emulation.clearDeviceMetricsOverride", "params": {} }),
        };
        let scheme = if dark { "dark" } else { "light" };
        let media = json!({ "cmd": "Emulation.setEmulatedMedia", "params": {
            "features": [{ "name": "prefers-color-scheme", "value": scheme }] } });
        // A phone has a touch screen (and so, for example, no keyboard shortcuts to offer).
        let touch = json!({ "cmd": "Emulation.setTouchEmulationEnabled", "params": {
            "enabled": width.is_some(), "maxTouchPoints": 5 } });
        for command in [metrics, media, touch] {
            self.cdp(command).await;
        }
    }

    /// Sends a Chrome DevTools Protocol command (`{"cmd": …, "params": …}`).
    pub(super) async fn cdp(&self, command: Value) -> Value {
        self.client
            .issue_cmd(ChromeCommand::Cdp(command))
            .await
            .expect("DevTools command")
    }

    /// Runs axe-core (from npm) on the page and fails the test on any violation. `what` names the
    /// page in the failure.
    pub(super) async fn assert_accessible(&self, what: &str) {
        let Some(source) = axe_source() else {
            return;
        };
        let loaded = self
            .js("return typeof window.axe === 'object';")
            .await
            .as_bool()
            .unwrap_or(false);
        if !loaded {
            // WebDriver runs scripts outside the page's Content-Security-Policy.
            self.js(source).await;
        }
        let violations = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(
                   (result) => done(result.violations.map((v) => ({
                     rule: v.id,
                     impact: v.impact,
                     nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary}`),
                   }))),
                   (error) => done([{ rule: 'axe failed', nodes: [String(error)] }]),
                 );",
                vec![],
            )
            .await
            .expect("run axe");
        assert_eq!(
            violations,
            json!([]),
            "axe-core finds problems on {what}:\n{violations:#}"
        );
    }

    /// What has the keyboard focus: its tag, id, classes and text, for assertions.
    pub(super) async fn focused(&self) -> Value {
        self.js("const el = document.activeElement;
             return el ? { tag: el.tagName.toLowerCase(), id: el.id, class: el.className,
                           text: el.textContent.trim().slice(0, 80) } : null;")
            .await
    }

    /// Fails the test if the console holds any error or any Content-Security-Policy report.
    pub(super) async fn assert_console_clean(&self) {
        self.assert_console_clean_except(&[]).await;
    }

    /// Like [`Browser::assert_console_clean`], but failed requests the test provoked on purpose
    /// (`(path, status)`: an entry such as `/api/v1/auth/login ... status of 401`) are allowed.
    /// Returns which of them were seen, so a test can tell that the console was read at all.
    pub(super) async fn assert_console_clean_except(
        &self,
        expected_failures: &[(&str, u16)],
    ) -> Vec<(String, u16)> {
        let fresh = self
            .client
            .issue_cmd(ChromeCommand::BrowserLog)
            .await
            .expect("read the browser log");
        let mut console = self.console.lock().unwrap();
        console.extend(fresh.as_array().cloned().unwrap_or_default());
        let mut seen = Vec::new();
        let mut problems = Vec::new();
        for entry in console.drain(..) {
            let level = entry["level"].as_str().unwrap_or_default();
            let message = entry["message"].as_str().unwrap_or_default();
            if level != "SEVERE" && !message.contains("Content Security Policy") {
                continue;
            }
            let expected = expected_failures.iter().find(|(path, status)| {
                message.contains(&format!("{}{path}", self.origin))
                    && message.contains(&format!("status of {status}"))
            });
            match expected {
                Some((path, status)) => seen.push(((*path).to_owned(), *status)),
                None => problems.push(entry.to_string()),
            }
        }
        assert!(
            problems.is_empty(),
            "the browser console reports problems:\n{}",
            problems.join("\n")
        );
        seen
    }

    /// Every form control and button in the page can be named by assistive technology.
    pub(super) async fn assert_controls_are_labelled(&self) {
        let unlabelled = self
            .js(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
                    .filter((el) => el.offsetParent !== null)
                    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                        && !el.getAttribute('aria-labelledby')
                        && !(el.tagName === 'BUTTON' && el.textContent.trim()))
                    .map((el) => el.outerHTML);",
            )
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a name");
    }

    /// The page fits its width: nothing forces a horizontal scroll.
    pub(super) async fn assert_no_horizontal_scroll(&self) {
        let overflow = self
            .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
            .await;
        assert!(
            overflow.as_i64().is_some_and(|px| px <= 0),
            "the page is wider than the screen by {overflow} px"
        );
    }

    /// Ends the session; ChromeDriver and its browser stop when the value is dropped.
    pub(super) async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group, so that no browser outlives a failed test.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// ChromeDriver's own endpoints, beside the standard WebDriver ones.
#[derive(Debug)]
enum ChromeCommand {
    /// The console entries since the last read.
    BrowserLog,
    /// A Chrome DevTools Protocol command.
    Cdp(Value),
}

impl WebDriverCompatibleCommand for ChromeCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        let path = match self {
            Self::BrowserLog => format!("session/{session}/se/log"),
            Self::Cdp(_) => format!("session/{session}/goog/cdp/execute"),
        };
        base_url.join(&path)
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (Method, Option<String>) {
        let body = match self {
            Self::BrowserLog => json!({ "type": "browser" }),
            Self::Cdp(command) => command.clone(),
        };
        (Method::POST, Some(body.to_string()))
    }
}
