use sea_orm::entity::prelude::*;

/// A pending Notion authorization, started by `user_id` in one browser.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// SHA-256 of the `state` parameter, hex.
    #[sea_orm(unique)]
    pub state_hash: String,
    /// SHA-256 of the browser-binding cookie, hex.
    pub binding_hash: String,
    pub user_id: Uuid,
    pub expires_at: TimeDateTimeWithTimeZone,
    pub consumed_at: Option<TimeDateTimeWithTimeZone>,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
