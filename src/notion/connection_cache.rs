//! The connections this instance searched lately, kept while it is alone (see
//! [`super::membership`]), so that searching one again makes no round trip to the database.
//!
//! Every change the service makes to a connection's row forgets it here before the change is
//! answered, and stopping or starting to be alone forgets everything; a row read before such a
//! change is not kept (the cache's generation moved on meanwhile). A row changed by other means
//! (by hand, by a tool) is read again within [`FRESH_FOR`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::connections::ConnectionRow;

/// How long a row is used before it is read again.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);

/// Rows kept at most; past that, the stale ones are dropped, and all of them if none is.
const MAX_ROWS: usize = 10_000;

#[derive(Default)]
pub(crate) struct ConnectionCache {
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// Moves on with every change, so that a row read before one is not kept.
    generation: u64,
    rows: HashMap<Uuid, (Arc<ConnectionRow>, Instant)>,
}

impl ConnectionCache {
    /// The connection `id` of `user_id`, if it is kept and fresh.
    pub(crate) fn get(&self, user_id: Uuid, id: Uuid) -> Option<Arc<ConnectionRow>> {
        let state = self.lock();
        let (row, read_at) = state.rows.get(&id)?;
        (row.user_id == user_id && read_at.elapsed() < FRESH_FOR).then(|| row.clone())
    }

    /// The generation to give [`Self::keep`] for a row about to be read.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `row`, read when the cache was at `generation`, unless anything changed since.
    pub(crate) fn keep(&self, row: &ConnectionRow, generation: u64) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        if state.rows.len() >= MAX_ROWS {
            state
                .rows
                .retain(|_, (_, read_at)| read_at.elapsed() < FRESH_FOR);
            if state.rows.len() >= MAX_ROWS {
                state.rows.clear();
            }
        }
        state
            .rows
            .insert(row.id, (Arc::new(row.clone()), Instant::now()));
    }

    /// Notes that the service marked the connection as used `at`: the row kept stays, so that
    /// the next search does not mark it again.
    pub(crate) fn used(&self, id: Uuid, at: OffsetDateTime) {
        let mut state = self.lock();
        if let Some((row, _)) = state.rows.get_mut(&id) {
            let mut touched = ConnectionRow::clone(row);
            touched.last_used_at = Some(at);
            *row = Arc::new(touched);
        }
    }

    /// Forgets the connection `id`: its row is changing.
    pub(crate) fn forget(&self, id: Uuid) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows.remove(&id);
    }

    /// Forgets every row.
    pub(crate) fn clear(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.rows.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::connections::ConnectionStatus;

    fn row(user_id: Uuid) -> ConnectionRow {
        let now = OffsetDateTime::now_utc();
        ConnectionRow {
            id: Uuid::now_v7(),
            user_id,
            bot_id: "bot".into(),
            workspace_id: "workspace".into(),
            workspace_name: None,
            workspace_icon: None,
            owner: "{}".into(),
            owner_email: None,
            duplicated_template_id: None,
            access_token: "sealed".into(),
            refresh_token: None,
            key_id: "k1".into(),
            status: ConnectionStatus::Active,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            refreshing_until: None,
        }
    }

    #[test]
    fn a_row_is_kept_for_its_owner_only() {
        let cache = ConnectionCache::default();
        let (owner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let row = row(owner);
        cache.keep(&row, cache.generation());
        assert_eq!(cache.get(owner, row.id).unwrap().id, row.id);
        assert!(cache.get(other, row.id).is_none());
    }

    #[test]
    fn a_row_read_before_a_change_is_not_kept() {
        let cache = ConnectionCache::default();
        let user = Uuid::now_v7();
        let (changed, unrelated) = (row(user), row(user));
        let generation = cache.generation();
        cache.forget(unrelated.id);
        cache.keep(&changed, generation);
        assert!(cache.get(user, changed.id).is_none());

        cache.keep(&changed, cache.generation());
        cache.forget(changed.id);
        assert!(cache.get(user, changed.id).is_none());
        cache.keep(&changed, cache.generation());
        cache.clear();
        assert!(cache.get(user, changed.id).is_none());
    }

    #[test]
    fn marking_a_row_used_keeps_it() {
        let cache = ConnectionCache::default();
        let user = Uuid::now_v7();
        let row = row(user);
        cache.keep(&row, cache.generation());
        let at = OffsetDateTime::now_utc();
        cache.used(row.id, at);
        assert_eq!(cache.get(user, row.id).unwrap().last_used_at, Some(at));
    }
}
