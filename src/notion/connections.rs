//! The connection service: everything a user does with their Notion connections. Listing and
//! showing them, connecting a workspace through OAuth, searching one (refreshing its token when
//! Notion stops accepting it), disconnecting one, and removing all of an account's.
//!
//! It owns the pieces it is made of: the [`ConnectionVault`] (rows and their sealed secrets),
//! Notion's OAuth endpoints and search API, the OAuth flow's rules, the token refresher and the
//! revoker. Request handlers only translate its outcomes.

use std::{sync::Arc, time::Duration};

use sea_orm::{DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use super::{
    NotionEndpoints,
    authorization::{self, AuthorizationFlow, CallbackError, StartError, StartedFlow},
    client::NotionClient,
    errors::{ConnectionError, SearchError},
    fanout::{Fanout, FanoutError, FanoutPage, FanoutRequest},
    fanout_cursor::CursorKey,
    lease::InstanceLease,
    oauth::{Grant, NotionOAuth},
    refresher::TokenRefresher,
    revoker::Revoker,
    search::{SearchPage, SearchRequest},
    searcher::ConnectionSearcher,
    vault::{ConnectionVault, OwnedConnection},
};
use crate::{
    crypto::TokenCipher,
    metrics::Metrics,
    store::{StoreError, connections, oauth_states, revocations, users},
};

/// How an authorization ended once Notion granted it.
enum Completed {
    Stored(Uuid),
    /// The flow's state went away with its user meanwhile: nobody to store the connection for.
    UserGone,
}

/// How an OAuth callback ended.
pub(crate) struct Callback {
    /// The connection, or what to tell the web app.
    pub connected: Result<Uuid, CallbackError>,
    /// Whether the callback belonged to a flow of this browser (whose binding is then used up).
    pub claimed: bool,
}

/// A connection with the name of its owner, for administrators.
pub(crate) struct ListedConnection {
    pub row: connections::ConnectionRow,
    pub username: String,
}

pub(crate) struct ConnectionService {
    vault: ConnectionVault,
    oauth: Arc<NotionOAuth>,
    flow: AuthorizationFlow,
    searcher: ConnectionSearcher,
    fanout: Fanout,
    revoker: Arc<Revoker>,
    /// On PostgreSQL: this instance's lease among the others.
    lease: Option<Arc<InstanceLease>>,
}

/// How searches across workspaces run.
pub(crate) struct FanoutSettings {
    /// Signs their cursors.
    pub cursor_key: CursorKey,
    /// How long a page waits for the slowest workspace.
    pub deadline: Duration,
    pub metrics: Arc<Metrics>,
}

impl ConnectionService {
    /// `refresh_wait` is how long a refresh may wait for another instance's (`NOTION_TIMEOUT`).
    pub(crate) fn new(
        db: DatabaseConnection,
        cipher: Arc<TokenCipher>,
        oauth: Arc<NotionOAuth>,
        api: NotionClient,
        refresh_wait: Duration,
        fanout: FanoutSettings,
    ) -> Self {
        let vault = ConnectionVault::new(db.clone(), cipher);
        let revoker = Arc::new(Revoker::new(vault.clone(), oauth.clone()));
        let refresher = Arc::new(TokenRefresher::new(
            vault.clone(),
            oauth.clone(),
            revoker.clone(),
            refresh_wait,
        ));
        let membership = api.budget().membership().clone();
        let lease = membership.has_lease().then(|| {
            Arc::new(InstanceLease::new(
                db.clone(),
                membership,
                api.budget().local().clone(),
                vault.cache().clone(),
                fanout.metrics.clone(),
            ))
        });
        if lease.is_none() {
            fanout.metrics.instance_alone(true);
        }
        let searcher = ConnectionSearcher::new(vault.clone(), Arc::new(api), refresher);
        Self {
            lease,
            flow: AuthorizationFlow::new(db, oauth.clone()),
            fanout: Fanout::new(
                searcher.clone(),
                fanout.cursor_key,
                fanout.deadline,
                fanout.metrics,
            ),
            searcher,
            vault,
            oauth,
            revoker,
        }
    }

    /// Where Notion is (the sandbox serves these when it stands in for Notion).
    pub(crate) fn endpoints(&self) -> &NotionEndpoints {
        self.oauth.endpoints()
    }

    /// The revocation worker's half, for start-up to run.
    pub(crate) fn revoker(&self) -> Arc<Revoker> {
        self.revoker.clone()
    }

    /// This instance's lease among the others on PostgreSQL, for start-up to join with and
    /// keep.
    pub(crate) fn lease(&self) -> Option<Arc<InstanceLease>> {
        self.lease.clone()
    }

    /// The vault, for the start-up check of the key ring.
    pub(crate) fn vault(&self) -> &ConnectionVault {
        &self.vault
    }

    /// The user's connections, oldest first.
    pub(crate) async fn list(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<OwnedConnection>, ConnectionError> {
        self.vault.list(user_id).await
    }

    /// One of the user's connections; another user's is `None`, like a missing one.
    pub(crate) async fn get(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<Option<OwnedConnection>, ConnectionError> {
        self.vault.get(user_id, id).await
    }

    /// A page of every user's connections (optionally one user's) with their owners' names, for
    /// administrators: up to `limit` after the id `after`.
    pub(crate) async fn page(
        &self,
        after: Option<Uuid>,
        user_id: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<ListedConnection>, ConnectionError> {
        let db = self.vault.db();
        let rows = connections::page(db, after, user_id, limit).await?;
        let owners = users::names(db, rows.iter().map(|row| row.user_id)).await?;
        Ok(rows
            .into_iter()
            .map(|row| ListedConnection {
                username: owners.get(&row.user_id).cloned().unwrap_or_default(),
                row,
            })
            .collect())
    }

    /// Starts connecting a workspace for `user_id`: Notion's consent URL and the secret that
    /// binds the flow to this browser.
    pub(crate) async fn start_authorization(
        &self,
        user_id: Uuid,
    ) -> Result<StartedFlow, StartError> {
        self.flow.start(user_id).await
    }

    /// Ends a flow at its callback: the `state`, the flow bindings the browser sent, and the
    /// `code` or `error` Notion sent it back with. A valid state is used up whatever happens
    /// next, so it can never be replayed.
    pub(crate) async fn finish_authorization(
        &self,
        state: Option<&str>,
        bindings: &[&str],
        code: Option<String>,
        error: Option<String>,
    ) -> Callback {
        let flow = self.flow.claim(state, bindings).await;
        let claimed = flow.is_ok();
        let connected = match error {
            Some(error) => Err(authorization::denied(&error)),
            None => self.connect(flow, code).await,
        };
        self.oauth.metrics().oauth_callback(match connected {
            Ok(_) => "connected",
            Err(code) => code.as_str(),
        });
        Callback { connected, claimed }
    }

    async fn connect(
        &self,
        flow: Result<authorization::ClaimedFlow, CallbackError>,
        code: Option<String>,
    ) -> Result<Uuid, CallbackError> {
        let flow = flow?;
        let grant = self.flow.exchange(code).await?;
        let completed = self
            .complete_authorization(flow.state_id, flow.user_id, grant)
            .await
            .map_err(|e| {
                tracing::error!(error = %crate::chain::Chain(&e), "storing a Notion connection failed");
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

    /// Searches one of the user's connections (see [`ConnectionSearcher::search`]).
    pub(crate) async fn search(
        &self,
        user_id: Uuid,
        id: Uuid,
        request: &SearchRequest,
    ) -> Result<SearchPage, SearchError> {
        let (row, turn) = self
            .searcher
            .find(user_id, id)
            .await?
            .ok_or(SearchError::NotFound)?;
        self.searcher.search(&row, request, None, Some(turn)).await
    }

    /// A page of one search across several (or all) of the user's workspaces (see
    /// [`super::fanout`]).
    pub(crate) async fn search_everywhere(
        &self,
        user_id: Uuid,
        request: &FanoutRequest,
    ) -> Result<FanoutPage, FanoutError> {
        let rows = connections::list_for_user(self.vault.db(), user_id).await?;
        self.fanout.search(user_id, request, rows).await
    }

    /// Ends the claimed OAuth flow `state_id` and stores what Notion granted, in one
    /// transaction: both happen or neither does. Authorizing the same bot again updates its row,
    /// and when that replaces a different access token, the replaced one is queued for
    /// revocation in the same transaction (its row is locked meanwhile, so a refresh finishing
    /// at the same moment cannot slip a token past it).
    async fn complete_authorization(
        &self,
        state_id: Uuid,
        user_id: Uuid,
        grant: Grant,
    ) -> Result<Completed, ConnectionError> {
        let granted = grant.access_token.clone();
        let sealed = self.vault.seal_grant(user_id, grant)?;
        let txn = self.vault.db().begin().await.map_err(StoreError::from)?;
        // Deleting the state is a write, so on SQLite the transaction holds the write lock
        // before it reads the row it replaces.
        if !oauth_states::finish(&txn, state_id).await? {
            return Ok(Completed::UserGone);
        }
        let replaced = connections::find_by_bot_for_update(&txn, user_id, &sealed.bot_id).await?;
        let stored = connections::upsert(&txn, sealed).await?;
        let revoking = replaced.filter(|old| !self.vault.holds_access_token(old, &granted));
        if let Some(old) = &revoking {
            revocations::queue(&txn, old).await?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        self.vault.cache().forget(stored.id);
        if revoking.is_some() {
            self.revoker.wake();
            tracing::info!(connection_id = %stored.id, "the re-authorized connection's previous token will be revoked");
        }
        Ok(Completed::Stored(stored.id))
    }

    /// Deletes one of the user's connections and, in the same transaction, queues the
    /// revocation of its token at Notion (sent by the revocation worker, with retries). The row
    /// is read by the delete itself, so the token queued is the last one stored. False when
    /// there was no such connection.
    pub(crate) async fn disconnect(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<bool, ConnectionError> {
        let txn = self.vault.db().begin().await.map_err(StoreError::from)?;
        let Some(row) = connections::delete_for_user(&txn, user_id, id).await? else {
            return Ok(false);
        };
        revocations::queue(&txn, &row).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.vault.cache().forget(row.id);
        self.revoker.wake();
        tracing::info!(connection_id = %row.id, "Notion connection deleted");
        Ok(true)
    }

    /// Deletes an account with everything it owns (sessions, OAuth flows, connections) and, in
    /// the same transaction, queues the revocation of every token it held, as the deletes found
    /// them.
    pub(crate) async fn delete_account(&self, user_id: Uuid) -> Result<(), ConnectionError> {
        let txn = self.vault.db().begin().await.map_err(StoreError::from)?;
        let deleted = connections::delete_all_for_user(&txn, user_id).await?;
        for row in &deleted {
            revocations::queue(&txn, row).await?;
        }
        users::delete(&txn, user_id).await?;
        txn.commit().await.map_err(StoreError::from)?;
        for row in &deleted {
            self.vault.cache().forget(row.id);
        }
        self.revoker.wake();
        tracing::info!(event = "account_deleted", user_id = %user_id, "an account was deleted");
        Ok(())
    }
}
