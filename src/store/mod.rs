//! Queries and mutations. Database errors are mapped here: a unique violation becomes
//! [`StoreError::Conflict`], a database that cannot be reached or used right now (no connection
//! within the pool's acquire timeout, a dropped connection, a lock held past SQLite's busy
//! timeout, a statement past PostgreSQL's `statement_timeout`) becomes
//! [`StoreError::Unavailable`], and everything else stays a database error for the caller to
//! log.

pub mod connections;
pub(crate) mod instances;
pub mod login_attempts;
pub mod oauth_states;
pub(crate) mod rate_budgets;
pub(crate) mod revocations;
pub mod sessions;
pub(crate) mod users;

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Select, SqlErr};

/// PostgreSQL's clock, in microseconds since the Unix epoch: the one clock that instances
/// sharing a database agree on.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn from_micros(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// Runs one PostgreSQL statement with its parameters, for what it does.
async fn execute_on_postgres(
    db: &impl ConnectionTrait,
    sql: String,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Result<(), StoreError> {
    db.execute_raw(postgres_statement(sql, values)).await?;
    Ok(())
}

/// Runs one PostgreSQL statement with its parameters, for the first row it returns.
async fn query_one_on_postgres(
    db: &impl ConnectionTrait,
    sql: String,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Result<Option<sea_orm::QueryResult>, StoreError> {
    Ok(db.query_one_raw(postgres_statement(sql, values)).await?)
}

fn postgres_statement(
    sql: String,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> sea_orm::Statement {
    sea_orm::Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same unique key exists already.
    #[error("a conflicting row exists")]
    Conflict,
    /// The database cannot be used right now; trying again later may work.
    #[error("the database is unavailable")]
    Unavailable(#[source] DbErr),
    #[error("database error")]
    Db(#[source] DbErr),
}

/// Lookups by a unique key, written without `LIMIT`.
///
/// sea-orm's `one()` appends `LIMIT 1` with the 1 as a bound parameter. SQLite (3.46 and later)
/// plans a query around the value bound to its `LIMIT`, and so compiles such a statement again
/// every time a value is bound, which is every time it runs: the prepared statement cache never
/// helps. A query on a unique key yields at most one row anyway, so these leave the limit out
/// and keep their compiled statements.
pub(crate) trait UniqueRow<E: EntityTrait> {
    /// The row the query selects, if any (the first, should several match).
    async fn unique(self, db: &impl ConnectionTrait) -> Result<Option<E::Model>, DbErr>;
}

impl<E: EntityTrait> UniqueRow<E> for Select<E> {
    async fn unique(self, db: &impl ConnectionTrait) -> Result<Option<E::Model>, DbErr> {
        Ok(self.all(db).await?.into_iter().next())
    }
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(_)) = err.sql_err() {
            return Self::Conflict;
        }
        if is_unavailable(&err) {
            return Self::Unavailable(err);
        }
        Self::Db(err)
    }
}

/// Whether the error says the database is out of reach or busy, rather than that the query is
/// wrong.
fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx::Error as Sqlx};
    let runtime = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(sqlx) = runtime else {
        return false;
    };
    match sqlx.as_ref() {
        Sqlx::Io(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed | Sqlx::WorkerCrashed => true,
        Sqlx::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db
                .try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
            {
                // Busy or locked past the busy timeout, or the file failing (any extended code
                // of SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_CANTOPEN).
                code.parse::<i32>()
                    .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 14))
            } else {
                // PostgreSQL: connection exceptions, shutting down or not accepting connections
                // yet, too many connections, a statement cancelled by `statement_timeout`, a
                // lock not granted in time.
                code.starts_with("08")
                    || matches!(
                        &*code,
                        "57P01" | "57P02" | "57P03" | "53300" | "57014" | "55P03"
                    )
            }
        }
        _ => false,
    }
}
