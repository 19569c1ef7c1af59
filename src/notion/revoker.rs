//! Revoking tokens at Notion, durably. Disconnecting a workspace or deleting an account queues
//! the revocation in the same transaction that deletes the connection (re-authorizing a
//! workspace queues the tokens it replaces, and a refresh that finishes after its connection
//! was deleted queues the tokens it got); a worker in every instance sends what is due, retries
//! with growing pauses across restarts, outages and instances, and gives up loudly after a few
//! days.
//!
//! A revocation ends only when Notion says the token no longer works: it confirmed the
//! revocation, it answered `400 {}` (its documented answer for a token it does not accept), or,
//! after any other client error, introspecting the token says `active: false`. A refused client
//! secret, a rate limit, a server error or no answer at all says nothing about the token, so it
//! is retried.
//!
//! An attempt takes its row by moving the next attempt time forward (compare-and-set on the
//! attempt count), so two instances never send the same revocation at once, and a worker that
//! dies mid-attempt only delays the next one.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;

use tokio::sync::Notify;

use super::{
    errors::ConnectionError,
    oauth::{NotionOAuth, RevokeError, RevokeVerdict},
    vault::ConnectionVault,
};
use crate::{
    chain::Chain,
    crypto::SealedField,
    entity::pending_revocation,
    secret::Secret,
    store::{StoreError, connections::ConnectionRow, revocations},
};

/// How often the worker looks for due revocations when nothing wakes it earlier.
const POLL: Duration = Duration::from_secs(30);
/// Revocations taken per look.
const BATCH: u64 = 20;
/// The pause before the second attempt; it doubles with each further one...
const FIRST_RETRY: time::Duration = time::Duration::minutes(1);
/// ...up to this.
const LONGEST_PAUSE: time::Duration = time::Duration::hours(6);
/// A revocation still failing this long after it was queued is abandoned (and logged).
pub(crate) const GIVE_UP_AFTER: time::Duration = time::Duration::days(3);

/// The pause after the `attempts`-th attempt.
fn pause_after(attempts: i32) -> time::Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    (FIRST_RETRY * 2_i32.saturating_pow(doublings)).min(LONGEST_PAUSE)
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Revoked {
    /// Confirmed by Notion.
    pub revoked: usize,
    /// Not accepted by Notion any more: nothing was left to revoke.
    pub already_invalid: usize,
    /// Failed this time, to be tried again.
    pub retrying: usize,
    /// Abandoned: too old, or the token could not be decrypted.
    pub given_up: usize,
}

/// Sends queued revocations to Notion: the worker of one instance.
pub(crate) struct Revoker {
    vault: ConnectionVault,
    oauth: Arc<NotionOAuth>,
    /// Wakes the worker when something was queued.
    queued: Notify,
}

impl Revoker {
    pub(crate) fn new(vault: ConnectionVault, oauth: Arc<NotionOAuth>) -> Self {
        Self {
            vault,
            oauth,
            queued: Notify::new(),
        }
    }

    /// Tells the worker that a revocation was queued (after its transaction committed).
    pub(crate) fn wake(&self) {
        self.queued.notify_one();
    }

    /// Queues the revocation of `token`, an access token Notion issued for `row`'s connection
    /// that no row keeps: the connection was deleted, or authorized again, while the token was
    /// being refreshed.
    pub(crate) async fn revoke_unkept(
        &self,
        row: &ConnectionRow,
        token: &Secret<String>,
    ) -> Result<(), ConnectionError> {
        let sealed = self
            .vault
            .seal(row, SealedField::AccessToken, token.expose())?;
        let key_id = self.vault.primary_key_id();
        revocations::queue_sealed(self.vault.db(), row.user_id, &row.bot_id, sealed, key_id)
            .await?;
        self.wake();
        Ok(())
    }

