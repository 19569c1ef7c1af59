//! The benchmark: `cargo run --release --example bench` (wrk must be installed; Debian:
//! `apt install wrk`).
//!
//! On loopback it starts a Notion stand-in that answers every search with as many results as it
//! asks for from a realistic 100-result page (about 135 KiB), the release service against it with
//! 16 connected workspaces, and a baseline proxy that does only what search must do (fetch the
//! page, parse the fields shown, write the answer) with no authentication, database or
//! middleware. It drives both with wrk at 1, 16 and 64 clients; then the search across 4
//! workspaces at once, in both orders, and across 4 more whose searches the stand-in answers
//! after 100 ms, against one of them alone. When a PostgreSQL server answers `psql` (see
//! `postgres.rs`), the search again on PostgreSQL beside the baseline, two instances on one
//! database, and the search and `GET /connections` with 300,000 other connections in it. Then
//! `GET /api/v1/me` and login the same way, and `GET /me` while 200 clients flood login. It
//! prints a table and writes it to `BENCHMARKS.md`.
//!
//! Search is measured in rounds, baseline then service, `BENCH_ROUNDS` times (default 3) at each
//! client count, and reported as medians: on a shared machine a run can land in a busy moment.
//!
//! `BENCH_SECONDS` sets the length of each run (default 10). `BENCH_ONLY=search` runs only the
//! search comparison and prints it without writing the report, at the client counts
//! `BENCH_CLIENTS` lists if set (for example `BENCH_CLIENTS=64`); `BENCH_ONLY=fanout` runs only
//! the searches across workspaces, the same way, and `BENCH_ONLY=postgres` only the PostgreSQL
//! runs. `MIMALLOC_*` and `MALLOC_*` variables reach the
//! service, to compare allocator settings. With `BENCH_ONLY`, `BENCH_SERVICE` names another build
//! of the service to measure instead of the release binary, and `BENCH_DATABASE=postgres` runs
//! the service on a database of its own on the local PostgreSQL server (`BENCH_POSTGRES_URL`,
//! by default `postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable`), dropped afterwards.

mod fixture;
mod postgres;
mod wrk;

use std::{
    fmt::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use notion_connect::{
    api::search::SearchResults,
    notion::search::{SearchRequest, parse},
};
use poem::{
    EndpointExt, Response, Route, Server, get, handler, http::StatusCode,
    listener::TcpListener as PoemListener, post, web::Data,
};
use serde_json::{Value, json};

const CONNECTIONS: usize = 16;
/// The PostgreSQL server `BENCH_DATABASE=postgres` creates its database on.
/// Without TLS, as the README advises for a server on the same host.
const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";
/// Where the section of BENCHMARKS.md written by `--example webstart` starts.
const WEB_SECTION: &str = "## The web app's start-up";
/// Workspaces a search across workspaces covers.
const FANOUT_WIDTH: usize = 4;
/// Workspaces connected with a code starting with this answer searches after `SLOW_NOTION`.
const SLOW_CODE: &str = "slow";
/// How long the stand-in takes to answer a slow workspace's search: about what Notion takes.
const SLOW_NOTION: Duration = Duration::from_millis(100);
/// Accounts the login runs cycle through.
const LOGIN_ACCOUNTS: usize = 100;
const PASSWORD: &str = "correct horse battery staple";
/// Test-only secrets for the throwaway service the benchmark starts.
const JWT_SECRET: &str = "YmVuY2htYXJrLWp3dC1zZWNyZXQtdGhhdC1pcy1sb25nLWVub3VnaA==";
const KEYS: &str = "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    match args.get(1).map(String::as_str) {
        Some("stand-in") => runtime.block_on(serve_stand_in(port_arg(&args))),
        Some("baseline") => runtime.block_on(serve_baseline(port_arg(&args), &args[3])),
        _ => return runtime.block_on(orchestrate()),
    }
    ExitCode::SUCCESS
}

