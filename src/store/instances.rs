//! The instances serving from one PostgreSQL, and their leases (see the migration that creates
//! `notion_instances`). Every statement reads the database's clock, so no instance's clock
//! matters; durations travel as microseconds.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use uuid::Uuid;

use super::{
    NOW_US, StoreError, execute_on_postgres as execute, from_micros, micros, query_one_on_postgres,
};

/// Registers the instance `id` with a lease of `lease`. It is not alone, and acknowledges
/// nobody yet.
///
/// Two statements: the row is inserted, and once that has committed its `registered_at` is
/// read from the clock. So an acknowledgment that is later than `registered_at` (see [`renew`])
/// comes from a statement that started after the row was visible, and saw it.
pub(crate) async fn register(
    db: &impl ConnectionTrait,
    id: Uuid,
    lease: Duration,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO notion_instances (id, registered_at, lease_until, acked_at)
         SELECT $1, now.us, now.us + $2, 0 FROM (SELECT {NOW_US} AS us) now"
    );
    execute(db, sql, [id.into(), micros(lease).into()]).await?;
    let sql = format!("UPDATE notion_instances SET registered_at = {NOW_US} WHERE id = $1");
    execute(db, sql, [id.into()]).await
}

/// How long until every other live instance has either acknowledged `id` or let its lease run
/// out: the longest lease left among those that have not acknowledged it yet, `None` when there
/// are none.
pub(crate) async fn unacknowledged(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Duration>, StoreError> {
    let sql = format!(
        "WITH now AS (SELECT {NOW_US} AS us),
         me AS (SELECT registered_at FROM notion_instances WHERE id = $1)
         SELECT max(other.lease_until - now.us) AS left_us
         FROM notion_instances other, now, me
         WHERE other.id <> $1 AND other.lease_until > now.us
             AND other.acked_at < me.registered_at"
    );
    let row = query_one_on_postgres(db, sql, [id.into()]).await?;
    let left: Option<i64> = match row {
        Some(row) => row.try_get("", "left_us")?,
        None => None,
    };
    Ok(left.map(from_micros))
}

/// What renewing a lease found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// Renewed in time; `others` other instances hold a live lease.
    Live { others: u64 },
    /// Renewed, but it had run out: others may have gone on without this instance.
    Lapsed,
    /// The instance is not registered (its row was swept after a long absence).
    Missing,
}

/// Renews the lease of `id` for `lease` and, when `shared` (the instance keeps nothing in
/// memory that others must know), acknowledges every instance this statement sees: its
/// `acked_at` becomes the moment the statement started, before it took its snapshot.
pub(crate) async fn renew(
    db: &impl ConnectionTrait,
    id: Uuid,
    lease: Duration,
    shared: bool,
) -> Result<Renewed, StoreError> {
    let sql = format!(
        "WITH now AS (SELECT {NOW_US} AS us),
         before AS (SELECT lease_until > now.us AS live FROM notion_instances, now WHERE id = $1),
         renewed AS (
             UPDATE notion_instances SET
                 lease_until = now.us + $2,
                 acked_at = CASE WHEN $3
                     THEN (extract(epoch FROM statement_timestamp()) * 1000000)::bigint
                     ELSE acked_at END
             FROM now WHERE id = $1)
         SELECT (SELECT live FROM before) AS live,
             (SELECT count(*) FROM notion_instances, now
                 WHERE id <> $1 AND lease_until > now.us) AS others"
    );
    let row = query_one_on_postgres(db, sql, [id.into(), micros(lease).into(), shared.into()])
        .await?
        .ok_or_else(|| StoreError::Db(sea_orm::DbErr::RecordNotFound("a lease".into())))?;
    let live: Option<bool> = row.try_get("", "live")?;
    let others: i64 = row.try_get("", "others")?;
    Ok(match live {
        None => Renewed::Missing,
        Some(false) => Renewed::Lapsed,
        Some(true) => Renewed::Live {
            others: u64::try_from(others).unwrap_or(0),
        },
    })
}

/// Removes `id`: it has stopped serving.
pub(crate) async fn deregister(db: &impl ConnectionTrait, id: Uuid) -> Result<(), StoreError> {
    execute(
        db,
        "DELETE FROM notion_instances WHERE id = $1".into(),
        [id.into()],
    )
    .await
}

/// Deletes the instances whose leases ended before `before` (microseconds since the epoch).
pub(crate) async fn forget_before(
    db: &impl ConnectionTrait,
    before: i64,
) -> Result<u64, StoreError> {
    // An integer written into the statement: it is ours, and the same SQL runs on both
    // databases.
    let sql = format!("DELETE FROM notion_instances WHERE lease_until < {before}");
    let backend = db.get_database_backend();
    let deleted = db.execute_raw(Statement::from_string(backend, sql)).await?;
    Ok(deleted.rows_affected())
}
