//! A short memory of live sessions, so that most authenticated requests need no database query
//! to check their access token.
//!
//! A family found live is believed for [`BELIEVED_FOR`] at most. Ending a family here (logout,
//! a detected reuse, an account deleted) forgets it at once, so its access tokens stop working on
//! this instance immediately and on every other instance within that time. Only what identifies
//! the caller is kept: no password hash, no token.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::sessions::SessionUser;

/// How long a positive answer from the database is believed.
pub const BELIEVED_FOR: Duration = Duration::from_secs(1);
/// Families remembered at most; past that, expired ones are dropped, or all if none has expired.
const CAPACITY: usize = 10_000;

/// The caller of an authenticated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Account {
    pub id: Uuid,
    pub username: String,
    pub username_key: String,
    pub is_admin: bool,
    pub created_at: OffsetDateTime,
}

impl From<SessionUser> for Account {
    fn from(user: SessionUser) -> Self {
        Self {
            id: user.id,
            username: user.username,
            username_key: user.username_key,
            is_admin: user.is_admin,
            created_at: user.created_at,
        }
    }
}

struct Remembered {
    account: Account,
    until: Instant,
}

/// Live families by id, each with its account.
#[derive(Default)]
pub(crate) struct LiveSessions(Mutex<HashMap<Uuid, Remembered>>);

impl LiveSessions {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Remembered>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account of family `family`, if it was found live less than [`BELIEVED_FOR`] ago and
    /// belongs to `user_id`.
    pub(crate) fn get(&self, user_id: Uuid, family: Uuid, now: Instant) -> Option<Account> {
        let entries = self.entries();
        let remembered = entries.get(&family)?;
        (remembered.until > now && remembered.account.id == user_id)
            .then(|| remembered.account.clone())
    }

    /// Remembers that `family` was found live just now.
    pub(crate) fn remember(&self, family: Uuid, account: Account, now: Instant) {
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.retain(|_, remembered| remembered.until > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        let until = now + BELIEVED_FOR;
        entries.insert(family, Remembered { account, until });
    }

    /// Forgets a family that has just been ended.
    pub(crate) fn forget_family(&self, family: Uuid) {
        self.entries().remove(&family);
    }

    /// Forgets every family of an account that has just been deleted.
    pub(crate) fn forget_user(&self, user_id: Uuid) {
        self.entries()
            .retain(|_, remembered| remembered.account.id != user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: u128) -> Account {
        Account {
            id: Uuid::from_u128(id),
            username: "a".into(),
            username_key: "a".into(),
            is_admin: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_live_family_is_believed_for_a_second_and_forgotten_at_once_when_ended() {
        let sessions = LiveSessions::default();
        let (family, other) = (Uuid::from_u128(10), Uuid::from_u128(11));
        let now = Instant::now();
        sessions.remember(family, account(1), now);
        sessions.remember(other, account(1), now);
        assert_eq!(
            sessions.get(Uuid::from_u128(1), family, now),
            Some(account(1))
        );
        assert_eq!(
            sessions.get(Uuid::from_u128(2), family, now),
            None,
            "another user's id"
        );
        assert_eq!(
            sessions.get(Uuid::from_u128(1), family, now + BELIEVED_FOR),
            None
        );

        sessions.forget_family(family);
        assert_eq!(sessions.get(Uuid::from_u128(1), family, now), None);
        assert!(sessions.get(Uuid::from_u128(1), other, now).is_some());
        sessions.forget_user(Uuid::from_u128(1));
        assert_eq!(sessions.get(Uuid::from_u128(1), other, now), None);
    }

    #[test]
    fn the_memory_stays_bounded() {
        let sessions = LiveSessions::default();
        let now = Instant::now();
        for i in 0..CAPACITY as u128 + 5 {
            sessions.remember(Uuid::from_u128(i), account(1), now);
        }
        assert!(sessions.entries().len() <= CAPACITY);
    }
}
