//! What an operator sees of an attack: one structured log line per security event, never with a
//! username, password or token in it. Driven against the real binary, whose JSON log is read.

use std::collections::HashSet;

use sea_orm::{ActiveModelTrait, Database, EntityTrait, Set};
use serde_json::{Value, json};

use crate::{
    cli::{free_port, start_service, terminate, wait_until_healthy},
    helpers::PASSWORD,
};

const USERNAME: &str = "watched-user";
const WRONG: &str = "guessing wildly";

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn login(&self, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({ "username": USERNAME, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Logs in and returns the access token and the refresh token.
    async fn session(&self) -> (String, String) {
        let response = self.login(PASSWORD).await;
        assert_eq!(response.status(), 200);
        let refresh = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("nc_refresh="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        (body["access_token"].as_str().unwrap().to_owned(), refresh)
    }

    async fn refresh(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/auth/refresh", self.base))
            .header("cookie", format!("nc_refresh={token}"))
            .send()
            .await
            .unwrap()
    }

    /// Connects the sandbox workspace the way a browser does; returns the connection id.
    async fn connect_sandbox(&self, access: &str) -> String {
        let started = self
            .http
            .post(format!("{}/api/v1/notion/oauth/authorize", self.base))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        let binding = started.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let body: Value = started.json().await.unwrap();
        let authorize = url::Url::parse(body["authorize_url"].as_str().unwrap()).unwrap();
        let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
        let decided = self
            .http
            .post(format!("{}/sandbox/notion/v1/oauth/authorize", self.base))
            .form(&[
                ("client_id", query["client_id"].as_str()),
                ("redirect_uri", query["redirect_uri"].as_str()),
                ("state", query["state"].as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        let back = url::Url::parse(decided.headers()["location"].to_str().unwrap()).unwrap();
        let landed = self
            .http
            .get(format!(
                "{}/api/v1/notion/oauth/callback?{}",
                self.base,
                back.query().unwrap()
            ))
            .header("cookie", binding)
            .send()
            .await
            .unwrap();
        let location = landed.headers()["location"].to_str().unwrap().to_owned();
        location
            .split("connected=")
            .nth(1)
            .unwrap_or_else(|| panic!("not connected: {location}"))
            .to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_events_are_logged_once_each_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let service = start_service(dir.path(), port);
    tokio::task::spawn_blocking(move || wait_until_healthy(port))
        .await
        .unwrap();
    let client = Client {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    let registered = client
        .http
        .post(format!("{}/api/v1/auth/register", client.base))
        .json(&json!({ "username": USERNAME, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    // Guessing: five failures, then the account is held back.
    for _ in 0..5 {
        assert_eq!(client.login(WRONG).await.status(), 401);
    }
    assert_eq!(client.login(WRONG).await.status(), 429);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // A stolen refresh token used after its owner's refresh ends the session.
    let (_, stolen) = client.session().await;
    assert_eq!(client.refresh(&stolen).await.status(), 200);
    assert_eq!(client.refresh(&stolen).await.status(), 401);

    // A logout.
    let (access, _) = client.session().await;
    let logout = client
        .http
        .post(format!("{}/api/v1/auth/logout", client.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);

    // An account at its limit of live sessions: the next login ends the oldest.
    let db = Database::connect(format!(
        "sqlite://{}?mode=rw",
        dir.path().join("data/notion-connect.db").display()
    ))
    .await
    .unwrap();
    let user = notion_connect::entity::user::Entity::find()
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    for n in 0..100 {
        let hash = notion_connect::auth::hash_token(&format!("session-{n}"));
        notion_connect::store::sessions::start_family(&db, user.id, hash, expires)
            .await
            .unwrap();
    }
    client.session().await;

    // A forged OAuth callback.
    let forged = client
        .http
        .get(format!(
            "{}/api/v1/notion/oauth/callback?code=c&state=forged",
            client.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);

    // A connection whose sealed values were altered in the database: it cannot be decrypted,
    // and its token cannot be revoked when it is disconnected.
    let (access, _) = client.session().await;
    let id = client.connect_sandbox(&access).await;
    let row = notion_connect::entity::notion_connection::Entity::find()
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    let flip = |sealed: &str| {
        use base64::{Engine, engine::general_purpose::STANDARD};
        let mut bytes = STANDARD.decode(sealed).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        STANDARD.encode(bytes)
    };
    let mut altered: notion_connect::entity::notion_connection::ActiveModel = row.clone().into();
    altered.access_token = Set(flip(&row.access_token));
    altered.update(&db).await.unwrap();
    let listed = client
        .http
        .get(format!("{}/api/v1/connections", client.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let deleted = client
        .http
        .delete(format!("{}/api/v1/connections/{id}", client.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    terminate(&service);
    let output = tokio::task::spawn_blocking(move || service.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    let events: Vec<String> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["event"].as_str().map(str::to_owned))
        .collect();
    let seen: HashSet<&str> = events.iter().map(String::as_str).collect();
    for event in [
        "login_failed",
        "login_throttled",
        "refresh_family_revoked",
        "logout",
        "oauth_state_rejected",
        "decryption_failed",
        "revocation_given_up",
        "sessions_ended_by_limit",
    ] {
        assert!(seen.contains(event), "no {event} in {events:?}");
    }
    assert_eq!(
        events.iter().filter(|e| *e == "login_failed").count(),
        5,
        "one line per failure"
    );
    assert_eq!(
        events.iter().filter(|e| *e == "decryption_failed").count(),
        1,
        "an unreadable connection is reported once"
    );
    for secret in [USERNAME, PASSWORD, WRONG, stolen.as_str(), access.as_str()] {
        assert!(!log.contains(secret), "the log holds {secret:?}");
    }
}
