//! Registration, login, token refresh, logout and the current user.
//!
//! Login returns a short-lived JWT access token in the body and a refresh token in an HttpOnly,
//! SameSite=Strict cookie scoped to `/api/v1/auth`. Each refresh rotates that cookie; presenting
//! a token that was already rotated ends the whole session family (someone copied it).

use std::time::Duration;

use poem::{
    Request,
    http::{StatusCode, header},
    web::Data,
};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ApiTags, cookies, problem, set_cookie};
use crate::{
    auth::{
        BearerAuth, RefreshToken, Username,
        backoff::delay_after,
        device::{DEVICE_COOKIE, DEVICE_COOKIE_MAX_AGE, DEVICE_COOKIE_PATHS},
        hash_token,
        liveness::Account,
        password::{HashError, MAX_PASSWORD_CHARS, Password, Verification},
    },
    client_ip,
    entity::{session, user},
    error::{ApiError, Chain, Problem},
    http_policy::ResponseCookies,
    metrics::LoginOutcome,
    state::AppState,
    store::{StoreError, login_attempts, sessions, users},
};

/// Name of the refresh token cookie.
pub(crate) const REFRESH_COOKIE: &str = "nc_refresh";
/// The cookie is only ever sent to these endpoints.
const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
/// How long a refresh token lives; every refresh starts a new period.
pub(crate) const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A user account as the API shows it.
#[derive(Object, Clone, Debug)]
pub struct User {
    pub id: Uuid,
    /// As typed at registration; logging in ignores case.
    pub username: String,
    pub is_admin: bool,
    pub created_at: OffsetDateTime,
}

impl From<&user::Model> for User {
    fn from(model: &user::Model) -> Self {
        Self {
            id: model.id,
            username: model.username.clone(),
            is_admin: model.is_admin,
            created_at: model.created_at,
        }
    }
}

impl From<&Account> for User {
    fn from(account: &Account) -> Self {
        Self {
            id: account.id,
            username: account.username.clone(),
            is_admin: account.is_admin,
            created_at: account.created_at,
        }
    }
}

/// A username and password.
#[derive(Object)]
pub struct Credentials {
    /// 3 to 32 characters from A-Z, a-z, 0-9, '.', '_' and '-'.
    pub username: String,
    /// 8 to 1024 characters; very common or easily guessed passwords are refused.
    #[oai(write_only)]
    pub password: String,
}