/// The client counts of the search comparison: 1, 16 and 64, or with `BENCH_ONLY=search` those
/// `BENCH_CLIENTS` lists (for example `64` or `1,64`).
fn search_clients(only_search: bool) -> Vec<u32> {
    std::env::var("BENCH_CLIENTS")
        .ok()
        .filter(|_| only_search)
        .map(|list| {
            list.split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .filter(|list: &Vec<u32>| !list.is_empty())
        .unwrap_or_else(|| vec![1, 16, 64])
}

fn port_arg(args: &[String]) -> u16 {
    args[2].parse().expect("a port")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

// ---------------------------------------------------------------------------------------------
// The Notion stand-in

/// The stand-in's answers to searches: `pages[n - 1]` holds the first `n` results.
struct Pages(Vec<bytes::Bytes>);

/// What the stand-in reads of a search's body.
#[derive(serde::Deserialize)]
struct Asked {
    page_size: Option<usize>,
}

/// As many results as the search asks for, at once, or after `SLOW_NOTION` for the workspaces
/// connected with a code starting `SLOW_CODE` (whose tokens hold it).
/// When the stand-in received each search, per access token, while recording.
#[derive(Default)]
struct Recorder {
    on: std::sync::atomic::AtomicBool,
    calls: std::sync::Mutex<std::collections::HashMap<String, Vec<Instant>>>,
}

/// What the stand-in saw while recording.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Recorded {
    /// Calls of all tokens.
    calls: usize,
    /// Tokens that called.
    tokens: usize,
    /// The most calls of one token within any one second (sliding, not calendar seconds).
    most_in_one_second: usize,
    /// From the first call to the last, in seconds.
    seconds: f64,
}

impl Recorder {
    fn record(&self, token: &str) {
        if self.on.load(std::sync::atomic::Ordering::Relaxed) {
            let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
            calls
                .entry(token.to_owned())
                .or_default()
                .push(Instant::now());
        }
    }

    fn summary(&self) -> Recorded {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let all: Vec<Instant> = calls.values().flatten().copied().collect();
        let seconds = match (all.iter().min(), all.iter().max()) {
            (Some(first), Some(last)) => last.duration_since(*first).as_secs_f64(),
            _ => 0.0,
        };
        Recorded {
            calls: all.len(),
            tokens: calls.len(),
            most_in_one_second: calls
                .values()
                .map(|times| most_within_a_second(times))
                .max()
                .unwrap_or(0),
            seconds,
        }
    }
}

/// The most of `times` (in the order they came) that fall within one second of each other.
fn most_within_a_second(times: &[Instant]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end].duration_since(sorted[start]) >= Duration::from_secs(1) {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

#[handler]
fn stand_in_record_start(recorder: Data<&std::sync::Arc<Recorder>>) -> Response {
    recorder
        .calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    recorder
        .on
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Response::builder().finish()
}

#[handler]
fn stand_in_record_stop(recorder: Data<&std::sync::Arc<Recorder>>) -> Response {
    recorder
        .on
        .store(false, std::sync::atomic::Ordering::Relaxed);
    Response::builder()
        .content_type("application/json")
        .body(serde_json::to_vec(&recorder.summary()).unwrap_or_default())
}

#[handler]
async fn stand_in_search(
    request: &poem::Request,
    body: bytes::Bytes,
    pages: Data<&std::sync::Arc<Pages>>,
    recorder: Data<&std::sync::Arc<Recorder>>,
) -> Response {
    recorder.record(request.header("authorization").unwrap_or_default());
    let size = serde_json::from_slice::<Asked>(&body)
        .ok()
        .and_then(|asked| asked.page_size)
        .unwrap_or(100)
        .clamp(1, 100);
    let slow = request
        .header("authorization")
        .is_some_and(|value| value.contains(SLOW_CODE));
    if slow {
        tokio::time::sleep(SLOW_NOTION).await;
    }
    Response::builder()
        .content_type("application/json")
        .body(pages.0.0[size - 1].clone())
}

#[handler]
fn stand_in_token(body: String) -> Response {
    let code = url::form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "code")
        .map_or_else(|| "refreshed".to_owned(), |(_, code)| code.into_owned());
    Response::builder()
        .content_type("application/json")
        .body(fixture::grant(&code))
}

#[handler]
fn stand_in_revoke() -> Response {
    Response::builder()
        .content_type("application/json")
        .body("{}")
}

async fn serve_stand_in(port: u16) {
    let pages = Pages(
        (1..=100)
            .map(|size| bytes::Bytes::from(fixture::search_page_of(size)))
            .collect(),
    );
    let app = Route::new()
        .at("/v1/search", post(stand_in_search))
        .at("/v1/oauth/token", post(stand_in_token))
        .at("/v1/oauth/revoke", post(stand_in_revoke))
        .at("/record/start", post(stand_in_record_start))
        .at("/record/stop", post(stand_in_record_stop))
        .data(std::sync::Arc::new(pages))
        .data(std::sync::Arc::new(Recorder::default()));
    Server::new(PoemListener::bind(("127.0.0.1", port)))
        .run(app)
        .await
        .expect("the stand-in runs");
}

// ---------------------------------------------------------------------------------------------
// The baseline proxy: the search's irreducible work and nothing else.

struct Baseline {
    http: reqwest::Client,
    search_url: String,
}

#[handler]
async fn proxy_search(baseline: Data<&std::sync::Arc<Baseline>>) -> Response {
    let request = SearchRequest {
        page_size: 100,
        ..SearchRequest::default()
    };
    let fetched = baseline
        .http
        .post(&baseline.search_url)
        .bearer_auth("secret_baseline")
        .header("Notion-Version", "2026-03-11")
        .json(&request)
        .send()
        .await;
    let body = match fetched {
        Ok(response) => response.bytes().await.ok(),
        Err(_) => None,
    };
    let Some(page) = body.as_deref().and_then(|b| parse(b).ok()) else {
        return Response::builder().status(StatusCode::BAD_GATEWAY).finish();
    };
    let results = SearchResults::from(page);
    Response::builder()
        .content_type("application/json")
        .body(serde_json::to_vec(&results).unwrap_or_default())
}

async fn serve_baseline(port: u16, notion_base: &str) {
    let baseline = std::sync::Arc::new(Baseline {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("a client"),
        search_url: format!("{notion_base}/search"),
    });
    let app = Route::new().at("/search", get(proxy_search)).data(baseline);
    Server::new(PoemListener::bind(("127.0.0.1", port)))
        .run(app)
        .await
        .expect("the baseline runs");
}

// ---------------------------------------------------------------------------------------------
// The orchestrator

/// A child process that is killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_self(args: &[&str]) -> Running {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    Running(
        Command::new(exe)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a helper process"),
    )
}

