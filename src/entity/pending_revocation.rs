use sea_orm::entity::prelude::*;

/// A Notion token that must still be revoked. The token is the connection's sealed access token,
/// with the same associated data (user, bot, column), so it outlives the connection and the
/// account it came from.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_revocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub bot_id: String,
    pub access_token: String,
    /// The key the token is sealed with.
    pub key_id: String,
    pub attempts: i32,
    /// When it may be tried (again); while an attempt runs, when that attempt's claim runs out.
    pub next_attempt_at: TimeDateTimeWithTimeZone,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
