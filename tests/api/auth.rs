use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use notion_connect::{
    auth::liveness::BELIEVED_FOR,
    entity::{session_family, user},
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, Tokens, assert_problem, on_both_databases, refresh_cookie, spawn_app,
    spawn_app_with,
};

on_both_databases!(
    a_whole_session_from_registration_to_logout,
    forged_and_stale_access_tokens_are_refused,
    reusing_a_rotated_refresh_token_ends_the_session,
    a_logout_ends_access_here_at_once_and_elsewhere_within_a_second,
    concurrent_registrations_of_one_name_create_one_account,
    usernames_are_unique_regardless_of_case,
    unknown_users_and_wrong_passwords_look_the_same,
    the_account_throttle_engages_and_releases,
    the_ip_limit_applies_and_ignores_spoofed_forwarding,
    a_trusted_proxy_forwards_the_client_address,
    bad_passwords_are_refused_quickly_and_store_nothing,
    registration_can_be_disabled,
    a_login_flood_gets_503_instead_of_queueing_forever,
    refresh_and_logout_refuse_foreign_origins,
    weak_stored_hashes_are_upgraded_on_login,
    logout_with_only_a_bearer_token_ends_the_session,
    admin_listing_pages_through_every_user_once,
    two_different_refresh_cookies_are_refused_and_logout_ends_both,
    https_deployments_use_secure_prefixed_cookies,
    a_logout_or_reuse_racing_a_refresh_leaves_no_token_of_the_family_alive,
    a_session_keeps_few_tokens_detects_recent_reuse_and_refreshes_at_a_bounded_rate,
    forty_guesses_at_once_from_forty_addresses_evaluate_at_most_five,
    the_owner_with_a_device_cookie_is_not_locked_out_by_strangers,
    strangers_guessing_cannot_stop_the_owner_from_deleting_the_account,
);

async fn a_whole_session_from_registration_to_logout(backend: Backend) {
    let app = spawn_app(backend).await;

    let registered = app.register("Alice", PASSWORD).await;
    assert_eq!(registered.status(), 201);
    let user: Value = registered.json().await.unwrap();
    assert_eq!(user["username"], "Alice");
    assert_eq!(user["is_admin"], false);
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/auth"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain-http development has no Secure cookies"
    );
    let first = Tokens::from_response(login).await;
    assert_eq!(first.body["token_type"], "Bearer");
    assert_eq!(first.body["expires_in"], 900);
    assert_eq!(first.body["user"]["username"], "Alice");

    let me = app.get_as("/api/v1/me", &first.access).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<Value>().await.unwrap()["id"], user["id"]);

    let refreshed = app
        .post_with_cookie("/api/v1/auth/refresh", &first.refresh)
        .await;
    assert_eq!(refreshed.status(), 200);
    let second = Tokens::from_response(refreshed).await;
    assert_ne!(second.refresh, first.refresh, "the refresh token rotates");
    assert_eq!(app.get_as("/api/v1/me", &second.access).await.status(), 200);

    let logout = app
        .post_with_cookie("/api/v1/auth/logout", &second.refresh)
        .await;
    assert_eq!(logout.status(), 204);
    assert!(refresh_cookie(&logout).is_none(), "the cookie is cleared");

    for access in [&first.access, &second.access] {
        assert_problem(app.get_as("/api/v1/me", access).await, 401, "unauthorized").await;
    }
    let again = app
        .post_with_cookie("/api/v1/auth/refresh", &second.refresh)
        .await;
    assert_problem(again, 401, "invalid_refresh_token").await;
    let no_token = app.get("/api/v1/me").await;
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");
    assert_problem(no_token, 401, "unauthorized").await;
}

