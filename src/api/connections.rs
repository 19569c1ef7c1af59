//! The caller's Notion connections. Another user's connection is answered exactly like a
//! missing one (404), and no response ever carries a token.

use poem::web::Data;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Path, payload::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiTags,
    problem::{ApiError, Problem},
    security::BearerAuth,
};
use crate::{
    notion::vault::OwnedConnection, state::AppState,
    store::connections::ConnectionStatus as StoredStatus,
};

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub(crate) enum ConnectionStatus {
    /// The tokens work.
    Active,
    /// Notion no longer accepts the tokens; connect the workspace again.
    NeedsReauth,
    /// The stored tokens can no longer be decrypted (an encryption key was removed, or the data
    /// was altered); connect the workspace again.
    Unreadable,
}

/// Who authorized the connection in Notion.
#[derive(Object, Clone, Debug)]
pub(crate) struct ConnectionOwner {
    /// `user` or `workspace`.
    #[oai(rename = "type")]
    pub kind: String,
    #[oai(skip_serializing_if_is_none)]
    pub user_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub avatar_url: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
}

/// A connected Notion workspace.
#[derive(Object, Clone, Debug)]
#[oai(rename = "Connection")]
pub(crate) struct ConnectionView {
    pub id: Uuid,
    pub workspace_id: String,
    pub workspace_name: Option<String>,
    /// An emoji, a URL, or null.
    pub workspace_icon: Option<String>,
    /// Identifies this authorization at Notion.
    pub bot_id: String,
    pub owner: ConnectionOwner,
    /// Set when the user duplicated a template while authorizing.
    pub duplicated_template_id: Option<String>,
    pub status: ConnectionStatus,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<OwnedConnection> for ConnectionView {
    fn from(
        OwnedConnection {
            row,
            owner,
            readable,
        }: OwnedConnection,
    ) -> Self {
        let status = if readable {
            row.status.into()
        } else {
            ConnectionStatus::Unreadable
        };
        let user = owner.user.unwrap_or_default();
        Self {
            id: row.id,
            workspace_id: row.workspace_id,
            workspace_name: row.workspace_name,
            workspace_icon: row.workspace_icon,
            bot_id: row.bot_id,
            owner: ConnectionOwner {
                kind: if owner.kind.is_empty() {
                    "user".to_owned()
                } else {
                    owner.kind
                },
                user_id: user.id,
                name: user.name,
                avatar_url: user.avatar_url,
                email: user.person.and_then(|person| person.email),
            },
            duplicated_template_id: row.duplicated_template_id,
            status,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_used_at: row.last_used_at,
        }
    }
}

impl From<StoredStatus> for ConnectionStatus {
    fn from(stored: StoredStatus) -> Self {
        match stored {
            StoredStatus::Active => Self::Active,
            StoredStatus::NeedsReauth => Self::NeedsReauth,
        }
    }
}

#[derive(Object)]
pub(crate) struct ConnectionList {
    pub items: Vec<ConnectionView>,
}

#[derive(ApiResponse)]
pub(crate) enum ListResponse {
    #[oai(status = 200)]
    Connections(Json<ConnectionList>),
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
}

// A response is built once and moved once; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(ApiResponse)]
pub(crate) enum GetResponse {
    #[oai(status = 200)]
    Connection(Json<ConnectionView>),
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// No such connection among yours (`not_found`).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

#[derive(ApiResponse)]
pub(crate) enum DeleteResponse {
    /// The connection is gone; its token was sent to Notion for revocation.
    #[oai(status = 204)]
    Deleted,
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// No such connection among yours (`not_found`).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
}

pub(crate) fn not_found() -> Json<Problem> {
    Json(ApiError::NotFound.problem())
}

#[derive(Default)]
pub(crate) struct ConnectionsApi;

#[OpenApi(prefix_path = "/connections", tag = "ApiTags::Connections")]
impl ConnectionsApi {
    /// List your connections
    #[oai(path = "/", method = "get", operation_id = "list_connections")]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
    ) -> Result<ListResponse, ApiError> {
        let owned = state.connections.list(auth.0.user.id).await?;
        let items = owned.into_iter().map(ConnectionView::from).collect();
        Ok(ListResponse::Connections(Json(ConnectionList { items })))
    }

    /// Get one of your connections
    #[oai(path = "/:id", method = "get", operation_id = "get_connection")]
    async fn get(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<GetResponse, ApiError> {
        Ok(match state.connections.get(auth.0.user.id, id.0).await? {
            Some(owned) => GetResponse::Connection(Json(owned.into())),
            None => GetResponse::NotFound(not_found()),
        })
    }

    /// Disconnect a workspace
    ///
    /// Deletes the connection and asks Notion to revoke its token. Revocation is best effort and
    /// happens in the background: the connection is gone here whatever Notion answers.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_connection")]
    async fn delete(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
    ) -> Result<DeleteResponse, ApiError> {
        Ok(
            if state.connections.disconnect(auth.0.user.id, id.0).await? {
                DeleteResponse::Deleted
            } else {
                DeleteResponse::NotFound(not_found())
            },
        )
    }
}
