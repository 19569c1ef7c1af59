use std::collections::HashMap;

use notion_connect::entity::{notion_connection, oauth_state, user};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use crate::{
    helpers::{Backend, TestApp, assert_problem, on_both_databases, spawn_app, spawn_app_with},
    mock_notion::{MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, MockNotion, TokenReply},
};

/// A started authorization: what the browser holds after `POST /notion/oauth/authorize`.
pub(crate) struct Flow {
    pub authorize_url: url::Url,
    pub state: String,
    pub binding: String,
}

impl TestApp {
    /// The app as the browser sees it: tests run it on a random port, while `PUBLIC_URL` stays
    /// `http://localhost:8000`, so URLs the app hands out are pointed back at the test server.
    pub(crate) fn local(&self, url: &str) -> String {
        url.replacen("http://localhost:8000", &self.address, 1)
    }

    pub(crate) async fn start_flow(&self, access_token: &str) -> Flow {
        let response = self
            .client
            .post(self.url("/api/v1/notion/oauth/authorize"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let cookie = response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .to_owned();
        for attribute in [
            "HttpOnly",
            "SameSite=Lax",
            "Path=/api/v1/notion/oauth/callback",
        ] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let binding = cookie
            .strip_prefix("nc_oauth_binding=")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        let authorize_url = url::Url::parse(body["authorize_url"].as_str().unwrap()).unwrap();
        let state = query_of(&authorize_url)["state"].clone();
        Flow {
            authorize_url,
            state,
            binding,
        }
    }

    /// Calls the callback as the browser would, and returns where it was sent.
    pub(crate) async fn callback(&self, query: &str, binding: Option<&str>) -> url::Url {
        let mut request = self
            .client
            .get(self.url(&format!("/api/v1/notion/oauth/callback?{query}")));
        if let Some(binding) = binding {
            request = request.header("cookie", format!("nc_oauth_binding={binding}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// The whole flow through the sandbox: consent page, Allow, callback. Returns the id of
    /// the connection.
    pub(crate) async fn connect_sandbox(&self, access_token: &str) -> String {
        self.connect_sandbox_workspace(access_token, 0).await
    }

    /// The same, choosing the sandbox's workspace `workspace` (0, 1 or 2) on the consent page.
    pub(crate) async fn connect_sandbox_workspace(
        &self,
        access_token: &str,
        workspace: usize,
    ) -> String {
        let flow = self.start_flow(access_token).await;
        let page = self
            .client
            .get(self.local(flow.authorize_url.as_str()))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains(r#"value="allow""#) && html.contains(r#"value="cancel""#));
        let location = self
            .decide_for(&flow, "allow", &workspace.to_string())
            .await;
        let landed = self
            .callback(location.query().unwrap(), Some(&flow.binding))
            .await;
        let outcome = fragment_query(&landed);
        outcome
            .get("connected")
            .unwrap_or_else(|| panic!("not connected: {landed}"))
            .clone()
    }

    /// Starts a flow and calls the callback with a code directly, as Notion would after consent
    /// (for the mock Notion, which has no consent page). Returns the connection id.
    pub(crate) async fn connect_with_code(&self, access_token: &str) -> String {
        let flow = self.start_flow(access_token).await;
        let landed = self
            .callback(&format!("code=c&state={}", flow.state), Some(&flow.binding))
            .await;
        fragment_query(&landed)
            .get("connected")
            .unwrap_or_else(|| panic!("not connected: {landed}"))
            .clone()
    }

    /// Presses a button on the sandbox's consent page; returns the redirect it answers with.
    pub(crate) async fn decide(&self, flow: &Flow, decision: &str) -> url::Url {
        self.decide_for(flow, decision, "0").await
    }

    /// Presses a button on the sandbox's consent page with workspace `workspace` (its index)
    /// chosen; returns the redirect it answers with.
    pub(crate) async fn decide_for(
        &self,
        flow: &Flow,
        decision: &str,
        workspace: &str,
    ) -> url::Url {
        let query = query_of(&flow.authorize_url);
        let form = [
            ("workspace", workspace),
            ("client_id", query["client_id"].as_str()),
            ("redirect_uri", query["redirect_uri"].as_str()),
            ("state", query["state"].as_str()),
            ("decision", decision),
        ];
        let response = self
            .client
            .post(self.url("/sandbox/notion/v1/oauth/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
    }
}

pub(crate) fn query_of(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The web app reads its outcome from the fragment: `#/connections?connected=...`.
pub(crate) fn fragment_query(url: &url::Url) -> HashMap<String, String> {
    let fragment = url.fragment().unwrap_or_default();
    let query = fragment.strip_prefix("/connections?").unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

async fn connection_count(app: &TestApp) -> u64 {
    notion_connection::Entity::find()
        .count(&app.db)
        .await
        .unwrap()
}

on_both_databases!(
    connecting_a_workspace_through_the_sandbox,
    the_authorize_url_carries_exactly_the_expected_parameters,
    cancelling_at_notion_stores_nothing,
    bad_states_are_rejected_without_calling_notion,
    concurrent_callbacks_exchange_the_code_once,
    a_finished_flow_leaves_no_state_behind,
    a_user_deleted_during_the_exchange_gets_no_connection,
    a_database_failure_during_the_callback_is_a_server_error,
    token_endpoint_failures_redirect_with_an_error_and_store_nothing,
    the_exchange_uses_basic_auth_and_the_exact_redirect_uri,
    reauthorizing_a_workspace_updates_its_connection,
    the_sandbox_exists_only_without_notion_credentials,
    only_the_flows_own_callback_clears_its_binding_cookie,
    a_planted_second_binding_cookie_does_not_break_the_flow,
    starting_many_flows_keeps_only_the_newest_few,
);

async fn connecting_a_workspace_through_the_sandbox(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("nora").await;

    let id = app.connect_sandbox(&user.access).await;

    let list: Value = app
        .get_as("/api/v1/connections", &user.access)
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let connection = &items[0];
    assert_eq!(connection["id"], id.as_str());
    assert_eq!(connection["status"], "active");
    assert_eq!(connection["workspace_name"], "Sandbox Workspace");
    assert_eq!(connection["workspace_icon"], "🧪");
    assert_eq!(
        connection["bot_id"],
        notion_connect::sandbox::SANDBOX_BOT_ID
    );
    assert_eq!(connection["owner"]["type"], "user");
    assert_eq!(connection["owner"]["name"], "Sandbox User");
    assert_eq!(connection["owner"]["email"], "sandbox.user@example.com");
    let text = connection.to_string();
    assert!(
        !text.contains("secret_sbx_") && !text.contains("nrt_sbx_"),
        "{text}"
    );

    let one = app
        .get_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await;
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap()["id"], id.as_str());
}

async fn the_authorize_url_carries_exactly_the_expected_parameters(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("oscar").await;

    let first = app.start_flow(&user.access).await;
    let second = app.start_flow(&user.access).await;

    let query = query_of(&first.authorize_url);
    let mut keys: Vec<&str> = query.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "client_id",
            "owner",
            "redirect_uri",
            "response_type",
            "state"
        ]
    );
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["owner"], "user");
    assert_eq!(
        query["redirect_uri"],
        "http://localhost:8000/api/v1/notion/oauth/callback"
    );
    assert_eq!(
        first.authorize_url.path(),
        "/sandbox/notion/v1/oauth/authorize"
    );
    assert!(
        first.state.len() >= 43,
        "at least 256 bits: {}",
        first.state
    );
    assert_ne!(first.state, second.state);
    assert_ne!(first.binding, second.binding);

    // Only hashes are stored.
    let rows = oauth_state::Entity::find().all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_ne!(row.state_hash, first.state);
        assert_ne!(row.binding_hash, first.binding);
    }

    let anonymous = app
        .client
        .post(app.url("/api/v1/notion/oauth/authorize"))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401, "unauthorized").await;
}

async fn cancelling_at_notion_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("pia").await;
    let flow = app.start_flow(&user.access).await;

    let location = app.decide(&flow, "cancel").await;
    let landed = app
        .callback(location.query().unwrap(), Some(&flow.binding))
        .await;

    assert_eq!(fragment_query(&landed)["error"], "access_denied");
    assert_eq!(
        landed.as_str().split('#').next().unwrap(),
        "http://localhost:8000/"
    );
    assert_eq!(connection_count(&app).await, 0);
}

async fn bad_states_are_rejected_without_calling_notion(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-1".into(),
        access_token: "secret_never".into(),
    })
    .await;
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("quinn").await;
    let flow = app.start_flow(&user.access).await;
    let state = &flow.state;

    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "unknown state",
            "code=c&state=not-a-state".into(),
            Some(&flow.binding),
        ),
        ("no state", "code=c".into(), Some(&flow.binding)),
        ("no cookie", format!("code=c&state={state}"), None),
        (
            "another browser",
            format!("code=c&state={state}"),
            Some("someone-elses-binding"),
        ),
    ];
    for (case, query, binding) in cases {
        let landed = app.callback(&query, binding).await;
        assert_eq!(fragment_query(&landed)["error"], "invalid_state", "{case}");
    }
    assert_eq!(notion.token_calls(), 0);