/// Signs `header.claims` with HMAC (SHA-256 or SHA-512), as an attacker with a key would.
fn sign(header: &Value, claims: &Value, key: &[u8], sha512: bool) -> String {
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let message = format!("{}.{}", encode(header), encode(claims));
    let signature = if sha512 {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().to_vec()
    } else {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn payload_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn forged_and_stale_access_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in("mallory").await;
    let key = base64::engine::general_purpose::STANDARD
        .decode(crate::helpers::TEST_JWT_SECRET)
        .unwrap();
    let valid = payload_of(&tokens.access);
    let header = json!({ "alg": "HS256", "typ": "at+jwt" });
    let now = valid["iat"].as_i64().unwrap();

    // The test's own signing must produce accepted tokens, or the cases below prove nothing.
    let control = sign(&header, &valid, &key, false);
    assert_eq!(app.get_as("/api/v1/me", &control).await.status(), 200);

    let with = |field: &str, value: Value| {
        let mut claims = valid.clone();
        claims[field] = value;
        claims
    };
    let without = |field: &str| {
        let mut claims = valid.clone();
        claims.as_object_mut().unwrap().remove(field);
        claims
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        tokens.access.split('.').nth(1).unwrap()
    );
    let mut tampered = tokens.access.clone();
    let middle = tampered.split('.').nth(1).unwrap().to_owned();
    let forged_middle = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with("sub", json!(uuid::Uuid::now_v7()))).unwrap());
    tampered = tampered.replace(&middle, &forged_middle);

    let cases: Vec<(&str, String)> = vec![
        ("alg none", unsigned),
        (
            "HS512",
            sign(
                &json!({"alg": "HS512", "typ": "at+jwt"}),
                &valid,
                &key,
                true,
            ),
        ),
        (
            "RS256 header",
            sign(
                &json!({"alg": "RS256", "typ": "at+jwt"}),
                &valid,
                &key,
                false,
            ),
        ),
        (
            "another key",
            sign(
                &header,
                &valid,
                b"another-secret-that-is-32-bytes-long!!",
                false,
            ),
        ),
        ("tampered payload", tampered),
        (
            "expired",
            sign(&header, &with("exp", json!(now - 120)), &key, false),
        ),
        (
            "future nbf",
            sign(&header, &with("nbf", json!(now + 3600)), &key, false),
        ),
        (
            "wrong iss",
            sign(
                &header,
                &with("iss", json!("https://evil.example")),
                &key,
                false,
            ),
        ),
        (
            "wrong aud",
            sign(&header, &with("aud", json!("someone-else")), &key, false),
        ),
        ("missing aud", sign(&header, &without("aud"), &key, false)),
        ("missing sub", sign(&header, &without("sub"), &key, false)),
        ("missing sid", sign(&header, &without("sid"), &key, false)),
        (
            "wrong typ",
            sign(&json!({"alg": "HS256", "typ": "JWT"}), &valid, &key, false),
        ),
        (
            "no typ",
            sign(&json!({"alg": "HS256"}), &valid, &key, false),
        ),
        (
            "unknown session",
            sign(
                &header,
                &with("sid", json!(uuid::Uuid::now_v7())),
                &key,
                false,
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (case, token) in cases {
        let response = app.get_as("/api/v1/me", &token).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_problem(response, 401, "unauthorized").await;
    }

    // A token of a logged-out session.
    let logout = app
        .post_with_cookie("/api/v1/auth/logout", &tokens.refresh)
        .await;
    assert_eq!(logout.status(), 204);
    assert_eq!(app.get_as("/api/v1/me", &tokens.access).await.status(), 401);

    // A token of a user deleted behind this instance's back, as another instance would: the
    // instance believes its last look at the session for no longer than `BELIEVED_FOR`.
    let victim = app.signed_in("victim").await;
    assert_eq!(app.get_as("/api/v1/me", &victim.access).await.status(), 200);
    user::Entity::delete_many()
        .filter(user::Column::UsernameKey.eq("victim"))
        .exec(&app.db)
        .await
        .unwrap();
    tokio::time::sleep(BELIEVED_FOR).await;
    assert_eq!(app.get_as("/api/v1/me", &victim.access).await.status(), 401);
}

async fn a_logout_ends_access_here_at_once_and_elsewhere_within_a_second(backend: Backend) {
    let here = spawn_app(backend).await;
    let database_url = here.database_url.clone();
    let elsewhere = spawn_app_with(backend, |vars| {
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    let tokens = here.signed_in("roaming").await;
    // Both instances have just seen the session live.
    for app in [&here, &elsewhere] {
        assert_eq!(app.get_as("/api/v1/me", &tokens.access).await.status(), 200);
    }

    let logout = here
        .post_with_cookie("/api/v1/auth/logout", &tokens.refresh)
        .await;
    assert_eq!(logout.status(), 204);

    assert_problem(
        here.get_as("/api/v1/me", &tokens.access).await,
        401,
        "unauthorized",
    )
    .await;
    tokio::time::sleep(BELIEVED_FOR).await;
    assert_problem(
        elsewhere.get_as("/api/v1/me", &tokens.access).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn reusing_a_rotated_refresh_token_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.signed_in("bob").await;
    let second = Tokens::from_response(
        app.post_with_cookie("/api/v1/auth/refresh", &first.refresh)
            .await,
    )
    .await;
    assert_eq!(app.get_as("/api/v1/me", &second.access).await.status(), 200);

    let replayed = app
        .post_with_cookie("/api/v1/auth/refresh", &first.refresh)
        .await;
    assert_problem(replayed, 401, "invalid_refresh_token").await;

    let newest = app
        .post_with_cookie("/api/v1/auth/refresh", &second.refresh)
        .await;
    assert_problem(newest, 401, "invalid_refresh_token").await;
    assert_eq!(app.get_as("/api/v1/me", &second.access).await.status(), 401);

    // Another login of the same user is a separate family and is unaffected.
    let other = Tokens::from_response(app.login("bob", PASSWORD).await).await;
    assert_eq!(app.get_as("/api/v1/me", &other.access).await.status(), 200);
}

async fn concurrent_registrations_of_one_name_create_one_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let attempts = (0..50).map(|i| {
        let name = if i % 2 == 0 { "Carol" } else { "carol" };
        app.register(name, PASSWORD)
    });
    let responses = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(user::Entity::find().count(&app.db).await.unwrap(), 1);
}

async fn usernames_are_unique_regardless_of_case(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.register("Dave", PASSWORD).await.status(), 201);
    assert_problem(app.register("dAVE", PASSWORD).await, 409, "username_taken").await;
    for bad in [
        "ab",
        "with space",
        "-dash-first",
        "ünïcode",
        &"x".repeat(33),
    ] {
        assert_problem(app.register(bad, PASSWORD).await, 422, "invalid_username").await;
    }
}

async fn unknown_users_and_wrong_passwords_look_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.register("erin", PASSWORD).await.status(), 201);

    let wrong = app.login("erin", "not the right password").await;
    let unknown = app.login("nobody-here", "not the right password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let wrong = wrong.bytes().await.unwrap();
    let unknown = unknown.bytes().await.unwrap();
    assert_eq!(wrong, unknown, "byte-identical bodies");
    let problem: Value = serde_json::from_slice(&wrong).unwrap();
    assert_eq!(problem["code"], "invalid_credentials");
}

async fn the_account_throttle_engages_and_releases(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.register("frank", PASSWORD).await.status(), 201);

    for _ in 0..5 {
        assert_eq!(app.login("frank", "wrong password!").await.status(), 401);
    }
    // Even the right password waits now.
    let throttled = app.login("frank", PASSWORD).await;
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_problem(throttled, 429, "too_many_attempts").await;
    // Unknown names are throttled the same way, so throttling reveals nothing either.
    for _ in 0..5 {
        app.login("ghost", "wrong password!").await;
    }
    assert_eq!(app.login("ghost", "wrong password!").await.status(), 429);

    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(200)).await;
    assert_eq!(app.login("frank", PASSWORD).await.status(), 200);
    // Success resets the count: one failure does not throttle.
    assert_eq!(app.login("frank", "wrong password!").await.status(), 401);
    assert_eq!(app.login("frank", PASSWORD).await.status(), 200);
}

