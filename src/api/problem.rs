//! One error type for the whole API, rendered as `application/problem+json` (RFC 9457).
//!
//! Handlers return `ApiError` for outcomes that are not part of an operation's own response
//! enum. Errors that poem and poem-openapi raise themselves (unknown route, wrong method,
//! unparsable body or parameters, ...) pass through `render_error`, which maps them onto the
//! same shape. Server errors never describe their cause to the client: the cause is logged once,
//! here, and the body only says that something went wrong.

use poem::{
    Response,
    error::{MethodNotAllowedError, NotFoundError, ResponseError},
    http::{StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object,
    error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    },
    payload::Json,
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};
use serde::Serialize;

use crate::{
    auth::{accounts::AccountError, password::HashError},
    chain::{BoxError, Chain},
    notion::{authorization::StartError, errors::ConnectionError},
    store::StoreError,
};

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Largest accepted request body (`http_policy` enforces it). Every request body of this API is
/// a small JSON document.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// An RFC 9457 problem document. `code` is stable and meant for programs; `title` and `detail`
/// are for people and may change.
#[derive(Object, Serialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// A URI that identifies the kind of problem: `urn:notion-connect:problem:{code}`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the problem kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this particular request, when there is something useful to say.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Stable machine-readable error code, for example `not_found`.
    pub code: String,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &str, title: &str, detail: Option<String>) -> Self {
        Self {
            type_uri: format!("urn:notion-connect:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        }
    }

    /// A problem body for an operation's own response enum, titled after its status.
    pub(crate) fn json(status: StatusCode, code: &str, detail: &str) -> Json<Self> {
        let title = status.canonical_reason().unwrap_or("Error");
        Json(Self::new(status, code, title, Some(detail.to_owned())))
    }

    pub(crate) fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        Response::builder()
            .status(status)
            .content_type(PROBLEM_JSON)
            .body(body)
    }
}

/// Every failure the API reports outside an operation's own response enum.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request could not be read (for example malformed JSON).
    #[error("bad request: {detail}")]
    BadRequest { code: &'static str, detail: String },
    /// No valid access token. Says nothing about what was wrong with it.
    #[error("unauthorized")]
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    #[error("forbidden")]
    Forbidden,
    /// A web page of an origin the server does not accept made the request.
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// A CORS preflight asked for a method or header the API does not use.
    #[error("preflight refused")]
    PreflightRefused { detail: String },
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge { limit: usize },
    /// The body did not arrive in time.
    #[error("request body too slow")]
    RequestTimeout,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The request was understood but a value is not acceptable.
    #[error("validation failed: {detail}")]
    Validation { code: &'static str, detail: String },
    /// Any other client error that poem reports, with its own status.
    #[error("client error: {0}")]
    OtherClientError(StatusCode),
    /// A dependency (the database, the password hashers) cannot be used right now. The cause
    /// is logged, never sent.
    #[error("service unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else. The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ApiError {
    pub(crate) fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }

    pub(crate) fn unavailable(cause: impl Into<BoxError>) -> Self {
        Self::Unavailable(cause.into())
    }

    /// A path parameter that did not parse; `name` as the route template names it.
    pub(crate) fn invalid_path_parameter(name: &str, reason: &str) -> Self {
        Self::Validation {
            code: "invalid_parameter",
            detail: format!("Path parameter `{name}`: {reason}"),
        }
    }

    pub(crate) fn problem(&self) -> Problem {
        use ApiError::*;
        let (status, code, title, detail) = match self {
            BadRequest { code, detail } => (
                StatusCode::BAD_REQUEST,
                *code,
                "The request could not be read",
                Some(detail.clone()),
            ),
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
                Some("Send a valid access token as `Authorization: Bearer <token>`.".to_owned()),
            ),
            Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                Some("Your account may not do this.".to_owned()),
            ),
            OriginNotAllowed => (
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "Origin not allowed",
                Some(
                    "This server does not accept requests from this web page's origin.".to_owned(),
                ),
            ),
            PreflightRefused { detail } => (
                StatusCode::FORBIDDEN,
                "preflight_refused",
                "Preflight refused",
                Some(detail.clone()),
            ),
            NotFound => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                Some("Nothing exists at this address.".to_owned()),
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                Some("This address does not accept that HTTP method.".to_owned()),
            ),
            PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
                Some(format!("Request bodies are limited to {limit} bytes.")),
            ),
            RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "Request timeout",
                Some("The request body did not arrive in time.".to_owned()),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                Some("Send the body as application/json.".to_owned()),
            ),
            Validation { code, detail } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                *code,
                "The request contains invalid values",
                Some(detail.clone()),
            ),
            OtherClientError(status) => (
                *status,
                "request_rejected",
                status.canonical_reason().unwrap_or("Request rejected"),
                None,
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
                Some(
                    "The service cannot handle the request right now; try again shortly."
                        .to_owned(),
                ),
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal server error",
                None,
            ),
        };
        Problem::new(status, code, title, detail)
    }
}

impl ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.problem().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn as_response(&self) -> Response {
        let mut response = self.problem().into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            }
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        response
    }
}

