//! How many sessions an account may hold: a login beyond the limit ends the oldest.

use futures_util::future::join_all;
use notion_connect::{auth::hash_token, entity::session_family, store::sessions};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::helpers::{
    Backend, PASSWORD, TestApp, Tokens, assert_problem, on_both_databases, spawn_app,
};

on_both_databases!(
    a_login_beyond_a_hundred_sessions_ends_the_oldest,
    parallel_logins_never_leave_more_than_a_hundred_sessions,
);

const LIMIT: usize = 100;

async fn live_families(app: &TestApp) -> u64 {
    session_family::Entity::find()
        .filter(session_family::Column::RevokedAt.is_null())
        .count(&app.db)
        .await
        .unwrap()
}

async fn log_in(app: &TestApp, username: &str) -> Tokens {
    let response = app.login(username, PASSWORD).await;
    assert_eq!(response.status(), 200);
    Tokens::from_response(response).await
}

async fn a_login_beyond_a_hundred_sessions_ends_the_oldest(backend: Backend) {
    let app = spawn_app(backend).await;
    let oldest = app.signed_in("collector").await;
    let second = log_in(&app, "collector").await;
    for _ in 2..LIMIT {
        log_in(&app, "collector").await;
    }
    assert_eq!(live_families(&app).await, LIMIT as u64);
    assert_eq!(app.get_as("/api/v1/me", &oldest.access).await.status(), 200);

    let newest = log_in(&app, "collector").await;

    assert_eq!(live_families(&app).await, LIMIT as u64);
    // The oldest session is over at once: its access token and its refresh token.
    assert_problem(
        app.get_as("/api/v1/me", &oldest.access).await,
        401,
        "unauthorized",
    )
    .await;
    let refreshed = app
        .post_with_cookie("/api/v1/auth/refresh", &oldest.refresh)
        .await;
    assert_problem(refreshed, 401, "invalid_refresh_token").await;
    // The others, the next oldest included, carry on.
    for tokens in [&second, &newest] {
        assert_eq!(app.get_as("/api/v1/me", &tokens.access).await.status(), 200);
    }
    let refreshed = app
        .post_with_cookie("/api/v1/auth/refresh", &second.refresh)
        .await;
    assert_eq!(refreshed.status(), 200);
}

async fn parallel_logins_never_leave_more_than_a_hundred_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    app.signed_in("crowd").await;
    // Thirty browsers that logged in before: each has its own allowance (its device cookie),
    // so their next logins all go through, at the same moment.
    let mut devices = Vec::new();
    for n in 1..LIMIT - 10 {
        let response = app.login("crowd", PASSWORD).await;
        assert_eq!(response.status(), 200);
        if n >= LIMIT - 40 {
            devices.push(device_cookie(&response));
        }
    }
    let logins = devices.iter().map(|device| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("cookie", format!("nc_device={device}"))
            .json(&serde_json::json!({ "username": "crowd", "password": PASSWORD }))
            .send()
    });
    for response in join_all(logins).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(live_families(&app).await, LIMIT as u64);

    // Logins hash passwords a few at a time, which spaces them out; sessions started in the
    // very same instant must take turns too.
    let me: serde_json::Value = app
        .get_as("/api/v1/me", &log_in(&app, "crowd").await.access)
        .await
        .json()
        .await
        .unwrap();
    let user_id: uuid::Uuid = me["id"].as_str().unwrap().parse().unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let started = (0..40).map(|n| {
        sessions::start_family(
            &app.db,
            user_id,
            hash_token(&format!("at-once-{n}")),
            expires,
        )
    });
    for result in join_all(started).await {
        result.unwrap();
    }
    assert_eq!(live_families(&app).await, LIMIT as u64);
}

fn device_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("nc_device="))
        .and_then(|v| v.split(';').next())
        .expect("a device cookie")
        .to_owned()
}
