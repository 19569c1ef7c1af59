//! How fast the web app starts, in a real browser: `cargo run --release --example webstart`
//! (Chromium and ChromeDriver must be installed; Debian: `apt install chromium chromium-driver`).
//!
//! Starts the service in sandbox mode on loopback, signs a person in and connects two sandbox
//! workspaces through the app, then loads the search across them with 150 ms added to every
//! request (Chrome's network emulation, as on a distant or mobile network): as a first visit
//! with an empty cache, and as a reload. It also reloads the connections view on a phone-sized
//! screen. For each load it reports, up to the first search results (or the connections list):
//! the time since navigation started, the requests that went over the network, the longest
//! chain of requests that had to wait for one another (round trips in sequence), the bytes
//! transferred, and the layout shift (CLS) once the page is still. Each figure is the median of
//! `BENCH_ROUNDS` loads (default 5). The report is printed and written to its own section at
//! the end of BENCHMARKS.md.

#[allow(dead_code)]
#[path = "../api/browser/driver.rs"]
mod driver;

use std::{collections::HashMap, time::Duration};

use driver::Browser;
use notion_connect::{config::Settings, startup::Application};
use serde_json::{Value, json};

const LATENCY_MS: u32 = 150;
/// This report's section of BENCHMARKS.md, after the one `--example bench` writes.
const WEB_SECTION: &str = "## The web app's start-up";
const PASSWORD: &str = "correct horse battery staple";

/// Installed before the page's own scripts: records when the first result (or connection)
/// appears, and adds up the layout shifts that no input caused.
const OBSERVER: &str = r#"
window.__start = { shifts: 0, ready: null };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) if (!entry.hadRecentInput) window.__start.shifts += entry.value;
}).observe({ type: "layout-shift", buffered: true });
new MutationObserver(() => {
  if (window.__start.ready === null
      && document.querySelector("table.results tbody tr, .connection-list .connection")) {
    window.__start.ready = performance.now();
  }
}).observe(document, { childList: true, subtree: true });
"#;

/// What one load measured (see the module's documentation).
const MEASURE: &str = r#"
const ready = window.__start.ready;
const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
  .filter((entry) => entry.responseEnd <= ready + 1);
// Over the network: anything with bytes on the wire (a 304 has its headers); the page itself always.
const network = entries.filter((entry) => entry.transferSize > 0 || entry.entryType === "navigation");
const sorted = [...network].sort((a, b) => a.startTime - b.startTime);
const depth = new Map();
for (const entry of sorted) {
  let before = 0;
  for (const other of sorted) {
    if (other !== entry && other.responseEnd <= entry.startTime + 1) before = Math.max(before, depth.get(other) ?? 0);
  }
  depth.set(entry, before + 1);
}
return {
  ready,
  requests: network.length,
  round_trips: Math.max(0, ...depth.values()),
  bytes: network.reduce((sum, entry) => sum + entry.transferSize, 0),
  cls: window.__start.shifts,
};
"#;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(measure());
}