async fn wait_until_up(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if client.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

/// The release binary next to this example, built first if needed.
fn service_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let release_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release/examples/bench");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only the variables a build needs: the ones `cargo run` sets for this process would make
    // build scripts run again and rebuild half the tree.
    let kept: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| {
            matches!(
                name.as_str(),
                "PATH"
                    | "HOME"
                    | "CARGO_HOME"
                    | "RUSTUP_HOME"
                    | "RUSTUP_TOOLCHAIN"
                    | "CARGO_TARGET_DIR"
            )
        })
        .collect();
    let status = Command::new(cargo)
        .env_clear()
        .envs(kept)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "--bin", "notion-connect"])
        .status()
        .expect("cargo builds the service");
    assert!(status.success(), "building the service failed");
    release_dir.join("notion-connect")
}

/// A field of `/proc/{pid}/status` given in KiB, in MiB.
fn status_mib(pid: u32, name: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The service's resident memory now and at its peak since the last reset, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    (status_mib(pid, "VmRSS"), status_mib(pid, "VmHWM"))
}

/// Starts a new peak-memory measurement for `pid`.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

struct Row {
    scenario: &'static str,
    clients: u32,
    target: &'static str,
    measured: wrk::Measured,
    /// The CPU time (user and system, all threads) the measured process spent per request; none
    /// for runs that share the process with another run at once (the login flood and `GET /me`
    /// during it), whose CPU time cannot be split between them.
    cpu_per_request: Option<Duration>,
    ratio: Option<f64>,
}

/// The lowest and highest service/baseline ratio of the rounds at one client count.
struct Spread {
    scenario: &'static str,
    clients: u32,
    lowest: f64,
    highest: f64,
}

/// CPU time process `pid` has used so far: user and system, all its threads.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // USER_HZ, the unit of these fields, is 100 per second on Linux.
    Duration::from_millis(cpu_ticks(&stat).unwrap_or(0) * 10)
}

/// utime + stime, fields 14 and 15 of a `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted from its last ')'.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Runs wrk, and measures the CPU time `pid` spent meanwhile.
fn measure(run: wrk::Run<'_>, pid: u32) -> (wrk::Measured, Duration) {
    let before = cpu_time(pid);
    let measured = run.run();
    (measured, cpu_time(pid).saturating_sub(before))
}

fn per_request(cpu: Duration, requests: u64) -> Option<Duration> {
    u32::try_from(requests)
        .ok()
        .filter(|&n| n > 0)
        .map(|n| cpu / n)
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

/// The service under measurement.
struct Service<'a> {
    url: &'a str,
    pid: u32,
    seconds: u32,
}

impl Service<'_> {
    /// One wrk run of `script` with `clients` clients, as a row of the report.
    fn row(
        &self,
        scenario: &'static str,
        clients: u32,
        target: &'static str,
        script: &Path,
    ) -> Row {
        let (measured, cpu) = measure(
            wrk::Run {
                url: self.url,
                connections: clients,
                seconds: self.seconds,
                script,
            },
            self.pid,
        );
        Row {
            scenario,
            clients,
            target,
            cpu_per_request: per_request(cpu, measured.requests),
            measured,
            ratio: None,
        }
    }
}

/// A process measured with a script.
struct Target<'a> {
    url: &'a str,
    pid: u32,
    script: &'a Path,
}

/// How a search is compared with the baseline, and how its row is named.
struct Compared {
    clients: u32,
    seconds: u32,
    rounds: u32,
    scenario: &'static str,
    target: &'static str,
}

/// Runs the baseline and `service` in turns, `rounds` times, so that both see the machine in
/// the same moods. Returns the baseline's row, the service's row (with the median of the
/// rounds' ratios) and the spread of those ratios.
fn compare(baseline: &Target<'_>, service: &Target<'_>, how: Compared) -> (Row, Row, Spread) {
    let (mut baseline_runs, mut service_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut baseline_cpu, mut service_cpu) = (Duration::ZERO, Duration::ZERO);
    let run = |target: &Target<'_>| {
        measure(
            wrk::Run {
                url: target.url,
                connections: how.clients,
                seconds: how.seconds,
                script: target.script,
            },
            target.pid,
        )
    };
    for _ in 0..how.rounds {
        let (base, cpu) = run(baseline);
        baseline_cpu += cpu;
        let (measured, cpu) = run(service);
        service_cpu += cpu;
        ratios.push(measured.requests_per_second / base.requests_per_second.max(1e-9));
        baseline_runs.push(base);
        service_runs.push(measured);
    }
    let base = wrk::Measured::median(&baseline_runs);
    let measured = wrk::Measured::median(&service_runs);
    let spread = Spread {
        scenario: how.scenario,
        clients: how.clients,
        lowest: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        highest: ratios.iter().copied().fold(0.0, f64::max),
    };
    let base = Row {
        scenario: "search, baseline proxy",
        clients: how.clients,
        target: "",
        cpu_per_request: per_request(baseline_cpu, base.requests),
        measured: base,
        ratio: None,
    };
    let service = Row {
        scenario: how.scenario,
        clients: how.clients,
        target: how.target,
        cpu_per_request: per_request(service_cpu, measured.requests),
        measured,
        ratio: Some(wrk::median(ratios)),
    };
    (base, service, spread)
}

// The scenario names below state `SLOW_NOTION`.
const _: () = assert!(SLOW_NOTION.as_millis() == 100);

/// The wrk scripts of the searches across workspaces, 100 results a page like the others.
struct FanoutScripts {
    /// Across `FANOUT_WIDTH` of the fast workspaces (a different group each time), in Notion's
    /// order.
    best_match: PathBuf,
    /// The same, newest first.
    newest_first: PathBuf,
    /// One slow workspace at a time, through its own search.
    slow_one: PathBuf,
    /// The slow workspaces together.
    slow_all: PathBuf,
}