    /// Sends every revocation that is due, once.
    pub(crate) async fn revoke_due(&self) -> Result<Revoked, StoreError> {
        let db = self.vault.db();
        let mut done = Revoked::default();
        for row in revocations::due(db, BATCH).await? {
            let now = OffsetDateTime::now_utc();
            if !revocations::claim(db, &row, now + pause_after(row.attempts + 1)).await? {
                continue;
            }
            let metrics = self.oauth.metrics();
            match self.attempt(&row).await {
                Ok(ended) => {
                    revocations::delete(db, row.id).await?;
                    let outcome = match ended {
                        Ended::Revoked => {
                            done.revoked += 1;
                            "revoked"
                        }
                        Ended::AlreadyInvalid => {
                            done.already_invalid += 1;
                            "already_invalid"
                        }
                    };
                    metrics.revocation(outcome);
                    tracing::info!(user_id = %row.user_id, outcome, "a Notion token was revoked");
                }
                Err(reason) if reason.is_final() || now - row.created_at > GIVE_UP_AFTER => {
                    revocations::delete(db, row.id).await?;
                    metrics.revocation("given_up");
                    tracing::error!(
                        event = "revocation_given_up",
                        user_id = %row.user_id,
                        attempts = row.attempts + 1,
                        error = %Chain(&reason),
                        "a Notion token could not be revoked and will not be tried again; \
                         revoke the integration's access in Notion by hand"
                    );
                    done.given_up += 1;
                }
                Err(reason) => {
                    metrics.revocation("retrying");
                    tracing::warn!(
                        user_id = %row.user_id,
                        attempts = row.attempts + 1,
                        error = %Chain(&reason),
                        "revoking a Notion token failed; it will be tried again"
                    );
                    done.retrying += 1;
                }
            }
        }
        Ok(done)
    }

    /// One attempt at a revocation: how it ended, or why it has not.
    async fn attempt(&self, row: &pending_revocation::Model) -> Result<Ended, AttemptError> {
        let token = self
            .vault
            .open_revocation(row)
            .map_err(AttemptError::Undecryptable)?;
        let refused = match self.oauth.revoke(&token).await {
            Ok(()) => return Ok(Ended::Revoked),
            Err(refused) => refused,
        };
        match refused.verdict() {
            RevokeVerdict::TokenInvalid => Ok(Ended::AlreadyInvalid),
            RevokeVerdict::Retry => Err(AttemptError::Notion(refused)),
            RevokeVerdict::Ambiguous => match self.oauth.introspect(&token).await {
                Ok(false) => Ok(Ended::AlreadyInvalid),
                Ok(true) => Err(AttemptError::StillActive(refused)),
                Err(unknown) => Err(AttemptError::Unconfirmed { refused, unknown }),
            },
        }
    }
}

/// How a revocation ended.
enum Ended {
    Revoked,
    AlreadyInvalid,
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("the token cannot be decrypted")]
    Undecryptable(#[source] ConnectionError),
    #[error("Notion did not confirm")]
    Notion(#[source] RevokeError),
    #[error("Notion refused the revocation of a token it still accepts")]
    StillActive(#[source] RevokeError),
    #[error(
        "Notion refused the revocation ({refused}) and could not say whether the token is active"
    )]
    Unconfirmed {
        refused: RevokeError,
        #[source]
        unknown: RevokeError,
    },
}

impl AttemptError {
    /// Whether trying again cannot help.
    fn is_final(&self) -> bool {
        matches!(self, Self::Undecryptable(_))
    }
}

/// Runs the revocation worker until the returned task is aborted: a pass at start-up, then one
/// every [`POLL`] or as soon as something is queued.
pub(crate) fn spawn(revoker: Arc<Revoker>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match revoker.revoke_due().await {
                Ok(done) if done != Revoked::default() => {
                    tracing::info!(?done, "sent pending revocations")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %Chain(&e), "sending pending revocations failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = revoker.queued.notified() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_and_stop_growing() {
        assert_eq!(pause_after(1), time::Duration::minutes(1));
        assert_eq!(pause_after(2), time::Duration::minutes(2));
        assert_eq!(pause_after(4), time::Duration::minutes(8));
        assert_eq!(pause_after(50), LONGEST_PAUSE);
        assert_eq!(pause_after(i32::MAX), LONGEST_PAUSE);
    }
}
