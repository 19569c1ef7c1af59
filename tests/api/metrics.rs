//! `GET /metrics` on its own listener: the series an operator relies on, after real traffic.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::{
    helpers::{Backend, TestApp, on_both_databases, spawn_app, spawn_app_with},
    mock_notion::{MockNotion, TokenReply},
    transport::closed_by_server,
};

on_both_databases!(
    metrics_show_requests_notion_calls_oauth_refreshes_and_logins,
    metrics_are_not_served_unless_configured,
    the_metrics_listener_caps_connections_and_closes_stalled_ones,
);

/// The value of the sample `name` whose labels include every pair of `labels`.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (series_name == name).then_some((series_labels, value))
        })
        .find(|(series_labels, _)| {
            labels
                .iter()
                .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

pub(crate) async fn scrape(app: &TestApp) -> String {
    let address = app
        .metrics_address
        .as_ref()
        .expect("metrics are configured");
    let response = reqwest::get(format!("{address}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "Prometheus' text format"
    );
    response.text().await.unwrap()
}

async fn metrics_show_requests_notion_calls_oauth_refreshes_and_logins(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-m".into(),
        access_token: "access-1".into(),
    })
    .await;
    let app = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
        vars.insert("NOTION_RATE_LIMIT".into(), "1000".into());
    })
    .await;
    let user = app.signed_in("metered").await;
    assert_eq!(app.login("metered", "not the password").await.status(), 401);
    // Past the free failures, the next attempt must wait.
    for _ in 0..5 {
        assert_eq!(app.login("unlucky", "not the password").await.status(), 401);
    }
    assert_eq!(app.login("unlucky", "not the password").await.status(), 429);
    let id = app.connect_with_code(&user.access).await;
    let searched = app
        .get_as(&format!("/api/v1/connections/{id}/search"), &user.access)
        .await;
    assert_eq!(searched.status(), 200);
    notion.expire_access_token();
    let refreshed = app
        .get_as(&format!("/api/v1/connections/{id}/search"), &user.access)
        .await;
    assert_eq!(refreshed.status(), 200);
    assert_eq!(app.get("/api/v1/no-such-thing/12345").await.status(), 404);

    let text = scrape(&app).await;
    let requests = "notion_connect_http_requests_total";
    let search_route = "/api/v1/connections/{id}/search";
    assert_eq!(
        sample(
            &text,
            requests,
            &[
                ("route", search_route),
                ("status", "200"),
                ("method", "GET")
            ]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            requests,
            &[("route", "/api/v1/auth/login"), ("status", "401")]
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(
            &text,
            requests,
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(
        !text.contains(&id) && !text.contains("no-such-thing"),
        "raw paths never become labels"
    );
    assert_eq!(
        sample(
            &text,
            "notion_connect_http_request_duration_seconds_count",
            &[("route", search_route)]
        ),
        Some(2.0)
    );

    let notion_calls = "notion_connect_notion_requests_total";
    // The first search, the rejected attempt with the expired token, and the retry.
    assert_eq!(
        sample(
            &text,
            notion_calls,
            &[("endpoint", "search"), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            notion_calls,
            &[("endpoint", "search"), ("outcome", "unauthorized")]
        ),
        Some(1.0)
    );
    // The code exchange and the refresh.
    assert_eq!(
        sample(
            &text,
            notion_calls,
            &[("endpoint", "oauth_token"), ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "notion_connect_notion_request_duration_seconds_count",
            &[("endpoint", "search")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "notion_connect_notion_rate_limit_wait_seconds_count",
            &[]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "notion_connect_notion_slot_wait_seconds_count", &[]),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "notion_connect_oauth_callbacks_total",
            &[("outcome", "connected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "notion_connect_token_refreshes_total",
            &[("outcome", "refreshed")]
        ),
        Some(1.0)
    );
    let logins = "notion_connect_logins_total";
    assert_eq!(sample(&text, logins, &[("outcome", "success")]), Some(1.0));
    assert_eq!(sample(&text, logins, &[("outcome", "invalid")]), Some(6.0));
    assert_eq!(
        sample(&text, logins, &[("outcome", "throttled")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "notion_connect_notion_connections",
            &[("key_id", "test1"), ("status", "active")]
        ),
        Some(1.0),
        "{text}"
    );

    // The count is at most fifteen seconds old: a scrape right after a change shows the last
    // one instead of counting the whole table again (a unit test of `metrics` shows the rest).
    let deleted = app
        .delete_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await;
    assert_eq!(deleted.status(), 204);
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "notion_connect_notion_connections",
            &[("status", "active")]
        ),
        Some(1.0)
    );
}

async fn metrics_are_not_served_unless_configured(backend: Backend) {
    let app = spawn_app(backend).await;
    assert!(app.metrics_address.is_none());
    assert_eq!(app.get("/metrics").await.status(), 404);

    // Configured, they are still only on their own listener.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    scrape(&app).await;
    let address = app.metrics_address.as_ref().unwrap();
    let client = reqwest::Client::new();
    let posted = client
        .post(format!("{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 405);
    assert_eq!(posted.headers()["allow"], "GET, HEAD");
    let elsewhere = client
        .get(format!("{address}/api/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404, "only /metrics is served there");
}

async fn the_metrics_listener_caps_connections_and_closes_stalled_ones(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
        vars.insert("HEADER_READ_TIMEOUT".into(), "2s".into());
        vars.insert("KEEP_ALIVE_TIMEOUT".into(), "2s".into());
    })
    .await;
    let address = app.metrics_address.clone().unwrap();
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    let mut stalled = Vec::new();
    for n in 0..20 {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        if n % 2 == 0 {
            socket
                .write_all(b"GET /metrics HTTP/1.1\r\nX: ")
                .await
                .unwrap();
        }
        stalled.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every slot is taken: a scrape waits for one to free.
    let scrape = tokio::spawn({
        let url = format!("{address}/metrics");
        async move { reqwest::get(url).await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!scrape.is_finished(), "the stalled sockets hold every slot");

    for socket in &mut stalled {
        assert!(closed_by_server(socket, Duration::from_secs(15)).await);
    }
    let status = tokio::time::timeout(Duration::from_secs(15), scrape)
        .await
        .expect("served once slots free")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}
