//! Queries and mutations. Database errors are mapped here: a unique violation becomes
//! [`StoreError::Conflict`], everything else stays a database error for the caller to log.

pub mod connections;
pub mod login_attempts;
pub mod oauth_states;
pub mod sessions;
pub mod users;

use sea_orm::{DbErr, SqlErr};

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same unique key exists already.
    #[error("a conflicting row exists")]
    Conflict,
    #[error("database error")]
    Db(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Self::Conflict,
            _ => Self::Db(err),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::internal(err)
    }
}

impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        StoreError::Db(err).into()
    }
}