/// The result of logging in or refreshing.
#[derive(Object)]
pub struct Session {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: User,
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account was created. Log in to get a session.
    #[oai(status = 201)]
    Created(Json<User>),
    /// Registration is closed on this server (`registration_disabled`).
    #[oai(status = 403, content_type = "application/problem+json")]
    RegistrationDisabled(Json<Problem>),
    /// The username is taken, in any case (`username_taken`).
    #[oai(status = 409, content_type = "application/problem+json")]
    UsernameTaken(Json<Problem>),
    /// The username or password does not meet the rules (`invalid_username`,
    /// `password_too_short`, `password_too_long`, `password_too_weak`).
    #[oai(status = 422, content_type = "application/problem+json")]
    Invalid(Json<Problem>),
    /// Too many attempts from this address (`too_many_attempts`).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyAttempts(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

#[derive(ApiResponse)]
pub enum LoginResponse {
    /// Logged in. The refresh token is in the `nc_refresh` cookie.
    #[oai(status = 200)]
    LoggedIn(Json<Session>, #[oai(header = "Set-Cookie")] String),
    /// Unknown user or wrong password; the two are indistinguishable (`invalid_credentials`).
    #[oai(status = 401, content_type = "application/problem+json")]
    InvalidCredentials(Json<Problem>),
    /// Too many attempts for this account or from this address (`too_many_attempts`).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyAttempts(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

#[derive(ApiResponse)]
pub enum RefreshResponse {
    /// A new access token; the `nc_refresh` cookie was rotated.
    #[oai(status = 200)]
    Refreshed(Json<Session>, #[oai(header = "Set-Cookie")] String),
    /// No valid refresh token (`invalid_refresh_token`); the cookie is cleared.
    #[oai(status = 401, content_type = "application/problem+json")]
    Invalid(Json<Problem>, #[oai(header = "Set-Cookie")] String),
    /// The request came from a page of another origin (`origin_not_allowed`).
    #[oai(status = 403, content_type = "application/problem+json")]
    OriginNotAllowed(Json<Problem>),
    /// Too many refreshes of this session or from this address (`too_many_attempts`).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyAttempts(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

#[derive(ApiResponse)]
pub enum LogoutResponse {
    /// The session is over: its refresh token and every access token issued for it stop
    /// working. Also answered when there was no session.
    #[oai(status = 204)]
    LoggedOut(#[oai(header = "Set-Cookie")] String),
    /// The request came from a page of another origin (`origin_not_allowed`).
    #[oai(status = 403, content_type = "application/problem+json")]
    OriginNotAllowed(Json<Problem>),
}

/// The password of the account, to confirm a consequential change.
#[derive(Object)]
pub struct PasswordConfirmation {
    #[oai(write_only)]
    pub password: String,
}

#[derive(ApiResponse)]
pub enum DeleteAccountResponse {
    /// The account is gone, with its sessions and connections; revoking the connections' tokens
    /// at Notion is queued and retried until Notion confirms.
    #[oai(status = 204)]
    Deleted,
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// The password is wrong (`invalid_credentials`); nothing was changed.
    #[oai(status = 403, content_type = "application/problem+json")]
    WrongPassword(Json<Problem>),
    /// Too many attempts for this account or from this address (`too_many_attempts`).
    #[oai(status = 429, content_type = "application/problem+json")]
    TooManyAttempts(Json<Problem>, #[oai(header = "Retry-After")] u64),
}

#[derive(ApiResponse)]
pub enum MeResponse {
    /// The account behind the access token.
    #[oai(status = 200)]
    Me(Json<User>),
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
}

#[derive(Default)]
pub struct AuthApi;

#[OpenApi(prefix_path = "/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account
    ///
    /// Open only when the server allows registration. The new account is not logged in.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<Credentials>,
    ) -> Result<RegisterResponse, ApiError> {
        if !state.settings.allow_registration {
            return Ok(RegisterResponse::RegistrationDisabled(problem(
                StatusCode::FORBIDDEN,
                "registration_disabled",
                "Registration is closed on this server.",
            )));
        }
        if let Some(wait) = address_throttled(&state, req) {
            return Ok(RegisterResponse::TooManyAttempts(too_many_attempts(), wait));
        }
        let (username, password) = match parse_new_account(body.0) {
            Ok(parsed) => parsed,
            Err(invalid) => return Ok(RegisterResponse::Invalid(invalid)),
        };
        // A cheap check first, so a taken name costs no hashing; the unique index decides races.
        if users::find_by_key(&state.db, &username.key())
            .await?
            .is_some()
        {
            return Ok(RegisterResponse::UsernameTaken(username_taken()));
        }
        let hash = state.hasher.hash(password.expose()).await?;
        match users::create(&state.db, &username, hash, false).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "account registered");
                Ok(RegisterResponse::Created(Json(User::from(&user))))
            }
            Err(StoreError::Conflict) => Ok(RegisterResponse::UsernameTaken(username_taken())),
            Err(e) => Err(e.into()),
        }
    }

    /// Log in
    ///
    /// Returns an access token and sets the refresh token cookie. After several consecutive
    /// failures the account's next attempt must wait (1 s, doubling, at most 60 s).
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&AppState>,
        req: &Request,
        body: Json<Credentials>,
    ) -> Result<LoginResponse, ApiError> {
        let answer = log_in(&state, req, body.0).await;
        state.metrics.login(match &answer {
            Ok(LoginResponse::LoggedIn(..)) => LoginOutcome::Success,
            Ok(LoginResponse::InvalidCredentials(_)) => LoginOutcome::Invalid,
            Ok(LoginResponse::TooManyAttempts(..)) => LoginOutcome::Throttled,
            Err(_) => LoginOutcome::Failed,
        });
        answer
    }

    /// Refresh the access token
    ///
    /// Uses and rotates the refresh token cookie. Presenting a refresh token that was already
    /// used ends its whole session.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(
        &self,
        state: Data<&AppState>,
        req: &Request,
    ) -> Result<RefreshResponse, ApiError> {
        if !origin_allowed(&state, req) {
            return Ok(RefreshResponse::OriginNotAllowed(origin_not_allowed()));
        }
        let invalid = || {
            RefreshResponse::Invalid(
                problem(
                    StatusCode::UNAUTHORIZED,
                    "invalid_refresh_token",
                    "The session is missing, expired or ended; log in again.",
                ),
                refresh_cookie(&state, None),
            )
        };
        let ip = client_ip::of_request(req, &state.settings.trusted_proxies);
        if let Err(wait) = state.refresh_limits.check_ip(ip) {
            return Ok(RefreshResponse::TooManyAttempts(
                too_many_attempts(),
                retry_after(wait),
            ));
        }
        let Some(current) = presented_session(&state, req).await? else {
            return Ok(invalid());
        };
        let next = match rotate(&state, &current).await? {
            Rotation::Rotated(next) => next,
            Rotation::Limited(wait) => {
                return Ok(RefreshResponse::TooManyAttempts(too_many_attempts(), wait));
            }
            Rotation::Reused => return Ok(invalid()),
        };
        let Some(user) = users::find_by_id(&state.db, current.user_id).await? else {
            return Ok(invalid());
        };
        let session = issue_session(&state, &user, current.family_id)?;
        Ok(RefreshResponse::Refreshed(
            Json(session),
            refresh_cookie(&state, Some(&next)),
        ))
    }

