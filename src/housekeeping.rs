//! Periodic clean-up of rows that have stopped meaning anything: expired refresh tokens and the
//! families they leave empty, expired OAuth states, failed-login counts nobody has added to for a
//! day, Notion rate budgets whose turns and pauses ended an hour ago, and the leases of instances
//! that stopped renewing them an hour ago. Each is one `DELETE`
//! (indexed, but for the small table of rate budgets, which is read whole); a failed sweep is
//! logged and tried again at the next tick.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use time::OffsetDateTime;

use crate::store::{StoreError, instances, login_attempts, oauth_states, rate_budgets, sessions};

/// How often the sweep runs.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10 * 60);

/// A name's failed-login count is forgotten this long after its latest failure. Far beyond the
/// longest throttling delay, so forgetting never shortens one that is running.
pub(crate) const FORGET_FAILURES_AFTER: time::Duration = time::Duration::days(1);

/// An expired OAuth state is kept this much longer, so that a callback which claimed it just
/// before it expired can still finish its flow (the callback checks expiry itself).
pub(crate) const KEEP_EXPIRED_STATES: time::Duration = time::Duration::hours(1);

/// A connection's or workspace's rate budget is forgotten this long after its last turn or pause
/// ended: a key without one has every turn free, which by then it has anyway.
pub(crate) const FORGET_RATE_BUDGETS_AFTER: time::Duration = time::Duration::hours(1);

/// An instance's lease is forgotten this long after it ended. An instance that comes back after
/// that registers again.
pub(crate) const FORGET_INSTANCES_AFTER: time::Duration = time::Duration::hours(1);

/// How many rows one sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u64,
    pub session_families: u64,
    pub oauth_states: u64,
    pub login_attempts: u64,
    pub rate_budgets: u64,
    pub instances: u64,
}

/// Deletes everything that has expired by now.
pub async fn sweep(db: &DatabaseConnection) -> Result<Swept, StoreError> {
    let now = OffsetDateTime::now_utc();
    Ok(Swept {
        sessions: sessions::delete_expired(db).await?,
        session_families: sessions::delete_empty_families(db).await?,
        oauth_states: oauth_states::delete_expired_before(db, now - KEEP_EXPIRED_STATES).await?,
        login_attempts: login_attempts::forget_before(db, now - FORGET_FAILURES_AFTER).await?,
        rate_budgets: rate_budgets::forget_before(db, unix_micros(now - FORGET_RATE_BUDGETS_AFTER))
            .await?,
        instances: instances::forget_before(db, unix_micros(now - FORGET_INSTANCES_AFTER)).await?,
    })
}

fn unix_micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Runs [`sweep`] every [`INTERVAL`], the first time one interval after start-up, until the
/// returned task is aborted.
pub(crate) fn spawn(db: DatabaseConnection) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let first = tokio::time::Instant::now() + INTERVAL;
        let mut ticks = tokio::time::interval_at(first, INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match sweep(&db).await {
                Ok(swept) if swept != Swept::default() => {
                    tracing::info!(?swept, "deleted expired rows")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "clean-up of expired rows failed"),
            }
        }
    })
}
