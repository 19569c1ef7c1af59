//! Everything a request handler may need, loaded once at start-up.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{device::Devices, jwt::JwtKeys, liveness::LiveSessions, password::PasswordHasher},
    config::Settings,
    crypto::TokenCipher,
    metrics::Metrics,
    notion::{
        NotionEndpoints,
        client::NotionClient,
        connections::{ConnectionStore, Connections},
        oauth::NotionOAuth,
    },
    rate_limit::{IpRateLimiter, RefreshLimits},
};

/// Shared application state. Cheap to clone: every field is reference-counted.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    pub(crate) jwt: Arc<JwtKeys>,
    pub(crate) hasher: PasswordHasher,
    /// Families recently found live, so that most requests skip the liveness query.
    pub(crate) live_sessions: Arc<LiveSessions>,
    /// Signs device cookies and names usernames in logs.
    pub(crate) devices: Arc<Devices>,
    /// Limits login and registration attempts per client IP.
    pub(crate) auth_limiter: Arc<IpRateLimiter>,
    /// Limits session refreshes per family and per client IP.
    pub(crate) refresh_limits: Arc<RefreshLimits>,
    /// Notion's OAuth endpoints (or the sandbox's).
    pub notion: Arc<NotionOAuth>,
    /// Stored connections, and searching them.
    pub(crate) connections: Arc<Connections>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    pub(crate) fn new(
        settings: Settings,
        db: DatabaseConnection,
        endpoints: NotionEndpoints,
    ) -> Result<Self, crate::auth::password::HashError> {
        let jwt = JwtKeys::new(
            settings.jwt_secret.expose(),
            settings.public_url.as_str().trim_end_matches('/'),
            settings.access_token_ttl,
        );
        let hasher = PasswordHasher::new(
            settings.password_hash_concurrency,
            settings.password_hash_wait,
        )?;
        let metrics = Metrics::for_api();
        let http = crate::notion::http_client(settings.notion.timeout);
        let cipher = Arc::new(TokenCipher::new(settings.token_keys.clone()));
        let api = NotionClient::new(
            http.clone(),
            endpoints.clone(),
            settings.notion.timeout,
            settings.notion.rate_limit,
            settings.notion.concurrency,
            metrics.clone(),
        );
        let notion = Arc::new(NotionOAuth::new(endpoints, http, metrics.clone()));
        let connections = Connections::new(
            ConnectionStore::new(db.clone(), cipher),
            notion.clone(),
            api,
            settings.notion.timeout,
        );
        Ok(Self {
            auth_limiter: Arc::new(IpRateLimiter::per_minute(settings.auth_rate_limit)),
            refresh_limits: Arc::new(RefreshLimits::new()),
            devices: Arc::new(Devices::new(settings.jwt_secret.expose())),
            live_sessions: Arc::default(),
            notion,
            connections: Arc::new(connections),
            settings: Arc::new(settings),
            db,
            jwt: Arc::new(jwt),
            hasher,
            metrics,
        })
    }
}
