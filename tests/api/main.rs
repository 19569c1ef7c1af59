//! Integration tests: the real application over real HTTP, on SQLite and on PostgreSQL.

mod helpers;

mod architecture;
mod auth;
mod browser;
mod cli;
mod connections;
mod cors;
mod db_faults;
mod errors;
mod health;
mod housekeeping;
mod metrics;
mod mock_notion;
mod notion_oauth;
mod openapi;
mod query_plans;
mod revocations;
mod rotation;
mod sandbox;
mod scale_out;
mod search;
mod security_log;
mod sessions;
mod shutdown;
mod transport;
mod unified_search;
mod web;
