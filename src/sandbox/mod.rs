//! The Notion sandbox: a small stand-in for Notion's OAuth endpoints, mounted at
//! `/sandbox/notion/v1` in development when no Notion credentials are configured.
//!
//! The service talks to it over real HTTP exactly as it would to Notion, so the whole connect
//! flow can be tried with nothing else installed. It checks what Notion checks (client id,
//! redirect URI, HTTP Basic client authentication, single-use short-lived codes) and answers in
//! Notion's shapes. Its state lives in memory: restarting the service forgets its tokens, and
//! connections made before then need to be connected again.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use poem::{
    Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route, handler,
    http::{HeaderValue, StatusCode, header},
    post,
    web::{Data, Html, Query},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{notion::NotionEndpoints, secret::Secret};

pub mod workspace;

/// A pretend workspace. Every authorization of one is by the same person, so it yields the same
/// bot id, just as re-authorizing a workspace in Notion does.
pub(crate) struct SandboxWorkspace {
    pub bot_id: &'static str,
    pub workspace_id: &'static str,
    pub name: &'static str,
    pub icon: &'static str,
}

/// The bot id of the first workspace, "Sandbox Workspace".
pub const SANDBOX_BOT_ID: &str = "5a4d1b0e-0000-4000-8000-5a4db0000001";

/// The workspaces the consent page offers; the first is chosen unless the person picks another.
/// Their items are [`workspace::items_of`] the same index.
pub(crate) const WORKSPACES: [SandboxWorkspace; 3] = [
    SandboxWorkspace {
        bot_id: SANDBOX_BOT_ID,
        workspace_id: "5a4d1b0e-0000-4000-8000-5a4d00000002",
        name: "Sandbox Workspace",
        icon: "🧪",
    },
    SandboxWorkspace {
        bot_id: "5a4d1b0e-0000-4000-8000-5a4db0000011",
        workspace_id: "5a4d1b0e-0000-4000-8000-5a4d00000012",
        name: "Sandbox Team",
        icon: "🏢",
    },
    SandboxWorkspace {
        bot_id: "5a4d1b0e-0000-4000-8000-5a4db0000021",
        workspace_id: "5a4d1b0e-0000-4000-8000-5a4d00000022",
        name: "Sandbox Archive",
        icon: "🗄️",
    },
];
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// The page may use the web app's stylesheet and icon and submit only to itself (the redirect it
/// answers with goes to the service's own callback). No script at all.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the sandbox knows: its client credentials and the tokens it has issued.
#[derive(Clone)]
pub(crate) struct Sandbox {
    client_id: String,
    client_secret: Secret<String>,
    redirect_uri: String,
    issued: Arc<Mutex<Issued>>,
}

/// Codes waiting to be exchanged, at most. Anyone may press Allow on the consent page, and a code
/// lives a minute, so only a flood reaches this; it is then refused until codes expire.
const MAX_PENDING_CODES: usize = 1_000;
/// Live tokens of each kind, at most; the oldest are forgotten first (their connections then need
/// connecting again, as after a restart).
const MAX_LIVE_TOKENS: usize = 10_000;

/// A code waiting to be exchanged: the redirect URI it was issued for, when it expires, and the
/// workspace (an index of [`WORKSPACES`]) it grants.
struct PendingCode {
    redirect_uri: String,
    expires: Instant,
    workspace: usize,
}

#[derive(Default)]
struct Issued {
    codes: HashMap<String, PendingCode>,
    access_tokens: LiveTokens,
    refresh_tokens: LiveTokens,
}

impl Issued {
    /// Keeps a new code unless too many are pending.
    fn add_code(&mut self, code: String, pending: PendingCode, now: Instant) -> bool {
        self.codes.retain(|_, pending| pending.expires > now);
        if self.codes.len() >= MAX_PENDING_CODES {
            return false;
        }
        self.codes.insert(code, pending);
        true
    }
}

/// A bounded map of tokens to the workspace they give access to, that forgets the oldest
/// first.
#[derive(Default)]
struct LiveTokens {
    live: HashMap<String, usize>,
    /// Insertion order; may still name tokens removed since, which are skipped.
    order: VecDeque<String>,
}

