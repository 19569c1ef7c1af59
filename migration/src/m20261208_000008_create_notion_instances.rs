//! The instances serving from one database, each with a lease it renews. An instance that finds
//! itself the only one with a live lease keeps the Notion rate budget and the connections it
//! searches in memory; one that joins waits until every other live instance has acknowledged it
//! (`acked_at` after its `registered_at`) or let its lease run out.
//!
//! Times are microseconds since the Unix epoch by the database's clock. The table is logged on
//! purpose: after a crash of the database, an instance that still believes it is alone must
//! still be found here by one that joins.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE notion_instances (
                    id UUID NOT NULL PRIMARY KEY,
                    registered_at BIGINT NOT NULL,
                    lease_until BIGINT NOT NULL,
                    acked_at BIGINT NOT NULL
                )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE notion_instances")
            .await?;
        Ok(())
    }
}
