//! `rotate-keys`: re-encrypting stored secrets with the first key of the ring.
//!
//! Rows are processed in batches; each row is rewritten by a single conditional UPDATE, so the
//! job can be stopped at any moment and run again: rows already sealed with the first key are
//! skipped, and a row that changed meanwhile (a re-authorization seals with the first key
//! anyway) is left as it is.

use sea_orm::DatabaseConnection;

use crate::{
    crypto::{Binding, CryptoError, TokenCipher},
    store::{StoreError, connections},
};

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("connection {id}: {source}")]
    Crypto {
        id: uuid::Uuid,
        #[source]
        source: CryptoError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Re-encrypts, `batch` rows at a time, every connection not sealed with the primary key. Stops
/// after `max_batches` batches when given. Returns how many rows were rewritten.
pub async fn rotate_keys(
    db: &DatabaseConnection,
    cipher: &TokenCipher,
    batch: u64,
    max_batches: Option<u64>,
) -> Result<u64, RotationError> {
    let primary = cipher.primary_key_id().to_owned();
    let mut rewritten = 0;
    let mut batches = 0;
    loop {
        if max_batches.is_some_and(|max| batches >= max) {
            break;
        }
        let rows = connections::sealed_with_other_keys(db, &primary, batch).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let reseal = |sealed: &str, column| -> Result<String, RotationError> {
                let binding = Binding {
                    user_id: row.user_id,
                    bot_id: &row.bot_id,
                    column,
                };
                let crypto = |source| RotationError::Crypto { id: row.id, source };
                let plain = cipher.decrypt(sealed, binding).map_err(crypto)?;
                cipher.encrypt(plain.expose(), binding).map_err(crypto)
            };
            let access_token = reseal(&row.access_token, "access_token")?;
            let refresh_token = row
                .refresh_token
                .as_deref()
                .map(|sealed| reseal(sealed, "refresh_token"))
                .transpose()?;
            let owner_email = row
                .owner_email
                .as_deref()
                .map(|sealed| reseal(sealed, "owner_email"))
                .transpose()?;
            if connections::reseal(db, row, access_token, refresh_token, owner_email, &primary)
                .await?
            {
                rewritten += 1;
            }
        }
        batches += 1;
    }
    Ok(rewritten)
}
