//! Password policy and Argon2id hashing.
//!
//! Hashing costs about 19 MiB of memory and tens of milliseconds of CPU by design, so it never
//! runs on the async runtime: it runs on the blocking pool behind a small number of slots. A
//! request that cannot get a slot within the configured wait is refused with 503, which keeps a
//! flood of logins from exhausting memory or starving other endpoints.

use std::{sync::Arc, time::Duration};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordVerifier, Version,
    password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::secret::Secret;

pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// Counted in characters, as JSON Schema's `maxLength` counts them.
pub(crate) const MAX_PASSWORD_CHARS: usize = 1024;
/// Only this much of a password is scored: longer ones are not "very common", and the
/// strength estimator's cost grows quickly with length.
const SCORED_PREFIX_CHARS: usize = 64;

/// A password that satisfies the policy: 8 to 1024 characters, and not among the very common
/// or easily guessed ones. No composition rules.
pub struct Password(Secret<String>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordRejected {
    #[error("The password must have at least {MIN_PASSWORD_CHARS} characters.")]
    TooShort,
    #[error("The password must not be longer than {MAX_PASSWORD_CHARS} characters.")]
    TooLong,
    #[error(
        "The password is too common or too easy to guess; choose a longer or less predictable one."
    )]
    TooCommon,
}

impl PasswordRejected {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::TooShort => "password_too_short",
            Self::TooLong => "password_too_long",
            Self::TooCommon => "password_too_weak",
        }
    }
}

impl Password {
    /// Checks the policy. `username` counts as a guessable word.
    pub fn parse(raw: String, username: &str) -> Result<Self, PasswordRejected> {
        let length = raw.chars().count();
        if length > MAX_PASSWORD_CHARS {
            return Err(PasswordRejected::TooLong);
        }
        if length < MIN_PASSWORD_CHARS {
            return Err(PasswordRejected::TooShort);
        }
        let scored: String = raw.chars().take(SCORED_PREFIX_CHARS).collect();
        let estimate = zxcvbn::zxcvbn(&scored, &[username]);
        if u8::from(estimate.score()) < 2 {
            return Err(PasswordRejected::TooCommon);
        }
        Ok(Self(Secret::new(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("every password hashing slot is busy")]
    Busy,
    #[error("password hashing failed")]
    Failed(#[source] argon2::password_hash::Error),
    #[error("no randomness for the stand-in hash")]
    Random(#[source] getrandom::Error),
    #[error("the password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
}

pub(crate) enum Verification {
    Mismatch,
    /// The password is right. `needs_rehash` when the stored hash uses weaker parameters than
    /// the current ones.
    Match {
        needs_rehash: bool,
    },
}

/// Hashes and verifies passwords on the blocking pool, a bounded number at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    wait: Duration,
    /// Verified against when the user does not exist, so that case costs the same time.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// `slots` hashes run at once; a request waits at most `wait` for one.
    pub fn new(slots: usize, wait: Duration) -> Result<Self, HashError> {
        let random: [u8; 16] = crate::crypto::random_bytes().map_err(HashError::Random)?;
        let dummy = hash_blocking(&format!("{random:?}"))?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            wait,
            dummy_hash: dummy.into(),
        })
    }

    /// Hashes a password. New passwords must have passed [`Password::parse`]; a login rehashes
    /// whatever password matched.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = password.to_owned();
        self.run(move || hash_blocking(&password)).await
    }

    /// Verifies `password` against `stored`, or against a dummy hash when there is no user, so
    /// that an unknown user takes as long as a wrong password.
    pub(crate) async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<Verification, HashError> {
        let exists = stored.is_some();
        let stored = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let password = password.to_owned();
        let verification = self
            .run(move || verify_blocking(&password, &stored))
            .await?;
        Ok(if exists {
            verification
        } else {
            Verification::Mismatch
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| HashError::Busy)?
            .map_err(|_| HashError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(HashError::Task)?
    }
}

/// Argon2id with the crate's default parameters (m=19456 KiB, t=2, p=1).
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

fn hash_blocking(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(HashError::Failed)
}

fn verify_blocking(password: &str, stored: &str) -> Result<Verification, HashError> {
    let parsed = PasswordHash::new(stored).map_err(HashError::Failed)?;
    match argon2().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(Verification::Match {
            needs_rehash: is_weaker_than_current(&parsed),
        }),
        Err(argon2::password_hash::Error::Password) => Ok(Verification::Mismatch),
        Err(e) => Err(HashError::Failed(e)),
    }
}

fn is_weaker_than_current(hash: &PasswordHash<'_>) -> bool {
    let current = Params::default();
    let Ok(params) = Params::try_from(hash) else {
        return true;
    };
    hash.algorithm != Algorithm::Argon2id.ident()
        || hash.version != Some(Version::V0x13.into())
        || params.m_cost() < current.m_cost()
        || params.t_cost() < current.t_cost()
        || params.p_cost() < current.p_cost()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_checks_length_and_guessability() {
        let parse = |p: &str| Password::parse(p.to_owned(), "alice").map(|_| ());
        assert_eq!(parse("short"), Err(PasswordRejected::TooShort));
        assert_eq!(parse("password"), Err(PasswordRejected::TooCommon));
        assert_eq!(parse("12345678"), Err(PasswordRejected::TooCommon));
        assert_eq!(parse("alice2024"), Err(PasswordRejected::TooCommon));
        assert_eq!(parse(&"x".repeat(1025)), Err(PasswordRejected::TooLong));
        assert_eq!(parse("correct horse battery staple"), Ok(()));
        assert_eq!(parse("ünïcödé-wörds-ärë-fïnë"), Ok(()));
    }

    #[tokio::test]
    async fn hashes_verify_and_weak_parameters_need_rehash() {
        let hasher = PasswordHasher::new(1, Duration::from_secs(30)).unwrap();
        let password = Password::parse("correct horse battery staple".into(), "bob").unwrap();
        let hash = hasher.hash(password.expose()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );

        let right = hasher.verify(password.expose(), Some(&hash)).await.unwrap();
        assert!(matches!(
            right,
            Verification::Match {
                needs_rehash: false
            }
        ));
        let wrong = hasher.verify("wrong password", Some(&hash)).await.unwrap();
        assert!(matches!(wrong, Verification::Mismatch));
        let unknown = hasher.verify(password.expose(), None).await.unwrap();
        assert!(matches!(unknown, Verification::Mismatch));

        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).unwrap(),
        )
        .hash_password(
            b"correct horse battery staple",
            &SaltString::generate(&mut OsRng),
        )
        .unwrap()
        .to_string();
        let old = hasher.verify(password.expose(), Some(&weak)).await.unwrap();
        assert!(matches!(old, Verification::Match { needs_rehash: true }));
    }

    #[tokio::test]
    async fn a_request_that_cannot_get_a_slot_in_time_is_refused() {
        let hasher = PasswordHasher::new(1, Duration::from_millis(0)).unwrap();
        let _held = hasher.slots.clone().acquire_owned().await.unwrap();
        let password = Password::parse("correct horse battery staple".into(), "bob").unwrap();
        assert!(matches!(
            hasher.hash(password.expose()).await,
            Err(HashError::Busy)
        ));
    }
}
