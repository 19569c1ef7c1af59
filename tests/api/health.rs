use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use notion_connect::auth::liveness::BELIEVED_FOR;
use sea_orm::{ConnectionTrait, Database};

use crate::helpers::{Backend, PASSWORD, TestApp, assert_problem, on_both_databases, spawn_app};

on_both_databases!(
    healthz_reports_the_process_is_up,
    readyz_reports_ready_when_the_database_answers,
    readyz_fails_while_the_database_is_unreachable_and_recovers,
    database_backed_routes_answer_503_while_the_database_is_unusable_and_recover,
);

async fn healthz_reports_the_process_is_up(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

async fn readyz_reports_ready_when_the_database_answers(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
}

async fn readyz_fails_while_the_database_is_unreachable_and_recovers(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    let outage = Outage::begin(&app).await;
    let response = app.get("/readyz").await;
    assert!(response.headers().contains_key("retry-after"));
    let problem = assert_problem(response, 503, "service_unavailable").await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        !detail.contains("postgres") && !detail.contains("sqlite"),
        "{detail}"
    );

    outage.end(&app).await;
    let mut status = 0;
    for _ in 0..50 {
        status = app.get("/readyz").await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "readyz did not recover");
}

/// Asserts a 503 problem with `Retry-After`, answered within a bounded time.
async fn assert_unavailable(request: impl std::future::Future<Output = reqwest::Response>) {
    let started = Instant::now();
    let response = request.await;
    let took = started.elapsed();
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "service_unavailable").await;
    assert!(took < Duration::from_secs(15), "answered after {took:?}");
}

async fn database_backed_routes_answer_503_while_the_database_is_unusable_and_recover(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("steady").await;
    let me = || app.get_as("/api/v1/me", &user.access);
    assert_eq!(me().await.status(), 200);

    match backend {
        Backend::Postgres => {
            // Unreachable: every route that needs the database says so, including the bearer
            // check itself.
            let outage = Outage::begin(&app).await;
            // Past the time a live session is believed without asking the database.
            tokio::time::sleep(BELIEVED_FOR).await;
            assert_unavailable(me()).await;
            assert_unavailable(app.get_as("/api/v1/connections", &user.access)).await;
            assert_unavailable(app.login("steady", PASSWORD)).await;
            assert_unavailable(app.post_with_cookie("/api/v1/auth/refresh", &user.refresh)).await;
            outage.end(&app).await;
        }
        Backend::Sqlite => {
            // A lock another process holds past the busy timeout: writes cannot proceed.
            let holder = Database::connect(app.database_url.as_str()).await.unwrap();
            holder.execute_unprepared("BEGIN EXCLUSIVE").await.unwrap();
            assert_unavailable(app.register("blocked", PASSWORD)).await;
            assert_unavailable(app.login("steady", PASSWORD)).await;
            holder.execute_unprepared("ROLLBACK").await.unwrap();
        }
    }

    // Back without a restart.
    let mut status = 0;
    for _ in 0..100 {
        status = me().await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the service did not recover");
    assert_eq!(app.register("afterwards", PASSWORD).await.status(), 201);
}

/// Makes the application's database unusable, in the way that fits each backend.
enum Outage {
    /// Connections to the database are refused and existing ones are terminated.
    Postgres,
    /// The database file is moved away, as when its volume disappears.
    Sqlite,
}

fn sqlite_files(app: &TestApp) -> Vec<(PathBuf, PathBuf)> {
    ["test.db", "test.db-wal", "test.db-shm"]
        .iter()
        .map(|name| {
            let path = app.dir.path().join(name);
            let parked = app.dir.path().join(format!("{name}.parked"));
            (path, parked)
        })
        .collect()
}

impl Outage {
    async fn begin(app: &TestApp) -> Self {
        match app.backend {
            Backend::Postgres => {
                let pg = app.postgres.as_ref().unwrap();
                pg.admin_execute(&format!(
                    "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS false",
                    pg.name
                ))
                .await;
                pg.admin_execute(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                    pg.name
                ))
                .await;
                Outage::Postgres
            }
            Backend::Sqlite => {
                for (path, parked) in sqlite_files(app) {
                    if path.exists() {
                        std::fs::rename(path, parked).unwrap();
                    }
                }
                Outage::Sqlite
            }
        }
    }

    async fn end(self, app: &TestApp) {
        match self {
            Outage::Postgres => {
                let pg = app.postgres.as_ref().unwrap();
                pg.admin_execute(&format!(
                    "ALTER DATABASE \"{}\" WITH ALLOW_CONNECTIONS true",
                    pg.name
                ))
                .await;
            }
            Outage::Sqlite => {
                for (path, parked) in sqlite_files(app) {
                    if parked.exists() {
                        std::fs::rename(parked, path).unwrap();
                    }
                }
            }
        }
    }
}
