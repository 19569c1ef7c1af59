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

use super::{
    client::NotionError,
    errors::SearchError,
    oauth::{ExchangeError, NotionOAuth},
    revoker::Revoker,
    vault::ConnectionVault,
};
use crate::{
    secret::Secret,
    store::connections::{self, ConnectionStatus},
};

/// How much longer than the longest refresh call (`NOTION_TIMEOUT`) a lease lasts. A holder
/// that dies mid-way blocks refreshes of its connection for that long.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
const LEASE_POLL: Duration = Duration::from_millis(100);

/// Refreshes connections' access tokens, one refresh per connection at a time.
pub(crate) struct TokenRefresher {
    vault: ConnectionVault,
    oauth: Arc<NotionOAuth>,
    /// Revokes the tokens of a refresh whose connection went away meanwhile.
    revoker: Arc<Revoker>,
    /// How long a refresh may wait for another instance's (`NOTION_TIMEOUT`).
    wait: Duration,
    /// Per-connection refresh mutexes of this process.
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl TokenRefresher {
    pub(crate) fn new(
        vault: ConnectionVault,
        oauth: Arc<NotionOAuth>,
        revoker: Arc<Revoker>,
        wait: Duration,
    ) -> Self {
        Self {
            vault,
            oauth,
            revoker,
            wait,
            locks: Mutex::default(),
        }
    }

    /// The mutex of connection `id`.
    fn lock_of(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget locks nobody holds or waits for, so the map does not grow without bound.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(id).or_default().clone()
    }

    /// Returns an access token newer than `rejected`: one another caller stored meanwhile, or a
    /// freshly refreshed one.
    pub(crate) async fn fresh_token(
        &self,
        id: Uuid,
        rejected: &Secret<String>,
    ) -> Result<Secret<String>, SearchError> {
        let lock = self.lock_of(id);
        let _guard = lock.lock().await;
        let deadline = Instant::now() + self.wait;
        let store = &self.vault;
        let db = store.db();
        loop {
            let row = connections::find(db, id)
                .await?
                .ok_or(SearchError::NeedsReauth)?;
            if row.status == ConnectionStatus::NeedsReauth {
                return Err(SearchError::NeedsReauth);
            }
            let current = store.opened(&row, store.access_token(&row)).await?;
            if current.expose() != rejected.expose() {
                return Ok(current);
            }
            let Some(refresh_token) = store.opened(&row, store.refresh_token(&row)).await? else {
                self.oauth.metrics().token_refresh("no_refresh_token");
                store.mark_needs_reauth(id).await?;
                return Err(SearchError::NeedsReauth);
            };
            // Whole seconds, so the value reads back exactly on every database.
            let until = (OffsetDateTime::now_utc() + self.wait + LEASE_MARGIN)
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc());
            if !connections::claim_refresh_lease(db, id, &row.access_token, until).await? {
                // Another instance is refreshing, or has just stored a new token: look again.
                if Instant::now() + LEASE_POLL >= deadline {
                    return Err(SearchError::Notion(NotionError::Timeout));
                }
                tokio::time::sleep(LEASE_POLL).await;
                continue;
            }
            return match self.oauth.refresh(&refresh_token).await {
                Ok(grant) => {
                    let refresh = grant.refresh_token.as_ref().unwrap_or(&refresh_token);
                    let stored = store
                        .store_refreshed(&row, until, &grant.access_token, refresh)
                        .await?;
                    if !stored {
                        match connections::find(db, id).await? {
                            Some(now) if now.access_token == row.access_token => {
                                self.oauth.metrics().token_refresh("lease_lost");
                                // The lease ran out and someone else holds it now: what they
                                // store wins, and the connection is not blamed.
                                tracing::warn!(connection_id = %id, "the refresh lease was lost; the refreshed tokens were discarded");
                            }
                            now => {
                                // The connection was deleted, or authorized again, while Notion
                                // refreshed it: nobody keeps the new token, so it is revoked.
                                self.oauth.metrics().token_refresh("orphaned");
                                let kept = now.as_ref().is_some_and(|now| {
                                    store.holds_access_token(now, &grant.access_token)
                                });
                                if !kept {
                                    self.revoker
                                        .revoke_unkept(&row, &grant.access_token)
                                        .await?;
                                }
                                tracing::info!(connection_id = %id, "the connection changed during a refresh; the refreshed token will be revoked");
                                if now.is_none() {
                                    return Err(SearchError::NotFound);
                                }
                            }
                        }
                        continue;
                    }
                    self.oauth.metrics().token_refresh("refreshed");
                    tracing::info!(connection_id = %id, "refreshed a Notion access token");
                    Ok(grant.access_token)
                }
                Err(ExchangeError::Refused(code)) => {
                    self.oauth.metrics().token_refresh("refused");
                    tracing::warn!(connection_id = %id, %code, "Notion refused the refresh token");
                    store.mark_needs_reauth(id).await?;
                    Err(SearchError::NeedsReauth)
                }
                Err(e) => {
                    self.oauth.metrics().token_refresh("failed");
                    tracing::warn!(connection_id = %id, error = %crate::chain::Chain(&e), "refreshing failed");
                    let _ = connections::release_refresh_lease(db, id, until).await;
                    Err(SearchError::Refresh(e))
                }
            };
        }
    }
}
