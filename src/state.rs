//! Everything a request handler may need, loaded once at start-up.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{jwt::JwtKeys, password::PasswordHasher, throttle::IpRateLimiter},
    config::Settings,
    crypto::TokenCipher,
    notion::{NotionEndpoints, client::NotionClient, oauth::NotionOAuth, tokens::RefreshLocks},
};

/// Shared application state. Cheap to clone: every field is reference-counted.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    pub jwt: Arc<JwtKeys>,
    pub hasher: PasswordHasher,
    /// Limits login and registration attempts per client IP.
    pub auth_limiter: Arc<IpRateLimiter>,
    /// Seals and opens Notion tokens at rest.
    pub cipher: Arc<TokenCipher>,
    /// Notion's OAuth endpoints (or the sandbox's).
    pub notion: Arc<NotionOAuth>,
    /// Notion's API (or the sandbox's), per connection.
    pub notion_api: Arc<NotionClient>,
    pub refresh_locks: Arc<RefreshLocks>,
}

impl AppState {
    pub fn new(
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
        let http = crate::notion::http_client(settings.notion.timeout);
        Ok(Self {
            auth_limiter: Arc::new(IpRateLimiter::per_minute(settings.auth_rate_limit)),
            cipher: Arc::new(TokenCipher::new(settings.token_keys.clone())),
            notion_api: Arc::new(NotionClient::new(
                http.clone(),
                endpoints.clone(),
                settings.notion.timeout,
                settings.notion.rate_limit,
            )),
            notion: Arc::new(NotionOAuth::new(endpoints, http)),
            refresh_locks: Arc::default(),
            settings: Arc::new(settings),
            db,
            jwt: Arc::new(jwt),
            hasher,
        })
    }
}
