//! The test harness: [`spawn_app`] starts the real application on port 0 with a fresh database
//! (SQLite in a temporary directory, or a PostgreSQL database created for the test and dropped
//! afterwards) and the real migrations.

use std::{collections::HashMap, io::Write, sync::OnceLock, time::Duration};

use notion_connect::{config::Settings, startup::Application, telemetry};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::{sync::oneshot, task::JoinHandle};

/// Where the PostgreSQL variants connect to create their databases.
pub(crate) fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub(crate) const TEST_JWT_SECRET: &str =
    "dGVzdC1qd3Qtc2VjcmV0LXRoYXQtaXMtbG9uZy1lbm91Z2gtZm9yLWhzMjU2";
pub(crate) const TEST_KEYS: &str = "test1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed test once on SQLite and once on PostgreSQL. The PostgreSQL variant says once
/// per run that it was skipped when no server is reachable, or fails when
/// `TEST_REQUIRE_POSTGRES=1` (as in CI).
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if crate::helpers::postgres_available() {
                        super::$name(crate::helpers::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}
pub(crate) use on_both_databases;

/// Whether a PostgreSQL server answers; checked once per test run.
pub(crate) fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let url = postgres_admin_url();
        let reachable = block_on_fresh_runtime(async move {
            let connect = Database::connect(url.as_str());
            matches!(
                tokio::time::timeout(Duration::from_secs(5), connect).await,
                Ok(Ok(_))
            )
        });
        if !reachable {
            if std::env::var("TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "TEST_REQUIRE_POSTGRES=1 but PostgreSQL is not reachable at {}",
                    postgres_admin_url()
                );
            }
            // Written to the real stderr, which the test harness does not capture.
            let _ = writeln!(
                std::io::stderr(),
                "\nnote: PostgreSQL is not reachable at {}; the postgres:: test variants are \
                 skipped (set TEST_POSTGRES_URL to point elsewhere)\n",
                postgres_admin_url()
            );
        }
        reachable
    })
}

/// Runs a future on a runtime of its own, on a thread of its own, so it can be used from
/// synchronous code (a `Drop`, a `OnceLock`) even inside a test's runtime.
fn block_on_fresh_runtime<F>(future: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime")
            .block_on(future)
    })
    .join()
    .expect("helper thread panicked")
}

/// A PostgreSQL database that exists for one test.
pub(crate) struct PostgresDatabase {
    pub name: String,
    pub url: String,
}

