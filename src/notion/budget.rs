//! How the service keeps to Notion's rate limits, whichever instance makes a call.
//!
//! Each connection gets turns at an even pace: one every 1.05/`NOTION_RATE_LIMIT` of a second
//! (the 5 % is kept back for delays, see [`SLACK`]), so no one-second window ever holds more
//! calls than the limit, however the calls line up. A caller reserves the next
//! turn and waits for it within its deadline, or is refused with the wait as its `Retry-After`.
//! A 429 pauses the connection, or the whole workspace when Notion's `rate_limit_reason` says
//! the workspace's limit was reached, for the `Retry-After` it gave: every later turn waits for
//! the pause to end.
//!
//! One instance (SQLite) keeps the turns in memory. Several instances on one PostgreSQL keep
//! them in the database (`notion_rate_budgets`, unlogged): a turn is one statement on the
//! connection's row, which reads the workspace's pause in passing, and a pause is one statement
//! on the connection's or the workspace's row. So all instances share one budget per connection
//! and per workspace, and a 429 seen by one holds back all of them.

use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DbBackend};
use uuid::Uuid;

use crate::{
    rate_limit::Pacer,
    store::{
        StoreError,
        connections::{self, ConnectionRow},
        rate_budgets,
    },
};

/// How late a call may go out after its turn (woken late on a busy machine, or waiting for a
/// slot); a later one takes a new turn. Twice this is kept back from each second's turns, for
/// that lateness and for the differences in how long requests take to reach Notion: calls a
/// second apart by their turns are still a second apart when they arrive, unless one is
/// delayed by more than that against another.
pub(crate) const SLACK: Duration = Duration::from_millis(25);

/// Which of Notion's limits a 429 was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    Connection,
    Workspace,
}

impl Scope {
    /// The workspace's limit when `additional_data.rate_limit_reason` names it; otherwise
    /// (the connection's limit, a reason we do not know, or none at all) the connection's.
    pub(crate) fn of(rate_limit_reason: Option<&str>) -> Self {
        match rate_limit_reason {
            Some(reason) if reason.to_ascii_lowercase().contains("workspace") => Self::Workspace,
            _ => Self::Connection,
        }
    }
}

/// A turn taken: `Ok(when it comes)`, or `Err(how long until one would)` when it would come
/// too late, in which case none was taken.
pub(crate) type Turn = Result<Instant, Duration>;

pub(crate) enum RateBudget {
    /// One instance: turns and pauses in memory.
    Local {
        connections: Pacer<Uuid>,
        workspaces: Pacer<String>,
    },
    /// Several instances on one PostgreSQL: turns and pauses in the database.
    Shared {
        db: DatabaseConnection,
        interval: Duration,
    },
}

impl RateBudget {
    /// `per_second` calls a second per connection: shared through `db` on PostgreSQL, in
    /// memory on SQLite (where the service is one instance).
    pub(crate) fn new(db: &DatabaseConnection, per_second: u32) -> Self {
        let interval = (Duration::from_secs(1) + 2 * SLACK) / per_second.max(1);
        match db.get_database_backend() {
            DbBackend::Postgres => Self::Shared {
                db: db.clone(),
                interval,
            },
            _ => Self::Local {
                connections: Pacer::new(interval),
                workspaces: Pacer::new(Duration::ZERO),
            },
        }
    }

    /// Reserves the connection's next turn, unless it comes `max_wait` or more from now.
    pub(crate) async fn reserve(
        &self,
        connection: Uuid,
        workspace: &str,
        max_wait: Duration,
    ) -> Result<Turn, StoreError> {
        let wait = match self {
            Self::Local {
                connections,
                workspaces,
            } => {
                let paused = workspaces.paused_until(workspace);
                connections.reserve(connection, paused, max_wait)
            }
            Self::Shared { db, interval } => {
                rate_budgets::claim(
                    db,
                    &rate_budgets::connection_key(connection),
                    &rate_budgets::workspace_key(workspace),
                    *interval,
                    max_wait,
                )
                .await?
            }
        };
        Ok(wait.map(|wait| Instant::now() + wait))
    }

    /// Reads the connection `id` of `user_id` and reserves its next turn as [`Self::reserve`]
    /// does (if it is active). On PostgreSQL both are one statement, so that a search makes one
    /// round trip to the database before calling Notion.
    pub(crate) async fn find_and_reserve(
        &self,
        db: &DatabaseConnection,
        user_id: Uuid,
        id: Uuid,
        max_wait: Duration,
    ) -> Result<Option<(ConnectionRow, Turn)>, StoreError> {
        match self {
            Self::Local { .. } => {
                let Some(row) = connections::find_for_user(db, user_id, id).await? else {
                    return Ok(None);
                };
                let turn = self.reserve(row.id, &row.workspace_id, max_wait).await?;
                Ok(Some((row, turn)))
            }
            Self::Shared { interval, .. } => {
                let found =
                    rate_budgets::find_and_claim(db, user_id, id, *interval, max_wait).await?;
                Ok(found.map(|(row, wait)| (row, wait.map(|wait| Instant::now() + wait))))
            }
        }
    }

    /// Holds back the connection's turns, or its workspace's, for `pause` from now.
    pub(crate) async fn pause(
        &self,
        connection: Uuid,
        workspace: &str,
        scope: Scope,
        pause: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Self::Local {
                connections,
                workspaces,
            } => {
                let until = Instant::now() + pause;
                match scope {
                    Scope::Connection => connections.pause(connection, until),
                    Scope::Workspace => workspaces.pause(workspace.to_owned(), until),
                }
                Ok(())
            }
            Self::Shared { db, .. } => {
                let key = match scope {
                    Scope::Connection => rate_budgets::connection_key(connection),
                    Scope::Workspace => rate_budgets::workspace_key(workspace),
                };
                rate_budgets::pause(db, &key, pause).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_reason_naming_the_workspace_pauses_the_workspace() {
        assert_eq!(Scope::of(Some("workspace_rate_limit")), Scope::Workspace);
        assert_eq!(Scope::of(Some("Workspace")), Scope::Workspace);
        assert_eq!(Scope::of(Some("connection_rate_limit")), Scope::Connection);
        assert_eq!(Scope::of(Some("something_new")), Scope::Connection);
        assert_eq!(Scope::of(None), Scope::Connection);
    }
}
