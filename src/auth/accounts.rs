//! The accounts service: creating accounts, logging in (throttled, with hash upgrades), renewing
//! and ending sessions, deleting an account, and recognising the caller of a request. The HTTP
//! handlers only translate its outcomes.
//!
//! Login throttling counts each attempt before its password is checked, in one compare-and-set
//! statement, against an allowance: the device's own when the browser carries a genuine device
//! cookie for the account, otherwise the account's, shared by everyone else. Each client address
//! also has an allowance per minute.

use std::{net::IpAddr, sync::Arc, time::Duration};

use sea_orm::DatabaseConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    RefreshToken, Username,
    backoff::delay_after,
    device::Devices,
    hash_token,
    jwt::{JwtKeys, TokenError},
    liveness::{Account, LiveSessions},
    password::{HashError, MAX_PASSWORD_CHARS, Password, PasswordHasher, Verification},
};
use crate::{
    chain::Chain,
    entity::{session, user},
    metrics::{LoginOutcome, Metrics},
    notion::{connections::ConnectionService, errors::ConnectionError},
    rate_limit::{IpRateLimiter, RefreshLimits},
    store::{StoreError, login_attempts, sessions, users},
};

/// How long a refresh token lives; every refresh starts a new period.
pub(crate) const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the service needs, built once at start-up.
pub(crate) struct AccountsConfig {
    pub db: DatabaseConnection,
    pub hasher: PasswordHasher,
    pub jwt: JwtKeys,
    pub devices: Devices,
    /// Login and registration attempts per client address and minute.
    pub attempts_per_minute: u32,
    pub registration_open: bool,
    pub metrics: Arc<Metrics>,
    /// Deleting an account deletes its connections (and revokes their tokens).
    pub connections: Arc<ConnectionService>,
}

pub(crate) struct Accounts {
    db: DatabaseConnection,
    hasher: PasswordHasher,
    jwt: JwtKeys,
    devices: Devices,
    /// Families recently found live, so that most requests skip the liveness query.
    live: LiveSessions,
    address_limit: IpRateLimiter,
    refresh_limits: RefreshLimits,
    registration_open: bool,
    metrics: Arc<Metrics>,
    connections: Arc<ConnectionService>,
}

