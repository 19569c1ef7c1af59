//! The rules of Notion's OAuth flow on our side.
//!
//! A flow is bound three ways: its `state` (256 random bits, stored only as a hash, single use,
//! ten minutes) names the user who started it; a binding secret, which the browser keeps in an
//! HttpOnly cookie, ties it to that user's browser; and the redirect target is fixed by
//! configuration, never taken from the request.
//!
//! The state is claimed (marked consumed, atomically) before the code is exchanged, so a replayed
//! or concurrent callback can never cause a second exchange, even across instances. The
//! exchange is an HTTP call to Notion and no database lock is held over it.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

use super::oauth::{ExchangeError, Grant, NotionOAuth};
use crate::{
    auth::hash_token,
    chain::Chain,
    crypto::random_token,
    secret::Secret,
    store::{StoreError, oauth_states},
};

/// How long a flow may take, from the authorize URL to the callback.
pub(crate) const STATE_LIFETIME: time::Duration = time::Duration::minutes(10);

/// A flow just started.
pub(crate) struct StartedFlow {
    /// Notion's consent page, with the flow's `state`.
    pub authorize_url: Url,
    /// For the browser's binding cookie.
    pub binding: Secret<String>,
    pub expires_at: OffsetDateTime,
}

/// A flow whose state a callback has claimed.
#[derive(Clone, Copy)]
pub(crate) struct ClaimedFlow {
    pub state_id: Uuid,
    pub user_id: Uuid,
}

/// Why a callback connected nothing, as the web app is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallbackError {
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

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("database")]
    Store(#[from] StoreError),
    #[error("no randomness available")]
    Random(#[from] getrandom::Error),
}

pub(crate) struct AuthorizationFlow {
    db: DatabaseConnection,
    oauth: Arc<NotionOAuth>,
}

impl AuthorizationFlow {
    pub(crate) fn new(db: DatabaseConnection, oauth: Arc<NotionOAuth>) -> Self {
        Self { db, oauth }
    }

    /// Starts a flow for `user_id`.
    pub(crate) async fn start(&self, user_id: Uuid) -> Result<StartedFlow, StartError> {
        let state = random_token::<32>()?;
        let binding = random_token::<32>()?;
        let expires_at = OffsetDateTime::now_utc() + STATE_LIFETIME;
        oauth_states::insert(
            &self.db,
            user_id,
            hash_token(&state),
            hash_token(&binding),
            expires_at,
        )
        .await?;
        Ok(StartedFlow {
            authorize_url: self.oauth.authorize_url(&state),
            binding: Secret::new(binding),
            expires_at,
        })
    }

    /// Checks and claims the state: it must exist, be unexpired and unclaimed, and come with the
    /// binding of the browser that started the flow (`bindings`: those the browser sent).
    pub(crate) async fn claim(
        &self,
        state: Option<&str>,
        bindings: &[&str],
    ) -> Result<ClaimedFlow, CallbackError> {
        let rejected = |reason: &'static str, user_id: Option<Uuid>| {
            tracing::warn!(
                event = "oauth_state_rejected",
                reason,
                user_id = user_id.map(|id| id.to_string()),
                "an OAuth callback was refused"
            );
            CallbackError::InvalidState
        };
        let Some(state) = state.filter(|s| !s.is_empty() && s.len() <= 128) else {
            return Err(rejected("missing", None));
        };
        let Some(row) = oauth_states::find_by_hash(&self.db, &hash_token(state))
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
        let same_browser = bindings
            .iter()
            .any(|binding| constant_time_eq(&hash_token(binding), &row.binding_hash));
        if !same_browser {
            return Err(rejected("other_browser", Some(row.user_id)));
        }
        let claimed = oauth_states::claim(&self.db, row.id)
            .await
            .map_err(server_error("claiming an OAuth state"))?;
        if !claimed {
            return Err(rejected("used", Some(row.user_id)));
        }
        Ok(ClaimedFlow {
            state_id: row.id,
            user_id: row.user_id,
        })
    }

    /// Exchanges the callback's code, once.
    pub(crate) async fn exchange(&self, code: Option<String>) -> Result<Grant, CallbackError> {
        let code = code
            .filter(|c| !c.is_empty())
            .ok_or(CallbackError::ExchangeFailed)?;
        self.oauth.exchange(&code).await.map_err(|e| {
            tracing::warn!(error = %Chain(&e), "Notion code exchange failed");
            match e {
                ExchangeError::Refused(_) => CallbackError::ExchangeFailed,
                ExchangeError::Unavailable(_) => CallbackError::NotionUnavailable,
            }
        })
    }
}

/// What an `error` from Notion's consent page means for the browser.
pub(crate) fn denied(error: &str) -> CallbackError {
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

fn server_error(doing: &'static str) -> impl Fn(StoreError) -> CallbackError + Copy {
    move |e| {
        tracing::error!(error = %Chain(&e), "{doing} failed");
        CallbackError::ServerError
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
