//! notion-connect: lets an application's users connect their Notion workspaces through Notion's
//! OAuth flow, stores their tokens encrypted, and searches those workspaces for them.
//!
//! The code stands on five floors. Each file imports only from its own floor and the ones below
//! it (`tests/api/architecture.rs` checks this, and that no files import each other in a circle):
//!
//! - **shell**: `main.rs` (the commands) and [`startup`], which builds the application from the
//!   settings (database, migrations, services, routes) for `main` and for the tests alike.
//! - **http**: [`api`], the HTTP operations, one module per resource, assembled into one OpenAPI
//!   document, with the security schemes (`api::security`) and problem rendering
//!   (`api::problem`); a handler maps a request to one service call and its outcome to a
//!   response. Around them: `http_policy` (body limits, deadlines, security headers, the docs),
//!   `cors`, `request_log`, `web` (the embedded app of `web/`), `transport` (the connection cap and
//!   deadlines, HTTP/1.1 only), `scrape` (the metrics listener) and [`state`], which holds the
//!   services.
//! - **domain**: [`auth`], the accounts service (registration, login with its throttling, session
//!   renewal, logout, account deletion); [`notion`], the connection service (the OAuth flow,
//!   search with token refresh, disconnecting, the revocation worker); [`sandbox`], a stand-in
//!   for Notion in development; [`housekeeping`], which deletes expired rows.
//! - **store**: [`db`] (connecting, migrations, readiness), [`store`] (the queries, one module
//!   per table group) and [`entity`] (the table shapes; the schema's history is the `migration`
//!   crate).
//! - **base**: [`config`], [`crypto`] (the key ring and token cipher), [`secret`], [`chain`]
//!   (errors with their causes), `metrics` (the registry), [`telemetry`], `rate_limit`,
//!   `client_ip` and [`allocator`].

pub mod allocator;
pub mod api;
pub mod auth;
pub mod chain;
pub(crate) mod client_ip;
pub mod config;
pub(crate) mod cors;
pub mod crypto;
pub mod db;
pub mod entity;
pub mod housekeeping;
pub(crate) mod http_policy;
pub(crate) mod metrics;
pub mod notion;
pub(crate) mod rate_limit;
pub(crate) mod request_log;
pub mod sandbox;
pub(crate) mod scrape;
pub mod secret;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub(crate) mod transport;
pub(crate) mod web;
