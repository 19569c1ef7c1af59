//! Everything about a stored Notion connection, in one place: sealing a grant into a row,
//! showing a row to its owner, searching with a token that is refreshed when Notion stops
//! accepting it, disconnecting, and re-sealing for key rotation.
//!
//! [`ConnectionStore`] is the stored half (the database and the token cipher); `Connections`
//! adds the calls to Notion. Request handlers and the `rotate-keys` command only translate their
//! outcomes.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{DatabaseConnection, TransactionTrait};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    client::{NotionClient, NotionError},
    oauth::{ExchangeError, Grant, NotionOAuth, Owner},
    search::{self, SearchPage, SearchRequest},
    tokens::RefreshLocks,
};
use crate::{
    crypto::{Binding, CryptoError, SealedField, TokenCipher},
    entity::pending_revocation,
    secret::Secret,
    store::{
        StoreError,
        connections::{self, Connection, SealedConnection},
        oauth_states, revocations, users,
    },
};

/// A failure of the service itself (never the caller's or Notion's fault).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("database")]
    Store(#[from] StoreError),
    #[error("the {field} of connection {id} does not open")]
    Unreadable {
        id: Uuid,
        field: SealedField,
        #[source]
        source: CryptoError,
    },
    #[error("sealing the {field} of a connection")]
    Sealing {
        field: SealedField,
        #[source]
        source: CryptoError,
    },
    #[error("writing the owner of a connection")]
    Owner(#[source] serde_json::Error),
    #[error("key '{0}' seals stored connections but is not in TOKEN_ENCRYPTION_KEYS")]
    MissingKey(String),
}

/// Why a search gave no results.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SearchError {
    #[error("no such connection")]
    NotFound,
    #[error("Notion no longer accepts the connection")]
    NeedsReauth,
    #[error("searching Notion")]
    Notion(#[source] NotionError),
    #[error("refreshing the access token")]
    Refresh(#[source] ExchangeError),
    #[error("reading Notion's search results")]
    Malformed(#[source] serde_json::Error),
    /// Notion refused the request's cursor: it is not one from a previous page of this search.
    #[error("Notion refused the cursor")]
    InvalidCursor,
    /// The connection's sealed tokens do not open; connecting again fixes it.
    #[error("the connection's tokens cannot be decrypted")]
    Undecryptable,
    #[error(transparent)]
    Failed(#[from] ConnectionError),
}

impl From<StoreError> for SearchError {
    fn from(err: StoreError) -> Self {
        Self::Failed(err.into())
    }
}

/// A connection as its owner may see it: the row, and the owner with the e-mail unsealed.
pub(crate) struct OwnedConnection {
    pub row: Connection,
    pub owner: Owner,
}

/// How an authorization ended once Notion granted it.
pub(crate) enum Completed {
    Stored(Uuid),
    /// The flow's state went away with its user meanwhile: nobody to store the connection for.
    UserGone,
}

/// The stored half: rows and the cipher that seals their secrets.
#[derive(Clone)]
pub struct ConnectionStore {
    db: DatabaseConnection,
    cipher: Arc<TokenCipher>,
    /// Rows already reported as unreadable by this process.
    reported: Arc<Mutex<HashSet<Uuid>>>,
}

/// Reported rows remembered at most; past that the memory starts over (and reports again).
const MAX_REPORTED: usize = 10_000;

impl ConnectionStore {
    pub fn new(db: DatabaseConnection, cipher: Arc<TokenCipher>) -> Self {
        Self {
            db,
            cipher,
            reported: Arc::default(),
        }
    }

    fn seal(
        &self,
        row: &Connection,
        field: SealedField,
        plain: &str,
    ) -> Result<String, ConnectionError> {
        self.cipher
            .encrypt(plain, Binding::new(row.user_id, &row.bot_id, field))
            .map_err(|source| ConnectionError::Sealing { field, source })
    }

    fn open(
        &self,
        row: &Connection,
        field: SealedField,
        sealed: &str,
    ) -> Result<Secret<String>, ConnectionError> {
        self.cipher
            .decrypt(sealed, Binding::new(row.user_id, &row.bot_id, field))
            .map_err(|source| ConnectionError::Unreadable {
                id: row.id,
                field,
                source,
            })
    }

    pub(crate) fn access_token(&self, row: &Connection) -> Result<Secret<String>, ConnectionError> {
        self.open(row, SealedField::AccessToken, &row.access_token)
    }

    /// A secret of `row` opened for a search, or the search's answer when it did not open:
    /// the row is then marked unreadable.
    pub(crate) async fn opened<T>(
        &self,
        row: &Connection,
        opened: Result<T, ConnectionError>,
    ) -> Result<T, SearchError> {
        match opened {
            Ok(value) => Ok(value),
            Err(error @ ConnectionError::Unreadable { .. }) => {
                self.report_unreadable(row, &error);
                Err(SearchError::Undecryptable)
            }
            Err(other) => Err(other.into()),
        }
    }

    /// The token of a pending revocation, sealed as it was in its connection.
    pub(crate) fn open_revocation(
        &self,
        row: &pending_revocation::Model,
    ) -> Result<Secret<String>, ConnectionError> {
        let field = SealedField::AccessToken;
        self.cipher
            .decrypt(
                &row.access_token,
                Binding::new(row.user_id, &row.bot_id, field),
            )
            .map_err(|source| ConnectionError::Unreadable {
                id: row.id,
                field,
                source,
            })
    }

    pub(crate) fn refresh_token(
        &self,
        row: &Connection,
    ) -> Result<Option<Secret<String>>, ConnectionError> {
        row.refresh_token
            .as_deref()
            .map(|sealed| self.open(row, SealedField::RefreshToken, sealed))
            .transpose()
    }

    /// The access token and the owner's e-mail of a row, after checking that every sealed
    /// value of it opens.
    pub(crate) fn open_all(
        &self,
        row: &Connection,
    ) -> Result<(Secret<String>, Option<Secret<String>>), ConnectionError> {
        let access = self.access_token(row)?;
        self.refresh_token(row)?;
        let email = row
            .owner_email
            .as_deref()
            .map(|sealed| self.open(row, SealedField::OwnerEmail, sealed))
            .transpose()?;
        Ok((access, email))
    }

    /// The row with its owner. A row with a sealed value that does not open is shown as
    /// unreadable, without its e-mail, instead of failing the request.
    async fn owned(&self, mut row: Connection) -> Result<OwnedConnection, ConnectionError> {
        let mut owner: Owner = serde_json::from_str(&row.owner).unwrap_or_default();
        match self.open_all(&row) {
            Ok((_, Some(email))) => {
                let user = owner.user.get_or_insert_with(Default::default);
                user.person.get_or_insert_with(Default::default).email =
                    Some(email.expose().clone());
            }
            Ok((_, None)) => {}
            Err(error @ ConnectionError::Unreadable { .. }) => {
                self.report_unreadable(&row, &error);
                row.status = connections::UNREADABLE.to_owned();
            }
            Err(other) => return Err(other),
        }
        Ok(OwnedConnection { row, owner })
    }

    /// Reports that a row's secrets do not open, once per row and process. The row is not
    /// changed: if a key was only missing from the ring, putting it back makes the row work
    /// again; otherwise connecting the workspace again replaces its secrets.
    pub(crate) fn report_unreadable(&self, row: &Connection, error: &ConnectionError) {
        let first = {
            let mut reported = self.reported.lock().unwrap_or_else(|p| p.into_inner());
            if reported.len() >= MAX_REPORTED {
                reported.clear();
            }
            reported.insert(row.id)
        };
        if first {
            tracing::error!(
                event = "decryption_failed",
                connection_id = %row.id,
                user_id = %row.user_id,
                error = %crate::error::Chain(error),
                "a connection's secrets could not be decrypted; it must be connected again"
            );
        }
    }

    /// The user's connections, oldest first.
    pub(crate) async fn list(
        &self,
        user_id: Uuid,
    ) -> Result<Vec<OwnedConnection>, ConnectionError> {
        let mut owned = Vec::new();
        for row in connections::list_for_user(&self.db, user_id).await? {
            owned.push(self.owned(row).await?);
        }
        Ok(owned)
    }

    /// One of the user's connections; another user's is `None`, like a missing one.
    pub(crate) async fn get(
        &self,
        user_id: Uuid,
        id: Uuid,
    ) -> Result<Option<OwnedConnection>, ConnectionError> {
        match connections::find_for_user(&self.db, user_id, id).await? {
            Some(row) => Ok(Some(self.owned(row).await?)),
            None => Ok(None),
        }
    }

    /// Whether `row` holds exactly `token` as its access token.
    pub(crate) fn holds_access_token(&self, row: &Connection, token: &Secret<String>) -> bool {
        self.access_token(row)
            .is_ok_and(|held| held.expose() == token.expose())
    }

    fn seal_grant(&self, user_id: Uuid, grant: Grant) -> Result<SealedConnection, ConnectionError> {
        let Grant {
            access_token,
            refresh_token,
            fields,
        } = grant;
        let seal = |field, plain: &str| {
            self.cipher
                .encrypt(plain, Binding::new(user_id, &fields.bot_id, field))
                .map_err(|source| ConnectionError::Sealing { field, source })
        };
        // The e-mail is sealed in its own column; the rest of the owner is stored as it came.
        let mut owner = fields.owner.clone().unwrap_or_default();
        let email = owner
            .user
            .as_mut()
            .and_then(|user| user.person.as_mut())
            .and_then(|person| person.email.take());
        Ok(SealedConnection {
            user_id,
            bot_id: fields.bot_id.clone(),
            workspace_id: fields.workspace_id.clone(),
            workspace_name: fields.workspace_name.clone(),
            workspace_icon: fields.workspace_icon.clone(),
            owner: serde_json::to_string(&owner).map_err(ConnectionError::Owner)?,
            owner_email: email
                .map(|email| seal(SealedField::OwnerEmail, &email))
                .transpose()?,
            duplicated_template_id: fields.duplicated_template_id.clone(),
            access_token: seal(SealedField::AccessToken, access_token.expose())?,
            refresh_token: refresh_token
                .map(|token| seal(SealedField::RefreshToken, token.expose()))
                .transpose()?,
            key_id: self.cipher.primary_key_id().to_owned(),
        })
    }

    /// Stores a refreshed token pair and releases the refresh lease, if the lease `until` is
    /// still held and the row still has the tokens it was refreshed from. False otherwise.
    pub(crate) async fn store_refreshed(
        &self,
        row: &Connection,
        lease: OffsetDateTime,
        access: &Secret<String>,
        refresh: &Secret<String>,
    ) -> Result<bool, ConnectionError> {
        let access = self.seal(row, SealedField::AccessToken, access.expose())?;
        let refresh = self.seal(row, SealedField::RefreshToken, refresh.expose())?;
        let refreshed = connections::Refreshed {
            access_token: access,
            refresh_token: refresh,
            key_id: self.cipher.primary_key_id(),
        };
        Ok(connections::store_refreshed(&self.db, row, lease, refreshed).await?)
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Re-encrypts, `batch` rows at a time, every connection not sealed with the first key of the
    /// ring; stops after `max_batches` batches when given.
    ///
    /// Each row is rewritten by one conditional UPDATE, so the job can be stopped at any moment
    /// and run again: rows already sealed with the first key are skipped, and a row that changed
    /// meanwhile (a re-authorization seals with the first key anyway) is left as it is. A row
    /// that does not open with its own key is reported and skipped, so it cannot hold the
    /// rotation up; a key missing from the ring stops the rotation.
    pub async fn reseal_with_primary_key(
        &self,
        batch: u64,
        max_batches: Option<u64>,
    ) -> Result<Resealed, ConnectionError> {
        let primary = self.cipher.primary_key_id().to_owned();
        let mut done = Resealed::default();
        let mut after = None;
        let mut batches = 0;
        while max_batches.is_none_or(|max| batches < max) {
            let rows =
                connections::sealed_with_other_keys(&self.db, &primary, after, batch).await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = Some(last.id);
            for row in &rows {
                match self.resealed(row) {
                    Ok((access, refresh, email)) => {
                        let sealed =
                            connections::reseal(&self.db, row, access, refresh, email, &primary);
                        if sealed.await? {
                            done.rewritten += 1;
                        }
                    }
                    // A key missing from the ring is a configuration mistake: stop, nothing is
                    // lost. A row that fails with the right key is damaged: skip it.
                    Err(ConnectionError::Unreadable {
                        source: CryptoError::UnknownKey(kid),
                        ..
                    }) => return Err(ConnectionError::MissingKey(kid)),
                    Err(error @ ConnectionError::Unreadable { .. }) => {
                        self.report_unreadable(row, &error);
                        done.unreadable += 1;
                    }
                    Err(other) => return Err(other),
                }
            }
            batches += 1;
        }
        self.reseal_pending_revocations(&primary, batch, &mut done)
            .await?;
        Ok(done)
    }

    /// Re-encrypts the tokens of revocations still waiting to be sent.
    async fn reseal_pending_revocations(
        &self,
        primary: &str,
        batch: u64,
        done: &mut Resealed,
    ) -> Result<(), ConnectionError> {
        let mut after = None;
        loop {
            let rows = revocations::sealed_with_other_keys(&self.db, primary, after, batch).await?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = Some(last.id);
            for row in &rows {
                match self.open_revocation(row) {
                    Ok(token) => {
                        let binding =
                            Binding::new(row.user_id, &row.bot_id, SealedField::AccessToken);
                        let sealed =
                            self.cipher
                                .encrypt(token.expose(), binding)
                                .map_err(|source| ConnectionError::Sealing {
                                    field: SealedField::AccessToken,
                                    source,
                                })?;
                        if revocations::reseal(&self.db, row, sealed, primary).await? {
                            done.pending_revocations += 1;
                        }
                    }
                    Err(ConnectionError::Unreadable {
                        source: CryptoError::UnknownKey(kid),
                        ..
                    }) => return Err(ConnectionError::MissingKey(kid)),
                    Err(_) => done.unreadable += 1,
                }
            }
        }
    }

    /// The row's sealed values, opened and sealed again with the first key.
    fn resealed(
        &self,
        row: &Connection,
    ) -> Result<(String, Option<String>, Option<String>), ConnectionError> {
        let reseal = |field, sealed: &str| {
            let plain = self.open(row, field, sealed)?;
            self.seal(row, field, plain.expose())
        };
        Ok((
            reseal(SealedField::AccessToken, &row.access_token)?,
            row.refresh_token
                .as_deref()
                .map(|sealed| reseal(SealedField::RefreshToken, sealed))
                .transpose()?,
            row.owner_email
                .as_deref()
                .map(|sealed| reseal(SealedField::OwnerEmail, sealed))
                .transpose()?,
        ))
    }
}

/// What the key ring makes of the stored connections.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRingCheck {
    /// No connection is stored.
    Empty,
    /// At least one of the newest connections opens.
    Opens,
    /// None of the `sampled` newest connections opens; they are sealed with `key_ids`.
    OpensNone {
        sampled: usize,
        key_ids: Vec<String>,
    },
}

/// Connections tried by [`ConnectionStore::check_key_ring`].
const KEY_RING_SAMPLE: u64 = 20;

impl ConnectionStore {
    /// Tries the key ring on the newest stored connections. A ring that opens none of them is
    /// almost certainly the wrong one (a typo, another deployment's keys, a key dropped before
    /// `rotate-keys` finished), which would otherwise only show connection by connection, as
    /// `unreadable`.
    pub async fn check_key_ring(&self) -> Result<KeyRingCheck, ConnectionError> {
        let rows = connections::newest(&self.db, KEY_RING_SAMPLE).await?;
        if rows.is_empty() {
            return Ok(KeyRingCheck::Empty);
        }
        if rows.iter().any(|row| self.access_token(row).is_ok()) {
            return Ok(KeyRingCheck::Opens);
        }
        let mut key_ids: Vec<String> = rows.iter().map(|row| row.key_id.clone()).collect();
        key_ids.sort();
        key_ids.dedup();
        Ok(KeyRingCheck::OpensNone {
            sampled: rows.len(),
            key_ids,
        })
    }
}

/// What a key rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Connections now sealed with the first key.
    pub rewritten: u64,
    /// Tokens waiting to be revoked, now sealed with the first key.
    pub pending_revocations: u64,
    /// Rows that did not open with their key (damaged), left as they were.
    pub unreadable: u64,
}

/// The service: stored connections, and Notion's API and OAuth endpoints to use them with.
pub(crate) struct Connections {
    store: ConnectionStore,
    oauth: Arc<NotionOAuth>,
    api: NotionClient,
    refresh_locks: RefreshLocks,
    /// How long a refresh may wait for another instance's (`NOTION_TIMEOUT`).
    refresh_wait: Duration,
    /// Wakes the revocation worker.
    queued: Arc<Notify>,
}

impl Connections {
    pub(crate) fn new(
        store: ConnectionStore,
        oauth: Arc<NotionOAuth>,
        api: NotionClient,
        refresh_wait: Duration,
    ) -> Self {
        Self {
            store,
            oauth,
            api,
            refresh_locks: RefreshLocks::default(),
            refresh_wait,
            queued: Arc::default(),
        }
    }

    pub(crate) fn store(&self) -> &ConnectionStore {
        &self.store
    }

    pub(crate) fn oauth(&self) -> &NotionOAuth {
        &self.oauth
    }

    pub(crate) fn refresh_locks(&self) -> &RefreshLocks {
        &self.refresh_locks
    }

    pub(crate) fn refresh_wait(&self) -> Duration {
        self.refresh_wait
    }

    /// Searches one of the user's connections. A token Notion no longer accepts is refreshed
    /// once (one refresh per connection at a time, see [`super::tokens`]) and the search
    /// repeated; a connection that cannot be refreshed is marked `needs_reauth`.
    pub(crate) async fn search(
        &self,
        user_id: Uuid,
        id: Uuid,
        request: &SearchRequest,
    ) -> Result<SearchPage, SearchError> {
        let row = connections::find_for_user(self.store.db(), user_id, id)
            .await?
            .ok_or(SearchError::NotFound)?;
        if row.status == connections::NEEDS_REAUTH {
            return Err(SearchError::NeedsReauth);
        }
        let (token, _) = self.store.opened(&row, self.store.open_all(&row)).await?;
        let mut outcome = self.api.search(row.id, token.expose(), request).await;
        if matches!(outcome, Err(NotionError::Unauthorized)) {
            let fresh = self.fresh_token(row.id, &token).await?;
            outcome = self.api.search(row.id, fresh.expose(), request).await;
            if matches!(outcome, Err(NotionError::Unauthorized)) {
                connections::mark_needs_reauth(self.store.db(), row.id).await?;
                return Err(SearchError::NeedsReauth);
            }
        }
        let raw = outcome.map_err(|e| match e {
            // A request we build is always valid, except for the client's cursor, which only
            // Notion can judge.
            NotionError::Status {
                status: 400,
                code: Some(ref code),
                ..
            } if code == "validation_error" && request.start_cursor.is_some() => {
                SearchError::InvalidCursor
            }
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
            connections::touch_last_used(self.store.db(), row.id).await?;
        }
        Ok(page)
    }

    /// Ends the claimed OAuth flow `state_id` and stores what Notion granted, in one
    /// transaction: both happen or neither does. Authorizing the same bot again updates its row,
    /// and when that replaces a different access token, the replaced one is queued for
    /// revocation in the same transaction (its row is locked meanwhile, so a refresh finishing
    /// at the same moment cannot slip a token past it).
    pub(crate) async fn complete_authorization(
        &self,
        state_id: Uuid,
        user_id: Uuid,
        grant: Grant,
    ) -> Result<Completed, ConnectionError> {
        let granted = grant.access_token.clone();
        let sealed = self.store.seal_grant(user_id, grant)?;
        let txn = self.store.db.begin().await.map_err(StoreError::from)?;
        // Deleting the state is a write, so on SQLite the transaction holds the write lock
        // before it reads the row it replaces.
        if !oauth_states::finish(&txn, state_id).await? {
            return Ok(Completed::UserGone);
        }
        let replaced = connections::find_by_bot_for_update(&txn, user_id, &sealed.bot_id).await?;
        let stored = connections::upsert(&txn, sealed).await?;
        let revoking = replaced.filter(|old| !self.store.holds_access_token(old, &granted));
        if let Some(old) = &revoking {
            revocations::queue(&txn, old).await?;
        }
        txn.commit().await.map_err(StoreError::from)?;
        if revoking.is_some() {
            self.queued.notify_one();
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
        let txn = self.store.db().begin().await.map_err(StoreError::from)?;
        let Some(row) = connections::delete_for_user(&txn, user_id, id).await? else {
            return Ok(false);
        };
        revocations::queue(&txn, &row).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.queued.notify_one();
        tracing::info!(connection_id = %row.id, "Notion connection deleted");
        Ok(true)
    }

    /// Deletes an account with everything it owns (sessions, OAuth flows, connections) and, in
    /// the same transaction, queues the revocation of every token it held, as the deletes found
    /// them.
    pub(crate) async fn delete_account(&self, user_id: Uuid) -> Result<(), ConnectionError> {
        let txn = self.store.db().begin().await.map_err(StoreError::from)?;
        for row in connections::delete_all_for_user(&txn, user_id).await? {
            revocations::queue(&txn, &row).await?;
        }
        users::delete(&txn, user_id).await?;
        txn.commit().await.map_err(StoreError::from)?;
        self.queued.notify_one();
        tracing::info!(event = "account_deleted", user_id = %user_id, "an account was deleted");
        Ok(())
    }

    /// Queues the revocation of `token`, an access token Notion issued for `row`'s connection
    /// that no row keeps: the connection was deleted, or authorized again, while the token was
    /// being refreshed.
    pub(super) async fn revoke_unkept(
        &self,
        row: &Connection,
        token: &Secret<String>,
    ) -> Result<(), ConnectionError> {
        let sealed = self
            .store
            .seal(row, SealedField::AccessToken, token.expose())?;
        let key_id = self.store.cipher.primary_key_id();
        revocations::queue_sealed(self.store.db(), row.user_id, &row.bot_id, sealed, key_id)
            .await?;
        self.queued.notify_one();
        Ok(())
    }

    /// Completes when a revocation was queued since the last call (for the worker).
    pub(crate) async fn revocation_queued(&self) {
        self.queued.notified().await;
    }
}
