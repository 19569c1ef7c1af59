//! notion-connect: lets an application's users connect their Notion workspaces through Notion's
//! OAuth flow, stores their tokens encrypted, and searches those workspaces for them.
//!
//! A short tour:
//! - [`config`] reads and validates every setting once; [`startup`] builds the application from
//!   them (database, migrations, routes, middleware) for `main` and for the tests alike.
//! - [`api`] holds the HTTP operations, one module per resource, assembled into one OpenAPI spec.
//! - [`error`] renders every failure as `application/problem+json`.
//! - [`db`] connects to SQLite or PostgreSQL; the schema lives in the `migration` crate.
//! - [`auth`] holds accounts: password policy and hashing, access and refresh tokens,
//!   throttling, and the bearer security schemes; [`store`] holds the queries, [`entity`] the
//!   table shapes.
//! - [`crypto`] holds the key ring for tokens at rest; [`secret`] keeps secrets out of logs.
//! - [`web`] serves the single-page app of `web/`, compiled into the binary; [`sandbox`] stands
//!   in for Notion in development.

pub mod api;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod crypto;
pub mod db;
pub mod entity;
pub mod error;
pub mod housekeeping;
pub mod http_policy;
pub mod notion;
pub mod rate_limit;
pub mod sandbox;
pub mod secret;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;
