//! Database connection, migrations and the readiness check.
//!
//! SQLite is the zero-setup default; PostgreSQL is chosen by a `postgres://` `DATABASE_URL`. On
//! SQLite every connection runs in WAL mode with foreign keys enforced and a busy timeout, so
//! concurrent requests wait for a lock instead of failing at once.

use std::{path::Path, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::{config::create_private_dir, secret::Secret};

/// Pooled connections to SQLite. Each runs its queries on a thread of its own and keeps its own
/// page cache; SQLite runs one write at a time anyway, so a few connections serve a small
/// machine's cores as well as many would, with fewer threads to wake and less memory.
const SQLITE_POOL_SIZE: u32 = 4;
/// Pooled connections to PostgreSQL, which serves concurrent queries in parallel.
const POSTGRES_POOL_SIZE: u32 = 16;
/// A pooled PostgreSQL connection idle for this long is pinged before its next use.
const POSTGRES_PING_AFTER_IDLE: Duration = Duration::from_secs(1);
/// How long a query may wait for the SQLite write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The readiness probe answers within this time whatever the database does.
pub(crate) const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens the connection pool. For SQLite the database file's directory is created when missing.
/// On PostgreSQL every statement is cancelled after `statement_timeout` (SQLite's equivalent is
/// its fixed busy timeout).
pub async fn connect(
    url: &Secret<String>,
    statement_timeout: Option<Duration>,
) -> Result<DatabaseConnection, DbErr> {
    let url = url.expose();
    if let Some(dir) = sqlite_file(url).and_then(Path::parent) {
        create_private_dir(dir).map_err(|e| {
            DbErr::Custom(format!(
                "cannot create the database directory {}: {e}",
                dir.display()
            ))
        })?;
    }

    Database::connect(connect_options(url, statement_timeout)).await
}

/// The pool's settings for `url`.
fn connect_options(url: &str, statement_timeout: Option<Duration>) -> ConnectOptions {
    let sqlite = sqlite_url(url);
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if sqlite {
            SQLITE_POOL_SIZE
        } else {
            POSTGRES_POOL_SIZE
        })
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        // Statements are logged at debug level by our own spans; sqlx's info-level statement log
        // would drown everything else.
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
        });
    if let Some(timeout) = statement_timeout {
        // Set when each connection starts, so it costs no statement of its own.
        let value = format!("{}ms", timeout.as_millis());
        options.map_sqlx_postgres_opts(move |opts| {
            opts.options([("statement_timeout", value.as_str())])
        });
    }
    if sqlite {
        // A SQLite connection is a thread in this process: a ping would only be a second round
        // trip to that thread before every query, and a broken one fails its query just the same.
        options.test_before_acquire(false);
    } else {
        // A PostgreSQL connection is pinged before use only when it has been idle for a while,
        // which is when the server, a proxy or the network may have dropped it (a restart, an
        // idle timeout); one in steady use goes straight to its query, without a second round
        // trip to the server before each one.
        options.test_before_acquire_if_idle_for(POSTGRES_PING_AFTER_IDLE);
    }
    options
}

/// Applies every pending migration, on connections of their own without a statement timeout:
/// a migration may rewrite a large table, which takes as long as it takes.
pub async fn migrate(url: &Secret<String>) -> Result<(), DbErr> {
    let db = connect(url, None).await?;
    let migrated = Migrator::up(&db, None).await;
    db.close().await?;
    migrated
}

/// Succeeds when the database answers a query that reads the schema, within
/// [`READINESS_TIMEOUT`].
///
/// On SQLite the pool's connections keep working on a file that has been deleted or whose
/// volume went away (they hold it open), so the probe also opens the file afresh, without
/// creating it: a service writing to a vanished database must not report ready.
pub(crate) async fn check_ready(
    db: &DatabaseConnection,
    url: &Secret<String>,
) -> Result<(), DbErr> {
    let probe = async {
        db.execute_unprepared(READINESS_QUERY).await?;
        if sqlite_file(url.expose()).is_some() {
            probe_sqlite_file(url.expose()).await?;
        }
        Ok(())
    };
    match tokio::time::timeout(READINESS_TIMEOUT, probe).await {
        Ok(result) => result,
        Err(_) => Err(DbErr::Custom("the readiness query timed out".to_owned())),
    }
}

const READINESS_QUERY: &str = "SELECT COUNT(*) FROM seaql_migrations";

async fn probe_sqlite_file(url: &str) -> Result<(), DbErr> {
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _, sqlite::SqliteConnectOptions};
    let to_db_err = |e: sea_orm::sqlx::Error| DbErr::Custom(format!("sqlite file probe: {e}"));
    let options = url
        .parse::<SqliteConnectOptions>()
        .map_err(to_db_err)?
        .create_if_missing(false)
        .read_only(true)
        .busy_timeout(READINESS_TIMEOUT);
    let mut connection = options.connect().await.map_err(to_db_err)?;
    let result = sea_orm::sqlx::query(READINESS_QUERY)
        .execute(&mut connection)
        .await
        .map(|_| ())
        .map_err(to_db_err);
    let _ = connection.close().await;
    result
}

fn sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// The file behind a `sqlite:` URL, or `None` for in-memory and non-SQLite databases.
fn sqlite_file(url: &str) -> Option<&Path> {
    if !sqlite_url(url) {
        return None;
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_sqlite_file_in_a_url() {
        assert_eq!(
            sqlite_file("sqlite://data/app.db?mode=rwc"),
            Some(Path::new("data/app.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/x.db"),
            Some(Path::new("/tmp/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://db/app"), None);
    }

    #[test]
    fn only_idle_postgres_connections_are_pinged_before_use() {
        let sqlite = connect_options("sqlite://data/app.db?mode=rwc", None);
        assert!(!sqlite.get_test_before_acquire());
        assert_eq!(sqlite.get_test_before_acquire_if_idle_for(), None);
        assert_eq!(sqlite.get_max_connections(), Some(SQLITE_POOL_SIZE));
        let postgres = connect_options("postgres://db/app", None);
        assert!(!postgres.get_test_before_acquire());
        assert_eq!(
            postgres.get_test_before_acquire_if_idle_for(),
            Some(POSTGRES_PING_AFTER_IDLE)
        );
        assert_eq!(postgres.get_max_connections(), Some(POSTGRES_POOL_SIZE));
    }
}