impl FanoutScripts {
    fn write(dir: &Path, fast: &[String], slow: &[String], bearer: &(&str, String)) -> Self {
        let across = |ids: &[String], extra: &str| {
            let named: String = ids
                .iter()
                .map(|id| format!("&connection_id={id}"))
                .collect();
            (format!("/api/v1/search?page_size=100{extra}{named}"), None)
        };
        let write = |name: &str, paths: Vec<(String, Option<String>)>| {
            let path = dir.join(name);
            let lua = wrk::script("GET", &paths, std::slice::from_ref(bearer));
            std::fs::write(&path, lua).expect("a script");
            path
        };
        let groups = |extra: &str| {
            fast.chunks_exact(FANOUT_WIDTH)
                .map(|group| across(group, extra))
                .collect()
        };
        Self {
            best_match: write("fanout.lua", groups("")),
            newest_first: write("fanout-sorted.lua", groups("&sort=descending")),
            slow_one: write(
                "slow-one.lua",
                slow.iter()
                    .map(|id| {
                        (
                            format!("/api/v1/connections/{id}/search?page_size=100"),
                            None,
                        )
                    })
                    .collect(),
            ),
            slow_all: write("slow-all.lua", vec![across(slow, "")]),
        }
    }

    /// Measures the searches across workspaces. Each row's service/baseline ratio is its rate
    /// against the baseline's median at the same client count, from `before`.
    fn run(&self, service: &Service<'_>, before: &[Row]) -> Vec<Row> {
        let baseline = |clients: u32| {
            before
                .iter()
                .find(|row| row.scenario == "search, baseline proxy" && row.clients == clients)
                .map(|row| row.measured.requests_per_second)
        };
        let mut rows = Vec::new();
        for clients in [1, 16, 64] {
            for (scenario, script) in [
                ("search across 4 workspaces, best match", &self.best_match),
                (
                    "search across 4 workspaces, newest first",
                    &self.newest_first,
                ),
            ] {
                let mut row = service.row(scenario, clients, "", script);
                row.ratio =
                    baseline(clients).map(|rate| row.measured.requests_per_second / rate.max(1e-9));
                rows.push(row);
            }
        }
        // Notion's own time dominates a real search: four workspaces at once should take about
        // as long as one. Four clients searching four workspaces each fill the 16 slots of
        // `NOTION_CONCURRENCY`, no more.
        for clients in [1, 4] {
            rows.push(service.row(
                "search, one workspace, Notion taking 100 ms",
                clients,
                "",
                &self.slow_one,
            ));
            let target = if clients == 1 {
                "p50 ≤ 1.2 × one workspace's"
            } else {
                ""
            };
            rows.push(service.row(
                "search across 4 workspaces, Notion taking 100 ms",
                clients,
                target,
                &self.slow_all,
            ));
        }
        rows
    }
}

