//! The benchmark: `cargo run --release --example bench` (wrk must be installed; Debian:
//! `apt install wrk`).
//!
//! On loopback it starts a Notion stand-in that answers every search with a realistic 100-result
//! page (about 135 KiB), the release service against it with 16 connected workspaces, and a
//! baseline proxy that does only what search must do (fetch the page, parse the fields shown,
//! write the answer) with no authentication, database or middleware. It drives both with wrk at
//! 1, 16 and 64 clients, measures `GET /api/v1/me` and login the same way, and `GET /me` while
//! 200 clients flood login, then prints a table and writes it to `BENCHMARKS.md`.
//!
//! Search is measured in rounds, baseline then service, `BENCH_ROUNDS` times (default 3) at each
//! client count, and reported as medians: on a shared machine a run can land in a busy moment.
//!
//! `BENCH_SECONDS` sets the length of each run (default 10); `BENCH_ONLY=search` runs only the
//! search comparison and prints it without writing the report, at the client counts
//! `BENCH_CLIENTS` lists if set (for example `BENCH_CLIENTS=64`). `MIMALLOC_*` and `MALLOC_*`
//! variables reach the service, to compare allocator settings. With `BENCH_ONLY=search`,
//! `BENCH_SERVICE` names another build of the service to measure instead of the release binary.

mod fixture;
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

#[handler]
fn stand_in_search(page: Data<&bytes::Bytes>) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(page.0.clone())
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
    let page = bytes::Bytes::from(fixture::search_page());
    let app = Route::new()
        .at("/v1/search", post(stand_in_search))
        .at("/v1/oauth/token", post(stand_in_token))
        .at("/v1/oauth/revoke", post(stand_in_revoke))
        .data(page);
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

