//! A Notion stand-in for failure cases: a real HTTP server on a loopback port whose token and
//! revoke endpoints answer however a test tells them to, and count the calls they get.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use poem::{
    EndpointExt, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::Data,
};
use serde_json::json;

#[derive(Clone, Debug)]
pub(crate) enum TokenReply {
    /// A successful exchange for this bot, with this access token (and a refresh token).
    Grant {
        bot_id: String,
        access_token: String,
    },
    /// A successful exchange without a refresh token, as older integrations get.
    GrantWithoutRefresh {
        bot_id: String,
        access_token: String,
    },
    /// `{"error": "invalid_grant", ...}`
    RfcInvalidGrant,
    /// `{"object": "error", "code": "invalid_grant", ...}`
    ApiInvalidGrant,
    /// An HTML 502 page, as a proxy in front of Notion would send.
    HtmlBadGateway,
    /// No answer for longer than any client waits.
    Hang,
}

/// The `Authorization` header and the body of a token request.
pub(crate) type TokenRequest = (Option<String>, String);

/// A scripted answer of the search endpoint.
#[derive(Clone, Debug)]
pub(crate) enum SearchReply {
    /// This status, with `Retry-After` when given, and this body and content type.
    Status {
        status: u16,
        retry_after: Option<u64>,
        body: &'static str,
        content_type: &'static str,
    },
    /// No answer for longer than any client waits.
    Hang,
}

impl SearchReply {
    /// A 429 whose `additional_data.rate_limit_reason` names the workspace's limit or the
    /// connection's.
    pub(crate) fn rate_limited(retry_after: u64, workspace: bool) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(retry_after),
            body: if workspace {
                r#"{"object":"error","status":429,"code":"rate_limited","message":"slow down","request_id":"r","additional_data":{"rate_limit_reason":"workspace_rate_limit"}}"#
            } else {
                r#"{"object":"error","status":429,"code":"rate_limited","message":"slow down","request_id":"r","additional_data":{"rate_limit_reason":"connection_rate_limit"}}"#
            },
            content_type: "application/json",
        }
    }

    pub(crate) fn json(status: u16, retry_after: Option<u64>) -> Self {
        Self::Status {
            status,
            retry_after,
            body: r#"{"object":"error","status":0,"code":"scripted","message":"scripted","request_id":"r"}"#,
            content_type: "application/json",
        }
    }
}

/// The page the mock's search answers with when nothing is scripted.
pub(crate) const MOCK_PAGE: &str = r#"{"object":"list","results":[
  {"object":"page","id":"mock-page","url":"https://notion.so/mock","in_trash":false,
   "last_edited_time":"2026-11-01T00:00:00.000Z","icon":{"type":"emoji","emoji":"📄"},
   "properties":{"Task":{"id":"title","type":"title","title":[{"plain_text":"Mock page"}]}}}],
  "next_cursor":null,"has_more":false,"type":"page_or_data_source","page_or_data_source":{}}"#;