async fn orchestrate() -> ExitCode {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("bench: wrk is needed (Debian: apt install wrk)");
        return ExitCode::FAILURE;
    }
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let only = std::env::var("BENCH_ONLY").ok();
    let only_search = only.as_deref() == Some("search");
    let only_fanout = only.as_deref() == Some("fanout");
    let only_postgres = only.as_deref() == Some("postgres");
    let other_build = std::env::var_os("BENCH_SERVICE");
    if other_build.is_some() && only.is_none() {
        // The report names the commit it measured; another build would make it lie.
        eprintln!("bench: BENCH_SERVICE needs BENCH_ONLY=search or BENCH_ONLY=fanout");
        return ExitCode::FAILURE;
    }
    // The committed report is measured on SQLite; PostgreSQL runs are printed only.
    let on_postgres = std::env::var("BENCH_DATABASE").as_deref() == Ok("postgres");
    if on_postgres && only.is_none() {
        eprintln!("bench: BENCH_DATABASE=postgres needs BENCH_ONLY=search or BENCH_ONLY=fanout");
        return ExitCode::FAILURE;
    }
    let binary = other_build.map_or_else(service_binary, PathBuf::from);
    let database = on_postgres.then(postgres::PostgresDatabase::create);
    let work = tempfile::tempdir().expect("a work directory");

    let stand_in_port = free_port();
    let _stand_in = spawn_self(&["stand-in", &stand_in_port.to_string()]);
    let notion_base = format!("http://127.0.0.1:{stand_in_port}/v1");
    let baseline_port = free_port();
    let baseline_process = spawn_self(&["baseline", &baseline_port.to_string(), &notion_base]);

    let (service, service_url) = start_service(
        &binary,
        work.path(),
        &notion_base,
        Instance {
            database_url: database.as_ref().map(|database| database.url.as_str()),
            rate_limit: 1000,
            public_url: None,
        },
    );
    let pid = service.0.id();
    wait_until_up(&format!("{service_url}/healthz")).await;
    wait_until_up(&format!("http://127.0.0.1:{baseline_port}/search")).await;
    wait_until_up(&format!("{notion_base}/search")).await;

    let codes: Vec<String> = (0..CONNECTIONS)
        .map(|n| format!("ws{n}"))
        .chain((0..FANOUT_WIDTH).map(|n| format!("{SLOW_CODE}{n}")))
        .collect();
    let (access, mut connection_ids) = set_up(&service_url, &codes).await;
    let slow_ids = connection_ids.split_off(CONNECTIONS);
    let bearer = ("Authorization", format!("Bearer {access}"));
    let script = |name: &str, lua: String| {
        let path = work.path().join(name);
        std::fs::write(&path, lua).expect("a script");
        path
    };
    let search_paths: Vec<(String, Option<String>)> = connection_ids
        .iter()
        .map(|id| {
            (
                format!("/api/v1/connections/{id}/search?page_size=100"),
                None,
            )
        })
        .collect();
    let service_search = script(
        "search.lua",
        wrk::script("GET", &search_paths, std::slice::from_ref(&bearer)),
    );
    let baseline_search = script(
        "baseline.lua",
        wrk::script("GET", &[("/search?page_size=100".into(), None)], &[]),
    );
    let fanout = FanoutScripts::write(work.path(), &connection_ids, &slow_ids, &bearer);
    let me = script(
        "me.lua",
        wrk::script("GET", &[("/api/v1/me".into(), None)], &[bearer]),
    );
    // Logins spread over many accounts, as real ones are: one account hammered at once would
    // mostly measure its own throttling.
    let logins: Vec<(String, Option<String>)> = (0..LOGIN_ACCOUNTS)
        .map(|i| {
            let body = json!({ "username": format!("bench-{i}"), "password": PASSWORD });
            ("/api/v1/auth/login".to_owned(), Some(body.to_string()))
        })
        .collect();
    let login = script(
        "login.lua",
        wrk::script(
            "POST",
            &logins,
            &[("Content-Type", "application/json".into())],
        ),
    );

    // Warm both up.
    let warm = |url: &str, script: &Path| {
        wrk::Run {
            url,
            connections: 4,
            seconds: 2,
            script,
        }
        .run()
    };
    warm(&service_url, &service_search);
    warm(
        &format!("http://127.0.0.1:{baseline_port}"),
        &baseline_search,
    );

    let mut rows = Vec::new();
    reset_peak(pid);
    reset_peak(baseline_process.0.id());
    let rounds: u32 = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let baseline_pid = baseline_process.0.id();
    let baseline_url = format!("http://127.0.0.1:{baseline_port}");
    let mut spreads = Vec::new();
    let per_connection = if only_fanout || only_postgres {
        Vec::new()
    } else {
        search_clients(only_search)
    };
    let baseline_target = Target {
        url: &baseline_url,
        pid: baseline_pid,
        script: &baseline_search,
    };
    let service_target = Target {
        url: &service_url,
        pid,
        script: &service_search,
    };
    for clients in per_connection {
        let target = match clients {
            1 => "p50 ≤ 0.8 ms",
            64 => "≥ 0.85 × baseline, p99 ≤ 30 ms",
            _ => "",
        };
        let (baseline, service, spread) = compare(
            &baseline_target,
            &service_target,
            Compared {
                clients,
                seconds,
                rounds,
                scenario: "search, notion-connect",
                target,
            },
        );
        rows.extend([baseline, service]);
        spreads.push(spread);
    }
    let mut memory_use = MemoryUse {
        search_peak: memory(pid).1,
        search_file: status_mib(pid, "RssFile"),
        baseline_peak: memory(baseline_pid).1,
        ..MemoryUse::default()
    };
    let under_test = Service {
        url: &service_url,
        pid,
        seconds,
    };
    if !only_search && !only_postgres {
        reset_peak(pid);
        let fanout_rows = fanout.run(&under_test, &rows);
        memory_use.fanout_peak = Some(memory(pid).1);
        rows.extend(fanout_rows);
    }
    let mut paced = None;
    if only.is_none() || only_postgres {
        if postgres::PostgresDatabase::available() {
            let production = postgres::run(&postgres::Setting {
                binary: &binary,
                dir: work.path(),
                notion_base: &notion_base,
                baseline: Target {
                    url: &baseline_url,
                    pid: baseline_pid,
                    script: &baseline_search,
                },
                seconds,
                rounds,
            })
            .await;
            rows.extend(production.rows);
            spreads.extend(production.spreads);
            paced = Some(production.paced);
        } else {
            eprintln!("bench: no PostgreSQL server answers psql; the production rows are left out");
        }
    }
    if only.is_some() {
        print!(
            "{}",
            report(
                &rows,
                &memory_use,
                &spreads,
                paced.as_ref(),
                seconds,
                rounds
            )
        );
        return ExitCode::SUCCESS;
    }
    register_login_accounts(&service_url).await;

    for clients in [1, 16, 64] {
        rows.push(under_test.row("GET /me", clients, "", &me));
    }
    for clients in [1, 16, 64] {
        rows.push(under_test.row("login", clients, "", &login));
    }

    // A login flood, and a client reading /me meanwhile.
    reset_peak(pid);
    let flood = wrk::Run {
        url: &service_url,
        connections: 200,
        seconds,
        script: &login,
    }
    .start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = wrk::Run {
        url: &service_url,
        connections: 4,
        seconds: seconds.saturating_sub(1).max(1),
        script: &me,
    }
    .run();
    let flood = wrk::finish(flood);
    memory_use.flood_peak = memory(pid).1;
    rows.push(Row {
        scenario: "login flood",
        clients: 200,
        target: "",
        cpu_per_request: None,
        measured: flood,
        ratio: None,
    });
    rows.push(Row {
        scenario: "GET /me during the flood",
        clients: 4,
        target: "p99 ≤ 20 ms",
        cpu_per_request: None,
        measured: during,
        ratio: None,
    });
    // Logins the flood left queued finish after its clients have gone; measure once they have.
    tokio::time::sleep(Duration::from_secs(5)).await;
    memory_use.after_flood = memory(pid).0;

    let report = report(
        &rows,
        &memory_use,
        &spreads,
        paced.as_ref(),
        seconds,
        rounds,
    );
    print!("{report}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    // The web app's section belongs to `--example webstart`: it is kept as it is.
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let web = previous
        .find(WEB_SECTION)
        .map_or("", |start| &previous[start..]);
    let report = if web.is_empty() {
        report
    } else {
        format!("{}\n\n{web}", report.trim_end())
    };
    std::fs::write(&path, report).expect("write BENCHMARKS.md");
    eprintln!("bench: wrote {}", path.display());
    drop(service);
    ExitCode::SUCCESS
}