/// A failure of the service itself, never the caller's.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountError {
    #[error("database")]
    Store(#[from] StoreError),
    #[error("password hashing")]
    Hash(#[from] HashError),
    #[error("no randomness available")]
    Random(#[from] getrandom::Error),
    #[error("issuing an access token")]
    Token(#[from] TokenError),
    #[error("deleting the account's connections")]
    Connections(#[from] ConnectionError),
    #[error("a password matched no user")]
    Inconsistent,
}

/// A session just started or renewed.
pub(crate) struct NewSession {
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: user::Model,
    /// For the refresh cookie.
    pub refresh_token: RefreshToken,
}

pub(crate) enum Registration {
    Created(user::Model),
    Closed,
    /// The client's address has used up its attempts: wait this many seconds.
    Throttled(u64),
    /// The username or password breaks a rule (`code` names it).
    Invalid {
        code: &'static str,
        detail: String,
    },
    Taken,
}

pub(crate) enum Login {
    /// Logged in; `device` is a new device cookie for this browser.
    Started {
        session: NewSession,
        device: String,
    },
    /// Unknown user or wrong password, indistinguishable.
    InvalidCredentials,
    Throttled(u64),
}

pub(crate) enum Renewal {
    Renewed(NewSession),
    /// No live session behind the presented token (or a reused one, whose family is now over).
    Invalid,
    Throttled(u64),
}

pub(crate) enum Deletion {
    Deleted,
    /// The account went away meanwhile.
    Gone,
    WrongPassword,
    Throttled(u64),
}

impl Accounts {
    pub(crate) fn new(config: AccountsConfig) -> Self {
        Self {
            db: config.db,
            hasher: config.hasher,
            jwt: config.jwt,
            devices: config.devices,
            live: LiveSessions::default(),
            address_limit: IpRateLimiter::per_minute(config.attempts_per_minute),
            refresh_limits: RefreshLimits::new(),
            registration_open: config.registration_open,
            metrics: config.metrics,
            connections: config.connections,
        }
    }

    /// Creates an account, if registration is open and the name and password pass the rules.
    pub(crate) async fn register(
        &self,
        client: IpAddr,
        username: &str,
        password: String,
    ) -> Result<Registration, AccountError> {
        if !self.registration_open {
            return Ok(Registration::Closed);
        }
        if let Err(wait) = self.address_limit.check_ip(client) {
            return Ok(Registration::Throttled(whole_seconds(wait)));
        }
        let username = match Username::parse(username) {
            Ok(username) => username,
            Err(rule) => {
                return Ok(Registration::Invalid {
                    code: "invalid_username",
                    detail: rule.to_owned(),
                });
            }
        };
        let password = match Password::parse(password, username.as_str()) {
            Ok(password) => password,
            Err(rejected) => {
                return Ok(Registration::Invalid {
                    code: rejected.code(),
                    detail: rejected.to_string(),
                });
            }
        };
        // A cheap check first, so a taken name costs no hashing; the unique index decides races.
        if users::find_by_key(&self.db, &username.key())
            .await?
            .is_some()
        {
            return Ok(Registration::Taken);
        }
        let hash = self.hasher.hash(password.expose()).await?;
        match create_user(&self.db, &username, hash, false).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "account registered");
                Ok(Registration::Created(user))
            }
            Err(StoreError::Conflict) => Ok(Registration::Taken),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks the credentials and starts a session. `devices` are the device cookies the
    /// browser sent.
    pub(crate) async fn log_in(
        &self,
        client: IpAddr,
        username: &str,
        password: &str,
        devices: &[&str],
    ) -> Result<Login, AccountError> {
        let outcome = self.try_log_in(client, username, password, devices).await;
        self.metrics.login(match &outcome {
            Ok(Login::Started { .. }) => LoginOutcome::Success,
            Ok(Login::InvalidCredentials) => LoginOutcome::Invalid,
            Ok(Login::Throttled(_)) => LoginOutcome::Throttled,
            Err(_) => LoginOutcome::Failed,
        });
        outcome
    }

    async fn try_log_in(
        &self,
        client: IpAddr,
        username: &str,
        password: &str,
        devices: &[&str],
    ) -> Result<Login, AccountError> {
        if let Err(wait) = self.address_limit.check_ip(client) {
            tracing::warn!(
                event = "login_throttled",
                by = "address",
                "a login was refused"
            );
            return Ok(Login::Throttled(whole_seconds(wait)));
        }
        // No account can have such a name or password: refuse without spending a hash.
        let (Ok(name), true) = (
            Username::parse(username),
            password.chars().count() <= MAX_PASSWORD_CHARS,
        ) else {
            return Ok(Login::InvalidCredentials);
        };
        let key = name.key();
        let user = users::find_by_key(&self.db, &key).await?;
        let who = Who::new(&self.devices, user.as_ref(), &key);
        // The attempt is counted before the password is checked, so parallel guesses cannot
        // all slip past the count.
        let bucket = self.throttle_bucket(devices, user.as_ref(), &key);
        if let Err(wait) = login_attempts::claim(&self.db, &bucket, delay_after).await? {
            tracing::warn!(event = "login_throttled", by = "account", user_id = who.id, name = %who.name, "a login was refused");
            return Ok(Login::Throttled(whole_seconds(wait)));
        }
        let Some(user) = self.check_password(user, password).await? else {
            tracing::info!(event = "login_failed", user_id = who.id, name = %who.name, "a login failed");
            return Ok(Login::InvalidCredentials);
        };
        login_attempts::clear(&self.db, &bucket).await?;
        let device = self.devices.issue(user.id)?;

        let refresh_token = RefreshToken::generate()?;
        let started =
            sessions::start_family(&self.db, user.id, refresh_token.hash(), refresh_expiry())
                .await?;
        for family in &started.ended {
            self.live.forget_family(*family);
        }
        if !started.ended.is_empty() {
            tracing::warn!(
                event = "sessions_ended_by_limit",
                user_id = %user.id,
                ended = started.ended.len(),
                "a login ended the account's oldest sessions (at most {} are live at once)",
                sessions::MAX_LIVE_SESSIONS
            );
        }
        let session = self.new_session(user, started.family_id, refresh_token)?;
        tracing::info!(event = "login", user_id = %session.user.id, "logged in");
        Ok(Login::Started { session, device })
    }

    /// Renews the session of the refresh token presented (`presented`: the refresh cookies the
    /// request carries), rotating the token. A token that was already rotated means someone
    /// holds a copy: the whole session ends.
    pub(crate) async fn renew(
        &self,
        client: IpAddr,
        presented: &[&str],
    ) -> Result<Renewal, AccountError> {
        if let Err(wait) = self.refresh_limits.check_ip(client) {
            return Ok(Renewal::Throttled(whole_seconds(wait)));
        }
        // Two different refresh tokens mean someone planted one: rather than guess which session
        // the person at this browser means, refuse both.
        let [presented] = presented else {
            return Ok(Renewal::Invalid);
        };
        let Some(current) = sessions::find_live(&self.db, &hash_token(presented)).await? else {
            return Ok(Renewal::Invalid);
        };
        let next = match self.rotate(&current).await? {
            Rotation::Rotated(next) => next,
            Rotation::Limited(wait) => return Ok(Renewal::Throttled(wait)),
            Rotation::Reused => return Ok(Renewal::Invalid),
        };
        let Some(user) = users::find_by_id(&self.db, current.user_id).await? else {
            return Ok(Renewal::Invalid);
        };
        Ok(Renewal::Renewed(self.new_session(
            user,
            current.family_id,
            next,
        )?))
    }

    /// Ends the sessions of the refresh tokens presented (planted ones included) and of the
    /// access token, if any: their refresh tokens and every access token issued for them stop
    /// working at once.
    pub(crate) async fn log_out(
        &self,
        refresh_tokens: &[&str],
        access_token: Option<&str>,
    ) -> Result<(), AccountError> {
        for token in refresh_tokens {
            if let Some(session) =
                sessions::find_by_token_hash(&self.db, &hash_token(token)).await?
            {
                self.end_family(session.family_id).await?;
                tracing::info!(event = "logout", user_id = %session.user_id, "logged out");
            }
        }
        if let Some(claims) = access_token.and_then(|token| self.jwt.verify(token).ok()) {
            self.end_family(claims.sid).await?;
            tracing::info!(event = "logout", user_id = %claims.sub, "logged out");
        }
        Ok(())
    }

    /// Deletes the account `user_id` once its password is given again, with everything it
    /// owns; the revocation of its Notion tokens is queued. Attempts count towards the same
    /// limits as logging in.
    pub(crate) async fn delete(
        &self,
        client: IpAddr,
        user_id: Uuid,
        password: &str,
        devices: &[&str],
    ) -> Result<Deletion, AccountError> {
        if let Err(wait) = self.address_limit.check_ip(client) {
            return Ok(Deletion::Throttled(whole_seconds(wait)));
        }
        // The password hash is read afresh: it is never kept with the session.
        let Some(user) = users::find_by_id(&self.db, user_id).await? else {
            return Ok(Deletion::Gone);
        };
        let bucket = self.throttle_bucket(devices, Some(&user), &user.username_key);
        if let Err(wait) = login_attempts::claim(&self.db, &bucket, delay_after).await? {
            return Ok(Deletion::Throttled(whole_seconds(wait)));
        }
        let verified = self
            .hasher
            .verify(password, Some(&user.password_hash))
            .await?;
        if matches!(verified, Verification::Mismatch) {
            return Ok(Deletion::WrongPassword);
        }
        login_attempts::clear(&self.db, &bucket).await?;
        self.connections.delete_account(user.id).await?;
        self.live.forget_user(user.id);
        Ok(Deletion::Deleted)
    }

    /// The account behind an access token, if the token is genuine and its session still live.
    pub(crate) async fn authenticate(
        &self,
        access_token: &str,
    ) -> Result<Option<Account>, AccountError> {
        let Ok(claims) = self.jwt.verify(access_token) else {
            return Ok(None);
        };
        let now = std::time::Instant::now();
        if let Some(account) = self.live.get(claims.sub, claims.sid, now) {
            return Ok(Some(account));
        }
        let Some(user) = sessions::user_of_live_family(&self.db, claims.sub, claims.sid).await?
        else {
            return Ok(None);
        };
        let account = Account::from(user);
        self.live.remember(claims.sid, account.clone(), now);
        Ok(Some(account))
    }

    /// A page of every account, for administrators: up to `limit` after the id `after`.
    pub(crate) async fn page(
        &self,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<user::Model>, AccountError> {
        Ok(users::page(&self.db, after, limit).await?)
    }

    /// The user whose password `password` is, with its hash upgraded when it was made with
    /// weaker parameters; `None` for a wrong password or no such user (after the same hashing
    /// work).
    async fn check_password(
        &self,
        user: Option<user::Model>,
        password: &str,
    ) -> Result<Option<user::Model>, AccountError> {
        let stored = user.as_ref().map(|u| u.password_hash.as_str());
        let needs_rehash = match self.hasher.verify(password, stored).await? {
            Verification::Mismatch => return Ok(None),
            Verification::Match { needs_rehash } => needs_rehash,
        };
        let user = user.ok_or(AccountError::Inconsistent)?;
        if needs_rehash {
            self.upgrade_hash(&user, password).await?;
        }
        Ok(Some(user))
    }

    /// Rehashes a password that matched a hash made with weaker parameters. An upgrade that
    /// fails now is tried again at the next login; it must not cost the user this one.
    async fn upgrade_hash(&self, user: &user::Model, password: &str) -> Result<(), StoreError> {
        match self.hasher.hash(password).await {
            Ok(hash) => users::update_password_hash(&self.db, user.id, hash).await,
            Err(e) => {
                tracing::warn!(user_id = %user.id, error = %Chain(&e), "password hash upgrade postponed");
                Ok(())
            }
        }
    }

    /// Rotates the live token `current`. A token that was already rotated means someone holds
    /// a copy: the whole family ends, whatever the rate limit says.
    async fn rotate(&self, current: &session::Model) -> Result<Rotation, AccountError> {
        if current.rotated_at.is_none() {
            if let Err(wait) = self.refresh_limits.check_family(current.family_id) {
                return Ok(Rotation::Limited(whole_seconds(wait)));
            }
            let next = RefreshToken::generate()?;
            if sessions::rotate(&self.db, current, next.hash(), refresh_expiry())
                .await?
                .is_some()
            {
                return Ok(Rotation::Rotated(next));
            }
        }
        self.end_family(current.family_id).await?;
        tracing::warn!(
            event = "refresh_family_revoked",
            user_id = %current.user_id,
            "a rotated refresh token was presented again; the session was ended"
        );
        Ok(Rotation::Reused)
    }

    /// Ends a session family, here at once and on other instances within a second.
    async fn end_family(&self, family: Uuid) -> Result<(), StoreError> {
        sessions::revoke_family(&self.db, family).await?;
        self.live.forget_family(family);
        Ok(())
    }

    /// Which allowance an attempt counts against: the device's own, when the browser carries a
    /// genuine device cookie for this account, otherwise the account's, shared by everyone
    /// else.
    fn throttle_bucket(&self, devices: &[&str], user: Option<&user::Model>, key: &str) -> String {
        user.and_then(|user| {
            devices
                .iter()
                .find_map(|cookie| self.devices.bucket(cookie, user.id))
        })
        .unwrap_or_else(|| key.to_owned())
    }

    fn new_session(
        &self,
        user: user::Model,
        family: Uuid,
        refresh_token: RefreshToken,
    ) -> Result<NewSession, AccountError> {
        Ok(NewSession {
            access_token: self.jwt.issue(user.id, family)?,
            expires_in: self.jwt.ttl().as_secs(),
            user,
            refresh_token,
        })
    }
}

/// Creates an account whose password has been hashed already (registration, and the
/// `create-user` command).
pub async fn create_user(
    db: &DatabaseConnection,
    username: &Username,
    password_hash: String,
    is_admin: bool,
) -> Result<user::Model, StoreError> {
    users::create(
        db,
        username.as_str(),
        &username.key(),
        password_hash,
        is_admin,
    )
    .await
}

/// How a refresh went.
enum Rotation {
    Rotated(RefreshToken),
    /// The session refreshes too often; wait this many seconds.
    Limited(u64),
    /// The token was rotated already (or its family ended): the family is now revoked.
    Reused,
}

/// Whom a login attempt was for, as log lines may name it: the account's id when it exists, and
/// always a keyed pseudonym of the name (never the name itself).
struct Who {
    id: Option<String>,
    name: String,
}

impl Who {
    fn new(devices: &Devices, user: Option<&user::Model>, key: &str) -> Self {
        Self {
            id: user.map(|u| u.id.to_string()),
            name: devices.pseudonym(key),
        }
    }
}

fn refresh_expiry() -> OffsetDateTime {
    OffsetDateTime::now_utc() + REFRESH_TOKEN_TTL
}

/// A wait in whole seconds, rounded up, as `Retry-After` states it.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}
