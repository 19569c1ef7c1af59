//! Indexes on the expiry columns the periodic clean-up deletes by, so it never scans a table.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum OauthStates {
    Table,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum LoginAttempts {
    Table,
    LastFailureAt,
}

/// (index name, table, column)
fn indexes() -> [(&'static str, DynIden, DynIden); 3] {
    [
        (
            "idx_sessions_expires_at",
            Sessions::Table.into_iden(),
            Sessions::ExpiresAt.into_iden(),
        ),
        (
            "idx_oauth_states_expires_at",
            OauthStates::Table.into_iden(),
            OauthStates::ExpiresAt.into_iden(),
        ),
        (
            "idx_login_attempts_last_failure_at",
            LoginAttempts::Table.into_iden(),
            LoginAttempts::LastFailureAt.into_iden(),
        ),
    ]
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, column) in indexes() {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in indexes() {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
