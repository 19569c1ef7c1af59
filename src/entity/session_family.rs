use sea_orm::entity::prelude::*;

/// A refresh family: every login starts one, and each refresh adds a token to it. Revoking the
/// family ends all its refresh tokens and every access token naming it, at once.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "session_families")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: TimeDateTimeWithTimeZone,
    /// Updated by every rotation, which thereby takes the family's row lock.
    pub last_refreshed_at: Option<TimeDateTimeWithTimeZone>,
    /// Set when the family was ended (logout, or reuse of a rotated token).
    pub revoked_at: Option<TimeDateTimeWithTimeZone>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
