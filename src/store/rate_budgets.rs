//! Turns at Notion shared by every instance on one PostgreSQL: each call reserves the next turn
//! of its connection, and a 429 pauses its connection or its whole workspace for all of them.
//!
//! A row's key is `c:<connection id>` or `w:<workspace id>`; times are microseconds since the
//! Unix epoch by the database's clock (see the migration that creates the table). Each claim and
//! each pause is one statement on the row's primary key, so instances take turns in the order the
//! database serialises them, and no instance's clock matters.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, QueryResult, Statement, Value};
use uuid::Uuid;

use super::{
    NOW_US, StoreError, connections::ConnectionRow, execute_on_postgres, from_micros, micros,
    query_one_on_postgres,
};

pub(crate) fn connection_key(id: Uuid) -> String {
    format!("c:{id}")
}

pub(crate) fn workspace_key(workspace_id: &str) -> String {
    format!("w:{workspace_id}")
}

/// Whose budget a key is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Holder<'a> {
    Connection(Uuid),
    Workspace(&'a str),
}

/// The holder of `key`, if it is a key of [`connection_key`] or [`workspace_key`].
pub(crate) fn holder(key: &str) -> Option<Holder<'_>> {
    if let Some(id) = key.strip_prefix("c:") {
        return id.parse().ok().map(Holder::Connection);
    }
    key.strip_prefix("w:").map(Holder::Workspace)
}

/// Reserves the connection's next turn: its own turn, but never before a pause of the
/// connection or of its workspace ends. The turn after it comes `interval` later. Returns how
/// long to wait for the turn, or, when that wait would be `max_wait` or longer, how long until a
/// turn; nothing is reserved then.
///
/// One statement. The turn is first read from the statement's snapshot; the row is then written
/// only if that turn is soon enough, and a conflicting claim that came first is seen under the
/// row's lock, where the turn is taken again from the latest row.
pub(crate) async fn claim(
    db: &impl ConnectionTrait,
    connection: &str,
    workspace: &str,
    interval: Duration,
    max_wait: Duration,
) -> Result<Result<Duration, Duration>, StoreError> {
    let sql = format!(
        "WITH now AS (SELECT {NOW_US} AS us),
         turn AS (
             SELECT now.us, GREATEST(
                 now.us,
                 (SELECT GREATEST(next_at, paused_until) FROM notion_rate_budgets WHERE key = $1),
                 (SELECT paused_until FROM notion_rate_budgets WHERE key = $2)) AS at
             FROM now),
         claimed AS (
             INSERT INTO notion_rate_budgets AS b (key, next_at, claimed_at)
             SELECT $1, turn.at + $3, turn.us FROM turn WHERE turn.at - turn.us < $4
             ON CONFLICT (key) DO UPDATE SET
                 next_at = GREATEST(b.next_at, b.paused_until, EXCLUDED.next_at - $3) + $3,
                 claimed_at = EXCLUDED.claimed_at
             WHERE GREATEST(b.next_at, b.paused_until, EXCLUDED.next_at - $3)
                 - EXCLUDED.claimed_at < $4
             RETURNING next_at - $3 - claimed_at AS wait_us)
         SELECT (SELECT wait_us FROM claimed) AS claimed_us, turn.at - turn.us AS turn_us FROM turn"
    );
    let values: [Value; 4] = [
        connection.into(),
        workspace.into(),
        micros(interval).into(),
        micros(max_wait).into(),
    ];
    let row = query_one_on_postgres(db, sql, values)
        .await?
        .ok_or_else(|| StoreError::Db(sea_orm::DbErr::RecordNotFound("a turn".into())))?;
    turn_of(&row, max_wait)
}

/// Reads the connection `id` of `user_id` and, if it is active, takes its next turn as [`claim`]
/// does, in one statement: a search pays one round trip for both. `None` when the user has no
/// such connection.
pub(crate) async fn find_and_claim(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
    interval: Duration,
    max_wait: Duration,
) -> Result<Option<(ConnectionRow, Result<Duration, Duration>)>, StoreError> {
    let sql = format!(
        "WITH conn AS (SELECT * FROM notion_connections WHERE id = $1 AND user_id = $2),
         now AS (SELECT {NOW_US} AS us),
         turn AS (
             SELECT now.us, 'c:' || conn.id::text AS key, conn.status, GREATEST(
                 now.us,
                 (SELECT GREATEST(next_at, paused_until) FROM notion_rate_budgets
                     WHERE key = 'c:' || conn.id::text),
                 (SELECT paused_until FROM notion_rate_budgets
                     WHERE key = 'w:' || conn.workspace_id)) AS at
             FROM now, conn),
         claimed AS (
             INSERT INTO notion_rate_budgets AS b (key, next_at, claimed_at)
             SELECT turn.key, turn.at + $3, turn.us FROM turn
             WHERE turn.status = 'active' AND turn.at - turn.us < $4
             ON CONFLICT (key) DO UPDATE SET
                 next_at = GREATEST(b.next_at, b.paused_until, EXCLUDED.next_at - $3) + $3,
                 claimed_at = EXCLUDED.claimed_at
             WHERE GREATEST(b.next_at, b.paused_until, EXCLUDED.next_at - $3)
                 - EXCLUDED.claimed_at < $4
             RETURNING next_at - $3 - claimed_at AS wait_us)
         SELECT conn.*, (SELECT wait_us FROM claimed) AS claimed_us, turn.at - turn.us AS turn_us
         FROM conn, turn"
    );
    let values: [Value; 4] = [
        id.into(),
        user_id.into(),
        micros(interval).into(),
        micros(max_wait).into(),
    ];
    let Some(row) = query_one_on_postgres(db, sql, values).await? else {
        return Ok(None);
    };
    let connection = ConnectionRow::from_query_result(&row, "")?;
    Ok(Some((connection, turn_of(&row, max_wait)?)))
}