async fn measure() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("a work directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let origin = format!("http://127.0.0.1:{port}");
    let vars: HashMap<&str, String> = HashMap::from([
        ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ("PUBLIC_URL", origin.clone()),
        (
            "JWT_SECRET",
            "d2Vic3RhcnQtand0LXNlY3JldC10aGF0LWlzLWxvbmctZW5vdWdo".into(),
        ),
        (
            "TOKEN_ENCRYPTION_KEYS",
            "webstart:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        ),
        (
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display()),
        ),
        ("DATA_DIR", dir.path().join("data").display().to_string()),
        ("LOG_LEVEL", "warn".into()),
    ]);
    let settings =
        Settings::from_source(|name| vars.get(name).cloned()).expect("webstart settings");
    let app = Application::build(settings).await.expect("the service");
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));

    let Some(browser) = Browser::start(&origin, "webstart").await else {
        eprintln!("webstart: Chromium and ChromeDriver are needed");
        std::process::exit(1);
    };
    sign_up_and_connect_two_workspaces(&browser).await;

    browser
        .cdp(json!({ "cmd": "Page.addScriptToEvaluateOnNewDocument", "params": { "source": OBSERVER } }))
        .await;
    browser
        .cdp(json!({ "cmd": "Network.enable", "params": {} }))
        .await;
    browser
        .cdp(json!({ "cmd": "Network.emulateNetworkConditions", "params": {
            "offline": false, "latency": LATENCY_MS, "downloadThroughput": -1, "uploadThroughput": -1 } }))
        .await;

    let search = "/#/search?query=a";
    let mut table = vec![
        format!(
            "| Load ({LATENCY_MS} ms added to every request) | Until | Time | Requests | Round trips in sequence | Bytes transferred | CLS |"
        ),
        "|---|---|---:|---:|---:|---:|---:|".to_owned(),
    ];
    let mut row = |what: &str, until: &str, runs: Vec<Value>| {
        let median = |field: &str| {
            let mut values: Vec<f64> = runs
                .iter()
                .map(|run| run[field].as_f64().unwrap())
                .collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        table.push(format!(
            "| {what} | {until} | {:.0} ms | {:.0} | {:.0} | {:.1} KiB | {:.3} |",
            median("ready"),
            median("requests"),
            median("round_trips"),
            median("bytes") / 1024.0,
            median("cls"),
        ));
    };

    browser.open(search).await;
    let mut cold = Vec::new();
    for _ in 0..rounds {
        browser
            .cdp(json!({ "cmd": "Network.clearBrowserCache", "params": {} }))
            .await;
        browser.reload().await;
        cold.push(load(&browser).await);
    }
    row("First visit (empty cache)", "first search results", cold);

    let mut warm = Vec::new();
    for _ in 0..rounds {
        browser.reload().await;
        warm.push(load(&browser).await);
    }
    row("Reload", "first search results", warm);

    browser.open("/#/connections").await;
    browser.emulate(Some(390), false).await;
    let mut phone = Vec::new();
    for _ in 0..rounds {
        browser.reload().await;
        phone.push(load(&browser).await);
    }
    row("Reload, phone (390 px)", "connections listed", phone);

    let section = format!(
        "{WEB_SECTION}\n\n\
         The latest report of `cargo run --release --example webstart` (see `tests/webstart/main.rs`):\n\
         the service in sandbox mode (SQLite) on loopback, headless Chromium with {LATENCY_MS} ms added\n\
         to every request, two connected workspaces, medians of {rounds} loads. \"Round trips in\n\
         sequence\" is the longest chain of requests that each waited for the one before; \"Requests\"\n\
         counts those that went over the network (a file the cache could use without asking is not\n\
         one); CLS is measured a second after the page showed what it is for.\n\n\
         - Date: {}\n- Commit: {}\n\n{}\n",
        now_utc(),
        commit(),
        table.join("\n")
    );
    print!("{section}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let kept = previous
        .find(WEB_SECTION)
        .map_or(previous.as_str(), |start| &previous[..start]);
    std::fs::write(&path, format!("{}\n\n{section}", kept.trim_end()))
        .expect("write BENCHMARKS.md");
    eprintln!("webstart: wrote {}", path.display());
    browser.close().await;
    server.abort();
}

/// Waits for the page to show what it is for, lets it settle, and reads the figures.
async fn load(browser: &Browser) -> Value {
    browser
        .wait_for_js("window.__start && window.__start.ready !== null")
        .await;
    // Anything that would still move the page comes within this.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    browser.js(MEASURE).await
}

async fn sign_up_and_connect_two_workspaces(browser: &Browser) {
    browser.open("/#/register?next=%2Fconnections").await;
    browser.fill("#username", "measurer").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("form button[type=submit]").await;
    browser.find_text("h1", "Connections").await;
    browser.click(".empty button").await;
    browser.click("button[value=allow]").await;
    browser
        .find_text(".message.success", "Connected Sandbox Workspace")
        .await;
    browser.click(".view-header button").await;
    browser.click("input[name=workspace][value='1']").await;
    browser.click("button[value=allow]").await;
    browser
        .find_text(".message.success", "Connected Sandbox Team")
        .await;
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "unknown".into(), |commit| commit.trim().to_owned())
}

fn now_utc() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute()
    )
}