impl PostgresDatabase {
    async fn create() -> Self {
        let name = format!("nc_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(postgres_admin_url())
            .await
            .expect("connect to PostgreSQL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&postgres_admin_url()).expect("valid TEST_POSTGRES_URL");
        url.set_path(&name);
        Self {
            name,
            url: url.to_string(),
        }
    }

    /// Runs a statement as the administrator (for example to cut the application off).
    pub(crate) async fn admin_execute(&self, sql: &str) {
        let admin = Database::connect(postgres_admin_url())
            .await
            .expect("connect to PostgreSQL");
        admin.execute_unprepared(sql).await.expect(sql);
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        block_on_fresh_runtime(async move {
            if let Ok(admin) = Database::connect(postgres_admin_url()).await {
                let _ = admin.execute_unprepared(&sql).await;
            }
        });
    }
}

pub(crate) struct TestApp {
    /// `http://127.0.0.1:{port}`
    pub address: String,
    pub port: u16,
    /// `http://127.0.0.1:{port}` of the metrics listener, when `METRICS_BIND_ADDR` is set.
    pub metrics_address: Option<String>,
    /// A client that does not follow redirects.
    pub client: reqwest::Client,
    pub backend: Backend,
    pub db: DatabaseConnection,
    pub database_url: String,
    /// The client secret the app uses with Notion (the sandbox's, when that is active).
    pub notion_client_secret: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// Declared last so the database outlives the connections above while the app drops.
    pub postgres: Option<PostgresDatabase>,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// Waits until the instance says on `/metrics` that it is alone on its database, or that it
    /// is not (`METRICS_BIND_ADDR` must be set).
    pub(crate) async fn wait_until_alone(&self, alone: bool) {
        let address = self
            .metrics_address
            .as_ref()
            .expect("metrics are configured");
        let wanted = format!("notion_connect_instance_alone {}", u8::from(alone));
        for _ in 0..100 {
            let text = reqwest::get(format!("{address}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if text.lines().any(|line| line == wanted) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the instance never showed {wanted}");
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request failed")
    }

    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    pub(crate) async fn register(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/register",
            &serde_json::json!({ "username": username, "password": password }),
        )
        .await
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/login",
            &serde_json::json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Registers `username` and logs in.
    pub(crate) async fn signed_in(&self, username: &str) -> Tokens {
        let registered = self.register(username, PASSWORD).await;
        assert_eq!(registered.status(), 201, "register {username}");
        let response = self.login(username, PASSWORD).await;
        assert_eq!(response.status(), 200, "login {username}");
        Tokens::from_response(response).await
    }

    /// `GET` with a bearer token.
    pub(crate) async fn get_as(&self, path: &str, access_token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request failed")
    }

    /// `DELETE` with a bearer token and no body.
    pub(crate) async fn delete_as(&self, path: &str, access_token: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request failed")
    }

    /// `POST` with the refresh cookie.
    pub(crate) async fn post_with_cookie(
        &self,
        path: &str,
        refresh_token: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("cookie", format!("nc_refresh={refresh_token}"))
            .send()
            .await
            .expect("request failed")
    }

    /// Sends a GET with exactly this request target (no client normalises it first) and returns
    /// the raw response.
    pub(crate) async fn raw_get(&self, target: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let head = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        socket.write_all(head.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response)).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Sends only the head of a POST that declares a `length`-byte JSON body, and returns the
    /// raw response. An oversized body is refused from its head alone; sending the body too
    /// would race the server closing the connection.
    pub(crate) async fn post_declaring_length(&self, path: &str, length: usize) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response)).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Begins a graceful shutdown and returns the server task, which ends once in-flight
    /// requests are done.
    pub(crate) fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server already stopped")
    }
}

/// The variables every test app starts from; tests may change them before the app is built.
pub(crate) fn test_variables(dir: &std::path::Path) -> HashMap<String, String> {
    [
        ("APP_ENV", "development"),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("JWT_SECRET", TEST_JWT_SECRET),
        ("TOKEN_ENCRYPTION_KEYS", TEST_KEYS),
        ("DATA_DIR", dir.join("data").to_str().expect("utf-8 path")),
        // Many tests log in from 127.0.0.1; the limit itself has its own test.
        ("AUTH_RATE_LIMIT", "100000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub(crate) async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub(crate) async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        telemetry::init(notion_connect::config::LogFormat::Pretty);
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut vars = test_variables(dir.path());
    let postgres = match backend {
        Backend::Sqlite => {
            let file = dir.path().join("test.db");
            vars.insert(
                "DATABASE_URL".into(),
                format!("sqlite://{}?mode=rwc", file.display()),
            );
            None
        }
        Backend::Postgres => {
            let database = PostgresDatabase::create().await;
            vars.insert("DATABASE_URL".into(), database.url.clone());
            Some(database)
        }
    };
    configure(&mut vars);
    let settings = Settings::from_source(|name| vars.get(name).cloned()).expect("test settings");

    let database_url = vars["DATABASE_URL"].clone();
    let app = Application::build(settings)
        .await
        .expect("build application");
    let port = app.port();
    let metrics_address = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let db = app.state().db.clone();
    let notion_client_secret = app.notion_endpoints().client_secret.expose().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));

    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        metrics_address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client"),
        backend,
        db,
        database_url,
        notion_client_secret,
        shutdown: Some(tx),
        server: Some(server),
        postgres,
        dir,
    }
}

/// Reads a problem+json response and checks the status and code it carries.
/// The whole seconds of an answer's `Retry-After`.
pub(crate) fn retry_after(answer: &reqwest::Response) -> u64 {
    answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "content type");
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "status in body: {body}");
    assert_eq!(body["code"], code, "code in body: {body}");
    assert!(body["title"].is_string(), "title: {body}");
    assert_eq!(
        body["type"],
        format!("urn:notion-connect:problem:{code}"),
        "type: {body}"
    );
    body
}

/// A password that passes the policy.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// What a login or refresh hands out.
#[derive(Clone, Debug)]
pub(crate) struct Tokens {
    pub access: String,
    pub refresh: String,
    pub body: serde_json::Value,
}

impl Tokens {
    pub(crate) async fn from_response(response: reqwest::Response) -> Self {
        let refresh = refresh_cookie(&response).expect("a refresh cookie");
        let body: serde_json::Value = response.json().await.expect("session JSON");
        Self {
            access: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh,
            body,
        }
    }
}

/// The refresh token set by a response, if it sets one.
pub(crate) fn refresh_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("nc_refresh="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .filter(|v| !v.is_empty())
}