/// How an instance of the service is started: its database (SQLite in the work directory if
/// none), `NOTION_RATE_LIMIT`, and the `PUBLIC_URL` it shares with other instances (its own
/// address if none; access tokens name it, so instances that accept each other's tokens share
/// it).
struct Instance<'a> {
    database_url: Option<&'a str>,
    rate_limit: u32,
    public_url: Option<&'a str>,
}

/// Starts the service from `binary` in `dir` on a free port, against the Notion stand-in at
/// `notion_base`. Returns the process and its address. Each instance logs to a file of its own
/// in `dir`.
fn start_service(
    binary: &Path,
    dir: &Path,
    notion_base: &str,
    instance: Instance<'_>,
) -> (Running, String) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let Instance {
        database_url,
        rate_limit,
        public_url,
    } = instance;
    let log = std::fs::File::create(dir.join(format!("service-{port}.log"))).expect("a log file");
    let process = Command::new(binary)
        .current_dir(dir)
        .env_clear()
        .envs([
            ("BIND_ADDR", format!("127.0.0.1:{port}")),
            ("PUBLIC_URL", public_url.unwrap_or(&url).to_owned()),
            ("JWT_SECRET", JWT_SECRET.into()),
            ("TOKEN_ENCRYPTION_KEYS", KEYS.into()),
            ("NOTION_CLIENT_ID", "bench".into()),
            ("NOTION_CLIENT_SECRET", "bench-secret".into()),
            ("NOTION_API_BASE", notion_base.into()),
            ("NOTION_RATE_LIMIT", rate_limit.to_string()),
            ("AUTH_RATE_LIMIT", "100000".into()),
            // The runs take longer than the default 15 minutes.
            ("ACCESS_TOKEN_TTL", "2h".into()),
            ("LOG_FORMAT", "json".into()),
        ])
        .envs(database_url.map(|url| ("DATABASE_URL", url)))
        // Allocator tuning (`MIMALLOC_*` for everyday blocks, glibc's `MALLOC_*` for large ones)
        // passes through, to compare settings.
        .envs(
            std::env::vars()
                .filter(|(name, _)| name.starts_with("MIMALLOC_") || name.starts_with("MALLOC_")),
        )
        .stdout(log.try_clone().expect("a log handle"))
        .stderr(log)
        .spawn()
        .expect("the service starts");
    (Running(process), url)
}

/// Creates the benchmark's account and connects a workspace for each of `codes` through the
/// OAuth flow (the stand-in grants any code). Returns an access token and the connection ids.
async fn set_up(service: &str, codes: &[String]) -> (String, Vec<String>) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let credentials = json!({ "username": "bench", "password": PASSWORD });
    let registered = http
        .post(format!("{service}/api/v1/auth/register"))
        .json(&credentials)
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201, "register");
    let session: Value = http
        .post(format!("{service}/api/v1/auth/login"))
        .json(&credentials)
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("a session");
    let access = session["access_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let mut ids = Vec::new();
    for code in codes {
        let started = http
            .post(format!("{service}/api/v1/notion/oauth/authorize"))
            .bearer_auth(&access)
            .send()
            .await
            .expect("authorize");
        let binding = started.headers()["set-cookie"]
            .to_str()
            .expect("a cookie")
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        let body: Value = started.json().await.expect("an authorize URL");
        let url =
            url::Url::parse(body["authorize_url"].as_str().unwrap_or_default()).expect("a URL");
        let state = url
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("a state");
        let landed = http
            .get(format!("{service}/api/v1/notion/oauth/callback"))
            .query(&[("code", code.as_str()), ("state", state.as_str())])
            .header("cookie", binding)
            .send()
            .await
            .expect("callback");
        let location = landed.headers()["location"].to_str().unwrap_or_default();
        let id = location
            .split("connected=")
            .nth(1)
            .unwrap_or_else(|| panic!("workspace {code} was not connected: {location}"));
        ids.push(id.to_owned());
    }
    (access, ids)
}

