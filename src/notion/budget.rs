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
//! An instance that is alone (see [`super::membership`]) keeps the turns in memory. Several
//! instances on one PostgreSQL keep them in the database (`notion_rate_budgets`, unlogged): a
//! turn is one statement on the connection's row, which reads the workspace's pause in passing,
//! and a pause is one statement on the connection's or the workspace's row. So all instances
//! share one budget per connection and per workspace, and a 429 seen by one holds back all of
//! them. An instance that becomes alone takes the turns and pauses ahead over from the database,
//! and one that stops being alone hands its own back before another instance may call Notion
//! (see [`super::lease`]).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::membership::{Alone, Membership};
use crate::{
    rate_limit::Pacer,
    store::{
        StoreError,
        connections::{self, ConnectionRow},
        rate_budgets::{self, Holder, Pending},
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

pub(crate) struct RateBudget {
    /// The turns and pauses of an instance that is alone.
    local: Arc<LocalBudget>,
    /// On PostgreSQL: the turns and pauses of instances that are not.
    shared: Option<SharedBudget>,
    membership: Arc<Membership>,
}

/// Turns and pauses in memory.
pub(crate) struct LocalBudget {
    connections: Pacer<Uuid>,
    workspaces: Pacer<String>,
}

/// Turns and pauses in the database.
struct SharedBudget {
    db: DatabaseConnection,
    interval: Duration,
}

impl RateBudget {
    /// `per_second` calls a second per connection: in memory while this instance is alone,
    /// shared through `db` otherwise (on PostgreSQL, where instances hold leases; on SQLite the
    /// service is one instance).
    pub(crate) fn new(
        db: &DatabaseConnection,
        per_second: u32,
        membership: Arc<Membership>,
    ) -> Self {
        let interval = (Duration::from_secs(1) + 2 * SLACK) / per_second.max(1);
        Self {
            local: Arc::new(LocalBudget {
                connections: Pacer::new(interval),
                workspaces: Pacer::new(Duration::ZERO),
            }),
            shared: membership.has_lease().then(|| SharedBudget {
                db: db.clone(),
                interval,
            }),
            membership,
        }
    }

    /// Whether this instance is alone, and so keeps the budget in memory.
    pub(crate) fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// The turns and pauses this instance keeps while it is alone.
    pub(crate) fn local(&self) -> &Arc<LocalBudget> {
        &self.local
    }

    /// Reserves the connection's next turn, unless it comes `max_wait` or more from now.
    pub(crate) async fn reserve(
        &self,
        connection: Uuid,
        workspace: &str,
        max_wait: Duration,
    ) -> Result<Turn, StoreError> {
        let shared = match self.in_memory(|local| local.reserve(connection, workspace, max_wait)) {
            Ok(turn) => return Ok(turn),
            Err(shared) => shared,
        };
        let wait = rate_budgets::claim(
            &shared.db,
            &rate_budgets::connection_key(connection),
            &rate_budgets::workspace_key(workspace),
            shared.interval,
            max_wait,
        )
        .await?;
        Ok(wait.map(|wait| Instant::now() + wait))
    }

    /// [`Self::reserve`] in memory, while this instance is `alone`.
    pub(crate) fn reserve_alone(
        &self,
        _alone: &Alone<'_>,
        connection: Uuid,
        workspace: &str,
        max_wait: Duration,
    ) -> Turn {
        self.local.reserve(connection, workspace, max_wait)
    }

    /// Runs `local` on the budget in memory, still alone when it ends, if this instance is
    /// alone; otherwise returns the shared budget to use instead.
    fn in_memory<T>(&self, local: impl FnOnce(&LocalBudget) -> T) -> Result<T, &SharedBudget> {
        let alone = self.membership.alone();
        match &self.shared {
            Some(shared) if alone.is_none() => Err(shared),
            _ => Ok(local(&self.local)),
        }
    }

    /// Reads the connection `id` of `user_id` and reserves its next turn as [`Self::reserve`]
    /// does (if it is active). Among other instances on PostgreSQL, both are one statement, so
    /// that a search makes one round trip to the database before calling Notion.
    pub(crate) async fn find_and_reserve(
        &self,
        db: &DatabaseConnection,
        user_id: Uuid,
        id: Uuid,
        max_wait: Duration,
    ) -> Result<Option<(ConnectionRow, Turn)>, StoreError> {
        match &self.shared {
            Some(shared) if !self.membership.is_alone() => {
                let found =
                    rate_budgets::find_and_claim(db, user_id, id, shared.interval, max_wait)
                        .await?;
                Ok(found.map(|(row, wait)| (row, wait.map(|wait| Instant::now() + wait))))
            }
            _ => {
                let Some(row) = connections::find_for_user(db, user_id, id).await? else {
                    return Ok(None);
                };
                let turn = self.reserve(row.id, &row.workspace_id, max_wait).await?;
                Ok(Some((row, turn)))
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
        let shared = match self.in_memory(|local| local.pause(connection, workspace, scope, pause))
        {
            Ok(()) => return Ok(()),
            Err(shared) => shared,
        };
        let key = match scope {
            Scope::Connection => rate_budgets::connection_key(connection),
            Scope::Workspace => rate_budgets::workspace_key(workspace),
        };
        rate_budgets::pause(&shared.db, &key, pause).await
    }
}

impl LocalBudget {
    fn reserve(&self, connection: Uuid, workspace: &str, max_wait: Duration) -> Turn {
        let paused = self.workspaces.paused_until(workspace);
        let wait = self.connections.reserve(connection, paused, max_wait);
        wait.map(|wait| Instant::now() + wait)
    }

    fn pause(&self, connection: Uuid, workspace: &str, scope: Scope, pause: Duration) {
        let until = Instant::now() + pause;
        match scope {
            Scope::Connection => self.connections.pause(connection, until),
            Scope::Workspace => self.workspaces.pause(workspace.to_owned(), until),
        }
    }

    /// Every turn and pause still ahead, to hand back to the database.
    pub(crate) fn pending(&self) -> Vec<Pending> {
        let connections = self
            .connections
            .pending()
            .into_iter()
            .map(|(id, next, paused)| Pending {
                key: rate_budgets::connection_key(id),
                next_in: next,
                paused_for: paused,
            });
        let workspaces = self
            .workspaces
            .pending()
            .into_iter()
            .map(|(id, _, paused)| Pending {
                key: rate_budgets::workspace_key(&id),
                next_in: Duration::ZERO,
                paused_for: paused,
            });
        connections.chain(workspaces).collect()
    }

    /// Takes over turns and pauses ahead from the database.
    pub(crate) fn take_over(&self, pending: &[Pending]) {
        let now = Instant::now();
        for entry in pending {
            let (next, paused) = (now + entry.next_in, now + entry.paused_for);
            match rate_budgets::holder(&entry.key) {
                Some(Holder::Connection(id)) => self.connections.seed(id, next, paused),
                Some(Holder::Workspace(id)) => self.workspaces.seed(id.to_owned(), now, paused),
                None => {}
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

    #[test]
    fn turns_and_pauses_handed_back_are_taken_over_by_their_holders() {
        let budget = LocalBudget {
            connections: Pacer::new(Duration::from_millis(100)),
            workspaces: Pacer::new(Duration::ZERO),
        };
        let connection = Uuid::now_v7();
        let long = Duration::from_secs(60);
        budget.connections.reserve(connection, None, long).unwrap();
        budget.connections.reserve(connection, None, long).unwrap();
        budget
            .workspaces
            .pause("ws-1".into(), Instant::now() + Duration::from_secs(5));
        let pending = budget.pending();
        let keys: Vec<_> = pending.iter().map(|p| p.key.as_str()).collect();
        assert!(
            keys.contains(&format!("c:{connection}").as_str()),
            "{keys:?}"
        );
        assert!(keys.contains(&"w:ws-1"), "{keys:?}");

        let taker = LocalBudget {
            connections: Pacer::new(Duration::from_millis(100)),
            workspaces: Pacer::new(Duration::ZERO),
        };
        let mut unknown = pending.clone();
        unknown.push(Pending {
            key: "x:something-else".into(),
            next_in: long,
            paused_for: long,
        });
        taker.take_over(&unknown);
        let next = taker.connections.reserve(connection, None, long).unwrap();
        assert!(next > Duration::from_millis(190), "{next:?}");
        let paused = taker.workspaces.paused_until("ws-1").unwrap();
        assert!(paused > Instant::now() + Duration::from_millis(4900));
    }
}