impl LiveTokens {
    fn insert(&mut self, token: String, workspace: usize) {
        if self.live.insert(token.clone(), workspace).is_none() {
            self.order.push_back(token);
        }
        while self.live.len() > MAX_LIVE_TOKENS {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.live.remove(&oldest);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * MAX_LIVE_TOKENS {
            let live = &self.live;
            self.order.retain(|token| live.contains_key(token));
        }
    }

    /// The workspace of a token that was live, which no longer is.
    fn remove(&mut self, token: &str) -> Option<usize> {
        self.live.remove(token)
    }

    fn workspace_of(&self, token: &str) -> Option<usize> {
        self.live.get(token).copied()
    }
}

impl Sandbox {
    pub(crate) fn new(endpoints: &NotionEndpoints) -> Self {
        Self {
            client_id: endpoints.client_id.clone(),
            client_secret: endpoints.client_secret.clone(),
            redirect_uri: endpoints.redirect_uri.to_string(),
            issued: Arc::default(),
        }
    }

    /// The workspace a live access token gives access to (for the sandbox's API endpoints).
    fn workspace_of(&self, token: &str) -> Option<usize> {
        self.lock().access_tokens.workspace_of(token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Issued> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sandbox's routes, to be nested at [`crate::notion::SANDBOX_PATH`].
    pub(crate) fn routes(self) -> impl Endpoint<Output = Response> {
        Route::new()
            .at("/oauth/authorize", poem::get(consent_page).post(decide))
            .at("/oauth/token", post(token_endpoint))
            .at("/oauth/revoke", post(revoke))
            .at("/oauth/introspect", post(introspect))
            .at("/search", post(search))
            .data(self)
            .map_to_response()
    }
}

/// A random token with a recognisable prefix, like Notion's `secret_...` and `nrt_...`.
fn random_token(prefix: &str) -> Option<String> {
    let token = crate::crypto::random_token::<24>().ok()?;
    Some(format!("{prefix}{token}"))
}

fn no_randomness() -> Response {
    notion_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_server_error",
        "No randomness available.",
    )
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    owner: Option<String>,
    state: Option<String>,
}

/// Like Notion, a bad client id or redirect URI gets an error page, never a redirect.
fn rejection(
    sandbox: &Sandbox,
    client_id: Option<&str>,
    redirect_uri: Option<&str>,
) -> Option<Response> {
    let page = |message: &str| {
        page_response(
            StatusCode::BAD_REQUEST,
            &format!("<h1>Cannot authorize</h1><p>{}</p>", escape(message)),
        )
    };
    if client_id != Some(sandbox.client_id.as_str()) {
        return Some(page("Unknown integration: the client_id is not valid."));
    }
    if redirect_uri != Some(sandbox.redirect_uri.as_str()) {
        return Some(page(
            "The redirect_uri does not match the integration's settings.",
        ));
    }
    None
}

#[handler]
fn consent_page(sandbox: Data<&Sandbox>, query: Query<AuthorizeQuery>) -> Response {
    if let Some(response) = rejection(
        &sandbox,
        query.client_id.as_deref(),
        query.redirect_uri.as_deref(),
    ) {
        return response;
    }
    if query.response_type.as_deref() != Some("code") || query.owner.as_deref() != Some("user") {
        return page_response(
            StatusCode::BAD_REQUEST,
            "<h1>Cannot authorize</h1><p>Expected response_type=code and owner=user.</p>",
        );
    }
    let hidden = |name: &str, value: &str| {
        format!(
            r#"<input type="hidden" name="{name}" value="{}">"#,
            escape(value)
        )
    };
    let choices: String = WORKSPACES
        .iter()
        .enumerate()
        .map(|(index, workspace)| {
            format!(
                r#"<label class="consent-workspace"><input type="radio" name="workspace" value="{index}"{}>
<span class="workspace-icon" aria-hidden="true">{}</span> <strong>{}</strong></label>"#,
                if index == 0 { " checked" } else { "" },
                workspace.icon,
                escape(workspace.name),
            )
        })
        .collect();
    let body = format!(
        r#"<h1 class="consent-title">Allow access to your workspace?</h1>
<p>notion-connect asks to read the pages and data sources of a workspace, so that you can
search them. These are pretend workspaces served by notion-connect itself for development: no
real Notion data is involved.</p>
<form method="post" action="authorize">
<fieldset class="consent-choices"><legend>Workspace</legend>
{choices}
</fieldset>
{}{}{}
<div class="actions">
<button type="submit" name="decision" value="allow" class="button primary">Allow access</button>
<button type="submit" name="decision" value="cancel" class="button">Cancel</button>
</div>
</form>"#,
        hidden("client_id", query.client_id.as_deref().unwrap_or_default()),
        hidden(
            "redirect_uri",
            query.redirect_uri.as_deref().unwrap_or_default()
        ),
        hidden("state", query.state.as_deref().unwrap_or_default()),
    );
    page_response(StatusCode::OK, &body)
}

#[handler]
async fn decide(sandbox: Data<&Sandbox>, body: Body) -> Response {
    let form = match read_fields(None, body).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    if let Some(response) = rejection(&sandbox, field("client_id"), field("redirect_uri")) {
        return response;
    }
    let mut target = url::Url::parse(&sandbox.redirect_uri).expect("validated at start-up");
    {
        let mut query = target.query_pairs_mut();
        if field("decision") == Some("allow") {
            let Some(code) = random_token("sbx_code_") else {
                return no_randomness();
            };
            // A workspace the page did not offer is not one to grant.
            let workspace = field("workspace")
                .map_or(Some(0), |raw| raw.parse::<usize>().ok())
                .filter(|index| *index < WORKSPACES.len())
                .unwrap_or(0);
            let now = Instant::now();
            let pending = PendingCode {
                redirect_uri: sandbox.redirect_uri.clone(),
                expires: now + CODE_LIFETIME,
                workspace,
            };
            let kept = sandbox.lock().add_code(code.clone(), pending, now);
            if !kept {
                return page_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "<h1>Try again in a minute</h1><p>Too many authorizations are waiting.</p>",
                );
            }
            query.append_pair("code", &code);
        } else {
            query.append_pair("error", "access_denied");
        }
        if let Some(state) = field("state").filter(|s| !s.is_empty()) {
            query.append_pair("state", state);
        }
    }
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, target.as_str())
        .finish()
}

