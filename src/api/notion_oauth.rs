//! Connecting a Notion workspace: the authorize URL, and the callback Notion sends the browser
//! back to.
//!
//! The flow is bound three ways: the `state` (256 random bits, stored only as a hash, single use,
//! ten minutes) names the user who started it; an HttpOnly cookie set with the authorize URL
//! ties it to that user's browser; and the redirect target is fixed by configuration, never
//! taken from the request.
//!
//! The state is claimed (marked consumed, atomically) before the code is exchanged, so a replayed
//! or concurrent callback can never cause a second exchange, even across instances. The
//! exchange is an HTTP call to Notion and no database lock is held over it. Afterwards one
//! transaction deletes the claimed state and stores the connection: both happen or neither does,
//! and a flow whose user was deleted meanwhile stores nothing.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};
use time::OffsetDateTime;

use super::{ApiTags, cookies, set_cookie};
use crate::{
    auth::{BearerAuth, hash_token},
    crypto::random_token,
    error::{ApiError, Chain, Problem},
    notion::{connections::Completed, oauth::ExchangeError},
    state::AppState,
    store::{StoreError, oauth_states},
};

/// The cookie that ties a flow to the browser that started it.
const BINDING_COOKIE: &str = "nc_oauth_binding";
const CALLBACK_PATH: &str = "/api/v1/notion/oauth/callback";
const STATE_LIFETIME: time::Duration = time::Duration::minutes(10);

/// Where to send the browser to connect a workspace.
#[derive(Object)]
pub struct AuthorizeUrl {
    /// Notion's consent page (or the sandbox's), with a fresh `state`.
    pub authorize_url: String,
    /// The flow must be finished before this moment.
    pub expires_at: OffsetDateTime,
}

#[derive(ApiResponse)]
pub enum AuthorizeResponse {
    /// Send the browser to `authorize_url`. The response also sets a short-lived cookie that
    /// binds the flow to this browser.
    #[oai(status = 200)]
    Ready(Json<AuthorizeUrl>, #[oai(header = "Set-Cookie")] String),
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
}

#[derive(ApiResponse)]
pub enum CallbackResponse {
    /// Back to the web app: `#/connections?connected={connection_id}` on success, or
    /// `#/connections?error={code}` with `access_denied`, `invalid_state`, `exchange_failed`,
    /// `notion_unavailable` or `server_error`. The binding cookie is cleared when the state
    /// belonged to this browser's flow.
    #[oai(status = 303)]
    SeeOther(
        #[oai(header = "Location")] String,
        #[oai(header = "Set-Cookie")] Option<String>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Referrer-Policy")] String,
    ),
}

#[derive(Default)]
pub struct NotionOAuthApi;

#[OpenApi(prefix_path = "/notion/oauth", tag = "ApiTags::Notion")]
impl NotionOAuthApi {
    /// Start connecting a workspace
    ///
    /// Returns Notion's consent URL for the current user. Open it in the same browser: the
    /// callback only accepts the browser that received this response.
    #[oai(
        path = "/authorize",
        method = "post",
        operation_id = "notion_authorize"
    )]
    async fn authorize(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
    ) -> Result<AuthorizeResponse, ApiError> {
        let oauth_state = random_token::<32>().map_err(ApiError::internal)?;
        let binding = random_token::<32>().map_err(ApiError::internal)?;
        let expires_at = OffsetDateTime::now_utc() + STATE_LIFETIME;
        oauth_states::insert(
            &state.db,
            auth.0.user.id,
            hash_token(&oauth_state),
            hash_token(&binding),
            expires_at,
        )
        .await?;
        let url = state.notion.authorize_url(&oauth_state);
        let cookie = binding_cookie(&state, &binding, STATE_LIFETIME.whole_seconds());
        Ok(AuthorizeResponse::Ready(
            Json(AuthorizeUrl {
                authorize_url: url.to_string(),
                expires_at,
            }),
            cookie,
        ))
    }

    /// OAuth callback
    ///
    /// The redirect URI registered with Notion. Browsers arrive here from Notion's consent page
    /// and leave for the web app; nothing here is meant to be called directly.
    #[oai(path = "/callback", method = "get", operation_id = "notion_callback")]
    async fn callback(
        &self,
        state: Data<&AppState>,
        req: &Request,
        code: Query<Option<String>>,
        #[oai(name = "state")] oauth_state: Query<Option<String>>,
        error: Query<Option<String>>,
    ) -> Result<CallbackResponse, ApiError> {
        // A valid state is consumed whatever happens next, so it can never be replayed.
        let flow = claim_state(&state, req, oauth_state.0.as_deref()).await;
        // Only the callback of this browser's own flow may end it: a stray or forged callback
        // leaves the binding of a flow in progress alone.
        let clear_binding = flow.is_ok().then(|| binding_cookie(&state, "", 0));
        let outcome = finish(&state, flow, code.0, error.0).await;
        state.metrics.oauth_callback(match outcome {
            Ok(_) => "connected",
            Err(code) => code.as_str(),
        });
        let web = state.settings.web_url.as_str().trim_end_matches('/');
        let location = match outcome {
            Ok(connection_id) => format!("{web}/#/connections?connected={connection_id}"),
            Err(code) => format!("{web}/#/connections?error={}", code.as_str()),
        };
        Ok(CallbackResponse::SeeOther(
            location,
            clear_binding,
            "no-store".to_owned(),
            "no-referrer".to_owned(),
        ))
    }
}