    /// Log out
    ///
    /// Ends the session of the refresh token cookie and of the bearer token, if either is sent.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        state: Data<&AppState>,
        req: &Request,
    ) -> Result<LogoutResponse, ApiError> {
        if !origin_allowed(&state, req) {
            return Ok(LogoutResponse::OriginNotAllowed(origin_not_allowed()));
        }
        // Every session whose refresh token came along ends, planted ones included.
        for token in cookies(&state.settings, req, REFRESH_COOKIE) {
            if let Some(session) =
                sessions::find_by_token_hash(&state.db, &hash_token(token)).await?
            {
                sessions::revoke_family(&state.db, session.family_id).await?;
                state.live_sessions.forget_family(session.family_id);
                tracing::info!(event = "logout", user_id = %session.user_id, "logged out");
            }
        }
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(claims) = bearer.and_then(|token| state.jwt.verify(token).ok()) {
            sessions::revoke_family(&state.db, claims.sid).await?;
            state.live_sessions.forget_family(claims.sid);
            tracing::info!(event = "logout", user_id = %claims.sub, "logged out");
        }
        Ok(LogoutResponse::LoggedOut(refresh_cookie(&state, None)))
    }
}

/// Checks the credentials and starts a session (the `login` operation, before its metrics).
async fn log_in(
    state: &AppState,
    req: &Request,
    credentials: Credentials,
) -> Result<LoginResponse, ApiError> {
    if let Some(wait) = address_throttled(state, req) {
        tracing::warn!(
            event = "login_throttled",
            by = "address",
            "a login was refused"
        );
        return Ok(LoginResponse::TooManyAttempts(too_many_attempts(), wait));
    }
    let Credentials { username, password } = credentials;
    // No account can have such a name or password: refuse without spending a hash.
    let (Ok(name), true) = (
        Username::parse(&username),
        password.chars().count() <= MAX_PASSWORD_CHARS,
    ) else {
        return Ok(LoginResponse::InvalidCredentials(invalid_credentials()));
    };
    let key = name.key();
    let user = users::find_by_key(&state.db, &key).await?;
    let who = Who::new(state, user.as_ref(), &key);
    // The attempt is counted before the password is checked, so parallel guesses cannot
    // all slip past the count.
    let bucket = throttle_bucket(state, req, user.as_ref(), &key);
    if let Err(wait) = login_attempts::claim(&state.db, &bucket, delay_after).await? {
        tracing::warn!(event = "login_throttled", by = "account", user_id = who.id, name = %who.name, "a login was refused");
        return Ok(LoginResponse::TooManyAttempts(
            too_many_attempts(),
            retry_after(wait),
        ));
    }
    let Some(user) = check_password(state, user, &password).await? else {
        tracing::info!(event = "login_failed", user_id = who.id, name = %who.name, "a login failed");
        return Ok(LoginResponse::InvalidCredentials(invalid_credentials()));
    };
    login_attempts::clear(&state.db, &bucket).await?;
    remember_device(state, req, user.id)?;

    let token = RefreshToken::generate().map_err(ApiError::internal)?;
    let started =
        sessions::start_family(&state.db, user.id, token.hash(), refresh_expiry()).await?;
    for family in &started.ended {
        state.live_sessions.forget_family(*family);
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
    let session = issue_session(state, &user, started.family_id)?;
    tracing::info!(event = "login", user_id = %user.id, "logged in");
    Ok(LoginResponse::LoggedIn(
        Json(session),
        refresh_cookie(state, Some(&token)),
    ))
}

#[derive(Default)]
pub struct AccountApi;

#[OpenApi(tag = "ApiTags::Account")]
impl AccountApi {
    /// The current user
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(&self, auth: BearerAuth) -> Result<MeResponse, ApiError> {
        Ok(MeResponse::Me(Json(User::from(&auth.0.user))))
    }

    /// Delete your account
    ///
    /// Deletes the account, its sessions and its connections, and revokes every Notion token it
    /// held (queued durably and retried until Notion confirms). The password must be given
    /// again; attempts count towards the same limits as logging in.
    #[oai(path = "/me", method = "delete", operation_id = "delete_me")]
    async fn delete_me(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        req: &Request,
        body: Json<PasswordConfirmation>,
    ) -> Result<DeleteAccountResponse, ApiError> {
        if let Some(wait) = address_throttled(&state, req) {
            return Ok(DeleteAccountResponse::TooManyAttempts(
                too_many_attempts(),
                wait,
            ));
        }
        // The password hash is read afresh: it is never kept with the session.
        let Some(user) = users::find_by_id(&state.db, auth.0.user.id).await? else {
            return Ok(DeleteAccountResponse::Unauthorized(Json(
                ApiError::Unauthorized.problem(),
            )));
        };
        let bucket = throttle_bucket(&state, req, Some(&user), &user.username_key);
        if let Err(wait) = login_attempts::claim(&state.db, &bucket, delay_after).await? {
            return Ok(DeleteAccountResponse::TooManyAttempts(
                too_many_attempts(),
                retry_after(wait),
            ));
        }
        let verified = state
            .hasher
            .verify(&body.0.password, Some(&user.password_hash))
            .await?;
        if matches!(verified, Verification::Mismatch) {
            return Ok(DeleteAccountResponse::WrongPassword(problem(
                StatusCode::FORBIDDEN,
                "invalid_credentials",
                "The password is wrong.",
            )));
        }
        login_attempts::clear(&state.db, &bucket).await?;
        state.connections.delete_account(user.id).await?;
        state.live_sessions.forget_user(user.id);
        Ok(DeleteAccountResponse::Deleted)
    }
}

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => ApiError::unavailable(err),
            _ => ApiError::internal(err),
        }
    }
}