    // An expired state.
    let expired = app.start_flow(&user.access).await;
    oauth_state::Entity::update_many()
        .col_expr(
            oauth_state::Column::ExpiresAt,
            (time::OffsetDateTime::now_utc() - time::Duration::minutes(1)).into(),
        )
        .filter(oauth_state::Column::StateHash.eq(notion_connect::auth::hash_token(&expired.state)))
        .exec(&app.db)
        .await
        .unwrap();
    let landed = app
        .callback(
            &format!("code=c&state={}", expired.state),
            Some(&expired.binding),
        )
        .await;
    assert_eq!(fragment_query(&landed)["error"], "invalid_state");
    assert_eq!(notion.token_calls(), 0);

    // A state that was used already.
    let landed = app
        .callback(&format!("code=c&state={state}"), Some(&flow.binding))
        .await;
    assert!(fragment_query(&landed).contains_key("connected"));
    let replayed = app
        .callback(&format!("code=c&state={state}"), Some(&flow.binding))
        .await;
    assert_eq!(fragment_query(&replayed)["error"], "invalid_state");
    assert_eq!(notion.token_calls(), 1);
    assert_eq!(connection_count(&app).await, 1);
}

async fn concurrent_callbacks_exchange_the_code_once(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-1".into(),
        access_token: "secret_once".into(),
    })
    .await;
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("rosa").await;
    let flow = app.start_flow(&user.access).await;
    let query = format!("code=the-code&state={}", flow.state);

    let attempts = (0..8).map(|_| app.callback(&query, Some(&flow.binding)));
    let landed = futures_util::future::join_all(attempts).await;

    let connected = landed
        .iter()
        .filter(|url| fragment_query(url).contains_key("connected"))
        .count();
    assert_eq!(connected, 1);
    assert_eq!(notion.token_calls(), 1);
    assert_eq!(connection_count(&app).await, 1);
}

