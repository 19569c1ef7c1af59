use sea_orm::entity::prelude::*;

/// One refresh token of a family (see `session_family`); each refresh rotates the family's live
/// token into a new row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    /// SHA-256 of the refresh token, hex. The token itself is never stored.
    #[sea_orm(unique)]
    pub refresh_token_hash: String,
    pub expires_at: TimeDateTimeWithTimeZone,
    /// Set when this token was exchanged for a new one.
    pub rotated_at: Option<TimeDateTimeWithTimeZone>,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::user::Entity",
        from = "Column::UserId",
        to = "super::user::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::session_family::Entity",
        from = "Column::FamilyId",
        to = "super::session_family::Column::Id",
        on_delete = "Cascade"
    )]
    Family,
}

impl Related<super::user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