/// The accounts the login runs use.
async fn register_login_accounts(service: &str) {
    let http = reqwest::Client::new();
    for i in 0..LOGIN_ACCOUNTS {
        let registered = http
            .post(format!("{service}/api/v1/auth/register"))
            .json(&json!({ "username": format!("bench-{i}"), "password": PASSWORD }))
            .send()
            .await
            .expect("register");
        assert_eq!(registered.status(), 201, "register bench-{i}");
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(String::new(), |kib| {
            format!(", {:.0} GiB", kib / 1024.0 / 1024.0)
        });
    format!("{cores} cores ({cpu}){memory}")
}

/// Resident memory in MiB.
#[derive(Default)]
struct MemoryUse {
    /// The service's peak during the search runs.
    search_peak: f64,
    /// Of the service's resident memory after the search runs, the part mapped from files: the
    /// binary's code and read-only data, and the shared libraries'.
    search_file: f64,
    /// The baseline proxy's peak during the same runs.
    baseline_peak: f64,
    /// The service's peak during the searches across workspaces, when they ran.
    fanout_peak: Option<f64>,
    /// The service's peak during the login flood.
    flood_peak: f64,
    /// The service's resident memory once the flood is over.
    after_flood: f64,
}

fn report(
    rows: &[Row],
    memory: &MemoryUse,
    spreads: &[Spread],
    paced: Option<&Recorded>,
    seconds: u32,
    rounds: u32,
) -> String {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "The latest report of `cargo run --release --example bench` (see `tests/bench/main.rs`).\n\
         Everything runs on one machine over loopback: a Notion stand-in answering every search with\n\
         as many results as it asks for, 100 at most (a 100-result page is about {page_kib} KiB); the\n\
         release service with {CONNECTIONS} connected workspaces (SQLite, `NOTION_RATE_LIMIT=1000`); a\n\
         baseline proxy that only fetches, parses and re-serialises a 100-result page; and wrk. Each\n\
         run lasts {seconds} s. At each client count the search runs alternate, baseline then service,\n\
         {rounds} times; their rows give the median of the {rounds} runs, and service/baseline is the\n\
         median of the {rounds} rounds' ratios. CPU/request is the CPU time (user and system) of the\n\
         measured process alone, the service or the baseline, divided by the requests it answered.\n\n\
         The searches across workspaces (`GET /api/v1/search`, one run each) return 100 results a\n\
         page too, from {FANOUT_WIDTH} of the workspaces; their service/baseline is their rate against the\n\
         baseline's median at the same client count. In best-match order each workspace is asked for\n\
         its share (25 results); newest first, each is asked for 100, and the 300 not returned are\n\
         kept for the next page. For the rows where Notion takes 100 ms, {FANOUT_WIDTH} more workspaces are\n\
         connected, whose searches the stand-in answers after 100 ms.\n\n\
         The rows \"on PostgreSQL\" run the same way on a database of their own on the local\n\
         PostgreSQL server (over loopback TCP without TLS, as the README advises for a server on the\n\
         same host), alternating with the\n\
         baseline again. One service there is alone on its database, so it keeps the rate budget\n\
         and the connections it searched lately in memory, as on SQLite. \"Two instances\n\
         together\" are two services on that database, which share both through it, each\n\
         driven by its own wrk with 32 clients at once: requests/s and errors are their sums,\n\
         latencies the slower one's. The rows with 300,000 other connections run on a second\n\
         database that also holds 100,000 other users with 3 connections each, in rounds\n\
         alternating with the baseline and the same on the empty database.\n",
        page_kib = fixture::search_page().len().div_ceil(1024)
    );
    let _ = writeln!(
        out,
        "- Date: {date}\n- Commit: {commit}\n- Machine: {}\n",
        machine()
    );
    let _ = writeln!(
        out,
        "| scenario | clients | requests/s | p50 (ms) | p99 (ms) | errors | CPU/request (ms) | \
         service/baseline | target |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        let m = &row.measured;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.clients,
            m.requests_per_second,
            ms(m.p50),
            ms(m.p99),
            m.errors,
            row.cpu_per_request.map_or(String::new(), |cpu| format!(
                "{:.3}",
                cpu.as_secs_f64() * 1000.0
            )),
            row.ratio.map_or(String::new(), |r| format!("{r:.2}")),
            row.target
        );
    }
    let spread: Vec<String> = spreads
        .iter()
        .map(|s| {
            let noun = if s.clients == 1 { "client" } else { "clients" };
            format!(
                "{}, {} {noun}: {:.2}–{:.2}",
                s.scenario, s.clients, s.lowest, s.highest
            )
        })
        .collect();
    if !spread.is_empty() {
        let _ = writeln!(
            out,
            "\nService/baseline ratios of single rounds, lowest to highest: {}.",
            spread.join("; ")
        );
    }
    if let Some(line) = fanout_latency(rows) {
        let _ = writeln!(out, "\n{line}");
    }
    if let Some(paced) = paced {
        let _ = writeln!(
            out,
            "\nTwo instances on one PostgreSQL with `NOTION_RATE_LIMIT={limit}`, 32 clients each, \
             searching {CONNECTIONS} connections: the stand-in saw {} calls in {:.1} s, {:.1} a \
             second per connection on average, and at most {} calls of one connection within any \
             one second (sliding, not calendar seconds; the limit is {limit}). A search waits for \
             its connection's turn within `NOTION_TIMEOUT`, and is refused with 429 (which wrk \
             counts as an error) when the turn would come later.",
            paced.calls,
            paced.seconds,
            paced.calls as f64 / paced.seconds.max(1e-9) / paced.tokens.max(1) as f64,
            paced.most_in_one_second,
            limit = postgres::PACED_RATE_LIMIT,
        );
    }
    for line in scale_changes(rows) {
        let _ = writeln!(out, "\n{line}");
    }
    let _ = writeln!(
        out,
        "\nPeak resident memory of the service: {:.1} MiB during the search runs (target ≤ 48 MiB;\n\
         the baseline proxy's: {:.1} MiB), {:.1} MiB during the login flood (at most\n\
         `PASSWORD_HASH_CONCURRENCY` hashes of 19 MiB run at once; the others wait for a slot,\n\
         and a login that waits too long is refused with 503, which wrk counts as an error), and\n\
         {:.1} MiB five seconds after it. After the search runs, {:.1} MiB of the service's\n\
         resident memory is mapped from files (its code and read-only data, and the shared\n\
         libraries').",
        memory.search_peak,
        memory.baseline_peak,
        memory.flood_peak,
        memory.after_flood,
        memory.search_file
    );
    if let Some(peak) = memory.fanout_peak {
        let _ = writeln!(
            out,
            "\nPeak resident memory of the service during the searches across workspaces: \
             {peak:.1} MiB (the results fetched and not yet returned are kept for the next page, \
             8 MiB at most)."
        );
    }
    out
}