/// A request to the token endpoint, by its `grant_type`.
#[derive(Deserialize)]
#[serde(tag = "grant_type", rename_all = "snake_case")]
enum TokenRequest {
    AuthorizationCode {
        code: Option<String>,
        redirect_uri: Option<String>,
    },
    RefreshToken {
        refresh_token: Option<String>,
    },
}

/// A successful token response, in Notion's shape.
#[derive(Serialize)]
struct TokenGrant {
    access_token: String,
    token_type: &'static str,
    refresh_token: String,
    bot_id: &'static str,
    workspace_id: &'static str,
    workspace_name: &'static str,
    workspace_icon: &'static str,
    owner: Value,
    duplicated_template_id: Option<String>,
    request_id: uuid::Uuid,
}

#[handler]
async fn token_endpoint(sandbox: Data<&Sandbox>, req: &Request, body: Body) -> Response {
    let fields = match client_request(&sandbox, req, body).await {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let fields = fields
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let Ok(request) = serde_json::from_value::<TokenRequest>(Value::Object(fields)) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant_type.",
        );
    };
    let invalid_grant =
        |description| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
    let mut issued = sandbox.lock();
    let workspace = match request {
        TokenRequest::AuthorizationCode { code, redirect_uri } => {
            let Some(code) = code else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code is required.",
                );
            };
            // Single use: the code is gone whatever happens next.
            let Some(pending) = issued.codes.remove(&code) else {
                return invalid_grant("The code is invalid or was used.");
            };
            if Instant::now() > pending.expires {
                return invalid_grant("The code expired.");
            }
            if redirect_uri.as_deref() != Some(pending.redirect_uri.as_str()) {
                return invalid_grant("redirect_uri does not match.");
            }
            pending.workspace
        }
        TokenRequest::RefreshToken { refresh_token } => {
            // Rotation: the old refresh token stops working.
            let refreshed = issued
                .refresh_tokens
                .remove(refresh_token.as_deref().unwrap_or_default());
            let Some(workspace) = refreshed else {
                return invalid_grant("The refresh token is invalid.");
            };
            workspace
        }
    };
    let granted = &WORKSPACES[workspace];
    let (access_token, refresh_token) =
        match (random_token("secret_sbx_"), random_token("nrt_sbx_")) {
            (Some(access), Some(refresh)) => (access, refresh),
            _ => return no_randomness(),
        };
    issued.access_tokens.insert(access_token.clone(), workspace);
    issued
        .refresh_tokens
        .insert(refresh_token.clone(), workspace);
    let grant = TokenGrant {
        access_token,
        token_type: "bearer",
        refresh_token,
        bot_id: granted.bot_id,
        workspace_id: granted.workspace_id,
        workspace_name: granted.name,
        workspace_icon: granted.icon,
        owner: json!({
            "type": "user",
            "user": {
                "object": "user",
                "id": "5a4d1b0e-0000-4000-8000-5a4d00000003",
                "name": "Sandbox User",
                "avatar_url": null,
                "type": "person",
                "person": { "email": "sandbox.user@example.com" }
            }
        }),
        duplicated_template_id: None,
        request_id: uuid::Uuid::now_v7(),
    };
    json_response(StatusCode::OK, &json!(grant))
}