#[derive(Clone)]
struct Shared {
    token_reply: Arc<Mutex<TokenReply>>,
    /// How long code exchanges take before answering.
    exchange_delay: Arc<Mutex<Duration>>,
    revoke_reply: Arc<Mutex<(StatusCode, &'static str)>>,
    /// The tokens revoke was asked to revoke, in order.
    revoked: Arc<Mutex<Vec<String>>>,
    /// What introspection says; `None`: active while it is the token search accepts.
    introspect_active: Arc<Mutex<Option<bool>>>,
    introspect_calls: Arc<AtomicUsize>,
    /// How long refreshes take before they answer.
    refresh_delay: Arc<Mutex<Duration>>,
    token_calls: Arc<AtomicUsize>,
    revoke_calls: Arc<AtomicUsize>,
    last_token_request: Arc<Mutex<Option<TokenRequest>>>,
    search_script: Arc<Mutex<std::collections::VecDeque<SearchReply>>>,
    search_calls: Arc<AtomicUsize>,
    /// When each search arrived.
    search_times: Arc<Mutex<Vec<std::time::Instant>>>,
    refresh_calls: Arc<AtomicUsize>,
    /// The access token search accepts; `None` until a grant.
    valid_access: Arc<Mutex<Option<String>>>,
    /// The refresh token the token endpoint accepts.
    valid_refresh: Arc<Mutex<Option<String>>>,
    /// Workspaces searched by their access token: how many items each has, and how it
    /// answers instead when told to.
    workspaces: Arc<Mutex<HashMap<String, Workspace>>>,
    /// The pages of served workspaces asked for: access token, `start_cursor`, `page_size`.
    pages_asked: Arc<Mutex<Vec<PageAsked>>>,
}

/// A page of a served workspace asked for: access token, `start_cursor`, `page_size`.
pub(crate) type PageAsked = (String, Option<String>, u64);

#[derive(Clone, Default)]
struct Workspace {
    items: usize,
    /// Every search of it gets this answer.
    answer: Option<SearchReply>,
}

pub(crate) struct MockNotion {
    pub base: String,
    shared: Shared,
}

pub(crate) const MOCK_CLIENT_ID: &str = "mock-client-id";
pub(crate) const MOCK_CLIENT_SECRET: &str = "mock-client-secret";

impl MockNotion {
    pub(crate) async fn start(reply: TokenReply) -> Self {
        let shared = Shared {
            token_reply: Arc::new(Mutex::new(reply)),
            exchange_delay: Arc::default(),
            revoke_reply: Arc::new(Mutex::new((StatusCode::OK, "{}"))),
            revoked: Arc::default(),
            introspect_active: Arc::default(),
            introspect_calls: Arc::default(),
            // Slow enough that concurrent callers pile up behind a refresh.
            refresh_delay: Arc::new(Mutex::new(Duration::from_millis(200))),
            token_calls: Arc::default(),
            revoke_calls: Arc::default(),
            last_token_request: Arc::default(),
            search_script: Arc::default(),
            search_calls: Arc::default(),
            search_times: Arc::default(),
            refresh_calls: Arc::default(),
            valid_access: Arc::default(),
            valid_refresh: Arc::default(),
            workspaces: Arc::default(),
            pages_asked: Arc::default(),
        };
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let app = Route::new()
            .at("/v1/oauth/token", post(token))
            .at("/v1/oauth/revoke", post(revoke))
            .at("/v1/oauth/introspect", post(introspect))
            .at("/v1/search", post(search))
            .data(shared.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self {
            base: format!("http://127.0.0.1:{port}/v1"),
            shared,
        }
    }

    /// The variables that point an app at this stand-in.
    pub(crate) fn configure(&self, vars: &mut std::collections::HashMap<String, String>) {
        vars.insert("NOTION_API_BASE".into(), self.base.clone());
        vars.insert("NOTION_CLIENT_ID".into(), MOCK_CLIENT_ID.into());
        vars.insert("NOTION_CLIENT_SECRET".into(), MOCK_CLIENT_SECRET.into());
        vars.insert("NOTION_TIMEOUT".into(), "1s".into());
    }

    pub(crate) fn reply_with(&self, reply: TokenReply) {
        *self.shared.token_reply.lock().unwrap() = reply;
    }

    /// Makes code exchanges take this long before they answer.
    pub(crate) fn delay_exchanges(&self, delay: Duration) {
        *self.shared.exchange_delay.lock().unwrap() = delay;
    }

    /// Waits (briefly) until the token endpoint has received `n` code exchanges.
    pub(crate) async fn wait_for_exchanges(&self, n: usize) {
        for _ in 0..100 {
            if self.token_calls() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Answers the next searches with these replies, in order.
    pub(crate) fn script_search(&self, replies: impl IntoIterator<Item = SearchReply>) {
        self.shared.search_script.lock().unwrap().extend(replies);
    }

    /// Makes the current access token stop working (as if it expired).
    pub(crate) fn expire_access_token(&self) {
        *self.shared.valid_access.lock().unwrap() = Some("expired".into());
    }

    pub(crate) fn search_calls(&self) -> usize {
        self.shared.search_calls.load(Ordering::SeqCst)
    }

    /// When each search arrived, in order.
    pub(crate) fn search_times(&self) -> Vec<std::time::Instant> {
        self.shared.search_times.lock().unwrap().clone()
    }

    pub(crate) fn refresh_calls(&self) -> usize {
        self.shared.refresh_calls.load(Ordering::SeqCst)
    }

    /// The access token search accepts now.
    pub(crate) fn valid_access_token(&self) -> Option<String> {
        self.shared.valid_access.lock().unwrap().clone()
    }

    pub(crate) fn revoke_answers(&self, status: StatusCode) {
        self.revoke_answers_with(status, "{}");
    }

    /// Makes revoke answer with this status and body.
    pub(crate) fn revoke_answers_with(&self, status: StatusCode, body: &'static str) {
        *self.shared.revoke_reply.lock().unwrap() = (status, body);
    }

    /// The tokens revoke was asked to revoke, in order.
    pub(crate) fn revoked_tokens(&self) -> Vec<String> {
        self.shared.revoked.lock().unwrap().clone()
    }

    /// Makes introspection answer `active` for every token.
    pub(crate) fn introspection_says(&self, active: bool) {
        *self.shared.introspect_active.lock().unwrap() = Some(active);
    }

    pub(crate) fn introspect_calls(&self) -> usize {
        self.shared.introspect_calls.load(Ordering::SeqCst)
    }

    /// Makes the access token `token` search a workspace of `items` pages, newest first unless
    /// asked otherwise, in pages of the size asked for (ids `{token}-{n}`, titles
    /// `{token} page {n}`, item n edited n minutes before the first).
    pub(crate) fn serve_workspace(&self, access_token: &str, items: usize) {
        self.shared
            .workspaces
            .lock()
            .unwrap()
            .entry(access_token.to_owned())
            .or_default()
            .items = items;
    }

    /// The pages of served workspaces asked for so far: access token, `start_cursor` and
    /// `page_size` of each search.
    pub(crate) fn pages_asked(&self) -> Vec<PageAsked> {
        self.shared.pages_asked.lock().unwrap().clone()
    }

    /// Makes every search with the access token `token` get `answer`.
    pub(crate) fn answer_searches_of(&self, access_token: &str, answer: SearchReply) {
        self.shared
            .workspaces
            .lock()
            .unwrap()
            .entry(access_token.to_owned())
            .or_default()
            .answer = Some(answer);
    }

    /// Makes refreshes take this long before they answer.
    pub(crate) fn delay_refreshes(&self, delay: Duration) {
        *self.shared.refresh_delay.lock().unwrap() = delay;
    }

    pub(crate) fn token_calls(&self) -> usize {
        self.shared.token_calls.load(Ordering::SeqCst)
    }

    pub(crate) fn revoke_calls(&self) -> usize {
        self.shared.revoke_calls.load(Ordering::SeqCst)
    }

    /// The Authorization header and body of the latest token request.
    pub(crate) fn last_token_request(&self) -> Option<TokenRequest> {
        self.shared.last_token_request.lock().unwrap().clone()
    }

    /// Waits (briefly) until `revoke` has been called `n` times.
    pub(crate) async fn wait_for_revokes(&self, n: usize) {
        for _ in 0..100 {
            if self.revoke_calls() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[handler]
async fn token(shared: Data<&Shared>, req: &poem::Request, body: String) -> Response {
    let json = |status: StatusCode, value: serde_json::Value| {
        Response::builder()
            .status(status)
            .content_type("application/json")
            .body(value.to_string())
    };
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let n = shared.refresh_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = *shared.refresh_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let mut valid_refresh = shared.valid_refresh.lock().unwrap();
        if valid_refresh.as_deref() != form.get("refresh_token").map(String::as_str) {
            return json(
                StatusCode::BAD_REQUEST,
                json!({ "error": "invalid_grant", "error_description": "Invalid refresh token." }),
            );
        }
        let access = format!("refreshed-access-{n}");
        let refresh = format!("refreshed-refresh-{n}");
        *valid_refresh = Some(refresh.clone());
        *shared.valid_access.lock().unwrap() = Some(access.clone());
        return json(
            StatusCode::OK,
            json!({ "access_token": access, "token_type": "bearer", "refresh_token": refresh }),
        );
    }
    // Code exchanges only from here on.
    shared.token_calls.fetch_add(1, Ordering::SeqCst);
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    *shared.last_token_request.lock().unwrap() = Some((authorization, body));
    let delay = *shared.exchange_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let reply = shared.token_reply.lock().unwrap().clone();
    let grant = |bot_id: String, access_token: String, refresh: bool| {
        let refresh_token = refresh.then(|| format!("{access_token}-refresh"));
        *shared.valid_access.lock().unwrap() = Some(access_token.clone());
        *shared.valid_refresh.lock().unwrap() = refresh_token.clone();
        json(
            StatusCode::OK,
            json!({
                "access_token": access_token,
                "token_type": "bearer",
                "refresh_token": refresh_token,
                "bot_id": bot_id,
                "workspace_id": "ws-1",
                "workspace_name": null,
                "workspace_icon": null,
                "owner": { "type": "workspace", "workspace": true },
                "duplicated_template_id": null,
                "request_id": "req-1"
            }),
        )
    };
    match reply {
        TokenReply::Grant {
            bot_id,
            access_token,
        } => grant(bot_id, access_token, true),
        TokenReply::GrantWithoutRefresh {
            bot_id,
            access_token,
        } => grant(bot_id, access_token, false),
        TokenReply::RfcInvalidGrant => json(
            StatusCode::BAD_REQUEST,
            json!({ "error": "invalid_grant", "error_description": "Invalid code." }),
        ),
        TokenReply::ApiInvalidGrant => json(
            StatusCode::BAD_REQUEST,
            json!({ "object": "error", "status": 400, "code": "invalid_grant", "message": "Invalid code." }),
        ),
        TokenReply::HtmlBadGateway => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .content_type("text/html")
            .body("<html><body><h1>502 Bad Gateway</h1></body></html>"),
        TokenReply::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            json(StatusCode::OK, json!({}))
        }
    }
}

/// The `token` of a revoke or introspect request.
fn token_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|body| body["token"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[handler]
fn revoke(shared: Data<&Shared>, body: String) -> Response {
    shared.revoke_calls.fetch_add(1, Ordering::SeqCst);
    shared.revoked.lock().unwrap().push(token_of(&body));
    let (status, body) = *shared.revoke_reply.lock().unwrap();
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

#[handler]
fn introspect(shared: Data<&Shared>, body: String) -> Response {
    shared.introspect_calls.fetch_add(1, Ordering::SeqCst);
    let asked = token_of(&body);
    let scripted = *shared.introspect_active.lock().unwrap();
    let active = scripted
        .unwrap_or_else(|| shared.valid_access.lock().unwrap().as_deref() == Some(asked.as_str()));
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(json!({ "active": active, "request_id": "r" }).to_string())
}

/// A page of a served workspace, as Notion's search answers.
fn workspace_page(access_token: &str, items: usize, body: &str) -> Response {
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let page_size = body["page_size"].as_u64().unwrap_or(100) as usize;
    let start: usize = body["start_cursor"]
        .as_str()
        .and_then(|c| c.strip_prefix("at-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let ascending = body["sort"]["direction"] == "ascending";
    let order: Vec<usize> = if ascending {
        (0..items).rev().collect()
    } else {
        (0..items).collect()
    };
    let end = (start + page_size).min(items);
    let newest = time::OffsetDateTime::from_unix_timestamp(1_793_000_000).unwrap();
    let results: Vec<serde_json::Value> = order[start.min(end)..end]
        .iter()
        .map(|n| {
            let edited = (newest - time::Duration::minutes(*n as i64))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            json!({
                "object": "page",
                "id": format!("{access_token}-{n}"),
                "url": format!("https://notion.so/{access_token}-{n}"),
                "last_edited_time": edited,
                "in_trash": false,
                "properties": { "title": { "type": "title",
                    "title": [{ "plain_text": format!("{access_token} page {n}") }] } }
            })
        })
        .collect();
    let has_more = end < items;
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(
            json!({
                "object": "list",
                "results": results,
                "next_cursor": has_more.then(|| format!("at-{end}")),
                "has_more": has_more,
            })
            .to_string(),
        )
}

#[handler]
async fn search(shared: Data<&Shared>, req: &poem::Request, body: String) -> Response {
    shared.search_calls.fetch_add(1, Ordering::SeqCst);
    shared
        .search_times
        .lock()
        .unwrap()
        .push(std::time::Instant::now());
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let workspace = shared.workspaces.lock().unwrap().get(&bearer).cloned();
    let scripted = match workspace {
        Some(Workspace {
            answer: Some(answer),
            ..
        }) => Some(answer),
        Some(Workspace { items, .. }) => {
            let asked: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            shared.pages_asked.lock().unwrap().push((
                bearer.clone(),
                asked["start_cursor"].as_str().map(str::to_owned),
                asked["page_size"].as_u64().unwrap_or(100),
            ));
            return workspace_page(&bearer, items, &body);
        }
        None => shared.search_script.lock().unwrap().pop_front(),
    };
    match scripted {
        Some(SearchReply::Hang) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Response::builder().status(StatusCode::OK).finish()
        }
        Some(SearchReply::Status {
            status,
            retry_after,
            body,
            content_type,
        }) => {
            let mut response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .content_type(content_type);
            if let Some(seconds) = retry_after {
                response = response.header("retry-after", seconds.to_string());
            }
            response.body(body)
        }
        None => {
            let bearer = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            let valid = shared.valid_access.lock().unwrap().clone();
            if bearer.is_some() && bearer == valid {
                Response::builder()
                    .status(StatusCode::OK)
                    .content_type("application/json")
                    .body(MOCK_PAGE)
            } else {
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .content_type("application/json")
                    .body(r#"{"object":"error","status":401,"code":"unauthorized","message":"API token is invalid."}"#)
            }
        }
    }
}
