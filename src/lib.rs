//! notion-connect: lets an application's users connect their Notion workspaces through Notion's
//! OAuth flow, stores their tokens encrypted, and searches those workspaces for them.
//!
//! A short tour:
//! - [`config`] reads and validates every setting once; [`startup`] builds the application from
//!   them (database, migrations, state, routes) for `main` and for the tests alike,
//!   [`http_policy`] wraps every request (body limit, security headers, content policies),
//!   [`cors`] answers cross-origin requests, and [`transport`] bounds connections (their number,
//!   their idle and header deadlines, HTTP/1.1 only).
//! - [`api`] holds the HTTP operations, one module per resource, assembled into one OpenAPI spec.
//!   Handlers parse the request, call one domain function and map its outcome to a response.
//! - [`error`] renders every failure as `application/problem+json`, logging a server error's
//!   whole cause chain once and sending none of it.
//! - [`notion`] is everything about Notion: its OAuth endpoints, its search API, and the
//!   [`notion::connections`] service that stores, shows, searches (refreshing tokens), removes
//!   and re-seals connections.
//! - [`auth`] holds accounts: usernames, password policy and hashing, access and refresh tokens,
//!   the backoff after failed logins, and the bearer security schemes.
//! - [`rate_limit`] and [`client_ip`] limit requests per client address (and Notion calls per
//!   connection); [`housekeeping`] deletes expired rows.
//! - [`db`] connects to SQLite or PostgreSQL (the schema lives in the `migration` crate);
//!   [`store`] holds the queries, [`entity`] the table shapes.
//! - [`crypto`] seals tokens at rest with the key ring; [`secret`] keeps secrets out of logs.
//! - [`web`] serves the single-page app of `web/`, compiled into the binary; [`sandbox`] stands
//!   in for Notion in development.

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
