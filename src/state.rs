//! What request handlers are given: the settings and the services, built once at start-up.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{
        accounts::{Accounts, AccountsConfig},
        device::Devices,
        jwt::JwtKeys,
        password::{HashError, PasswordHasher},
    },
    config::Settings,
    crypto::TokenCipher,
    metrics::Metrics,
    notion::{
        NotionEndpoints,
        budget::RateBudget,
        client::NotionClient,
        connections::{ConnectionService, FanoutSettings},
        fanout_cursor::CursorKey,
        membership::Membership,
        oauth::NotionOAuth,
    },
};

/// Shared application state. Cheap to clone: every field is reference-counted.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// For the readiness probe and the metrics listener; requests go through the services.
    pub db: DatabaseConnection,
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) connections: Arc<ConnectionService>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    pub(crate) fn new(
        settings: Settings,
        db: DatabaseConnection,
        endpoints: NotionEndpoints,
    ) -> Result<Self, HashError> {
        let metrics = Metrics::new();
        let membership = Arc::new(Membership::for_database(&db));
        let http = crate::notion::http_client(settings.notion.timeout);
        let api = NotionClient::new(
            http.clone(),
            endpoints.clone(),
            settings.notion.timeout,
            RateBudget::new(&db, settings.notion.rate_limit, membership),
            settings.notion.concurrency,
            metrics.clone(),
        );
        let oauth = Arc::new(NotionOAuth::new(endpoints, http, metrics.clone()));
        let connections = Arc::new(ConnectionService::new(
            db.clone(),
            Arc::new(TokenCipher::new(settings.token_keys.clone())),
            oauth,
            api,
            settings.notion.timeout,
            FanoutSettings {
                cursor_key: CursorKey::derive(settings.jwt_secret.expose()),
                deadline: settings.notion.fanout_timeout,
                metrics: metrics.clone(),
            },
        ));
        let accounts = Accounts::new(AccountsConfig {
            db: db.clone(),
            hasher: PasswordHasher::new(
                settings.password_hash_concurrency,
                settings.password_hash_wait,
            )?,
            jwt: JwtKeys::new(
                settings.jwt_secret.expose(),
                settings.public_url.as_str().trim_end_matches('/'),
                settings.access_token_ttl,
            ),
            devices: Devices::new(settings.jwt_secret.expose()),
            attempts_per_minute: settings.auth_rate_limit,
            registration_open: settings.allow_registration,
            metrics: metrics.clone(),
            connections: connections.clone(),
        });
        Ok(Self {
            settings: Arc::new(settings),
            db,
            accounts: Arc::new(accounts),
            connections,
            metrics,
        })
    }
}