async fn state_count(app: &TestApp) -> u64 {
    oauth_state::Entity::find().count(&app.db).await.unwrap()
}

async fn a_finished_flow_leaves_no_state_behind(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("fay").await;
    let flow = app.start_flow(&user.access).await;
    assert_eq!(state_count(&app).await, 1);
    let location = app.decide(&flow, "allow").await;
    let landed = app
        .callback(location.query().unwrap(), Some(&flow.binding))
        .await;
    assert!(
        fragment_query(&landed).contains_key("connected"),
        "{landed}"
    );

    assert_eq!(
        state_count(&app).await,
        0,
        "the state is deleted in the transaction that stored the connection"
    );
    let replayed = app
        .callback(location.query().unwrap(), Some(&flow.binding))
        .await;
    assert_eq!(fragment_query(&replayed)["error"], "invalid_state");
    assert_eq!(connection_count(&app).await, 1);
}

async fn a_user_deleted_during_the_exchange_gets_no_connection(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-1".into(),
        access_token: "secret_orphan".into(),
    })
    .await;
    notion.delay_exchanges(std::time::Duration::from_millis(300));
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("gus").await;
    let flow = app.start_flow(&user.access).await;

    let query = format!("code=c&state={}", flow.state);
    let callback = app.callback(&query, Some(&flow.binding));
    let delete_user = async {
        notion.wait_for_exchanges(1).await;
        user::Entity::delete_many().exec(&app.db).await.unwrap();
    };
    let (landed, ()) = futures_util::join!(callback, delete_user);

    assert_eq!(
        fragment_query(&landed)["error"],
        "invalid_state",
        "{landed}"
    );
    assert_eq!(notion.token_calls(), 1);
    assert_eq!(connection_count(&app).await, 0);
}