/// The wait in seconds when the client's address has used up its attempts.
fn address_throttled(state: &AppState, req: &Request) -> Option<u64> {
    let ip = client_ip::of_request(req, &state.settings.trusted_proxies);
    state.auth_limiter.check_ip(ip).err().map(retry_after)
}

/// The user whose password `password` is, with its hash upgraded when it was made with weaker
/// parameters; `None` for a wrong password or no such user (after the same hashing work).
async fn check_password(
    state: &AppState,
    user: Option<user::Model>,
    password: &str,
) -> Result<Option<user::Model>, ApiError> {
    let stored = user.as_ref().map(|u| u.password_hash.as_str());
    let needs_rehash = match state.hasher.verify(password, stored).await? {
        Verification::Mismatch => return Ok(None),
        Verification::Match { needs_rehash } => needs_rehash,
    };
    let user = user.ok_or_else(|| ApiError::internal("a password matched no user"))?;
    if needs_rehash {
        upgrade_hash(state, &user, password).await?;
    }
    Ok(Some(user))
}

/// How a refresh went.
enum Rotation {
    Rotated(RefreshToken),
    /// The session refreshes too often; wait this many seconds.
    Limited(u64),
    /// The token was rotated already (or its family ended): the family is now revoked.
    Reused,
}

/// Rotates the live token `current`. A token that was already rotated means someone holds a
/// copy: the whole family ends, whatever the rate limit says.
async fn rotate(state: &AppState, current: &session::Model) -> Result<Rotation, ApiError> {
    if current.rotated_at.is_none() {
        if let Err(wait) = state.refresh_limits.check_family(current.family_id) {
            return Ok(Rotation::Limited(retry_after(wait)));
        }
        let next = RefreshToken::generate().map_err(ApiError::internal)?;
        if sessions::rotate(&state.db, current, next.hash(), refresh_expiry())
            .await?
            .is_some()
        {
            return Ok(Rotation::Rotated(next));
        }
    }
    sessions::revoke_family(&state.db, current.family_id).await?;
    state.live_sessions.forget_family(current.family_id);
    tracing::warn!(
        event = "refresh_family_revoked",
        user_id = %current.user_id,
        "a rotated refresh token was presented again; the session was ended"
    );
    Ok(Rotation::Reused)
}

/// Whom a login attempt was for, as log lines may name it: the account's id when it exists, and
/// always a keyed pseudonym of the name (never the name itself).
struct Who {
    id: Option<String>,
    name: String,
}

impl Who {
    fn new(state: &AppState, user: Option<&user::Model>, key: &str) -> Self {
        Self {
            id: user.map(|u| u.id.to_string()),
            name: state.devices.pseudonym(key),
        }
    }
}

