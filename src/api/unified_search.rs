//! Searching all of the caller's workspaces at once (or some of them). The rules (fan-out,
//! order, paging) are the connection service's: see [`crate::notion::fanout`].

use std::collections::HashMap;

use poem::{http::StatusCode, web::Data};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Query, payload::Json};
use serde::Serialize;
use uuid::Uuid;

use super::{
    ApiTags,
    connections::not_found,
    payload::SerdeJson,
    problem::{ApiError, Problem},
    search::{SearchFilter, SearchResult, SearchSort},
    security::BearerAuth,
};
use crate::{
    notion::fanout::{FanoutError, FanoutPage, FanoutRequest, LaneStatus},
    state::AppState,
};

const DEFAULT_PAGE_SIZE: u32 = 20;

/// One page or data source, and the workspace it is in.
#[derive(Object, Serialize, Clone, Debug)]
pub(crate) struct WorkspaceResult {
    #[oai(flatten)]
    #[serde(flatten)]
    pub result: SearchResult,
    /// The connection of the workspace it was found in.
    pub connection_id: Uuid,
    pub workspace_name: Option<String>,
    /// An emoji, or the URL of an image.
    pub workspace_icon: Option<String>,
}

/// How searching one workspace went, for this page.
#[derive(Enum, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub(crate) enum WorkspaceStatus {
    /// Its results are in the page.
    Ok,
    /// Notion asks to wait `retry_after` seconds before searching it again.
    RateLimited,
    /// Notion no longer accepts the connection: connect the workspace again.
    NeedsReauth,
    /// Its stored tokens cannot be decrypted: connect the workspace again.
    Unreadable,
    /// It did not answer in time; the next page asks it again.
    Timeout,
    /// Notion failed to answer; the next page asks it again.
    Error,
}

/// A workspace searched for this page.
#[derive(Object, Serialize, Clone, Debug)]
pub(crate) struct WorkspaceOutcome {
    pub connection_id: Uuid,
    pub workspace_name: Option<String>,
    pub status: WorkspaceStatus,
    /// With `rate_limited`: seconds to wait.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// One page of a search across workspaces.
// Serialised directly (`SerdeJson`): its serde and poem-openapi attributes must agree, as the
// test below checks.
#[derive(Object, Serialize)]
pub(crate) struct WorkspaceResults {
    pub results: Vec<WorkspaceResult>,
    /// Every workspace searched for this page, and how that went. A workspace that failed
    /// leaves no results, and the others' results are still here.
    pub connections: Vec<WorkspaceOutcome>,
    /// Pass as `cursor` for the next page, with the same other parameters.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

#[derive(ApiResponse)]
pub(crate) enum UnifiedSearchResponse {
    /// Results from the workspaces that answered, and how searching each one went.
    #[oai(status = 200)]
    Results(SerdeJson<WorkspaceResults>),
    /// No valid access token (`unauthorized`).
    #[expect(
        dead_code,
        reason = "the security scheme gives this answer; the variant puts it in the document"
    )]
    #[oai(status = 401, content_type = "application/problem+json")]
    Unauthorized(Json<Problem>),
    /// A `connection_id` is not one of yours (`not_found`).
    #[oai(status = 404, content_type = "application/problem+json")]
    NotFound(Json<Problem>),
    /// Every workspace searched needs connecting again (`connection_needs_reauth`).
    #[oai(status = 409, content_type = "application/problem+json")]
    NeedsReauth(Json<Problem>),
    /// A parameter is invalid, or `cursor` is not from a previous page of this search
    /// (`invalid_parameter`).
    #[oai(status = 422, content_type = "application/problem+json")]
    Invalid(Json<Problem>),
    /// Notion is rate limiting every workspace searched (`notion_rate_limited`).
    #[oai(status = 429, content_type = "application/problem+json")]
    RateLimited(Json<Problem>, #[oai(header = "Retry-After")] u64),
    /// Notion failed for every workspace searched (`notion_error`).
    #[oai(status = 502, content_type = "application/problem+json")]
    NotionError(Json<Problem>),
    /// No workspace searched answered in time (`notion_timeout`).
    #[oai(status = 504, content_type = "application/problem+json")]
    NotionTimeout(Json<Problem>),
}

#[derive(Default)]
pub(crate) struct UnifiedSearchApi;

#[OpenApi(tag = "ApiTags::Search")]
impl UnifiedSearchApi {
    /// Search all your workspaces
    ///
    /// Searches every workspace you connected (or those named by `connection_id`) at once.
    /// With `sort`, results are in last-edited order across workspaces; without it, each
    /// workspace keeps Notion's relevance order and the workspaces take turns. A workspace that
    /// fails or is slow is reported in `connections` and does not fail the others; the next page
    /// asks it again from where it was.
    #[oai(path = "/search", method = "get", operation_id = "search_workspaces")]
    #[allow(clippy::too_many_arguments)]
    async fn search(
        &self,
        auth: BearerAuth,
        state: Data<&AppState>,
        /// Words in the titles; empty: everything shared with the integration.
        query: Query<Option<String>>,
        filter: Query<Option<SearchFilter>>,
        /// By last-edited time; without it, Notion's relevance order per workspace.
        sort: Query<Option<SearchSort>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] page_size: Query<
            Option<u32>,
        >,
        /// `next_cursor` of the previous page.
        #[oai(validator(min_length = 1, max_length = 16384))]
        cursor: Query<Option<String>>,
        /// Only these connections (repeat the parameter for several); all of them by default
        /// (the 50 oldest, for someone with more).
        #[oai(validator(max_items = 50))]
        connection_id: Query<Option<Vec<Uuid>>>,
    ) -> Result<UnifiedSearchResponse, ApiError> {
        let request = FanoutRequest {
            query: query.0.filter(|q| !q.is_empty()),
            filter: filter.0.map(SearchFilter::notion),
            order: sort.0.map(SearchSort::direction),
            page_size: page_size.0.unwrap_or(DEFAULT_PAGE_SIZE) as usize,
            cursor: cursor.0,
            connections: connection_id.0.unwrap_or_default(),
        };
        match state
            .connections
            .search_everywhere(auth.0.user.id, &request)
            .await
        {
            Ok(page) => Ok(UnifiedSearchResponse::Results(SerdeJson(page.into()))),
            Err(error) => failure(error),
        }
    }
}

