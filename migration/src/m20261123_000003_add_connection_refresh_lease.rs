//! A lease that lets one service instance at a time refresh a connection's tokens.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum NotionConnections {
    Table,
    RefreshingUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NotionConnections::Table)
                    .add_column(
                        ColumnDef::new(NotionConnections::RefreshingUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(NotionConnections::Table)
                    .drop_column(NotionConnections::RefreshingUntil)
                    .to_owned(),
            )
            .await
    }
}
