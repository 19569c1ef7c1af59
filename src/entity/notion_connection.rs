use sea_orm::entity::prelude::*;

/// A user's authorization of one Notion integration in one workspace. Tokens and the owner's
/// e-mail are ciphertexts (see `crate::crypto`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notion_connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub bot_id: String,
    pub workspace_id: String,
    pub workspace_name: Option<String>,
    pub workspace_icon: Option<String>,
    /// The owner object from Notion without the e-mail, as JSON text.
    pub owner: String,
    pub owner_email: Option<String>,
    pub duplicated_template_id: Option<String>,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// The key the ciphertexts above were sealed with.
    pub key_id: String,
    pub status: ConnectionStatus,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
    pub last_used_at: Option<TimeDateTimeWithTimeZone>,
    /// While set and in the future, one instance is refreshing the tokens.
    pub refreshing_until: Option<TimeDateTimeWithTimeZone>,
}

/// Whether Notion still accepts a connection's tokens, as far as the service knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ConnectionStatus {
    #[sea_orm(string_value = "active")]
    Active,
    /// Notion refused its tokens and they could not be refreshed: connecting again fixes it.
    #[sea_orm(string_value = "needs_reauth")]
    NeedsReauth,
}

impl ConnectionStatus {
    /// As stored, and as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::NeedsReauth => "needs_reauth",
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
