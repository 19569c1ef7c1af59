//! Searching a connected workspace.

use poem::{http::StatusCode, web::Data};
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Union,
    param::{Path, Query},
    payload::Json,
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    ApiTags,
    connections::not_found,
    payload::SerdeJson,
    problem::{ApiError, Problem},
    security::BearerAuth,
};
use crate::{
    notion::{
        client::NotionError,
        errors::SearchError,
        search::{
            Direction, Icon as RawIcon, Item, ObjectFilter, ObjectKind, ObjectType, SearchPage,
            SearchRequest, Sort,
        },
    },
    state::AppState,
};

const DEFAULT_PAGE_SIZE: u32 = 20;

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub(crate) enum SearchFilter {
    /// Only pages.
    Page,
    /// Only data sources (databases).
    DataSource,
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub(crate) enum SearchSort {
    /// Most recently edited first.
    Descending,
    /// Least recently edited first.
    Ascending,
}

#[derive(Enum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ResultObject {
    Page,
    DataSource,
    /// Returned by older Notion versions for databases.
    Database,
}

#[derive(Object, Serialize, Clone, Debug)]
pub struct EmojiIcon {
    pub emoji: String,
}

#[derive(Object, Serialize, Clone, Debug)]
pub struct UrlIcon {
    /// An external image, an uploaded file (the link expires), or a custom emoji.
    pub url: String,
}

/// A page's or data source's icon.
#[derive(Union, Serialize, Clone, Debug)]
#[oai(discriminator_name = "type", one_of)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Icon {
    #[oai(mapping = "emoji")]
    Emoji(EmojiIcon),
    #[oai(mapping = "url")]
    Url(UrlIcon),
}

/// One page or data source the connection can see.
#[derive(Object, Serialize, Clone, Debug)]
pub struct SearchResult {
    pub id: String,
    pub object: ResultObject,
    /// The title's plain text, or "Untitled".
    pub title: String,
    pub url: Option<String>,
    pub icon: Option<Icon>,
    pub last_edited_time: Option<String>,
    pub in_trash: bool,
}

impl From<Item> for SearchResult {
    fn from(item: Item) -> Self {
        Self {
            id: item.id,
            object: match item.object {
                ObjectKind::Page => ResultObject::Page,
                ObjectKind::DataSource => ResultObject::DataSource,
                ObjectKind::Database => ResultObject::Database,
            },
            title: item.title,
            url: item.url,
            icon: item.icon.map(|icon| match icon {
                RawIcon::Emoji(emoji) => Icon::Emoji(EmojiIcon { emoji }),
                RawIcon::Url(url) => Icon::Url(UrlIcon { url }),
            }),
            last_edited_time: item.last_edited_time,
            in_trash: item.in_trash,
        }
    }
}

// Serialised directly (`SerdeJson`): its serde and poem-openapi attributes must agree, as the
// test below checks.
#[derive(Object, Serialize)]
pub struct SearchResults {
    pub results: Vec<SearchResult>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(ApiResponse)]
pub(crate) enum SearchResponse {
    #[oai(status = 200)]
    Results(SerdeJson<SearchResults>),
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
    /// Notion no longer accepts the connection (`connection_needs_reauth`), or its stored tokens
    /// can no longer be decrypted (`connection_unreadable`); connect the workspace again.
    #[oai(status = 409, content_type = "application/problem+json")]
    NeedsReauth(Json<Problem>),
    /// A parameter is invalid (`invalid_parameter`), including a cursor Notion does not
    /// recognise.
    #[oai(status = 422, content_type = "application/problem+json")]
    Invalid(Json<Problem>),
    /// Notion's rate limit for this connection (`notion_rate_limited`).
    #[oai(status = 429, content_type = "application/problem+json")]
    RateLimited(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// Notion failed or answered something unusable (`notion_error`).
    #[oai(status = 502, content_type = "application/problem+json")]
    NotionError(Json<Problem>),
    /// Notion did not answer in time (`notion_timeout`).
    #[oai(status = 504, content_type = "application/problem+json")]
    NotionTimeout(Json<Problem>),
}

#[derive(Default)]
pub(crate) struct SearchApi;

#[OpenApi(prefix_path = "/connections", tag = "ApiTags::Connections")]
impl SearchApi {
    /// Search a connected workspace
    ///
    /// Pages and data sources the connection can see, by title. Follow `next_cursor` while
    /// `has_more` is true. Notion's search is not exhaustive and may lag behind recent changes.
    #[oai(
        path = "/:id/search",
        method = "get",
        operation_id = "search_connection"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        id: Path<Uuid>,
        /// Words to look for in titles.
        query: Query<Option<String>>,
        /// Only pages, or only data sources.
        filter: Query<Option<SearchFilter>>,
        /// By last edited time.
        sort: Query<Option<SearchSort>>,
        /// Results per page, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u32>>,
        /// `next_cursor` of the previous page.
        #[oai(validator(min_length = 1, max_length = 512))]
        cursor: Query<Option<String>>,
    ) -> Result<SearchResponse, ApiError> {
        let request = SearchRequest {
            query: query.0.filter(|q| !q.is_empty()),
            filter: filter.0.map(SearchFilter::notion),
            sort: sort.0.map(SearchSort::notion),
            start_cursor: cursor.0,
            page_size: page_size.0.unwrap_or(DEFAULT_PAGE_SIZE),
        };
        match state
            .connections
            .search(auth.0.user.id, id.0, &request)
            .await
        {
            Ok(page) => Ok(SearchResponse::Results(SerdeJson(page.into()))),
            Err(error) => failure(error),
        }
    }
}