#[handler]
async fn revoke(sandbox: Data<&Sandbox>, req: &Request, body: Body) -> Response {
    let fields = match client_request(&sandbox, req, body).await {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let token = fields.get("token").cloned().unwrap_or_default();
    let mut issued = sandbox.lock();
    let access = issued.access_tokens.remove(&token);
    let refresh = issued.refresh_tokens.remove(&token);
    // Like Notion: a token it does not (or no longer) accept gets a bare `{}` with 400.
    let status = if access.is_some() || refresh.is_some() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    json_response(status, &json!({}))
}

#[handler]
async fn introspect(sandbox: Data<&Sandbox>, req: &Request, body: Body) -> Response {
    let fields = match client_request(&sandbox, req, body).await {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let token = fields.get("token").cloned().unwrap_or_default();
    let active = sandbox.workspace_of(&token).is_some();
    json_response(StatusCode::OK, &json!({ "active": active }))
}

#[derive(Deserialize, Default)]
struct SearchBody {
    query: Option<String>,
    filter: Option<SearchFilter>,
    sort: Option<SearchSort>,
    start_cursor: Option<String>,
    page_size: Option<i64>,
}

#[derive(Deserialize)]
struct SearchFilter {
    property: String,
    value: String,
}

#[derive(Deserialize)]
struct SearchSort {
    direction: String,
    timestamp: String,
}

const CURSOR_PREFIX: &str = "sbx:";

/// `POST /search` over the token's seeded workspace, in Notion's shape: title query (case-insensitive),
/// object filter, sort by last edited time, and opaque cursors.
#[handler]
async fn search(sandbox: Data<&Sandbox>, req: &Request, body: Body) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(workspace) = bearer.and_then(|token| sandbox.workspace_of(token)) else {
        return notion_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "API token is invalid.",
        );
    };
    if req.headers().get("notion-version").is_none() {
        return notion_error(
            StatusCode::BAD_REQUEST,
            "missing_version",
            "Notion-Version header failed validation: Notion-Version header should be defined.",
        );
    }
    let Ok(bytes) = body.into_bytes().await else {
        return notion_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Unreadable body.",
        );
    };
    let request: SearchBody = if bytes.is_empty() {
        SearchBody::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(request) => request,
            Err(_) => {
                return notion_error(StatusCode::BAD_REQUEST, "invalid_json", "Invalid JSON.");
            }
        }
    };
    let invalid =
        |message: &str| notion_error(StatusCode::BAD_REQUEST, "validation_error", message);
    let page_size = request.page_size.unwrap_or(100);
    if !(1..=100).contains(&page_size) {
        return invalid("body.page_size should be between 1 and 100.");
    }
    let object = match &request.filter {
        None => None,
        Some(f) if f.property == "object" && (f.value == "page" || f.value == "data_source") => {
            Some(f.value.as_str())
        }
        Some(_) => return invalid("body.filter.value should be \"page\" or \"data_source\"."),
    };
    let ascending = match &request.sort {
        None => false,
        Some(s) if s.timestamp == "last_edited_time" && s.direction == "ascending" => true,
        Some(s) if s.timestamp == "last_edited_time" && s.direction == "descending" => false,
        Some(_) => return invalid("body.sort should sort by last_edited_time."),
    };
    let start = match request.start_cursor.as_deref() {
        None => 0,
        Some(cursor) => match URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|raw| {
                raw.strip_prefix(CURSOR_PREFIX)
                    .and_then(|n| n.parse::<usize>().ok())
            }) {
            Some(offset) => offset,
            None => return invalid("body.start_cursor should be a valid cursor."),
        },
    };

    let needle = request
        .query
        .as_deref()
        .map(str::to_lowercase)
        .filter(|q| !q.trim().is_empty());
    let mut matching: Vec<&workspace::SeedItem> = workspace::items_of(workspace)
        .iter()
        .filter(|item| object.is_none_or(|o| item.object == o))
        .filter(|item| match &needle {
            None => true,
            Some(needle) => !item.partial && item.title.to_lowercase().contains(needle.as_str()),
        })
        .collect();
    matching.sort_by_key(|item| item.last_edited_time);
    if !ascending {
        matching.reverse();
    }
    // The cursor comes from the client: no arithmetic on it may overflow.
    let end = start.saturating_add(page_size as usize).min(matching.len());
    let page = matching.get(start..end).unwrap_or_default();
    let has_more = end < matching.len();
    let next_cursor = has_more.then(|| URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{end}")));
    // The items are rendered once, so a page is stitched together from their texts.
    let mut body =
        String::with_capacity(page.iter().map(|item| item.json.len() + 1).sum::<usize>() + 256);
    body.push_str(r#"{"object":"list","results":["#);
    for (i, item) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&item.json);
    }
    let next_cursor = serde_json::to_string(&next_cursor).unwrap_or_else(|_| "null".into());
    let request_id = uuid::Uuid::now_v7();
    body.push_str(&format!(
        r#"],"next_cursor":{next_cursor},"has_more":{has_more},"type":"page_or_data_source","page_or_data_source":{{}},"request_id":"{request_id}"}}"#
    ));
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(body)
}