async fn the_ip_limit_applies_and_ignores_spoofed_forwarding(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("AUTH_RATE_LIMIT".into(), "3".into());
    })
    .await;
    for i in 0..3 {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "username": format!("user{i}"), "password": "whatever123" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let spoofed = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.99")
        .json(&json!({ "username": "user9", "password": "whatever123" }))
        .send()
        .await
        .unwrap();
    let retry_after: u64 = spoofed.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_problem(spoofed, 429, "too_many_attempts").await;
    assert_problem(
        app.register("newcomer", PASSWORD).await,
        429,
        "too_many_attempts",
    )
    .await;
}

async fn a_trusted_proxy_forwards_the_client_address(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("AUTH_RATE_LIMIT".into(), "2".into());
        vars.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    let attempt = |client: &'static str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", client)
            .json(&json!({ "username": "someone", "password": "whatever123" }))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(attempt("203.0.113.7").await.unwrap().status(), 401);
    }
    assert_eq!(attempt("203.0.113.7").await.unwrap().status(), 429);
    assert_eq!(
        attempt("203.0.113.8").await.unwrap().status(),
        401,
        "another client"
    );
}

async fn bad_passwords_are_refused_quickly_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    for (password, code) in [
        ("short", "password_too_short"),
        ("password", "password_too_weak"),
        ("12345678", "password_too_weak"),
        ("gina2024", "password_too_weak"),
    ] {
        assert_problem(app.register("gina", password).await, 422, code).await;
    }
    let long = "x".repeat(1025);
    assert_problem(app.register("gina", &long).await, 422, "password_too_long").await;
    let refused = app
        .post_declaring_length("/api/v1/auth/register", 2 * 1024 * 1024)
        .await;
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert!(refused.contains("application/problem+json") && refused.contains("payload_too_large"));
    assert_eq!(user::Entity::find().count(&app.db).await.unwrap(), 0);

    assert_eq!(app.register("gina", PASSWORD).await.status(), 201);
    let stored = user::Entity::find().one(&app.db).await.unwrap().unwrap();
    assert!(
        stored
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        stored.password_hash
    );
}

