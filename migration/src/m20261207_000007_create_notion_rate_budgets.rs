//! The Notion rate budget that several instances share: per connection, the earliest moment its
//! next call may go out; per connection or workspace, a pause Notion asked for with a 429.
//!
//! Times are microseconds since the Unix epoch by the database's clock, so instances whose own
//! clocks disagree still agree on turns. The rows are worth nothing after a restart of the
//! database, so on PostgreSQL the table is `UNLOGGED`: claiming a turn writes no WAL and waits for
//! no flush to disk.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let unlogged = match manager.get_database_backend() {
            DbBackend::Postgres => "UNLOGGED ",
            _ => "",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE {unlogged}TABLE notion_rate_budgets (
                    key TEXT NOT NULL PRIMARY KEY,
                    next_at BIGINT NOT NULL DEFAULT 0,
                    paused_until BIGINT NOT NULL DEFAULT 0,
                    claimed_at BIGINT NOT NULL DEFAULT 0
                )"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE notion_rate_budgets")
            .await?;
        Ok(())
    }
}