/// The fields of a request from the integration, after checking its HTTP Basic credentials.
async fn client_request(
    sandbox: &Sandbox,
    req: &Request,
    body: Body,
) -> Result<HashMap<String, String>, Response> {
    if !client_authenticated(sandbox, req) {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        ));
    }
    read_fields(content_type(req), body).await
}

fn content_type(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// HTTP Basic `client_id:client_secret`, as Notion requires.
fn client_authenticated(sandbox: &Sandbox, req: &Request) -> bool {
    let expected = STANDARD.encode(format!(
        "{}:{}",
        sandbox.client_id,
        sandbox.client_secret.expose()
    ));
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|given| given.len() == expected.len() && given == expected)
}

/// The fields of a JSON object or form-encoded body, as strings.
async fn read_fields(
    content_type: Option<&str>,
    body: Body,
) -> Result<HashMap<String, String>, Response> {
    let bytes = body.into_bytes().await.map_err(|_| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body could not be read.",
        )
    })?;
    if content_type.is_some_and(|ct| ct.starts_with("application/json")) {
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
            notion_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "The body is not valid JSON.",
            )
        })?;
        let object = value.as_object().ok_or_else(|| {
            notion_error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "The body must be an object.",
            )
        })?;
        Ok(object
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
            .collect())
    } else {
        Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
    }
}

/// RFC 6749 error shape, used by Notion's OAuth endpoints.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// Notion's API error shape.
fn notion_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "object": "error",
            "status": status.as_u16(),
            "code": code,
            "message": message,
            "request_id": uuid::Uuid::now_v7(),
        }),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_string())
}

fn page_response(status: StatusCode, body: &str) -> Response {
    // The web app's stylesheet and icon, from the service's own origin like the page itself.
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Notion sandbox · notion-connect</title>
<link rel="icon" href="/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header><p class="banner"><strong>Notion sandbox:</strong> a stand-in for Notion that
notion-connect serves for development.</p></header>
<main class="narrow"><section class="card">{body}</section></main>
</body>
</html>"#
    );
    let mut response = Html(html).with_status(status).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_codes_are_bounded_and_expired_ones_make_room() {
        let mut issued = Issued::default();
        let now = Instant::now();
        let pending = |at: Instant| PendingCode {
            redirect_uri: "r".into(),
            expires: at + CODE_LIFETIME,
            workspace: 0,
        };
        for i in 0..MAX_PENDING_CODES {
            assert!(issued.add_code(format!("c{i}"), pending(now), now));
        }
        assert!(!issued.add_code("one more".into(), pending(now), now));
        assert_eq!(issued.codes.len(), MAX_PENDING_CODES);
        let later = now + CODE_LIFETIME + Duration::from_secs(1);
        assert!(issued.add_code("after expiry".into(), pending(later), later));
        assert_eq!(issued.codes.len(), 1);
    }

    #[test]
    fn live_tokens_forget_the_oldest_and_stay_bounded() {
        let mut tokens = LiveTokens::default();
        for i in 0..MAX_LIVE_TOKENS + 10 {
            tokens.insert(format!("t{i}"), i % WORKSPACES.len());
        }
        assert_eq!(tokens.live.len(), MAX_LIVE_TOKENS);
        assert!(tokens.workspace_of("t0").is_none() && tokens.workspace_of("t9").is_none());
        assert_eq!(tokens.workspace_of("t10"), Some(10 % WORKSPACES.len()));
        // Churn (rotation removes what it replaces) does not grow the order queue for ever.
        for i in 0..5 * MAX_LIVE_TOKENS {
            let token = format!("r{i}");
            tokens.insert(token.clone(), 0);
            assert_eq!(tokens.remove(&token), Some(0));
        }
        assert!(tokens.order.len() <= 2 * MAX_LIVE_TOKENS + 1);
    }
}