/// How 100,000 more users and 300,000 more connections changed the search and the list on
/// PostgreSQL: p50 at one client, requests/s and p99 at 64.
fn scale_changes(rows: &[Row]) -> Vec<String> {
    let find = |scenario: &str, clients: u32| {
        rows.iter()
            .find(|row| row.scenario == scenario && row.clients == clients)
            .map(|row| &row.measured)
    };
    let change = |before: f64, after: f64| (after / before.max(1e-9) - 1.0) * 100.0;
    let mut lines = Vec::new();
    for (what, empty, filled) in [
        (
            "search",
            postgres::SCALE_EMPTY_SEARCH,
            postgres::SCALE_FILLED_SEARCH,
        ),
        (
            "`GET /connections`",
            postgres::SCALE_EMPTY_LIST,
            postgres::SCALE_FILLED_LIST,
        ),
    ] {
        let (Some(one), Some(one_full), Some(many), Some(many_full)) = (
            find(empty, 1),
            find(filled, 1),
            find(empty, 64),
            find(filled, 64),
        ) else {
            continue;
        };
        lines.push(format!(
            "With {} other users and {} other connections in the database, {what} took {} ms \
             (p50, one client) against {} ms in an empty one, in alternating rounds ({:+.1} %); \
             at 64 clients {:.0} against {:.0} requests/s ({:+.1} %), p99 {} against {} ms \
             ({:+.1} %).",
            thousands(postgres::FILLER_USERS),
            thousands(postgres::FILLER_USERS * postgres::FILLER_CONNECTIONS_PER_USER),
            ms(one_full.p50),
            ms(one.p50),
            change(one.p50.as_secs_f64(), one_full.p50.as_secs_f64()),
            many_full.requests_per_second,
            many.requests_per_second,
            change(many.requests_per_second, many_full.requests_per_second),
            ms(many_full.p99),
            ms(many.p99),
            change(many.p99.as_secs_f64(), many_full.p99.as_secs_f64()),
        ));
    }
    lines
}

/// `n` with commas between its thousands: 300,000.
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The p50 of one client searching the slow workspaces together, against one of them alone.
fn fanout_latency(rows: &[Row]) -> Option<String> {
    let p50 = |scenario: &str| {
        rows.iter()
            .find(|row| row.scenario == scenario && row.clients == 1)
            .map(|row| row.measured.p50)
    };
    let one = p50("search, one workspace, Notion taking 100 ms")?;
    let all = p50("search across 4 workspaces, Notion taking 100 ms")?;
    Some(format!(
        "With Notion taking 100 ms a search, one client searching {FANOUT_WIDTH} workspaces at \
         once waits {} ms (p50) against {} ms for one workspace: {:.2}× one workspace's time, \
         where searching them one after another would take {FANOUT_WIDTH}×.",
        ms(all),
        ms(one),
        all.as_secs_f64() / one.as_secs_f64().max(1e-9)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_an_awkward_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 7 0";
        assert_eq!(cpu_ticks(stat), Some(1234 + 56));
        assert_eq!(cpu_ticks("4242 (cut short) S 1 2"), None);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_300_000), "1,300,000");
    }

    #[test]
    fn calls_are_counted_in_sliding_seconds() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        // Two calendar seconds of 3 calls each, but 5 within one second across their border.
        let times = [at(0), at(600), at(700), at(800), at(1100), at(1500)];
        assert_eq!(most_within_a_second(&times), 5);
        assert_eq!(most_within_a_second(&[at(0), at(1000), at(2000)]), 1);
        assert_eq!(most_within_a_second(&[]), 0);
    }

    #[test]
    fn the_stand_in_answers_as_many_results_as_asked_for() {
        for size in [1, 25, 99, 100] {
            let body = fixture::search_page_of(size);
            assert_eq!(parse(body.as_bytes()).unwrap().items.len(), size);
        }
    }

    #[test]
    fn the_page_is_what_the_report_says() {
        let body = fixture::search_page();
        let kib = body.len() / 1024;
        assert!((120..=150).contains(&kib), "{kib} KiB");
        let page = parse(body.as_bytes()).expect("the page parses");
        assert_eq!(page.items.len(), 100);
        let raw: Value = serde_json::from_str(&body).unwrap();
        let title_properties: std::collections::BTreeSet<&str> = raw["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|result| result["object"] == "page")
            .filter_map(|result| result["properties"].as_object())
            .flat_map(|properties| properties.iter())
            .filter(|(_, property)| property["type"] == "title")
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            ["title", "Name", "Task"]
                .iter()
                .all(|n| title_properties.contains(n))
        );
        assert!(page.items.iter().all(|item| item.title != "Untitled"));
    }
}
