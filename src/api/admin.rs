//! Administration: listings for users with `is_admin`. Everyone else gets 403.

use poem::{http::StatusCode, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::Query,
    payload::Json,
    types::{ParseFromJSON, ToJSON},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiTags,
    auth::User,
    connections::ConnectionStatus,
    problem::{ApiError, Problem},
    security::AdminAuth,
};
use crate::state::AppState;

const DEFAULT_PAGE: u32 = 50;

/// One page of a listing, oldest first.
#[derive(Object)]
pub(crate) struct Page<T: ParseFromJSON + ToJSON> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
pub(crate) enum ListResponse<T: ParseFromJSON + ToJSON + Send + Sync> {
    #[oai(status = 200)]
    Page(Json<Page<T>>),
    /// A parameter is invalid: a cursor this endpoint did not hand out (`invalid_cursor`), or a
    /// malformed `limit` or `user_id` (`invalid_parameter`).
    #[oai(status = 422, content_type = "application/problem+json")]
    Invalid(Json<Problem>),
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    /// No valid access token (`unauthorized`).
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    /// The caller is not an administrator (`forbidden`).
    #[oai(status = 403, content_type = "application/problem+json")]
    Forbidden(Json<Problem>),
}

/// A connection as administrators see it: whose it is and its state, never a token.
#[derive(Object)]
pub(crate) struct AdminConnection {
    pub id: Uuid,
    pub user_id: Uuid,
    pub username: String,
    pub workspace_id: String,
    pub workspace_name: Option<String>,
    pub status: ConnectionStatus,
    pub created_at: OffsetDateTime,
}

#[derive(Default)]
pub(crate) struct AdminApi;

#[OpenApi(prefix_path = "/admin", tag = "ApiTags::Admin")]
impl AdminApi {
    /// List users
    ///
    /// Keyset-paginated: follow `next_cursor` until it is absent.
    #[oai(path = "/users", method = "get", operation_id = "admin_list_users")]
    async fn list_users(
        &self,
        _admin: AdminAuth,
        state: Data<&AppState>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Page size, 1 to 100 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
    ) -> Result<ListResponse<User>, ApiError> {
        let Ok(after) = parse_cursor(cursor.0.as_deref()) else {
            return Ok(ListResponse::Invalid(invalid_cursor()));
        };
        let limit = limit.0.unwrap_or(DEFAULT_PAGE);
        let rows = state.accounts.page(after, u64::from(limit) + 1).await?;
        let (rows, next_cursor) = split_page(rows, limit, |user| user.id);
        Ok(ListResponse::Page(Json(Page {
            items: rows.iter().map(User::from).collect(),
            next_cursor,
        })))
    }

    /// List connections
    ///
    /// Every user's connections, or one user's with `user_id`. Keyset-paginated: follow
    /// `next_cursor` until it is absent.
    #[oai(
        path = "/connections",
        method = "get",
        operation_id = "admin_list_connections"
    )]
    async fn list_connections(
        &self,
        _admin: AdminAuth,
        state: Data<&AppState>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Page size, 1 to 100 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// Only this user's connections.
        user_id: Query<Option<Uuid>>,
    ) -> Result<ListResponse<AdminConnection>, ApiError> {
        let Ok(after) = parse_cursor(cursor.0.as_deref()) else {
            return Ok(ListResponse::Invalid(invalid_cursor()));
        };
        let limit = limit.0.unwrap_or(DEFAULT_PAGE);
        let listed = state
            .connections
            .page(after, user_id.0, u64::from(limit) + 1)
            .await?;
        let (listed, next_cursor) = split_page(listed, limit, |listed| listed.row.id);
        let items = listed
            .into_iter()
            .map(|listed| AdminConnection {
                status: listed.row.status.into(),
                id: listed.row.id,
                user_id: listed.row.user_id,
                username: listed.username,
                workspace_id: listed.row.workspace_id,
                workspace_name: listed.row.workspace_name,
                created_at: listed.row.created_at,
            })
            .collect();
        Ok(ListResponse::Page(Json(Page { items, next_cursor })))
    }
}

/// A cursor is the id of the last item of the previous page.
fn parse_cursor(cursor: Option<&str>) -> Result<Option<Uuid>, ()> {
    cursor.map(Uuid::try_parse).transpose().map_err(|_| ())
}

fn invalid_cursor() -> Json<Problem> {
    Json(Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
        "Unprocessable Entity",
        Some("The cursor is not one this endpoint handed out.".to_owned()),
    ))
}

/// Rows were fetched with one extra to tell whether another page follows: drop it and point the
/// cursor at the last row kept.
fn split_page<T>(
    mut rows: Vec<T>,
    limit: u32,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|last| id(last).to_string()))
        .flatten();
    (rows, next)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Paging with `split_page` over any set of ids, as the store does (rows after the
        /// cursor, in id order, one more than the page), visits every id once, in order.
        #[test]
        fn pages_cover_every_row_exactly_once(
            mut ids in prop::collection::btree_set(any::<u128>(), 0..60)
                .prop_map(|set| set.into_iter().map(Uuid::from_u128).collect::<Vec<_>>()),
            limit in 1u32..=100,
        ) {
            ids.sort();
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            for _ in 0..=ids.len() {
                let after = parse_cursor(cursor.as_deref()).expect("cursors we hand out parse");
                let fetched: Vec<Uuid> = ids
                    .iter()
                    .copied()
                    .filter(|id| after.is_none_or(|after| *id > after))
                    .take(limit as usize + 1)
                    .collect();
                let (page, next) = split_page(fetched, limit, |id| *id);
                prop_assert!(page.len() <= limit as usize);
                seen.extend(page);
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            prop_assert_eq!(seen, ids);
        }

        #[test]
        fn cursors_that_are_not_ids_are_refused(cursor in "[^-]{0,40}") {
            prop_assume!(Uuid::try_parse(&cursor).is_err());
            prop_assert!(parse_cursor(Some(&cursor)).is_err());
        }
    }
}