/// Which allowance an attempt counts against: the device's own, when the browser carries a
/// genuine device cookie for this account, otherwise the account's, shared by everyone else.
fn throttle_bucket(
    state: &AppState,
    req: &Request,
    user: Option<&user::Model>,
    key: &str,
) -> String {
    user.and_then(|user| {
        cookies(&state.settings, req, DEVICE_COOKIE)
            .into_iter()
            .find_map(|cookie| state.devices.bucket(cookie, user.id))
    })
    .unwrap_or_else(|| key.to_owned())
}

/// Gives this browser a device cookie for the account it just logged in to.
fn remember_device(state: &AppState, req: &Request, user_id: Uuid) -> Result<(), ApiError> {
    let Some(jar) = req.extensions().get::<ResponseCookies>() else {
        return Ok(());
    };
    let value = state.devices.issue(user_id).map_err(ApiError::internal)?;
    for path in DEVICE_COOKIE_PATHS {
        jar.add(set_cookie(
            &state.settings,
            DEVICE_COOKIE,
            &value,
            path,
            DEVICE_COOKIE_MAX_AGE,
            "Strict",
        ));
    }
    Ok(())
}

/// The name and password of a new account, or the problem with them.
fn parse_new_account(credentials: Credentials) -> Result<(Username, Password), Json<Problem>> {
    let invalid =
        |code: &str, detail: &str| problem(StatusCode::UNPROCESSABLE_ENTITY, code, detail);
    let username =
        Username::parse(&credentials.username).map_err(|rule| invalid("invalid_username", rule))?;
    let password = Password::parse(credentials.password, username.as_str())
        .map_err(|rejected| invalid(rejected.code(), &rejected.to_string()))?;
    Ok((username, password))
}

/// Rehashes a password that matched a hash made with weaker parameters. An upgrade that fails
/// now is tried again at the next login; it must not cost the user this one.
async fn upgrade_hash(
    state: &AppState,
    user: &user::Model,
    password: &str,
) -> Result<(), StoreError> {
    match state.hasher.hash(password).await {
        Ok(hash) => users::update_password_hash(&state.db, user.id, hash).await,
        Err(e) => {
            tracing::warn!(user_id = %user.id, error = %Chain(&e), "password hash upgrade postponed");
            Ok(())
        }
    }
}

/// The live session of the refresh cookie the request carries, if any.
async fn presented_session(
    state: &AppState,
    req: &Request,
) -> Result<Option<session::Model>, StoreError> {
    // Two different refresh tokens mean someone planted one: rather than guess which session
    // the person at this browser means, refuse both.
    let [presented] = cookies(&state.settings, req, REFRESH_COOKIE)[..] else {
        return Ok(None);
    };
    sessions::find_live(&state.db, &hash_token(presented)).await
}

fn issue_session(state: &AppState, user: &user::Model, family: Uuid) -> Result<Session, ApiError> {
    let access_token = state
        .jwt
        .issue(user.id, family)
        .map_err(ApiError::internal)?;
    Ok(Session {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.jwt.ttl().as_secs(),
        user: User::from(user),
    })
}

fn refresh_expiry() -> OffsetDateTime {
    OffsetDateTime::now_utc() + REFRESH_TOKEN_TTL
}

/// The `Set-Cookie` value carrying `token`, or clearing the cookie when `None`.
fn refresh_cookie(state: &AppState, token: Option<&RefreshToken>) -> String {
    let (value, max_age) = match token {
        Some(token) => (token.expose(), REFRESH_TOKEN_TTL.as_secs()),
        None => ("", 0),
    };
    set_cookie(
        &state.settings,
        REFRESH_COOKIE,
        value,
        REFRESH_COOKIE_PATH,
        max_age,
        "Strict",
    )
}

/// Cookie-authenticated endpoints refuse requests that a page of a foreign origin made.
/// Requests without `Origin` (same-origin GETs, non-browser clients) pass.
fn origin_allowed(state: &AppState, req: &Request) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let settings = &state.settings;
    origin == settings.public_url.origin().ascii_serialization()
        || settings
            .cors_allowed_origins
            .iter()
            .any(|allowed| allowed == origin)
}

fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn invalid_credentials() -> Json<Problem> {
    problem(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "The username or password is wrong.",
    )
}

fn username_taken() -> Json<Problem> {
    problem(
        StatusCode::CONFLICT,
        "username_taken",
        "That username is taken.",
    )
}

fn too_many_attempts() -> Json<Problem> {
    problem(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "Too many attempts; wait for the number of seconds in Retry-After.",
    )
}

fn origin_not_allowed() -> Json<Problem> {
    problem(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        "This request must come from the service's own pages.",
    )
}
