//! Registration, login, token refresh, logout and the current user.
//!
//! Login returns a short-lived JWT access token in the body and a refresh token in an HttpOnly,
//! SameSite=Strict cookie scoped to `/api/v1/auth`. Each refresh rotates that cookie; presenting
//! a token that was already rotated ends the whole session family (someone copied it).

use poem::{
    Request,
    http::{StatusCode, header},
    web::Data,
};
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiTags,
    cookies::{ResponseCookies, cookies, set_cookie},
    problem::{ApiError, Problem},
};
use crate::{
    auth::{
        RefreshToken,
        accounts::{Login, NewSession, REFRESH_TOKEN_TTL, Registration, Renewal},
        device::{DEVICE_COOKIE, DEVICE_COOKIE_MAX_AGE, DEVICE_COOKIE_PATHS},
        liveness::Account,
    },
    client_ip,
    entity::user,
    state::AppState,
};

/// Name of the refresh token cookie.
const REFRESH_COOKIE: &str = "nc_refresh";
/// The cookie is only ever sent to these endpoints.
const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";

/// A user account as the API shows it.
#[derive(Object, Clone, Debug)]
pub(crate) struct User {
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
pub(crate) struct Credentials {
    /// 3 to 32 characters from A-Z, a-z, 0-9, '.', '_' and '-'.
    pub username: String,
    /// 8 to 1024 characters; very common or easily guessed passwords are refused.
    #[oai(write_only)]
    pub password: String,
}

/// The result of logging in or refreshing.
#[derive(Object)]
pub(crate) struct Session {
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: User,
}

#[derive(ApiResponse)]
pub(crate) enum RegisterResponse {
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
pub(crate) enum LoginResponse {
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
pub(crate) enum RefreshResponse {
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
pub(crate) enum LogoutResponse {
    /// The session is over: its refresh token and every access token issued for it stop
    /// working. Also answered when there was no session.
    #[oai(status = 204)]
    LoggedOut(#[oai(header = "Set-Cookie")] String),
    /// The request came from a page of another origin (`origin_not_allowed`).
    #[oai(status = 403, content_type = "application/problem+json")]
    OriginNotAllowed(Json<Problem>),
}

#[derive(Default)]
pub(crate) struct AuthApi;

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
        let Credentials { username, password } = body.0;
        let client = client_ip::of_request(req, &state.settings.trusted_proxies);
        Ok(
            match state.accounts.register(client, &username, password).await? {
                Registration::Created(user) => RegisterResponse::Created(Json(User::from(&user))),
                Registration::Closed => RegisterResponse::RegistrationDisabled(Problem::json(
                    StatusCode::FORBIDDEN,
                    "registration_disabled",
                    "Registration is closed on this server.",
                )),
                Registration::Throttled(wait) => {
                    RegisterResponse::TooManyAttempts(too_many_attempts(), wait)
                }
                Registration::Invalid { code, detail } => RegisterResponse::Invalid(Problem::json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    code,
                    &detail,
                )),
                Registration::Taken => RegisterResponse::UsernameTaken(Problem::json(
                    StatusCode::CONFLICT,
                    "username_taken",
                    "That username is taken.",
                )),
            },
        )
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
        let client = client_ip::of_request(req, &state.settings.trusted_proxies);
        let devices = cookies(&state.settings, req, DEVICE_COOKIE);
        let login = state
            .accounts
            .log_in(client, &body.0.username, &body.0.password, &devices)
            .await?;
        Ok(match login {
            Login::Started { session, device } => {
                remember_device(&state, req, &device);
                let cookie = refresh_cookie(&state, Some(&session.refresh_token));
                LoginResponse::LoggedIn(Json(Session::from(session)), cookie)
            }
            Login::InvalidCredentials => LoginResponse::InvalidCredentials(Problem::json(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "The username or password is wrong.",
            )),
            Login::Throttled(wait) => LoginResponse::TooManyAttempts(too_many_attempts(), wait),
        })
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
        let client = client_ip::of_request(req, &state.settings.trusted_proxies);
        let presented = cookies(&state.settings, req, REFRESH_COOKIE);
        Ok(match state.accounts.renew(client, &presented).await? {
            Renewal::Renewed(session) => {
                let cookie = refresh_cookie(&state, Some(&session.refresh_token));
                RefreshResponse::Refreshed(Json(Session::from(session)), cookie)
            }
            Renewal::Invalid => RefreshResponse::Invalid(
                Problem::json(
                    StatusCode::UNAUTHORIZED,
                    "invalid_refresh_token",
                    "The session is missing, expired or ended; log in again.",
                ),
                refresh_cookie(&state, None),
            ),
            Renewal::Throttled(wait) => RefreshResponse::TooManyAttempts(too_many_attempts(), wait),
        })
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
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let presented = cookies(&state.settings, req, REFRESH_COOKIE);
        state.accounts.log_out(&presented, bearer).await?;
        Ok(LogoutResponse::LoggedOut(refresh_cookie(&state, None)))
    }
}

impl From<NewSession> for Session {
    fn from(session: NewSession) -> Self {
        Self {
            access_token: session.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: session.expires_in,
            user: User::from(&session.user),
        }
    }
}

/// Gives this browser the device cookie of the account it just logged in to, for each path
/// that checks a password.
fn remember_device(state: &AppState, req: &Request, device: &str) {
    let Some(jar) = req.extensions().get::<ResponseCookies>() else {
        return;
    };
    for path in DEVICE_COOKIE_PATHS {
        jar.add(set_cookie(
            &state.settings,
            DEVICE_COOKIE,
            device,
            path,
            DEVICE_COOKIE_MAX_AGE,
            "Strict",
        ));
    }
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

pub(crate) fn too_many_attempts() -> Json<Problem> {
    Problem::json(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "Too many attempts; wait for the number of seconds in Retry-After.",
    )
}

fn origin_not_allowed() -> Json<Problem> {
    Problem::json(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        "This request must come from the service's own pages.",
    )
}
