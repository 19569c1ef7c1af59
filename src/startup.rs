//! Building the application: database, state and routes, bound to a listener.
//!
//! [`Application::build`] is used by `main` and by the tests alike, so the tests exercise exactly
//! the production wiring (on port 0 with their own database). What every request passes through
//! (limits, security headers, the docs' policy) is in `http_policy`.

use std::{future::Future, io, net::SocketAddr, time::Duration};

use poem::{
    Endpoint, EndpointExt, Response, Route, Server,
    endpoint::make_sync,
    get,
    listener::{Acceptor, Listener, TcpAcceptor, TcpListener},
};
use sea_orm::{DatabaseConnection, DbErr};

use crate::{
    api,
    config::{AppEnv, Settings},
    db, housekeeping, http_policy,
    notion::{
        NotionEndpoints, SANDBOX_PATH, errors::ConnectionError, lease::InstanceLease, revoker,
        vault::KeyRingCheck,
    },
    sandbox::Sandbox,
    scrape,
    secret::Secret,
    state::AppState,
    transport::{LimitedAcceptor, TransportLimits},
    web::WebFiles,
};

/// How long in-flight requests may take to finish once shutdown has begun.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Open connections to the metrics listener at once. A Prometheus server keeps one per target;
/// the rest leave room for a second scraper or a person with curl, and no more, so stalled
/// sockets there cost little.
const METRICS_MAX_CONNECTIONS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database")]
    Database(#[from] DbErr),
    #[error("no randomness available")]
    Random(#[source] getrandom::Error),
    #[error("password hashing")]
    Hasher(#[source] crate::auth::password::HashError),
    #[error("checking TOKEN_ENCRYPTION_KEYS against the stored connections")]
    KeyRingCheck(#[source] ConnectionError),
    #[error("registering this instance among the others on the database")]
    Join(#[source] crate::store::StoreError),
    #[error(
        "TOKEN_ENCRYPTION_KEYS opens none of the {sampled} newest stored connections (sealed with \
         key id {}): set the key ring these were sealed with",
        key_ids.join(", ")
    )]
    WrongKeyRing {
        sampled: usize,
        key_ids: Vec<String>,
    },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// A built application, bound to its port (and the metrics port) but not yet serving.
pub struct Application {
    acceptor: LimitedAcceptor<TcpAcceptor>,
    port: u16,
    metrics: Option<(LimitedAcceptor<TcpAcceptor>, u16)>,
    state: AppState,
}

impl Application {
    /// Connects to the database, runs pending migrations and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        db::migrate(&settings.database_url).await?;
        let db = db::connect(&settings.database_url, settings.statement_timeout).await?;
        Self::build_with_db(settings, db).await
    }

    /// Like [`Application::build`], with a database that is already connected and migrated.
    pub(crate) async fn build_with_db(
        settings: Settings,
        db: DatabaseConnection,
    ) -> Result<Self, StartupError> {
        let addr = settings.bind_addr;
        let acceptor = TcpListener::bind(addr)
            .into_acceptor()
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let limits = TransportLimits {
            max_connections: settings.http.max_connections,
            header_read_timeout: settings.http.header_read_timeout,
            keep_alive_timeout: settings.http.keep_alive_timeout,
        };
        let acceptor = LimitedAcceptor::new(acceptor, limits);
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|local| local.as_socket_addr().copied())
            .unwrap_or(addr);
        let port = local_addr.port();
        let metrics = match settings.metrics_bind_addr {
            None => None,
            Some(addr) => {
                let acceptor = TcpListener::bind(addr)
                    .into_acceptor()
                    .await
                    .map_err(|source| StartupError::Bind { addr, source })?;
                let port = acceptor
                    .local_addr()
                    .first()
                    .and_then(|local| local.as_socket_addr().map(SocketAddr::port))
                    .unwrap_or(addr.port());
                // The same deadlines as the API's listener, with a small cap of its own.
                let limits = TransportLimits {
                    max_connections: METRICS_MAX_CONNECTIONS,
                    ..limits
                };
                Some((LimitedAcceptor::new(acceptor, limits), port))
            }
        };
        for (variable, path) in &settings.generated_secrets {
            tracing::warn!(
                variable,
                file = %path.display(),
                "generated a development secret because the variable is unset; it is reused on \
                 later starts, but production must set it explicitly"
            );
        }
        // The sandbox's client secret exists only in this process.
        let sandbox_secret =
            Secret::new(crate::crypto::random_token::<24>().map_err(StartupError::Random)?);
        let endpoints = NotionEndpoints::resolve(&settings, local_addr, &sandbox_secret);
        if settings.sandbox_enabled() {
            tracing::warn!(
                authorize_url = %endpoints.authorize_url,
                "the Notion sandbox is active: connections go to a pretend workspace served by \
                 this process (set NOTION_CLIENT_ID and NOTION_CLIENT_SECRET to use Notion)"
            );
        }
        let state = AppState::new(settings, db, endpoints).map_err(StartupError::Hasher)?;
        check_key_ring(&state).await?;
        if let Some(lease) = state.connections.lease() {
            lease.join().await.map_err(StartupError::Join)?;
        }
        Ok(Self {
            acceptor,
            port,
            metrics,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `GET /metrics` is served on, when `METRICS_BIND_ADDR` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Where the service reaches Notion, and with which client credentials (the sandbox's,
    /// generated for this process, when the sandbox stands in for Notion).
    pub fn notion_endpoints(&self) -> &NotionEndpoints {
        self.state.connections.endpoints()
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets in-flight
    /// requests finish (for up to 30 seconds).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let settings = &self.state.settings;
        tracing::info!(
            address = %self.acceptor.local_addr().first().map(|a| a.to_string()).unwrap_or_default(),
            public_url = %settings.public_url,
            environment = ?settings.env,
            "notion-connect is listening"
        );
        let lease = self.state.connections.lease();
        let renewals = lease.clone().map(InstanceLease::spawn);
        let sweeper = housekeeping::spawn(self.state.db.clone());
        let revoker = revoker::spawn(self.state.connections.revoker());
        // The metrics listener stops when the service does.
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics_server = self.metrics.map(|(acceptor, port)| {
            tracing::info!(port, "metrics are served at /metrics");
            let request_timeout = self.state.settings.http.request_timeout;
            let app = scrape::routes(self.state.metrics.clone(), self.state.db.clone())
                .around(move |next, req| http_policy::deadline(next, req, request_timeout));
            tokio::spawn(
                Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = metrics_stopped.await;
                    },
                    Some(Duration::from_secs(5)),
                ),
            )
        });
        let app = routes(self.state);
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(app, shutdown, Some(SHUTDOWN_GRACE))
            .await;
        let _ = stop_metrics.send(());
        if let Some(metrics_server) = metrics_server {
            let _ = metrics_server.await;
        }
        sweeper.abort();
        revoker.abort();
        if let Some(renewals) = renewals {
            renewals.abort();
        }
        if let Some(lease) = lease {
            lease.leave().await;
        }
        served
    }
}

/// Refuses to start in production with a key ring that opens none of the stored connections;
/// in development, says so loudly and starts.
async fn check_key_ring(state: &AppState) -> Result<(), StartupError> {
    let checked = state
        .connections
        .vault()
        .check_key_ring()
        .await
        .map_err(StartupError::KeyRingCheck)?;
    let KeyRingCheck::OpensNone { sampled, key_ids } = checked else {
        return Ok(());
    };
    let wrong = StartupError::WrongKeyRing { sampled, key_ids };
    if state.settings.env == AppEnv::Production {
        return Err(wrong);
    }
    tracing::error!(
        event = "key_ring_mismatch",
        "{wrong}; every connection will show as unreadable"
    );
    Ok(())
}

/// The complete HTTP surface with its middleware.
pub(crate) fn routes(state: AppState) -> impl Endpoint<Output = Response> {
    let service = api::openapi_service();
    let document = api::spec::document();
    let docs = http_policy::docs_endpoint();
    let web = WebFiles::new(state.settings.web_dir.clone());

    let sandbox = state
        .settings
        .sandbox_enabled()
        .then(|| Sandbox::new(state.connections.endpoints()).routes());
    let routes = Route::new()
        .at(
            "/api/v1/openapi.json",
            get(make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(document.json.as_str())
            })),
        )
        .nest("/api/v1", service)
        .at("/healthz", get(api::health::healthz))
        .at("/readyz", get(api::health::readyz))
        .nest("/docs", docs)
        .nest("/", web);
    // Never mounted when Notion credentials are configured (always so in production).
    let routes = match sandbox {
        Some(sandbox) => routes.nest(SANDBOX_PATH, sandbox),
        None => routes,
    };
    http_policy::apply(routes, &state.settings, &state.metrics).data(state)
}