async fn registration_can_be_disabled(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("ALLOW_REGISTRATION".into(), "false".into());
    })
    .await;
    assert_problem(
        app.register("henry", PASSWORD).await,
        403,
        "registration_disabled",
    )
    .await;
    assert_eq!(user::Entity::find().count(&app.db).await.unwrap(), 0);
}

async fn a_login_flood_gets_503_instead_of_queueing_forever(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("PASSWORD_HASH_CONCURRENCY".into(), "1".into());
        vars.insert("PASSWORD_HASH_WAIT".into(), "0s".into());
    })
    .await;
    let names: Vec<String> = (0..12).map(|i| format!("flood{i}")).collect();
    let flood = names.iter().map(|name| app.login(name, "some password"));
    let responses = futures_util::future::join_all(flood).await;
    let mut refused = 0;
    for response in responses {
        match response.status().as_u16() {
            401 => {}
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                assert_problem(response, 503, "service_unavailable").await;
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        refused > 0,
        "some logins must be refused rather than queued"
    );
    assert_eq!(app.get("/healthz").await.status(), 200);
}

async fn refresh_and_logout_refuse_foreign_origins(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in("ivan").await;
    for path in ["/api/v1/auth/refresh", "/api/v1/auth/logout"] {
        let response = app
            .client
            .post(app.url(path))
            .header("cookie", format!("nc_refresh={}", tokens.refresh))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_problem(response, 403, "origin_not_allowed").await;
    }
    // Nothing happened: the session still refreshes from the service's own origin.
    let same_origin = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .header("cookie", format!("nc_refresh={}", tokens.refresh))
        .header("origin", "http://localhost:8000")
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), 200);
}

async fn weak_stored_hashes_are_upgraded_on_login(backend: Backend) {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version, password_hash::SaltString};
    let app = spawn_app(backend).await;
    assert_eq!(app.register("judy", PASSWORD).await.status(), 201);
    let weak = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(4096, 1, 1, None).unwrap(),
    )
    .hash_password(
        PASSWORD.as_bytes(),
        &SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap(),
    )
    .unwrap()
    .to_string();
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, weak.clone().into())
        .exec(&app.db)
        .await
        .unwrap();

    assert_eq!(app.login("judy", PASSWORD).await.status(), 200);
    let stored = user::Entity::find().one(&app.db).await.unwrap().unwrap();
    assert_ne!(stored.password_hash, weak);
    assert!(
        stored
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    assert_eq!(app.login("judy", PASSWORD).await.status(), 200);
}