impl SearchFilter {
    pub(crate) fn notion(self) -> ObjectFilter {
        ObjectFilter::only(match self {
            Self::Page => ObjectType::Page,
            Self::DataSource => ObjectType::DataSource,
        })
    }
}

impl SearchSort {
    fn notion(self) -> Sort {
        Sort::by_last_edited(self.direction())
    }

    pub(crate) fn direction(self) -> Direction {
        match self {
            Self::Descending => Direction::Descending,
            Self::Ascending => Direction::Ascending,
        }
    }
}

impl From<SearchPage> for SearchResults {
    fn from(page: SearchPage) -> Self {
        Self {
            results: page.items.into_iter().map(SearchResult::from).collect(),
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        }
    }
}

/// The answer for each way a search can fail; the service has logged Notion's failures.
fn failure(error: SearchError) -> Result<SearchResponse, ApiError> {
    let notion_error = || {
        SearchResponse::NotionError(Problem::json(
            StatusCode::BAD_GATEWAY,
            "notion_error",
            "Notion failed to answer the search; try again later.",
        ))
    };
    Ok(match error {
        SearchError::NotFound => SearchResponse::NotFound(not_found()),
        SearchError::NeedsReauth => SearchResponse::NeedsReauth(Problem::json(
            StatusCode::CONFLICT,
            "connection_needs_reauth",
            "Notion no longer accepts this connection; connect the workspace again.",
        )),
        SearchError::Notion(NotionError::RateLimited { retry_after }) => {
            let seconds = retry_after
                .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
                .max(1);
            SearchResponse::RateLimited(
                Problem::json(
                    StatusCode::TOO_MANY_REQUESTS,
                    "notion_rate_limited",
                    "Notion's rate limit for this connection was reached; retry after Retry-After seconds.",
                ),
                seconds,
            )
        }
        SearchError::Notion(NotionError::Timeout) => SearchResponse::NotionTimeout(Problem::json(
            StatusCode::GATEWAY_TIMEOUT,
            "notion_timeout",
            "Notion did not answer in time; try again later.",
        )),
        SearchError::InvalidCursor => SearchResponse::Invalid(Problem::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter",
            "Parameter `cursor`: not a cursor from a previous page of this search.",
        )),
        SearchError::Undecryptable => SearchResponse::NeedsReauth(Problem::json(
            StatusCode::CONFLICT,
            "connection_unreadable",
            "This connection's stored tokens can no longer be decrypted; connect the workspace \
             again.",
        )),
        SearchError::Notion(_) | SearchError::Refresh(_) | SearchError::Malformed(_) => {
            notion_error()
        }
        SearchError::Failed(cause) => return Err(cause.into()),
    })
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;

    #[test]
    fn serde_writes_the_json_the_schema_describes() {
        let result = |id: &str, object, icon| SearchResult {
            id: id.to_owned(),
            object,
            title: "Roadmap \"2027\"".to_owned(),
            url: Some("https://www.notion.so/roadmap".to_owned()),
            icon,
            last_edited_time: Some("2026-11-01T00:00:00.000Z".to_owned()),
            in_trash: false,
        };
        let page = SearchResults {
            results: vec![
                result(
                    "a",
                    ResultObject::Page,
                    Some(Icon::Emoji(EmojiIcon {
                        emoji: "🗺️".to_owned(),
                    })),
                ),
                result(
                    "b",
                    ResultObject::DataSource,
                    Some(Icon::Url(UrlIcon {
                        url: "https://example.com/i.png".to_owned(),
                    })),
                ),
                SearchResult {
                    url: None,
                    last_edited_time: None,
                    in_trash: true,
                    ..result("c", ResultObject::Database, None)
                },
            ],
            next_cursor: Some("cursor".to_owned()),
            has_more: true,
        };
        let last_page = SearchResults {
            results: vec![],
            next_cursor: None,
            has_more: false,
        };

        for value in [page, last_page] {
            assert_eq!(
                serde_json::to_value(&value).unwrap(),
                value.to_json().unwrap()
            );
        }
    }
}
