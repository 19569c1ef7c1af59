//! Connecting a Notion workspace: the authorize URL, and the callback Notion sends the browser
//! back to. The flow's rules are the connection service's ([`crate::notion::authorization`]);
//! here, the flow's binding secret travels in an HttpOnly cookie, and the callback always ends
//! with a redirect to the web app, never with a page of its own.

use poem::{Request, web::Data};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};
use time::OffsetDateTime;

use super::{
    ApiTags,
    cookies::{cookies, set_cookie},
    problem::{ApiError, Problem},
    security::BearerAuth,
};
use crate::{notion::authorization::STATE_LIFETIME, state::AppState};

/// The cookie that ties a flow to the browser that started it.
const BINDING_COOKIE: &str = "nc_oauth_binding";
const CALLBACK_PATH: &str = "/api/v1/notion/oauth/callback";

/// Where to send the browser to connect a workspace.
#[derive(Object)]
pub(crate) struct AuthorizeUrl {
    /// Notion's consent page (or the sandbox's), with a fresh `state`.
    pub authorize_url: String,
    /// The flow must be finished before this moment.
    pub expires_at: OffsetDateTime,
}

#[derive(ApiResponse)]
pub(crate) enum AuthorizeResponse {
    /// Send the browser to `authorize_url`. The response also sets a short-lived cookie that
    /// binds the flow to this browser.
    #[oai(status = 200)]
    Ready(Json<AuthorizeUrl>, #[oai(header = "Set-Cookie")] String),
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
}

#[derive(ApiResponse)]
pub(crate) enum CallbackResponse {
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
pub(crate) struct NotionOAuthApi;

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
        let flow = state
            .connections
            .start_authorization(auth.0.user.id)
            .await?;
        let cookie = binding_cookie(
            &state,
            flow.binding.expose(),
            STATE_LIFETIME.whole_seconds(),
        );
        Ok(AuthorizeResponse::Ready(
            Json(AuthorizeUrl {
                authorize_url: flow.authorize_url.to_string(),
                expires_at: flow.expires_at,
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
        let bindings = cookies(&state.settings, req, BINDING_COOKIE);
        let callback = state
            .connections
            .finish_authorization(oauth_state.0.as_deref(), &bindings, code.0, error.0)
            .await;
        // Only the callback of this browser's own flow may end it: a stray or forged callback
        // leaves the binding of a flow in progress alone.
        let clear_binding = callback.claimed.then(|| binding_cookie(&state, "", 0));
        let outcome = callback.connected;
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
