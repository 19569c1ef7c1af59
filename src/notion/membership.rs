//! Whether this instance is the only one serving from its database.
//!
//! Alone, an instance may keep in memory what several instances must share through the
//! database: the Notion rate budget and the connections it searches (see [`super::lease`] for
//! how an instance on PostgreSQL learns that it is alone, and stops being so). On SQLite the
//! service is one instance, always alone.

use std::{
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::Instant,
};

use sea_orm::{DatabaseConnection, DbBackend};

pub(crate) struct Membership {
    /// On SQLite: alone for good.
    always_alone: bool,
    /// Until when this instance is alone, if it is. Held for reading while something is done
    /// on the strength of being alone, and for writing to stop being alone, so nothing is done
    /// alone once that has begun.
    alone_until: RwLock<Option<Instant>>,
}

/// Proof that this instance is alone, for as long as it is held.
pub(crate) struct Alone<'a>(#[allow(dead_code)] RwLockReadGuard<'a, Option<Instant>>);

impl Membership {
    /// Alone for good on SQLite; on PostgreSQL not alone until its lease says so (see
    /// [`super::lease`]).
    pub(crate) fn for_database(db: &DatabaseConnection) -> Self {
        Self {
            always_alone: db.get_database_backend() != DbBackend::Postgres,
            alone_until: RwLock::new(None),
        }
    }

    /// `Some` while this instance is alone; stopping being alone waits for it to be dropped.
    pub(crate) fn alone(&self) -> Option<Alone<'_>> {
        let until = self.alone_until.read().unwrap_or_else(|p| p.into_inner());
        let alone = self.always_alone || until.is_some_and(|until| Instant::now() < until);
        alone.then_some(Alone(until))
    }

    pub(crate) fn is_alone(&self) -> bool {
        self.alone().is_some()
    }

    /// Whether this instance can be among others (PostgreSQL), and so holds a lease.
    pub(crate) fn has_lease(&self) -> bool {
        !self.always_alone
    }

    /// Holds the state for a change: no [`Alone`] is held while the returned guard is.
    pub(super) fn change(&self) -> RwLockWriteGuard<'_, Option<Instant>> {
        self.alone_until.write().unwrap_or_else(|p| p.into_inner())
    }
}
