//! Database migrations for notion-connect.
//!
//! Each schema change lives in its own `mYYYYMMDD_NNNNNN_name.rs` file and owns its identifiers:
//! migrations are history, so they never import the service's live entities.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_accounts;
mod m20261123_000002_create_notion_connections;
mod m20261123_000003_add_connection_refresh_lease;
mod m20261123_000004_add_housekeeping_indexes;
mod m20261125_000005_create_session_families;
mod m20261125_000006_create_pending_revocations;
mod m20261207_000007_create_notion_rate_budgets;
mod m20261208_000008_create_notion_instances;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_accounts::Migration),
            Box::new(m20261123_000002_create_notion_connections::Migration),
            Box::new(m20261123_000003_add_connection_refresh_lease::Migration),
            Box::new(m20261123_000004_add_housekeeping_indexes::Migration),
            Box::new(m20261125_000005_create_session_families::Migration),
            Box::new(m20261125_000006_create_pending_revocations::Migration),
            Box::new(m20261207_000007_create_notion_rate_budgets::Migration),
            Box::new(m20261208_000008_create_notion_instances::Migration),
        ]
    }
}