/// What the callback tells the web app when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackError {
    AccessDenied,
    InvalidState,
    ExchangeFailed,
    NotionUnavailable,
    /// Our own failure, such as an unreachable database; the cause is logged.
    ServerError,
}

impl CallbackError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::InvalidState => "invalid_state",
            Self::ExchangeFailed => "exchange_failed",
            Self::NotionUnavailable => "notion_unavailable",
            Self::ServerError => "server_error",
        }
    }
}

async fn finish(
    state: &AppState,
    flow: Result<Flow, CallbackError>,
    code: Option<String>,
    error: Option<String>,
) -> Result<uuid::Uuid, CallbackError> {
    if let Some(error) = error {
        return Err(denied(&error));
    }
    let flow = flow?;
    let code = code
        .filter(|c| !c.is_empty())
        .ok_or(CallbackError::ExchangeFailed)?;
    let grant = state.notion.exchange(&code).await.map_err(|e| {
        tracing::warn!(error = %Chain(&e), "Notion code exchange failed");
        match e {
            ExchangeError::Refused(_) => CallbackError::ExchangeFailed,
            ExchangeError::Unavailable(_) => CallbackError::NotionUnavailable,
        }
    })?;
    let completed = state
        .connections
        .complete_authorization(flow.state_id, flow.user_id, grant)
        .await
        .map_err(|e| {
            tracing::error!(error = %Chain(&e), "storing a Notion connection failed");
            CallbackError::ServerError
        })?;
    match completed {
        Completed::Stored(id) => {
            tracing::info!(connection_id = %id, user_id = %flow.user_id, "Notion workspace connected");
            Ok(id)
        }
        Completed::UserGone => {
            tracing::info!(user_id = %flow.user_id, "the user was deleted during a Notion authorization");
            Err(CallbackError::InvalidState)
        }
    }
}

/// What an `error` from Notion's consent page means for the browser.
fn denied(error: &str) -> CallbackError {
    // The value comes from the query string: log only a tame prefix of it.
    let logged: String = error
        .chars()
        .take(40)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    tracing::info!(error = %logged, "Notion authorization ended without a code");
    match error {
        "access_denied" => CallbackError::AccessDenied,
        "temporarily_unavailable" | "server_error" => CallbackError::NotionUnavailable,
        _ => CallbackError::ExchangeFailed,
    }
}

/// A flow whose state this callback has claimed.
#[derive(Clone, Copy)]
struct Flow {
    state_id: uuid::Uuid,
    user_id: uuid::Uuid,
}

fn server_error(doing: &'static str) -> impl Fn(StoreError) -> CallbackError + Copy {
    move |e| {
        tracing::error!(error = %Chain(&e), "{doing} failed");
        CallbackError::ServerError
    }
}

/// Checks and claims the state: it must exist, be unexpired and unclaimed, and come with the
/// cookie of the browser that started the flow.
async fn claim_state(
    state: &AppState,
    req: &Request,
    oauth_state: Option<&str>,
) -> Result<Flow, CallbackError> {
    let rejected = |reason: &'static str, user_id: Option<uuid::Uuid>| {
        tracing::warn!(
            event = "oauth_state_rejected",
            reason,
            user_id = user_id.map(|id| id.to_string()),
            "an OAuth callback was refused"
        );
        CallbackError::InvalidState
    };
    let Some(oauth_state) = oauth_state.filter(|s| !s.is_empty() && s.len() <= 128) else {
        return Err(rejected("missing", None));
    };
    let Some(row) = oauth_states::find_by_hash(&state.db, &hash_token(oauth_state))
        .await
        .map_err(server_error("reading an OAuth state"))?
    else {
        return Err(rejected("unknown", None));
    };
    if row.consumed_at.is_some() {
        return Err(rejected("used", Some(row.user_id)));
    }
    if row.expires_at <= OffsetDateTime::now_utc() {
        return Err(rejected("expired", Some(row.user_id)));
    }
    let same_browser = cookies(&state.settings, req, BINDING_COOKIE)
        .into_iter()
        .any(|binding| constant_time_eq(&hash_token(binding), &row.binding_hash));
    if !same_browser {
        return Err(rejected("other_browser", Some(row.user_id)));
    }
    let claimed = oauth_states::claim(&state.db, row.id)
        .await
        .map_err(server_error("claiming an OAuth state"))?;
    if !claimed {
        return Err(rejected("used", Some(row.user_id)));
    }
    Ok(Flow {
        state_id: row.id,
        user_id: row.user_id,
    })
}

/// SameSite=Lax: the callback is a top-level navigation from Notion, which Strict would strip.
fn binding_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    set_cookie(
        &state.settings,
        BINDING_COOKIE,
        value,
        CALLBACK_PATH,
        max_age as u64,
        "Lax",
    )
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
