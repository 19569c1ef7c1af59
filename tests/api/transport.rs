//! Clients that hold connections without using them, send bodies too slowly or make requests
//! that never finish: they are cut off, and everyone else is served.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{
    Backend, PASSWORD, TestApp, assert_problem, on_both_databases, spawn_app_with,
};

on_both_databases!(
    stalled_idle_and_dribbling_connections_are_closed_and_others_served,
    the_connection_cap_queues_new_connections_until_a_slot_frees,
    a_body_that_stops_arriving_gets_408,
    a_request_past_its_deadline_gets_503,
    ipv4_clients_of_a_dual_stack_listener_are_told_apart,
    cleartext_http2_is_refused_at_once_and_holds_no_slot,
    a_statement_stuck_behind_a_lock_gives_up_long_before_the_request_deadline,
);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect")
}

/// Whether the server has closed the connection (end of stream or reset) before `within`.
pub(crate) async fn closed_by_server(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An error page before closing is fine; keep reading until the end.
            Ok(Ok(_)) => continue,
        }
    }
}

fn short_deadlines(vars: &mut std::collections::HashMap<String, String>) {
    vars.insert("HEADER_READ_TIMEOUT".into(), "1s".into());
    vars.insert("KEEP_ALIVE_TIMEOUT".into(), "2s".into());
}

async fn stalled_idle_and_dribbling_connections_are_closed_and_others_served(backend: Backend) {
    let app = spawn_app_with(backend, short_deadlines).await;

    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut socket = connect(&app).await;
        socket.write_all(b"GET / HTTP/1.1\r\nX: ").await.unwrap();
        stalled.push(socket);
    }
    let mut idle = connect(&app).await;
    let mut dribbler = connect(&app).await;
    let dribbling = tokio::spawn(async move {
        dribbler.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        // A header that never ends, one byte every 100 ms.
        for _ in 0..80 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if dribbler.write_all(b"x").await.is_err() {
                return true;
            }
        }
        closed_by_server(&mut dribbler, Duration::from_millis(100)).await
    });

    // Everyone else is served meanwhile (on fresh connections: a pooled one may be closed for
    // idling by the time it is reused, which is the point of this test).
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let healthz = || fresh.get(app.url("/healthz")).send();
    assert_eq!(healthz().await.unwrap().status(), 200);

    for socket in &mut stalled {
        assert!(
            closed_by_server(socket, Duration::from_secs(10)).await,
            "a stalled head"
        );
    }
    assert!(
        closed_by_server(&mut idle, Duration::from_secs(10)).await,
        "an idle connection"
    );
    assert!(dribbling.await.unwrap(), "a dribbled head is cut off");
    assert_eq!(healthz().await.unwrap().status(), 200);

    // A kept-alive connection that is used in time keeps working.
    let mut kept = connect(&app).await;
    for _ in 0..3 {
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 512];
        let n = kept.read(&mut buffer).await.unwrap();
        assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn the_connection_cap_queues_new_connections_until_a_slot_frees(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        short_deadlines(vars);
        vars.insert("MAX_CONNECTIONS".into(), "3".into());
    })
    .await;
    let mut hogs = Vec::new();
    for _ in 0..3 {
        let mut socket = connect(&app).await;
        socket.write_all(b"GET / HTTP/1.1\r\nX: ").await.unwrap();
        hogs.push(socket);
    }
    // Give the server a moment to take all three.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let request = tokio::spawn({
        let url = app.url("/healthz");
        let client = app.client.clone();
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!request.is_finished(), "no slot is free yet");

    // The hogs are cut off after their head deadline, and the queued request is served.
    let status = tokio::time::timeout(Duration::from_secs(15), request)
        .await
        .expect("served once a slot frees")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

async fn a_body_that_stops_arriving_gets_408(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("BODY_READ_TIMEOUT".into(), "1s".into());
    })
    .await;
    let mut socket = connect(&app).await;
    socket
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 1024];
        while let Ok(n) = socket.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
            if response.windows(4).any(|w| w == b"\r\n\r\n") && response.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains("\"code\":\"request_timeout\""),
        "{response}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // Nothing was evaluated: an honest login still works.
    assert_eq!(app.register("patient", PASSWORD).await.status(), 201);
}