async fn logout_with_only_a_bearer_token_ends_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let tokens = app.signed_in("kate").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .bearer_auth(&tokens.access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(app.get_as("/api/v1/me", &tokens.access).await.status(), 401);
    let refresh = app
        .post_with_cookie("/api/v1/auth/refresh", &tokens.refresh)
        .await;
    assert_eq!(refresh.status(), 401);
    let live = session_family::Entity::find()
        .filter(session_family::Column::RevokedAt.is_null())
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(live, 0);
}

async fn admin_listing_pages_through_every_user_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = crate::cli::create_user_with_cli(&app, "root-admin", true);
    assert!(admin.status.success());
    let tokens = Tokens::from_response(app.login("root-admin", PASSWORD).await).await;
    let hash = user::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    for i in 0..249 {
        let name = notion_connect::auth::Username::parse(&format!("user{i:03}")).unwrap();
        notion_connect::auth::accounts::create_user(&app.db, &name, hash.clone(), false)
            .await
            .unwrap();
    }

    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/users?limit=40&cursor={c}"),
            None => "/api/v1/admin/users?limit=40".to_owned(),
        };
        let page: Value = app
            .get_as(&path, &tokens.access)
            .await
            .json()
            .await
            .unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "repeated {item}"
            );
            assert!(item.get("password_hash").is_none());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250);
    assert_eq!(pages, 7);

    let bad_cursor = app
        .get_as("/api/v1/admin/users?cursor=nope", &tokens.access)
        .await;
    assert_problem(bad_cursor, 422, "invalid_cursor").await;
    let bad_limit = app
        .get_as("/api/v1/admin/users?limit=0", &tokens.access)
        .await;
    assert_problem(bad_limit, 422, "invalid_parameter").await;

    let member = app.signed_in("ordinary").await;
    let forbidden = app.get_as("/api/v1/admin/users", &member.access).await;
    assert_problem(forbidden, 403, "forbidden").await;
    assert_problem(app.get("/api/v1/admin/users").await, 401, "unauthorized").await;
}

async fn two_different_refresh_cookies_are_refused_and_logout_ends_both(backend: Backend) {
    let app = spawn_app(backend).await;
    let victim = app.signed_in("victim").await;
    let planter = app.signed_in("planter").await;
    let both = format!(
        "nc_refresh={}; nc_refresh={}",
        planter.refresh, victim.refresh
    );
    let refresh = || {
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", both.clone())
            .send()
    };

    // Which session would the person at this browser mean? Neither is guessed.
    assert_problem(refresh().await.unwrap(), 401, "invalid_refresh_token").await;
    // Nothing was rotated: the victim's own cookie alone still works.
    let alone = app
        .post_with_cookie("/api/v1/auth/refresh", &victim.refresh)
        .await;
    assert_eq!(alone.status(), 200);
    let victim = Tokens::from_response(alone).await;

    // Logging out with both ends both sessions.
    let both = format!(
        "nc_refresh={}; nc_refresh={}",
        planter.refresh, victim.refresh
    );
    let logout = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", both)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    for tokens in [&planter, &victim] {
        assert_eq!(app.get_as("/api/v1/me", &tokens.access).await.status(), 401);
    }
}

