//! Refresh families get a row of their own. Revoking a family marks that one row, and rotating a
//! token updates it first, so the two serialise on it: a token rotated while its family is being
//! revoked can no longer slip through. Per-token `revoked_at` is superseded and dropped.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum SessionFamilies {
    Table,
    Id,
    UserId,
    CreatedAt,
    LastRefreshedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SessionFamilies::Table)
                    .col(
                        ColumnDef::new(SessionFamilies::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SessionFamilies::UserId).uuid().not_null())
                    .col(
                        ColumnDef::new(SessionFamilies::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SessionFamilies::LastRefreshedAt).timestamp_with_time_zone(),
                    )
                    .col(ColumnDef::new(SessionFamilies::RevokedAt).timestamp_with_time_zone())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_session_families_user")
                            .from(SessionFamilies::Table, SessionFamilies::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_session_families_user")
                    .table(SessionFamilies::Table)
                    .col(SessionFamilies::UserId)
                    .to_owned(),
            )
            .await?;
        // Every family that has tokens, revoked if any of its tokens was.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO session_families (id, user_id, created_at, revoked_at) \
                 SELECT family_id, user_id, MIN(created_at), MAX(revoked_at) \
                 FROM sessions GROUP BY family_id, user_id",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::RevokedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(ColumnDef::new(Sessions::RevokedAt).timestamp_with_time_zone())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE sessions SET revoked_at = (SELECT revoked_at FROM session_families \
                 WHERE session_families.id = sessions.family_id)",
            )
            .await?;
        manager
            .drop_table(Table::drop().table(SessionFamilies::Table).to_owned())
            .await
    }
}
