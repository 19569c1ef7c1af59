//! The `notion-connect` binary itself: configuration refusals, commands, generated development
//! secrets, and shutdown on SIGTERM.

use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::helpers::{
    Backend, PASSWORD, TEST_JWT_SECRET, TEST_KEYS, TestApp, on_both_databases, spawn_app,
};

const BINARY: &str = env!("CARGO_BIN_EXE_notion-connect");

/// The binary with an empty environment, run in `dir` (so no stray `.env` is picked up).
fn command(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

fn production(dir: &Path) -> Command {
    let mut command = command(dir);
    command.envs([
        ("APP_ENV", "production"),
        ("PUBLIC_URL", "https://connect.example.com"),
        ("JWT_SECRET", TEST_JWT_SECRET),
        ("TOKEN_ENCRYPTION_KEYS", TEST_KEYS),
        ("NOTION_CLIENT_ID", "client-id"),
        ("NOTION_CLIENT_SECRET", "client-secret"),
        ("DATABASE_URL", "sqlite://prod.db?mode=rwc"),
        ("BIND_ADDR", "127.0.0.1:0"),
    ]);
    command
}

fn assert_refused(output: Output, variable: &str) {
    assert!(!output.status.success(), "the service must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(variable), "names {variable}: {stderr}");
    assert!(!stderr.contains(TEST_JWT_SECRET) && !stderr.contains("client-secret"));
}

#[test]
fn production_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    for variable in [
        "JWT_SECRET",
        "TOKEN_ENCRYPTION_KEYS",
        "NOTION_CLIENT_SECRET",
    ] {
        let output = production(dir.path())
            .env_remove(variable)
            .output()
            .unwrap();
        assert_refused(output, variable);
    }
    assert!(!dir.path().join("prod.db").exists(), "nothing was created");
}

#[test]
fn production_refuses_a_plain_http_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let output = production(dir.path())
        .env("PUBLIC_URL", "http://example.com")
        .output()
        .unwrap();
    assert_refused(output, "PUBLIC_URL");
}

#[test]
fn production_refuses_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let output = production(dir.path())
        .env_remove("NOTION_CLIENT_ID")
        .env_remove("NOTION_CLIENT_SECRET")
        .output()
        .unwrap();
    assert_refused(output, "NOTION_CLIENT_ID");
}

#[test]
fn openapi_prints_the_committed_spec() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path()).arg("openapi").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        include_str!("../../openapi/openapi.json")
    );
}

#[test]
fn generate_key_prints_a_usable_ring_entry() {
    let dir = tempfile::tempdir().unwrap();
    let first = command(dir.path()).arg("generate-key").output().unwrap();
    let second = command(dir.path()).arg("generate-key").output().unwrap();
    let first = String::from_utf8(first.stdout).unwrap();
    let second = String::from_utf8(second.stdout).unwrap();
    assert_ne!(first, second);
    notion_connect::crypto::KeyRing::parse(first.trim()).expect("a valid key ring entry");
}

#[test]
fn migrate_prepares_a_fresh_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .env("DATABASE_URL", "sqlite://fresh/app.db?mode=rwc")
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("fresh/app.db").exists());
}

/// Picks a port that is free right now (the service is then started on it).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn start_service(dir: &Path, port: u16) -> Child {
    command(dir)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

pub(crate) fn wait_until_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if http_get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the service did not become healthy");
}