async fn https_deployments_use_secure_prefixed_cookies(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("PUBLIC_URL".into(), "https://connect.example.com".into());
    })
    .await;
    assert_eq!(app.register("secured", PASSWORD).await.status(), 201);
    let login = app.login("secured", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.starts_with("__Secure-nc_refresh="),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    let token = set_cookie
        .strip_prefix("__Secure-nc_refresh=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let refresh_with = |cookie: String| {
        app.client
            .post(app.url("/api/v1/auth/refresh"))
            .header("cookie", cookie)
            .send()
    };
    // The unprefixed name, which any page could have planted, is not read.
    let plain = refresh_with(format!("nc_refresh={token}")).await.unwrap();
    assert_problem(plain, 401, "invalid_refresh_token").await;
    let prefixed = refresh_with(format!("__Secure-nc_refresh={token}"))
        .await
        .unwrap();
    assert_eq!(prefixed.status(), 200);
    assert!(
        prefixed.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("__Secure-nc_refresh=")
    );

    // The OAuth binding cookie too.
    let session: Value = prefixed.json().await.unwrap();
    let authorize = app
        .client
        .post(app.url("/api/v1/notion/oauth/authorize"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let binding = authorize.headers()["set-cookie"].to_str().unwrap();
    assert!(
        binding.starts_with("__Secure-nc_oauth_binding="),
        "{binding}"
    );
    assert!(binding.contains("; Secure"), "{binding}");
}

/// Whether a refresh response handed out tokens that still work.
async fn still_works(app: &crate::helpers::TestApp, response: reqwest::Response) -> bool {
    if response.status() != 200 {
        return false;
    }
    let tokens = Tokens::from_response(response).await;
    let me = app.get_as("/api/v1/me", &tokens.access).await.status();
    let refresh = app
        .post_with_cookie("/api/v1/auth/refresh", &tokens.refresh)
        .await
        .status();
    me == 200 || refresh == 200
}

async fn a_logout_or_reuse_racing_a_refresh_leaves_no_token_of_the_family_alive(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.register("racer", PASSWORD).await.status(), 201);
    for round in 0..15 {
        // A logout and a refresh of the same session at the same moment.
        let tokens = Tokens::from_response(app.login("racer", PASSWORD).await).await;
        let logout = app
            .client
            .post(app.url("/api/v1/auth/logout"))
            .bearer_auth(&tokens.access)
            .send();
        let refresh = app.post_with_cookie("/api/v1/auth/refresh", &tokens.refresh);
        let (logout, refreshed) = tokio::join!(logout, refresh);
        assert_eq!(logout.unwrap().status(), 204);
        assert!(
            !still_works(&app, refreshed).await,
            "round {round}: a token survived the logout"
        );

        // The same token used three times at once: one use rotates, the others are reuse,
        // which ends the family, the new token included.
        let tokens = Tokens::from_response(app.login("racer", PASSWORD).await).await;
        let (a, b, c) = tokio::join!(
            app.post_with_cookie("/api/v1/auth/refresh", &tokens.refresh),
            app.post_with_cookie("/api/v1/auth/refresh", &tokens.refresh),
            app.post_with_cookie("/api/v1/auth/refresh", &tokens.refresh),
        );
        for response in [a, b, c] {
            assert!(
                !still_works(&app, response).await,
                "round {round}: a token survived the reuse"
            );
        }
        assert_eq!(app.get_as("/api/v1/me", &tokens.access).await.status(), 401);
    }
}

async fn a_session_keeps_few_tokens_detects_recent_reuse_and_refreshes_at_a_bounded_rate(
    backend: Backend,
) {
    use sea_orm::{ColumnTrait, QueryFilter};

    let app = spawn_app(backend).await;
    let mut current = app.signed_in("marathon").await;
    let first_family: uuid::Uuid = {
        let claims = current.access.split('.').nth(1).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        claims["sid"].as_str().unwrap().parse().unwrap()
    };
    // Refresh as fast as possible: about thirty a minute are allowed (a little more, as the
    // allowance refills while this runs), then the answer is 429 with Retry-After.
    let mut history = vec![current.refresh.clone()];
    let limited = loop {
        let response = app
            .post_with_cookie("/api/v1/auth/refresh", &current.refresh)
            .await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
        current = Tokens::from_response(response).await;
        history.push(current.refresh.clone());
        assert!(history.len() <= 40, "never limited");
    };
    assert!(
        history.len() > 30,
        "only {} refreshes allowed",
        history.len() - 1
    );
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429, "too_many_attempts").await;
    // The family keeps its live token and a few recent ones, not all thirty.
    let rows = notion_connect::entity::session::Entity::find()
        .filter(notion_connect::entity::session::Column::FamilyId.eq(first_family))
        .count(&app.db)
        .await
        .unwrap();
    assert!(rows <= 10, "{rows} tokens kept");

    // The limit is this session's, not anyone else's.
    let other = app.signed_in("sprinter").await;
    let response = app
        .post_with_cookie("/api/v1/auth/refresh", &other.refresh)
        .await;
    assert_eq!(response.status(), 200);

    // A recently rotated token presented again still ends the session.
    let recent = &history[history.len() - 3];
    let reused = app.post_with_cookie("/api/v1/auth/refresh", recent).await;
    assert_problem(reused, 401, "invalid_refresh_token").await;
    assert_eq!(
        app.get_as("/api/v1/me", &current.access).await.status(),
        401
    );
}