async fn a_database_failure_during_the_callback_is_a_server_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("hal").await;
    let flow = app.start_flow(&user.access).await;
    app.db
        .execute_unprepared("DROP TABLE oauth_states")
        .await
        .unwrap();

    let landed = app
        .callback(&format!("code=c&state={}", flow.state), Some(&flow.binding))
        .await;

    assert_eq!(fragment_query(&landed)["error"], "server_error", "{landed}");
    assert_eq!(connection_count(&app).await, 0);
}

async fn token_endpoint_failures_redirect_with_an_error_and_store_nothing(backend: Backend) {
    let notion = MockNotion::start(TokenReply::RfcInvalidGrant).await;
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("sam").await;

    let cases = [
        (TokenReply::RfcInvalidGrant, "exchange_failed"),
        (TokenReply::ApiInvalidGrant, "exchange_failed"),
        (TokenReply::HtmlBadGateway, "notion_unavailable"),
        (TokenReply::Hang, "notion_unavailable"),
    ];
    for (attempt, (reply, expected)) in cases.into_iter().enumerate() {
        notion.reply_with(reply.clone());
        let flow = app.start_flow(&user.access).await;
        let landed = app
            .callback(&format!("code=c&state={}", flow.state), Some(&flow.binding))
            .await;
        assert_eq!(fragment_query(&landed)["error"], expected, "{reply:?}");
        assert_eq!(
            notion.token_calls(),
            attempt + 1,
            "exactly one exchange for {reply:?}"
        );
        assert_eq!(connection_count(&app).await, 0);
    }
}

async fn the_exchange_uses_basic_auth_and_the_exact_redirect_uri(backend: Backend) {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-1".into(),
        access_token: "secret_a".into(),
    })
    .await;
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("tara").await;
    let flow = app.start_flow(&user.access).await;
    assert!(
        flow.authorize_url
            .as_str()
            .starts_with(&format!("{}/oauth/authorize?", notion.base))
    );
    assert_eq!(query_of(&flow.authorize_url)["client_id"], MOCK_CLIENT_ID);

    app.callback(
        &format!("code=the-code&state={}", flow.state),
        Some(&flow.binding),
    )
    .await;

    let (authorization, body) = notion.last_token_request().unwrap();
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{MOCK_CLIENT_ID}:{MOCK_CLIENT_SECRET}"))
    );
    assert_eq!(authorization.as_deref(), Some(expected.as_str()));
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "the-code");
    assert_eq!(
        form["redirect_uri"],
        "http://localhost:8000/api/v1/notion/oauth/callback"
    );
    assert!(
        !form.contains_key("client_secret"),
        "the secret goes in the header only"
    );

    // Nullable workspace fields are fine.
    let list: Value = app
        .get_as("/api/v1/connections", &user.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"][0]["workspace_name"], Value::Null);
    assert_eq!(list["items"][0]["owner"]["type"], "workspace");
}

async fn reauthorizing_a_workspace_updates_its_connection(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("uma").await;
    let first = app.connect_sandbox(&user.access).await;
    let before = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();

    let second = app.connect_sandbox(&user.access).await;

    assert_eq!(first, second, "the same connection");
    assert_eq!(connection_count(&app).await, 1);
    let after = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        after.access_token, before.access_token,
        "a new token is stored"
    );
    assert!(after.updated_at >= before.updated_at);

    // Another user connecting the same workspace gets a connection of their own.
    let other = app.signed_in("victor").await;
    let theirs = app.connect_sandbox(&other.access).await;
    assert_ne!(theirs, first);
    assert_eq!(connection_count(&app).await, 2);
}

