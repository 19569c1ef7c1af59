//! Notion OAuth: pending authorization states and the stored connections.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    Id,
    StateHash,
    BindingHash,
    UserId,
    ExpiresAt,
    ConsumedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotionConnections {
    Table,
    Id,
    UserId,
    BotId,
    WorkspaceId,
    WorkspaceName,
    WorkspaceIcon,
    Owner,
    OwnerEmail,
    DuplicatedTemplateId,
    AccessToken,
    RefreshToken,
    KeyId,
    Status,
    CreatedAt,
    UpdatedAt,
    LastUsedAt,
}

fn timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthStates::Table)
                    .col(
                        ColumnDef::new(OauthStates::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(OauthStates::StateHash)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(OauthStates::BindingHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(OauthStates::UserId).uuid().not_null())
                    .col(timestamp(OauthStates::ExpiresAt))
                    .col(ColumnDef::new(OauthStates::ConsumedAt).timestamp_with_time_zone())
                    .col(timestamp(OauthStates::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_oauth_states_user")
                            .from(OauthStates::Table, OauthStates::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(NotionConnections::Table)
                    .col(
                        ColumnDef::new(NotionConnections::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(NotionConnections::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(NotionConnections::BotId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotionConnections::WorkspaceId)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(NotionConnections::WorkspaceName).text())
                    .col(ColumnDef::new(NotionConnections::WorkspaceIcon).text())
                    // The owner object without its e-mail address, as JSON text.
                    .col(ColumnDef::new(NotionConnections::Owner).text().not_null())
                    // Ciphertexts (see crypto.rs); the e-mail is personal data, so it is one too.
                    .col(ColumnDef::new(NotionConnections::OwnerEmail).text())
                    .col(ColumnDef::new(NotionConnections::DuplicatedTemplateId).string_len(64))
                    .col(
                        ColumnDef::new(NotionConnections::AccessToken)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(NotionConnections::RefreshToken).text())
                    .col(
                        ColumnDef::new(NotionConnections::KeyId)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(NotionConnections::Status)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(timestamp(NotionConnections::CreatedAt))
                    .col(timestamp(NotionConnections::UpdatedAt))
                    .col(ColumnDef::new(NotionConnections::LastUsedAt).timestamp_with_time_zone())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_notion_connections_user")
                            .from(NotionConnections::Table, NotionConnections::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Re-authorizing a workspace updates its row instead of adding another.
        manager
            .create_index(
                Index::create()
                    .name("ux_notion_connections_user_bot")
                    .table(NotionConnections::Table)
                    .col(NotionConnections::UserId)
                    .col(NotionConnections::BotId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // rotate-keys finds the rows still sealed with an older key.
        manager
            .create_index(
                Index::create()
                    .name("idx_notion_connections_key")
                    .table(NotionConnections::Table)
                    .col(NotionConnections::KeyId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NotionConnections::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OauthStates::Table).to_owned())
            .await
    }
}
