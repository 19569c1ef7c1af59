//! How the connection service fails: its own failures, and why a search gave no results.

use uuid::Uuid;

use super::{client::NotionError, oauth::ExchangeError};
use crate::{
    crypto::{CryptoError, SealedField},
    store::StoreError,
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
