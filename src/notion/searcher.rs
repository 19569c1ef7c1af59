//! Searching one connection: its token opened from the vault, refreshed once when Notion stops
//! accepting it, and the answer parsed. Cheap to clone, so a search across workspaces can run
//! each workspace's on a task of its own.

use std::{sync::Arc, time::Instant};

use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    budget::Turn,
    client::{Caller, NotionClient, NotionError},
    errors::SearchError,
    refresher::TokenRefresher,
    search::{self, SearchPage, SearchRequest},
    vault::ConnectionVault,
};
use crate::store::connections::{ConnectionRow, ConnectionStatus};

#[derive(Clone)]
pub(crate) struct ConnectionSearcher {
    vault: ConnectionVault,
    api: Arc<NotionClient>,
    refresher: Arc<TokenRefresher>,
}

impl ConnectionSearcher {
    pub(crate) fn new(
        vault: ConnectionVault,
        api: Arc<NotionClient>,
        refresher: Arc<TokenRefresher>,
    ) -> Self {
        Self {
            vault,
            api,
            refresher,
        }
    }

    /// The connection `id` of `user_id`, with its next turn at Notion taken (see
    /// [`super::budget`]). While this instance is alone, from memory when it searched the
    /// connection lately; otherwise on PostgreSQL in one round trip.
    pub(crate) async fn find(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<Option<(Arc<ConnectionRow>, Turn)>, SearchError> {
        let budget = self.api.budget();
        let cache = self.vault.cache();
        if let Some(alone) = budget.membership().alone()
            && let Some(row) = cache.get(user_id, id)
        {
            let turn = budget.reserve_alone(&alone, row.id, &row.workspace_id, self.api.deadline());
            return Ok(Some((row, turn)));
        }
        let generation = cache.generation();
        let found = budget
            .find_and_reserve(self.vault.db(), user_id, id, self.api.deadline())
            .await?;
        Ok(found.map(|(row, turn)| {
            if budget.membership().is_alone() {
                cache.keep(&row, generation);
            }
            (Arc::new(row), turn)
        }))
    }

    /// Searches the connection `row`, Notion's calls ending by `until` if given, the first in
    /// `turn` if one was taken (see [`Self::find`]). A token Notion no longer accepts is
    /// refreshed once (one refresh per connection at a time, see [`super::refresher`]) and the
    /// search repeated; a connection that cannot be refreshed is marked `needs_reauth`.
    pub(crate) async fn search(
        &self,
        row: &ConnectionRow,
        request: &SearchRequest,
        until: Option<Instant>,
        turn: Option<Turn>,
    ) -> Result<SearchPage, SearchError> {
        if row.status == ConnectionStatus::NeedsReauth {
            return Err(SearchError::NeedsReauth);
        }
        let (token, _) = self.vault.opened(row, self.vault.open_all(row)).await?;
        let caller = Caller {
            connection: row.id,
            workspace: &row.workspace_id,
        };
        let mut outcome = self
            .api
            .search(caller, token.expose(), request, until, turn)
            .await;
        if matches!(outcome, Err(NotionError::Unauthorized)) {
            let fresh = self.refresher.fresh_token(row.id, &token).await?;
            outcome = self
                .api
                .search(caller, fresh.expose(), request, until, None)
                .await;
            if matches!(outcome, Err(NotionError::Unauthorized)) {
                self.vault.mark_needs_reauth(row.id).await?;
                return Err(SearchError::NeedsReauth);
            }
        }
        let raw = outcome.map_err(|e| match e {
            // A request we build is always valid, except for the cursor, which only Notion can
            // judge.
            NotionError::Status {
                status: 400,
                code: Some(ref code),
                ..
            } if code == "validation_error" && request.start_cursor.is_some() => {
                SearchError::InvalidCursor
            }
            NotionError::Budget(e) => SearchError::Failed(e.into()),
            e => {
                tracing::warn!(connection_id = %row.id, error = %e, "Notion search failed");
                SearchError::Notion(e)
            }
        })?;
        let page = search::parse(&raw).map_err(|e| {
            tracing::warn!(connection_id = %row.id, error = %e, "unreadable search response");
            SearchError::Malformed(e)
        })?;
        // One-minute resolution is plenty, and spares a write on most searches.
        let stale = row
            .last_used_at
            .is_none_or(|used| OffsetDateTime::now_utc() - used > time::Duration::minutes(1));
        if stale {
            self.vault.mark_used(row.id).await?;
        }
        Ok(page)
    }
}