async fn forty_guesses_at_once_from_forty_addresses_evaluate_at_most_five(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("TRUSTED_PROXIES".into(), "127.0.0.1".into());
    })
    .await;
    assert_eq!(app.register("target", PASSWORD).await.status(), 201);
    let guesses = (0..40).map(|i| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({ "username": "target", "password": format!("guess number {i}") }))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .map(|response| response.unwrap().status().as_u16())
        .collect();
    let evaluated = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(evaluated + refused, 40, "{statuses:?}");
    // Five free attempts; a sixth only after a second's wait, which this burst may just reach.
    assert!(
        (1..=6).contains(&evaluated),
        "{evaluated} guesses were checked"
    );
}

async fn the_owner_with_a_device_cookie_is_not_locked_out_by_strangers(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.register("owner", PASSWORD).await.status(), 201);
    let login = app.login("owner", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let device = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("nc_device="))
        .expect("a device cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/api/v1/auth/login"] {
        assert!(device.contains(attribute), "{device}");
    }
    let device = device.split(';').next().unwrap().to_owned();
    let login_with = |cookie: Option<&str>, password: &'static str| {
        let mut request = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "username": "owner", "password": password }));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie.to_owned());
        }
        request.send()
    };

    // A stranger guesses until the account's shared allowance is used up.
    for _ in 0..5 {
        assert_eq!(login_with(None, "guess guess").await.unwrap().status(), 401);
    }
    assert_eq!(login_with(None, PASSWORD).await.unwrap().status(), 429);

    // The owner's browser has its own allowance.
    assert_eq!(
        login_with(Some(&device), PASSWORD).await.unwrap().status(),
        200
    );

    // A forged or foreign device cookie is no cookie at all.
    let forged = format!("{}x", &device[..device.len() - 1]);
    assert_eq!(
        login_with(Some(&forged), PASSWORD).await.unwrap().status(),
        429
    );
    assert_eq!(app.register("other", PASSWORD).await.status(), 201);
    let other = app.login("other", PASSWORD).await;
    let other_device = other
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("nc_device="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let foreign = format!("nc_device={other_device}");
    assert_eq!(
        login_with(Some(&foreign), PASSWORD).await.unwrap().status(),
        429
    );

    // The device's allowance is limited too: guessing with a stolen cookie gets nowhere fast.
    for _ in 0..5 {
        assert_eq!(
            login_with(Some(&device), "guess guess")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    assert_eq!(
        login_with(Some(&device), PASSWORD).await.unwrap().status(),
        429
    );
}

async fn strangers_guessing_cannot_stop_the_owner_from_deleting_the_account(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.register("leaver", PASSWORD).await.status(), 201);
    // The owner's browser keeps cookies as a browser does, paths included.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = browser
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "username": "leaver", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let paths: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with("nc_device="))
        .filter_map(|v| v.split("; ").find_map(|a| a.strip_prefix("Path=")))
        .map(str::to_owned)
        .collect();
    assert_eq!(paths, ["/api/v1/auth/login", "/api/v1/me"]);
    let access = Tokens::from_response(login).await.access;

    // A stranger uses up the account's shared allowance.
    for _ in 0..5 {
        assert_eq!(app.login("leaver", "guess guess").await.status(), 401);
    }
    assert_eq!(app.login("leaver", PASSWORD).await.status(), 429);
    let stranger = app
        .client
        .delete(app.url("/api/v1/me"))
        .bearer_auth(&access)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 429, "without the device cookie");

    let deleted = browser
        .delete(app.url("/api/v1/me"))
        .bearer_auth(&access)
        .json(&json!({ "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_problem(app.get_as("/api/v1/me", &access).await, 401, "unauthorized").await;
}