/// The turn a claim took, or, refused, how long until one: read from its `claimed_us` and
/// `turn_us`.
fn turn_of(
    row: &QueryResult,
    max_wait: Duration,
) -> Result<Result<Duration, Duration>, StoreError> {
    let claimed: Option<i64> = row.try_get("", "claimed_us")?;
    Ok(match claimed {
        Some(wait) => Ok(from_micros(wait)),
        // Refused by the snapshot's turn, or by a later one that a concurrent claim took.
        None => Err(from_micros(row.try_get("", "turn_us")?).max(max_wait)),
    })
}

/// Pauses the key (a connection's or a workspace's) for `pause` from now, unless it is paused
/// for longer already.
pub(crate) async fn pause(
    db: &impl ConnectionTrait,
    key: &str,
    pause: Duration,
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO notion_rate_budgets AS b (key, next_at, paused_until, claimed_at)
         SELECT $1, 0, now.us + $2, now.us FROM (SELECT {NOW_US} AS us) now
         ON CONFLICT (key) DO UPDATE SET paused_until = GREATEST(b.paused_until, EXCLUDED.paused_until)"
    );
    execute_on_postgres(db, sql, [key.into(), micros(pause).into()]).await
}

/// Deletes the rows whose turns and pauses all ended before `before` (microseconds since the
/// epoch): a key without a row has every turn free.
pub(crate) async fn forget_before(
    db: &impl ConnectionTrait,
    before: i64,
) -> Result<u64, StoreError> {
    // An integer written into the statement: it is ours, and the same SQL runs on both
    // databases.
    let sql = format!(
        "DELETE FROM notion_rate_budgets WHERE next_at < {before} AND paused_until < {before}"
    );
    let backend = db.get_database_backend();
    let deleted = db.execute_raw(Statement::from_string(backend, sql)).await?;
    Ok(deleted.rows_affected())
}

/// A key whose next turn or pause is still ahead, as an instance that keeps the budget in
/// memory takes it over or hands it back: how long from now until each (zero when past).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub key: String,
    pub next_in: Duration,
    pub paused_for: Duration,
}

/// The keys whose next turn or pause is still ahead.
pub(crate) async fn pending(db: &impl ConnectionTrait) -> Result<Vec<Pending>, StoreError> {
    let sql = format!(
        "SELECT key, GREATEST(next_at - now.us, 0) AS next_us,
             GREATEST(paused_until - now.us, 0) AS paused_us
         FROM notion_rate_budgets, (SELECT {NOW_US} AS us) now
         WHERE next_at > now.us OR paused_until > now.us"
    );
    let rows = db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Pending {
                key: row.try_get("", "key")?,
                next_in: from_micros(row.try_get("", "next_us")?),
                paused_for: from_micros(row.try_get("", "paused_us")?),
            })
        })
        .collect()
}

/// Writes back turns and pauses that were kept in memory: each key's next turn and pause, from
/// now, unless its row holds later ones already.
pub(crate) async fn absorb(
    db: &impl ConnectionTrait,
    pending: &[Pending],
) -> Result<(), StoreError> {
    // Three parameters a row, well under PostgreSQL's 65,535 a statement.
    for batch in pending.chunks(1000) {
        let mut rows = Vec::with_capacity(batch.len());
        let mut values: Vec<Value> = Vec::with_capacity(batch.len() * 3);
        for (i, entry) in batch.iter().enumerate() {
            let n = i * 3;
            rows.push(format!(
                "(${}, ${}::bigint, ${}::bigint)",
                n + 1,
                n + 2,
                n + 3
            ));
            values.push(entry.key.clone().into());
            values.push(micros(entry.next_in).into());
            values.push(micros(entry.paused_for).into());
        }
        let sql = format!(
            "INSERT INTO notion_rate_budgets AS b (key, next_at, paused_until, claimed_at)
             SELECT v.key, now.us + v.next_us, now.us + v.paused_us, now.us
             FROM (VALUES {}) AS v (key, next_us, paused_us), (SELECT {NOW_US} AS us) now
             ON CONFLICT (key) DO UPDATE SET
                 next_at = GREATEST(b.next_at, EXCLUDED.next_at),
                 paused_until = GREATEST(b.paused_until, EXCLUDED.paused_until)",
            rows.join(", ")
        );
        execute_on_postgres(db, sql, values).await?;
    }
    Ok(())
}