pub(crate) fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn logs(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn development_secrets_are_generated_once_and_reused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let port = free_port();
    let first = start_service(dir.path(), port);
    wait_until_healthy(port);
    assert!(
        http_get(port, "/readyz")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    terminate(&first);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", logs(&first));
    let logged = logs(&first);
    assert!(logged.contains("generated a development secret"));
    assert!(logged.contains(r#""variable":"JWT_SECRET""#), "{logged}");
    assert!(
        logged.contains(r#""variable":"TOKEN_ENCRYPTION_KEYS""#),
        "{logged}"
    );

    let jwt = std::fs::read_to_string(data.join("jwt_secret")).unwrap();
    let keys = std::fs::read_to_string(data.join("token_encryption_keys")).unwrap();
    for file in ["jwt_secret", "token_encryption_keys"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    assert!(
        data.join("notion-connect.db").exists(),
        "SQLite file under data/"
    );
    let logged = logs(&first);
    assert!(
        !logged.contains(jwt.trim()),
        "the secret itself is never logged"
    );

    let port = free_port();
    let second = start_service(dir.path(), port);
    wait_until_healthy(port);
    terminate(&second);
    let second = second.wait_with_output().unwrap();
    assert!(
        second.status.success(),
        "{:?}: {}",
        second.status,
        logs(&second)
    );
    assert!(!logs(&second).contains("generated a development secret"));
    assert_eq!(
        std::fs::read_to_string(data.join("jwt_secret")).unwrap(),
        jwt
    );
    assert_eq!(
        std::fs::read_to_string(data.join("token_encryption_keys")).unwrap(),
        keys
    );
}

/// The signal handlers are in place before the port opens: a SIGTERM sent the moment the
/// service can be reached (as an orchestrator might) stops it gracefully instead of killing it.
#[test]
fn a_sigterm_as_soon_as_the_port_opens_stops_the_service_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let service = start_service(dir.path(), port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the port never opened");
        std::thread::sleep(Duration::from_millis(2));
    }
    terminate(&service);
    let output = service.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        logs(&output)
    );
}

#[test]
fn the_binary_serves_the_web_app_from_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let service = start_service(dir.path(), port);
    wait_until_healthy(port);
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    for (path, file) in [("/app.js", "app.js"), ("/style.css", "style.css")] {
        let response = http_get(port, path).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        let body = response.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            body,
            std::fs::read_to_string(web.join(file)).unwrap(),
            "{path}"
        );
    }
    // The page, as prepared by the build: with its modules' versioned addresses.
    let page = http_get(port, "/").unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>notion-connect</title>"), "{page}");
    assert!(
        page.contains("<script type=\"module\" src=\"app.js?v="),
        "{page}"
    );
    terminate(&service);
    assert!(service.wait_with_output().unwrap().status.success());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["data"], "only the data directory was created");
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = start_service(dir.path(), port);
    wait_until_healthy(port);

    let mut in_flight = TcpStream::connect(("127.0.0.1", port)).unwrap();
    in_flight
        .write_all(
            b"POST /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
              Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    terminate(&child);
    std::thread::sleep(Duration::from_millis(300));
    in_flight.write_all(b"0\r\n\r\n").unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = String::new();
    in_flight.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");

    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", logs(&output));
}

/// Runs the binary with `args` against the app's database.
pub(crate) fn run_with_database(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(app.dir.path())
        .env("DATABASE_URL", &app.database_url)
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("TOKEN_ENCRYPTION_KEYS", TEST_KEYS)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

/// Runs `notion-connect create-user` against the app's database, with the password on stdin.
pub(crate) fn create_user_with_cli(app: &TestApp, username: &str, admin: bool) -> Output {
    create_user_with_password(app, username, admin, PASSWORD)
}

fn create_user_with_password(app: &TestApp, username: &str, admin: bool, password: &str) -> Output {
    let mut command = command(app.dir.path());
    command
        .env("DATABASE_URL", &app.database_url)
        .env("JWT_SECRET", TEST_JWT_SECRET)
        .env("TOKEN_ENCRYPTION_KEYS", TEST_KEYS)
        .args(["create-user", "--username", username])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if admin {
        command.arg("--admin");
    }
    let mut child = command.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

on_both_databases!(create_user_makes_accounts_that_can_log_in);

async fn create_user_makes_accounts_that_can_log_in(backend: Backend) {
    let app = spawn_app(backend).await;

    let created = create_user_with_cli(&app, "Operator", false);
    assert!(created.status.success(), "{}", logs(&created));
    assert!(String::from_utf8_lossy(&created.stdout).contains("created user 'Operator'"));
    assert!(!logs(&created).contains(PASSWORD));
    let session = app.login("operator", PASSWORD).await;
    assert_eq!(session.status(), 200);
    let session: serde_json::Value = session.json().await.unwrap();
    assert_eq!(session["user"]["is_admin"], false);

    let taken = create_user_with_cli(&app, "OPERATOR", true);
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("taken"));

    let weak = create_user_with_password(&app, "another", false, "password");
    assert!(!weak.status.success());
    assert_eq!(app.login("another", "password").await.status(), 401);
}