impl From<FanoutPage> for WorkspaceResults {
    fn from(page: FanoutPage) -> Self {
        let workspaces: HashMap<Uuid, (Option<String>, Option<String>)> = page
            .lanes
            .iter()
            .map(|lane| {
                let row = &lane.connection;
                (
                    row.id,
                    (row.workspace_name.clone(), row.workspace_icon.clone()),
                )
            })
            .collect();
        let results = page
            .results
            .into_iter()
            .map(|(connection_id, item)| {
                let (workspace_name, workspace_icon) =
                    workspaces.get(&connection_id).cloned().unwrap_or_default();
                WorkspaceResult {
                    result: SearchResult::from(item),
                    connection_id,
                    workspace_name,
                    workspace_icon,
                }
            })
            .collect();
        let connections = page
            .lanes
            .into_iter()
            .map(|lane| {
                let (status, retry_after) = match lane.status {
                    LaneStatus::Ok => (WorkspaceStatus::Ok, None),
                    LaneStatus::RateLimited(wait) => {
                        (WorkspaceStatus::RateLimited, Some(whole_seconds(wait)))
                    }
                    LaneStatus::NeedsReauth => (WorkspaceStatus::NeedsReauth, None),
                    LaneStatus::Unreadable => (WorkspaceStatus::Unreadable, None),
                    LaneStatus::Timeout => (WorkspaceStatus::Timeout, None),
                    LaneStatus::Error => (WorkspaceStatus::Error, None),
                };
                WorkspaceOutcome {
                    connection_id: lane.connection.id,
                    workspace_name: lane.connection.workspace_name,
                    status,
                    retry_after,
                }
            })
            .collect();
        Self {
            results,
            connections,
            has_more: page.next_cursor.is_some(),
            next_cursor: page.next_cursor,
        }
    }
}

fn failure(error: FanoutError) -> Result<UnifiedSearchResponse, ApiError> {
    use UnifiedSearchResponse as R;
    Ok(match error {
        FanoutError::NotFound => R::NotFound(not_found()),
        FanoutError::InvalidCursor => R::Invalid(Problem::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_parameter",
            "Parameter `cursor`: not a cursor from a previous page of this search.",
        )),
        FanoutError::AllFailed(LaneStatus::NeedsReauth | LaneStatus::Unreadable) => {
            R::NeedsReauth(Problem::json(
                StatusCode::CONFLICT,
                "connection_needs_reauth",
                "None of the workspaces searched can be searched until it is connected again.",
            ))
        }
        FanoutError::AllFailed(LaneStatus::RateLimited(wait)) => R::RateLimited(
            Problem::json(
                StatusCode::TOO_MANY_REQUESTS,
                "notion_rate_limited",
                "Notion's rate limit was reached for every workspace searched; retry after \
                 Retry-After seconds.",
            ),
            whole_seconds(wait),
        ),
        FanoutError::AllFailed(LaneStatus::Timeout) => R::NotionTimeout(Problem::json(
            StatusCode::GATEWAY_TIMEOUT,
            "notion_timeout",
            "No workspace answered in time; try again later.",
        )),
        FanoutError::AllFailed(_) => R::NotionError(Problem::json(
            StatusCode::BAD_GATEWAY,
            "notion_error",
            "Notion failed to answer for every workspace searched; try again later.",
        )),
        FanoutError::Store(store) => return Err(store.into()),
    })
}

/// A wait in whole seconds (rounded up, at least one).
fn whole_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;
    use crate::api::search::ResultObject;

    #[test]
    fn serde_writes_the_json_the_schema_describes() {
        let result = SearchResult {
            id: "a".to_owned(),
            object: ResultObject::Page,
            title: "Roadmap".to_owned(),
            url: None,
            icon: None,
            last_edited_time: Some("2026-11-01T00:00:00.000Z".to_owned()),
            in_trash: false,
        };
        let page = WorkspaceResults {
            results: vec![WorkspaceResult {
                result,
                connection_id: Uuid::from_u128(1),
                workspace_name: Some("Team".to_owned()),
                workspace_icon: None,
            }],
            connections: vec![
                WorkspaceOutcome {
                    connection_id: Uuid::from_u128(1),
                    workspace_name: Some("Team".to_owned()),
                    status: WorkspaceStatus::Ok,
                    retry_after: None,
                },
                WorkspaceOutcome {
                    connection_id: Uuid::from_u128(2),
                    workspace_name: None,
                    status: WorkspaceStatus::RateLimited,
                    retry_after: Some(7),
                },
            ],
            next_cursor: Some("cursor".to_owned()),
            has_more: true,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            page.to_json().unwrap()
        );
    }
}