async fn the_sandbox_exists_only_without_notion_credentials(backend: Backend) {
    let notion = MockNotion::start(TokenReply::RfcInvalidGrant).await;
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    for path in [
        "/sandbox/notion/v1/oauth/authorize?client_id=x",
        "/sandbox/notion/v1/oauth/token",
    ] {
        assert_eq!(app.get(path).await.status(), 404, "{path}");
    }
    let sandboxed = spawn_app(backend).await;
    let page = sandboxed
        .get("/sandbox/notion/v1/oauth/authorize?client_id=wrong&redirect_uri=x&response_type=code&owner=user")
        .await;
    assert_eq!(
        page.status(),
        400,
        "an unknown client gets an error page, not a redirect"
    );
    assert!(page.headers().get("location").is_none());
}

/// Sends the callback with this `Cookie` header; returns the redirect and any `Set-Cookie`.
async fn raw_callback(app: &TestApp, query: &str, cookie: &str) -> (url::Url, Option<String>) {
    let response = app
        .client
        .get(app.url(&format!("/api/v1/notion/oauth/callback?{query}")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    (location, set_cookie)
}

async fn only_the_flows_own_callback_clears_its_binding_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("kept").await;
    let flow = app.start_flow(&user.access).await;
    let cookie = format!("nc_oauth_binding={}", flow.binding);

    // A forged or stray callback (another site can send the browser here) fails, and leaves
    // this browser's flow alone.
    let (location, cleared) = raw_callback(&app, "code=x&state=forged", &cookie).await;
    assert_eq!(fragment_query(&location)["error"], "invalid_state");
    assert_eq!(cleared, None, "the flow in progress keeps its cookie");

    // The flow's own callback finishes it and clears the cookie.
    let decided = app.decide(&flow, "allow").await;
    let (location, cleared) = raw_callback(&app, decided.query().unwrap(), &cookie).await;
    assert!(
        fragment_query(&location).contains_key("connected"),
        "{location}"
    );
    let cleared = cleared.expect("the binding cookie is cleared");
    assert!(cleared.starts_with("nc_oauth_binding=;") && cleared.contains("Max-Age=0"));
}

async fn a_planted_second_binding_cookie_does_not_break_the_flow(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("planted").await;
    let flow = app.start_flow(&user.access).await;
    let decided = app.decide(&flow, "allow").await;

    // Another page planted its own cookie of the same name, which the browser sends first.
    let cookie = format!(
        "nc_oauth_binding=planted-by-someone; nc_oauth_binding={}",
        flow.binding
    );
    let (location, _) = raw_callback(&app, decided.query().unwrap(), &cookie).await;
    assert!(
        fragment_query(&location).contains_key("connected"),
        "{location}"
    );

    // A planted cookie alone still proves nothing.
    let flow = app.start_flow(&user.access).await;
    let decided = app.decide(&flow, "allow").await;
    let (location, _) = raw_callback(
        &app,
        decided.query().unwrap(),
        "nc_oauth_binding=planted-by-someone",
    )
    .await;
    assert_eq!(fragment_query(&location)["error"], "invalid_state");
}

async fn starting_many_flows_keeps_only_the_newest_few(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("restless").await;
    let mut flows = Vec::new();
    for _ in 0..12 {
        flows.push(app.start_flow(&user.access).await);
    }
    let open = oauth_state::Entity::find()
        .filter(oauth_state::Column::ConsumedAt.is_null())
        .count(&app.db)
        .await
        .unwrap();
    assert_eq!(open, 5, "older flows are superseded");

    // The oldest flow no longer exists; the newest works.
    let oldest = &flows[0];
    let decided = app.decide(oldest, "allow").await;
    let landed = app
        .callback(decided.query().unwrap(), Some(&oldest.binding))
        .await;
    assert_eq!(fragment_query(&landed)["error"], "invalid_state");
    let newest = flows.last().unwrap();
    let decided = app.decide(newest, "allow").await;
    let landed = app
        .callback(decided.query().unwrap(), Some(&newest.binding))
        .await;
    assert!(
        fragment_query(&landed).contains_key("connected"),
        "{landed}"
    );
}
