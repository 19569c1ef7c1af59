//! A connection's access token, and refreshing it when Notion stops accepting it.
//!
//! Refreshing spends the refresh token (Notion rotates the pair), so only one refresh per
//! connection may run at a time: within a process a per-connection mutex queues the callers,
//! across processes a lease in the connection's row does. The lease is granted only while the row
//! still holds the access token the caller saw rejected, so a caller whose read raced with
//! another instance's refresh looks again instead of spending a refresh token Notion has already
//! rotated away. Whoever waited then finds the new token already stored and uses it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use uuid::Uuid;

use super::oauth::ExchangeError;
use crate::{
    crypto::Binding,
    secret::Secret,
    state::AppState,
    store::connections::{self, Connection},
};

/// How long a refresh lease lasts if its holder dies mid-way.
const LEASE: time::Duration = time::Duration::seconds(30);
const LEASE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No refresh token, or Notion refused it: the user must connect again.
    #[error("the connection needs to be authorized again")]
    NeedsReauth,
    #[error("Notion is unavailable for the refresh: {0}")]
    Unavailable(String),
    #[error("refresh timed out")]
    Timeout,
    #[error("{0}")]
    Internal(String),
}

/// Per-connection refresh mutexes of this process.
#[derive(Default)]
pub struct RefreshLocks(Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>);

impl RefreshLocks {
    fn get(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds or waits for, so the map does not grow without bound.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(id).or_default().clone()
    }
}

fn binding<'a>(row: &'a Connection, column: &'static str) -> Binding<'a> {
    Binding {
        user_id: row.user_id,
        bot_id: &row.bot_id,
        column,
    }
}

/// The decrypted access token of a row.
pub fn access_token(state: &AppState, row: &Connection) -> Result<Secret<String>, TokenError> {
    state
        .cipher
        .decrypt(&row.access_token, binding(row, "access_token"))
        .map_err(|e| TokenError::Internal(format!("decrypting the access token: {e}")))
}

/// Returns an access token newer than `rejected`: one another caller stored meanwhile, or a
/// freshly refreshed one.
pub async fn refresh(
    state: &AppState,
    id: Uuid,
    rejected: &Secret<String>,
) -> Result<Secret<String>, TokenError> {
    let lock = state.refresh_locks.get(id);
    let _guard = lock.lock().await;
    let deadline = Instant::now() + state.settings.notion.timeout;
    let internal = |e: crate::store::StoreError| TokenError::Internal(e.to_string());
    loop {
        let row = connections::find(&state.db, id)
            .await
            .map_err(internal)?
            .ok_or(TokenError::NeedsReauth)?;
        if row.status == connections::NEEDS_REAUTH {
            return Err(TokenError::NeedsReauth);
        }
        let current = access_token(state, &row)?;
        if current.expose() != rejected.expose() {
            return Ok(current);
        }
        let Some(sealed_refresh) = row.refresh_token.as_deref() else {
            connections::mark_needs_reauth(&state.db, id)
                .await
                .map_err(internal)?;
            return Err(TokenError::NeedsReauth);
        };
        let until = OffsetDateTime::now_utc() + LEASE;
        if !connections::claim_refresh_lease(&state.db, id, &row.access_token, until)
            .await
            .map_err(internal)?
        {
            // Another instance is refreshing, or has just stored a new token: look again.
            if Instant::now() + LEASE_POLL >= deadline {
                return Err(TokenError::Timeout);
            }
            tokio::time::sleep(LEASE_POLL).await;
            continue;
        }
        let refresh_token = state
            .cipher
            .decrypt(sealed_refresh, binding(&row, "refresh_token"))
            .map_err(|e| TokenError::Internal(format!("decrypting the refresh token: {e}")))?;
        return match state.notion.refresh(&refresh_token).await {
            Ok(grant) => {
                let seal = |token: &Secret<String>, column| {
                    state
                        .cipher
                        .encrypt(token.expose(), binding(&row, column))
                        .map_err(|e| TokenError::Internal(e.to_string()))
                };
                let access = seal(&grant.access_token, "access_token")?;
                // Keep the old refresh token if Notion did not send a new one.
                let refresh = match &grant.refresh_token {
                    Some(token) => Some(seal(token, "refresh_token")?),
                    None => Some(seal(&refresh_token, "refresh_token")?),
                };
                connections::store_refreshed(
                    &state.db,
                    id,
                    access,
                    refresh,
                    state.cipher.primary_key_id(),
                )
                .await
                .map_err(internal)?;
                tracing::info!(connection_id = %id, "refreshed a Notion access token");
                Ok(grant.access_token)
            }
            Err(ExchangeError::Refused(code)) => {
                tracing::warn!(connection_id = %id, %code, "Notion refused the refresh token");
                connections::mark_needs_reauth(&state.db, id)
                    .await
                    .map_err(internal)?;
                Err(TokenError::NeedsReauth)
            }
            Err(ExchangeError::Unavailable(reason)) => {
                let _ = connections::release_refresh_lease(&state.db, id).await;
                Err(TokenError::Unavailable(reason))
            }
        };
    }
}
