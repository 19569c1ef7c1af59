//! Tokens waiting to be revoked at Notion. A row is written in the same transaction that deletes
//! a connection (or an account), and deleted once Notion has confirmed, so a revocation survives
//! restarts and outages. It is deliberately not tied to the user: it must outlive the account.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum PendingRevocations {
    Table,
    Id,
    UserId,
    BotId,
    AccessToken,
    KeyId,
    Attempts,
    NextAttemptAt,
    CreatedAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PendingRevocations::Table)
                    .col(
                        ColumnDef::new(PendingRevocations::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PendingRevocations::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(PendingRevocations::BotId)
                            .string()
                            .not_null(),
                    )
                    // Sealed exactly as it was in its connection (same associated data).
                    .col(
                        ColumnDef::new(PendingRevocations::AccessToken)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PendingRevocations::KeyId)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PendingRevocations::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(PendingRevocations::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PendingRevocations::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_pending_revocations_next_attempt_at")
                    .table(PendingRevocations::Table)
                    .col(PendingRevocations::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PendingRevocations::Table).to_owned())
            .await
    }
}