/// A connection of its own that holds the users table until it rolls back.
async fn hold_the_users_table(app: &TestApp) -> sea_orm::DatabaseConnection {
    let holder = Database::connect(app.database_url.as_str()).await.unwrap();
    let lock = match app.backend {
        Backend::Sqlite => "BEGIN EXCLUSIVE",
        Backend::Postgres => "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE",
    };
    holder.execute_unprepared(lock).await.unwrap();
    holder
}

async fn a_request_past_its_deadline_gets_503(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("REQUEST_TIMEOUT".into(), "2s".into());
        vars.insert("NOTION_TIMEOUT".into(), "1s".into());
        vars.insert("PASSWORD_HASH_WAIT".into(), "1s".into());
        // PostgreSQL's own limit would answer first (see the next test).
        vars.insert("DATABASE_STATEMENT_TIMEOUT".into(), "0s".into());
    })
    .await;
    // Another connection holds the users table, so creating an account has to wait.
    let holder = hold_the_users_table(&app).await;

    let started = Instant::now();
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({ "username": "stuck", "password": PASSWORD }),
        )
        .await;
    let took = started.elapsed();
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 503, "service_unavailable").await;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );

    holder.execute_unprepared("ROLLBACK").await.unwrap();
    assert_eq!(app.register("unstuck", PASSWORD).await.status(), 201);
}

async fn ipv4_clients_of_a_dual_stack_listener_are_told_apart(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("BIND_ADDR".into(), "[::]:0".into());
        vars.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
        vars.insert("AUTH_RATE_LIMIT".into(), "2".into());
    })
    .await;
    let login = |forwarded_for: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({ "username": "nobody", "password": "wrong password" }))
            .send()
    };
    // The proxy (127.0.0.1, arriving as ::ffff:127.0.0.1) is recognised, so each forwarded
    // client has its own allowance.
    for _ in 0..2 {
        assert_eq!(login("203.0.113.1").await.unwrap().status(), 401);
    }
    assert_eq!(login("203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(login("203.0.113.2").await.unwrap().status(), 401);
}

async fn cleartext_http2_is_refused_at_once_and_holds_no_slot(backend: Backend) {
    // Deadlines far beyond the test: only the refusal can free the slots in time.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("MAX_CONNECTIONS".into(), "4".into());
        vars.insert("HEADER_READ_TIMEOUT".into(), "60s".into());
        vars.insert("KEEP_ALIVE_TIMEOUT".into(), "60s".into());
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        let mut socket = connect(&app).await;
        // The whole client preface and an empty SETTINGS frame, then silence.
        socket
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        clients.push(socket);
    }
    for socket in &mut clients {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection at once")
            .ok();
        // SETTINGS, then GOAWAY (type 7) for no stream with HTTP_1_1_REQUIRED (0xd).
        assert_eq!(
            answer,
            [
                0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xd
            ],
            "{answer:?}"
        );
    }
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let healthz = fresh.get(app.url("/healthz")).send();
    let status = tokio::time::timeout(Duration::from_secs(5), healthz)
        .await
        .expect("a slot is free")
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

async fn a_statement_stuck_behind_a_lock_gives_up_long_before_the_request_deadline(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("REQUEST_TIMEOUT".into(), "30s".into());
        vars.insert("DATABASE_STATEMENT_TIMEOUT".into(), "1s".into());
    })
    .await;
    if backend == Backend::Postgres {
        let shown = app
            .db
            .query_one_raw(sea_orm::Statement::from_string(
                app.db.get_database_backend(),
                "SHOW statement_timeout",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(shown.try_get_by_index::<String>(0).unwrap(), "1s");
    }
    let holder = hold_the_users_table(&app).await;

    // PostgreSQL cancels the statement after DATABASE_STATEMENT_TIMEOUT; SQLite waits out its
    // busy timeout (5 s). Either way the answer says the database is busy, long before the
    // request deadline.
    let started = Instant::now();
    let response = app
        .post_json(
            "/api/v1/auth/register",
            &json!({ "username": "waiting", "password": PASSWORD }),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(response.headers()["retry-after"], "5");
    assert_problem(response, 503, "service_unavailable").await;
    assert!(took < Duration::from_secs(15), "{took:?}");

    holder.execute_unprepared("ROLLBACK").await.unwrap();
    assert_eq!(app.register("waited", PASSWORD).await.status(), 201);
}
