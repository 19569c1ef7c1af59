//! Every query a request runs can use an index. On PostgreSQL, with sequential scans turned off
//! for the test's database, the planner scans a whole table only when no index can serve the
//! query; the server's statistics then show whether any request did.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

use crate::helpers::{
    Backend, TestApp, Tokens, assert_problem, postgres_admin_url, postgres_available,
    spawn_app_with,
};

/// Read whole, but not by requests: the migrations by the migrator at start-up, the instances'
/// leases (a row per instance) by every renewal, and the rate budgets' rows once when an instance
/// becomes alone and takes the turns ahead over (requests reach those rows by their key).
const NOT_PER_REQUEST: &[&str] = &[
    "seaql_migrations",
    "notion_instances",
    "notion_rate_budgets",
];

fn database_name(app: &TestApp) -> String {
    app.database_url
        .rsplit_once('/')
        .map(|(_, name)| name.split('?').next().unwrap_or(name).to_owned())
        .expect("a database name")
}

/// Waits until no session is connected to the database `name`: a server process reports its
/// statistics when it exits.
async fn wait_until_disconnected(admin: &DatabaseConnection, name: &str) {
    for _ in 0..200 {
        let row = admin
            .query_one_raw(Statement::from_string(
                admin.get_database_backend(),
                format!("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{name}'"),
            ))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<i64>("", "n").unwrap() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("sessions to {name} are still open");
}

/// Sequential and index scans of each table of the database, as the server counted them so far.
async fn scans(url: &str) -> BTreeMap<String, (i64, i64)> {
    let db = Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT relname, seq_scan, coalesce(idx_scan, 0) AS idx_scan FROM pg_stat_user_tables"
                .to_owned(),
        ))
        .await
        .unwrap();
    db.close().await.unwrap();
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "relname").unwrap(),
                (
                    row.try_get::<i64>("", "seq_scan").unwrap(),
                    row.try_get::<i64>("", "idx_scan").unwrap(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_scans_a_whole_table() {
    if !postgres_available() {
        return;
    }
    // One instance sets the scene: the account, and other people's rows. (The sandbox keeps
    // its tokens in memory, so the account's workspaces are connected on the next instance.)
    let setup = spawn_app_with(Backend::Postgres, |_| {}).await;
    setup.signed_in("planner").await;
    let other = setup.signed_in("bystander").await;
    setup.connect_sandbox_workspace(&other.access, 2).await;
    let name = database_name(&setup);
    let admin = Database::connect(postgres_admin_url()).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{name}\" SET enable_seqscan = off"
        ))
        .await
        .unwrap();
    setup.db.close_by_ref().await.unwrap();
    wait_until_disconnected(&admin, &name).await;
    let before = scans(&setup.database_url).await;
    wait_until_disconnected(&admin, &name).await;

    // Another instance, whose every connection plans without sequential scans, serves a tour
    // of the API.
    let url = setup.database_url.clone();
    let app = spawn_app_with(Backend::Postgres, |vars| {
        vars.insert("DATABASE_URL".into(), url);
    })
    .await;
    let login = app.login("planner", crate::helpers::PASSWORD).await;
    assert_eq!(login.status(), 200);
    let tokens = Tokens::from_response(login).await;
    let access = tokens.access.as_str();
    let first = app.connect_sandbox_workspace(access, 0).await;
    app.connect_sandbox_workspace(access, 1).await;
    for path in [
        "/api/v1/me".to_owned(),
        "/api/v1/connections".to_owned(),
        format!("/api/v1/connections/{first}"),
        format!("/api/v1/connections/{first}/search?query=a"),
        "/api/v1/search?query=a".to_owned(),
        format!("/api/v1/search?connection_id={first}"),
    ] {
        let response = app.get_as(&path, access).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_problem(
        app.get_as(
            "/api/v1/connections/00000000-0000-7000-8000-000000000000",
            access,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let refreshed = app
        .post_with_cookie("/api/v1/auth/refresh", &tokens.refresh)
        .await;
    assert_eq!(refreshed.status(), 200);
    let tokens = Tokens::from_response(refreshed).await;
    let access = tokens.access.as_str();
    app.connect_sandbox_workspace(access, 0).await;
    let deleted = app
        .delete_as(&format!("/api/v1/connections/{first}"), access)
        .await;
    assert_eq!(deleted.status(), 204);
    let logout = app
        .post_with_cookie("/api/v1/auth/logout", &tokens.refresh)
        .await;
    assert_eq!(logout.status(), 204);
    assert_eq!(app.get_as("/api/v1/me", access).await.status(), 401);

    app.db.close_by_ref().await.unwrap();
    wait_until_disconnected(&admin, &name).await;
    let after = scans(&app.database_url).await;
    let scanned: Vec<_> = after
        .iter()
        .filter(|(table, _)| !NOT_PER_REQUEST.contains(&table.as_str()))
        .filter(|(table, (seq, _))| *seq > before.get(*table).map_or(0, |(seq, _)| *seq))
        .collect();
    assert!(
        scanned.is_empty(),
        "requests scanned whole tables: {scanned:?}"
    );
    // The statistics were read at all: the tour went through the indexes of the main tables.
    for table in [
        "users",
        "sessions",
        "session_families",
        "notion_connections",
    ] {
        assert!(
            after[table].1 > before[table].1,
            "{table} was not read by index: {before:?} then {after:?}"
        );
    }
}