/// Every operation can fail in these ways; operations document their expected failures (401,
/// 404, 409, 422, 429, ...) in their own response enums.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let problem = |status, description| MetaResponse {
            description,
            status: Some(status),
            status_range: None,
            content: vec![MetaMediaType {
                content_type: PROBLEM_JSON,
                schema: Problem::schema_ref(),
            }],
            headers: vec![],
        };
        MetaResponses {
            responses: vec![
                problem(
                    500,
                    "An unexpected error; the body never describes its cause.",
                ),
                problem(
                    503,
                    "The service cannot handle the request right now (database unavailable or \
                     too many password checks waiting); retry after `Retry-After` seconds.",
                ),
            ],
        }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

// What the layers below report, as the API reports it.

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Store(store) => store.into(),
            AccountError::Hash(hash) => hash.into(),
            AccountError::Connections(connections) => connections.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<StartError> for ApiError {
    fn from(err: StartError) -> Self {
        match err {
            StartError::Store(store) => store.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::unavailable(err),
            _ => ApiError::internal(err),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        StoreError::Db(err).into()
    }
}

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => ApiError::unavailable(err),
            _ => ApiError::internal(err),
        }
    }
}

impl From<ConnectionError> for ApiError {
    fn from(err: ConnectionError) -> Self {
        match err {
            ConnectionError::Store(store) => store.into(),
            other => ApiError::internal(other),
        }
    }
}

/// Turns any error that reaches the top of the stack into a problem response, logging the cause
/// of server errors exactly once.
pub(crate) async fn render_error(err: poem::Error) -> Response {
    let api_error = classify(err);
    if let ApiError::Internal(_) | ApiError::Unavailable(_) = &api_error {
        tracing::error!(error = %Chain(&api_error), "request failed");
    }
    api_error.as_response()
}

fn classify(err: poem::Error) -> ApiError {
    let err = match err.downcast::<ApiError>() {
        Ok(api_error) => return api_error,
        Err(err) => err,
    };
    if err.is::<NotFoundError>() {
        return ApiError::NotFound;
    }
    if err.is::<MethodNotAllowedError>() {
        return ApiError::MethodNotAllowed;
    }
    if err.is::<AuthorizationError>() {
        return ApiError::Unauthorized;
    }
    if err.is::<ContentTypeError>() {
        return ApiError::UnsupportedMediaType;
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return ApiError::BadRequest {
            code: "malformed_body",
            detail: format!(
                "The request body is not valid for this operation: {}",
                e.reason
            ),
        };
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return ApiError::Validation {
            code: "invalid_parameter",
            detail: format!("Parameter `{}`: {}", e.name, e.reason),
        };
    }
    // Named as the route template names it by `http_policy` before it gets here.
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        return ApiError::invalid_path_parameter(e.name, &e.reason);
    }
    match err.status() {
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        status if status.is_client_error() => ApiError::OtherClientError(status),
        _ => ApiError::internal(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let err: poem::Error = ApiError::internal("connection refused to db:5432 user=app").into();
        let response = render_error(err).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.content_type(), Some(PROBLEM_JSON));
        let body = response.into_body().into_string().await.unwrap();
        assert!(!body.contains("5432"), "{body}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "internal_error");
        assert_eq!(problem["status"], 500);
    }

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_500_logs_every_cause_once_and_sends_none() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading connection 7")]
        struct Reading(#[source] std::io::Error);

        let logs = Captured::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let cause = std::io::Error::other("connection refused by db:5432");
        let err: poem::Error = ApiError::internal(Reading(cause)).into();
        let response = render_error(err).await;

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().into_string().await.unwrap();
        assert!(
            !body.contains("5432") && !body.contains("connection 7"),
            "{body}"
        );
        let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            logged
                .matches("internal error: reading connection 7: connection refused by db:5432")
                .count(),
            1,
            "{logged}"
        );
    }

    #[tokio::test]
    async fn parse_errors_from_poem_openapi_become_problems() {
        let payload: poem::Error = ParseRequestPayloadError {
            reason: "expected value at line 1 column 2".into(),
        }
        .into();
        let response = render_error(payload).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value =
            serde_json::from_str(&response.into_body().into_string().await.unwrap()).unwrap();
        assert_eq!(body["code"], "malformed_body");

        let param: poem::Error = ParseParamError {
            name: "page_size",
            reason: "not a number".into(),
        }
        .into();
        let response = render_error(param).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: serde_json::Value =
            serde_json::from_str(&response.into_body().into_string().await.unwrap()).unwrap();
        assert_eq!(body["code"], "invalid_parameter");
        assert!(body["detail"].as_str().unwrap().contains("page_size"));
    }

    #[tokio::test]
    async fn unknown_errors_are_mapped_by_status() {
        let err = poem::Error::from_status(StatusCode::IM_A_TEAPOT);
        let response = render_error(err).await;
        assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
        assert_eq!(response.content_type(), Some(PROBLEM_JSON));

        let err = poem::Error::from_string("secret detail", StatusCode::BAD_GATEWAY);
        let response = render_error(err).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().into_string().await.unwrap();
        assert!(!body.contains("secret detail"));
    }
}