async fn orchestrate() -> ExitCode {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("bench: wrk is needed (Debian: apt install wrk)");
        return ExitCode::FAILURE;
    }
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let only_search = std::env::var("BENCH_ONLY").as_deref() == Ok("search");
    let other_build = std::env::var_os("BENCH_SERVICE");
    if other_build.is_some() && !only_search {
        // The report names the commit it measured; another build would make it lie.
        eprintln!("bench: BENCH_SERVICE needs BENCH_ONLY=search");
        return ExitCode::FAILURE;
    }
    let binary = other_build.map_or_else(service_binary, PathBuf::from);
    let work = tempfile::tempdir().expect("a work directory");

    let stand_in_port = free_port();
    let _stand_in = spawn_self(&["stand-in", &stand_in_port.to_string()]);
    let notion_base = format!("http://127.0.0.1:{stand_in_port}/v1");
    let baseline_port = free_port();
    let baseline_process = spawn_self(&["baseline", &baseline_port.to_string(), &notion_base]);

    let service_port = free_port();
    let service_url = format!("http://127.0.0.1:{service_port}");
    let log = std::fs::File::create(work.path().join("service.log")).expect("a log file");
    let service =
        Running(
            Command::new(&binary)
                .current_dir(work.path())
                .env_clear()
                .envs([
                    ("BIND_ADDR", format!("127.0.0.1:{service_port}")),
                    ("PUBLIC_URL", service_url.clone()),
                    ("JWT_SECRET", JWT_SECRET.into()),
                    ("TOKEN_ENCRYPTION_KEYS", KEYS.into()),
                    ("NOTION_CLIENT_ID", "bench".into()),
                    ("NOTION_CLIENT_SECRET", "bench-secret".into()),
                    ("NOTION_API_BASE", notion_base.clone()),
                    ("NOTION_RATE_LIMIT", "1000".into()),
                    ("AUTH_RATE_LIMIT", "100000".into()),
                    ("LOG_FORMAT", "json".into()),
                ])
                // Allocator tuning (`MIMALLOC_*` for everyday blocks, glibc's `MALLOC_*` for large
                // ones) passes through, to compare settings.
                .envs(std::env::vars().filter(|(name, _)| {
                    name.starts_with("MIMALLOC_") || name.starts_with("MALLOC_")
                }))
                .stdout(log.try_clone().expect("a log handle"))
                .stderr(log)
                .spawn()
                .expect("the service starts"),
        );
    let pid = service.0.id();
    wait_until_up(&format!("{service_url}/healthz")).await;
    wait_until_up(&format!("http://127.0.0.1:{baseline_port}/search")).await;

    let (access, connection_ids) = set_up(&service_url).await;
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
    for clients in search_clients(only_search) {
        let (mut baseline_runs, mut service_runs, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new());
        let (mut baseline_cpu, mut service_cpu) = (Duration::ZERO, Duration::ZERO);
        // Baseline and service take turns, so that both see the machine in the same moods.
        for _ in 0..rounds {
            let (baseline, cpu) = measure(
                wrk::Run {
                    url: &baseline_url,
                    connections: clients,
                    seconds,
                    script: &baseline_search,
                },
                baseline_pid,
            );
            baseline_cpu += cpu;
            let (measured, cpu) = measure(
                wrk::Run {
                    url: &service_url,
                    connections: clients,
                    seconds,
                    script: &service_search,
                },
                pid,
            );
            service_cpu += cpu;
            ratios.push(measured.requests_per_second / baseline.requests_per_second.max(1e-9));
            baseline_runs.push(baseline);
            service_runs.push(measured);
        }
        let baseline = wrk::Measured::median(&baseline_runs);
        let measured = wrk::Measured::median(&service_runs);
        spreads.push(Spread {
            clients,
            lowest: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            highest: ratios.iter().copied().fold(0.0, f64::max),
        });
        rows.push(Row {
            scenario: "search, baseline proxy",
            clients,
            target: "",
            cpu_per_request: per_request(baseline_cpu, baseline.requests),
            measured: baseline,
            ratio: None,
        });
        let target = match clients {
            1 => "p50 ≤ 0.8 ms",
            64 => "≥ 0.80 × baseline, p99 ≤ 30 ms",
            _ => "",
        };
        rows.push(Row {
            scenario: "search, notion-connect",
            clients,
            target,
            cpu_per_request: per_request(service_cpu, measured.requests),
            measured,
            ratio: Some(wrk::median(ratios)),
        });
    }
    let mut memory_use = MemoryUse {
        search_peak: memory(pid).1,
        search_file: status_mib(pid, "RssFile"),
        baseline_peak: memory(baseline_pid).1,
        ..MemoryUse::default()
    };
    if only_search {
        print!("{}", report(&rows, &memory_use, &spreads, seconds, rounds));
        return ExitCode::SUCCESS;
    }
    register_login_accounts(&service_url).await;

    for clients in [1, 16, 64] {
        let (measured, cpu) = measure(
            wrk::Run {
                url: &service_url,
                connections: clients,
                seconds,
                script: &me,
            },
            pid,
        );
        rows.push(Row {
            scenario: "GET /me",
            clients,
            target: "",
            cpu_per_request: per_request(cpu, measured.requests),
            measured,
            ratio: None,
        });
    }
    for clients in [1, 16, 64] {
        let (measured, cpu) = measure(
            wrk::Run {
                url: &service_url,
                connections: clients,
                seconds,
                script: &login,
            },
            pid,
        );
        rows.push(Row {
            scenario: "login",
            clients,
            target: "",
            cpu_per_request: per_request(cpu, measured.requests),
            measured,
            ratio: None,
        });
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

    let report = report(&rows, &memory_use, &spreads, seconds, rounds);
    print!("{report}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    std::fs::write(&path, report).expect("write BENCHMARKS.md");
    eprintln!("bench: wrote {}", path.display());
    drop(service);
    ExitCode::SUCCESS
}

/// Creates the benchmark's account and connects `CONNECTIONS` workspaces through the OAuth
/// flow (the stand-in grants any code). Returns an access token and the connection ids.
async fn set_up(service: &str) -> (String, Vec<String>) {
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
    for n in 0..CONNECTIONS {
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
            .query(&[("code", format!("ws{n}")), ("state", state)])
            .header("cookie", binding)
            .send()
            .await
            .expect("callback");
        let location = landed.headers()["location"].to_str().unwrap_or_default();
        let id = location
            .split("connected=")
            .nth(1)
            .unwrap_or_else(|| panic!("workspace {n} was not connected: {location}"));
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
    /// The service's peak during the login flood.
    flood_peak: f64,
    /// The service's resident memory once the flood is over.
    after_flood: f64,
}

fn report(
    rows: &[Row],
    memory: &MemoryUse,
    spreads: &[Spread],
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
         a 100-result page of about {page_kib} KiB; the release service with {CONNECTIONS} connected\n\
         workspaces (SQLite, `NOTION_RATE_LIMIT=1000`); a baseline proxy that only fetches, parses\n\
         and re-serialises the same page; and wrk. Each run lasts {seconds} s. At each client count\n\
         the search runs alternate, baseline then service, {rounds} times; their rows give the median\n\
         of the {rounds} runs, and service/baseline is the median of the {rounds} rounds' ratios.\n\
         CPU/request is the CPU time (user and system) of the measured process alone, the service or\n\
         the baseline, divided by the requests it answered.\n",
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
            format!("{} {noun} {:.2}–{:.2}", s.clients, s.lowest, s.highest)
        })
        .collect();
    let _ = writeln!(
        out,
        "\nService/baseline ratios of single rounds, lowest to highest: {}.",
        spread.join("; ")
    );
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
    out
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
