//! The stored half of connections: rows in the database and the cipher that seals their
//! secrets. Sealing a grant into a row, opening a row's tokens, showing rows to their owner (an
//! unreadable one as such), storing refreshed tokens, and re-sealing everything for a key
//! rotation.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use sea_orm::DatabaseConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    connection_cache::ConnectionCache,
    errors::{ConnectionError, SearchError},
    oauth::{Grant, Owner},
};
use crate::{
    crypto::{Binding, CryptoError, SealedField, TokenCipher},
    entity::pending_revocation,
    secret::Secret,
    store::{
        StoreError,
        connections::{self, ConnectionRow, SealedConnection},
        revocations,
    },
};

/// A connection as its owner may see it: the row, and the owner with the e-mail unsealed.
pub(crate) struct OwnedConnection {
    pub row: ConnectionRow,
    pub owner: Owner,
    /// False while a sealed value of the row does not open (a key left the ring, or the row
    /// was altered): the connection cannot be used until it is connected again.
    pub readable: bool,
}

/// The stored half: rows and the cipher that seals their secrets.
#[derive(Clone)]
pub struct ConnectionVault {
    db: DatabaseConnection,
    cipher: Arc<TokenCipher>,
    /// Rows already reported as unreadable by this process.
    reported: Arc<Mutex<HashSet<Uuid>>>,
    /// Rows searched lately, kept while this instance is alone.
    cache: Arc<ConnectionCache>,
}

/// Reported rows remembered at most; past that the memory starts over (and reports again).
const MAX_REPORTED: usize = 10_000;

impl ConnectionVault {
    pub fn new(db: DatabaseConnection, cipher: Arc<TokenCipher>) -> Self {
        Self {
            db,
            cipher,
            reported: Arc::default(),
            cache: Arc::default(),
        }
    }

    /// The rows kept while this instance is alone (see [`ConnectionCache`]). Every change this
    /// vault makes to a row forgets it there once the change is stored; the connection service
    /// does the same for the rows it inserts and deletes.
    pub(crate) fn cache(&self) -> &Arc<ConnectionCache> {
        &self.cache
    }

    /// Marks the connection as needing a new authorization.
    pub(crate) async fn mark_needs_reauth(&self, id: Uuid) -> Result<(), StoreError> {
        connections::mark_needs_reauth(&self.db, id).await?;
        self.cache.forget(id);
        Ok(())
    }

    /// Notes when the connection was last used.
    pub(crate) async fn mark_used(&self, id: Uuid) -> Result<(), StoreError> {
        let at = connections::touch_last_used(&self.db, id).await?;
        self.cache.used(id, at);
        Ok(())
    }

    pub(super) fn seal(
        &self,
        row: &ConnectionRow,
        field: SealedField,
        plain: &str,
    ) -> Result<String, ConnectionError> {
        self.cipher
            .encrypt(plain, Binding::new(row.user_id, &row.bot_id, field))
            .map_err(|source| ConnectionError::Sealing { field, source })
    }

    fn open(
        &self,
        row: &ConnectionRow,
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

    pub(crate) fn access_token(
        &self,
        row: &ConnectionRow,
    ) -> Result<Secret<String>, ConnectionError> {
        self.open(row, SealedField::AccessToken, &row.access_token)
    }

    /// A secret of `row` opened for a search, or the search's answer when it did not open:
    /// the row is then marked unreadable.
    pub(crate) async fn opened<T>(
        &self,
        row: &ConnectionRow,
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
        row: &ConnectionRow,
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
        row: &ConnectionRow,
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
    async fn owned(&self, row: ConnectionRow) -> Result<OwnedConnection, ConnectionError> {
        let mut owner: Owner = serde_json::from_str(&row.owner).unwrap_or_default();
        let mut readable = true;
        match self.open_all(&row) {
            Ok((_, Some(email))) => {
                let user = owner.user.get_or_insert_with(Default::default);
                user.person.get_or_insert_with(Default::default).email =
                    Some(email.expose().clone());
            }
            Ok((_, None)) => {}
            Err(error @ ConnectionError::Unreadable { .. }) => {
                self.report_unreadable(&row, &error);
                readable = false;
            }
            Err(other) => return Err(other),
        }
        Ok(OwnedConnection {
            row,
            owner,
            readable,
        })
    }

    /// Reports that a row's secrets do not open, once per row and process. The row is not
    /// changed: if a key was only missing from the ring, putting it back makes the row work
    /// again; otherwise connecting the workspace again replaces its secrets.
    pub(crate) fn report_unreadable(&self, row: &ConnectionRow, error: &ConnectionError) {
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
                error = %crate::chain::Chain(error),
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
    pub(crate) fn holds_access_token(&self, row: &ConnectionRow, token: &Secret<String>) -> bool {
        self.access_token(row)
            .is_ok_and(|held| held.expose() == token.expose())
    }

    pub(super) fn seal_grant(
        &self,
        user_id: Uuid,
        grant: Grant,
    ) -> Result<SealedConnection, ConnectionError> {
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
        row: &ConnectionRow,
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
        let stored = connections::store_refreshed(&self.db, row, lease, refreshed).await?;
        self.cache.forget(row.id);
        Ok(stored)
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The key new ciphertexts are sealed with.
    pub(super) fn primary_key_id(&self) -> &str {
        self.cipher.primary_key_id()
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
                        let sealed = sealed.await?;
                        self.cache.forget(row.id);
                        if sealed {
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
        row: &ConnectionRow,
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

    /// Tries the key ring on the newest stored connections. A ring that opens none of them is
    /// almost certainly the wrong one (a typo, another deployment's keys, a key dropped before
    /// `rotate-keys` finished), which would otherwise only show connection by connection, as
    /// `unreadable`.
    pub(crate) async fn check_key_ring(&self) -> Result<KeyRingCheck, ConnectionError> {
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

/// What the key ring makes of the stored connections.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyRingCheck {
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

/// Connections tried by [`ConnectionVault::check_key_ring`].
const KEY_RING_SAMPLE: u64 = 20;

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
