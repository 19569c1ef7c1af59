//! Notion's OAuth endpoints through the `oauth2` crate: the authorize URL, the one-time code
//! exchange (HTTP Basic client authentication), and token revocation and introspection.

use std::{sync::Arc, time::Instant};

use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ErrorResponse, ExtraTokenFields, RedirectUrl, RequestTokenError, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
    basic::{BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType},
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::NotionEndpoints;
use crate::{
    chain::BoxError,
    metrics::{Metrics, NotionEndpoint},
    secret::Secret,
};

/// The fields Notion adds to its token response.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct NotionTokenFields {
    /// Always present after a code exchange; a refresh may leave it out.
    #[serde(default)]
    pub bot_id: String,
    #[serde(default)]
    pub workspace_id: String,
    #[serde(default)]
    pub workspace_name: Option<String>,
    #[serde(default)]
    pub workspace_icon: Option<String>,
    #[serde(default)]
    pub owner: Option<Owner>,
    #[serde(default)]
    pub duplicated_template_id: Option<String>,
}

impl ExtraTokenFields for NotionTokenFields {}

/// Who authorized: a user (possibly partial) or the whole workspace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct Owner {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<OwnerUser>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct OwnerUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub(crate) struct Person {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Notion answers token errors in two shapes: RFC 6749 (`error`, `error_description`) and its
/// API shape (`object: "error"`, `code`, `message`). Both are accepted.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum NotionTokenError {
    Rfc6749 {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    },
    Api {
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
}

impl NotionTokenError {
    pub(crate) fn code(&self) -> &str {
        match self {
            Self::Rfc6749 { error, .. } => error,
            Self::Api { code, .. } => code,
        }
    }
}

impl std::fmt::Display for NotionTokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl ErrorResponse for NotionTokenError {}

type TokenBody = StandardTokenResponse<NotionTokenFields, BasicTokenType>;

type OAuthClient = oauth2::Client<
    NotionTokenError,
    TokenBody,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A successful code exchange.
pub(crate) struct Grant {
    pub access_token: Secret<String>,
    pub refresh_token: Option<Secret<String>>,
    pub fields: NotionTokenFields,
}

/// Why an exchange failed, in the terms the callback reports to the browser.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// Notion refused the code or refresh token (`invalid_grant` and the like).
    #[error("Notion refused the grant ({0})")]
    Refused(String),
    /// Notion could not be reached or did not answer usefully (timeout, 5xx, HTML page).
    #[error("Notion's token endpoint is unavailable")]
    Unavailable(#[source] BoxError),
}

/// Why Notion did not confirm a revocation (or an introspection).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RevokeError {
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    #[error("Notion answered {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        status: u16,
        /// The error code of the body, in either of Notion's two shapes.
        code: Option<String>,
        /// The body was exactly `{}`: Notion's documented answer for a token it does not
        /// accept.
        bare: bool,
    },
    /// Not the small JSON document expected (an introspection without `active`, or a body
    /// longer than any such document).
    #[error("the answer is not the expected document")]
    Malformed,
}

/// What a failed revocation says about the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RevokeVerdict {
    /// Notion does not accept the token: there is nothing left to revoke.
    TokenInvalid,
    /// A client error that may or may not be about the token: ask Notion about the token.
    Ambiguous,
    /// Nothing is known about the token (our credentials were refused, Notion was busy or
    /// unreachable): try again later.
    Retry,
}

impl RevokeError {
    pub(crate) fn verdict(&self) -> RevokeVerdict {
        match self {
            // Our own client credentials (a rotated or mistyped secret) say nothing about the
            // token, whatever the status.
            Self::Status { status: 401, .. } => RevokeVerdict::Retry,
            Self::Status {
                code: Some(code), ..
            } if code == "invalid_client" => RevokeVerdict::Retry,
            Self::Status {
                status: 400,
                bare: true,
                ..
            } => RevokeVerdict::TokenInvalid,
            Self::Status { status: 429, .. } => RevokeVerdict::Retry,
            Self::Status { status, .. } if (400..500).contains(status) => RevokeVerdict::Ambiguous,
            Self::Status { .. } | Self::Request(_) | Self::Malformed => RevokeVerdict::Retry,
        }
    }

    /// The label of a call that failed this way, for `notion_requests_total`.
    fn label(&self) -> &'static str {
        match self {
            Self::Status { status: 401, .. } => "invalid_client",
            Self::Status {
                code: Some(code), ..
            } if code == "invalid_client" => "invalid_client",
            Self::Status { status: 429, .. } => "rate_limited",
            Self::Status { status, .. } if *status >= 500 => "server_error",
            Self::Status { .. } | Self::Malformed => "client_error",
            Self::Request(_) => "unreachable",
        }
    }
}

/// Codes that mean "try again later" rather than "this code is bad".
const TRANSIENT_CODES: &[&str] = &[
    "temporarily_unavailable",
    "server_error",
    "internal_server_error",
    "service_unavailable",
    "bad_gateway",
    "gateway_timeout",
    "database_connection_unavailable",
    "service_overload",
    "rate_limited",
];

#[derive(Clone)]
pub(crate) struct NotionOAuth {
    client: OAuthClient,
    endpoints: NotionEndpoints,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl NotionOAuth {
    pub(crate) fn new(
        endpoints: NotionEndpoints,
        http: reqwest::Client,
        metrics: Arc<Metrics>,
    ) -> Self {
        let client = oauth2::Client::new(ClientId::new(endpoints.client_id.clone()))
            .set_client_secret(ClientSecret::new(endpoints.client_secret.expose().clone()))
            .set_auth_uri(AuthUrl::from_url(endpoints.authorize_url.clone()))
            .set_token_uri(TokenUrl::from_url(
                endpoints.url(NotionEndpoint::Token.path()),
            ))
            .set_redirect_uri(RedirectUrl::from_url(endpoints.redirect_uri.clone()));
        Self {
            client,
            endpoints,
            http,
            metrics,
        }
    }

    pub(crate) fn endpoints(&self) -> &NotionEndpoints {
        &self.endpoints
    }

    /// The consent page URL: `client_id`, `redirect_uri`, `response_type=code`, `owner=user` and
    /// `state`, nothing else (no scope, no PKCE: Notion uses neither).
    pub(crate) fn authorize_url(&self, state: &str) -> Url {
        let state = state.to_owned();
        let (url, _) = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .add_extra_param("owner", "user")
            .url();
        url
    }

    /// Exchanges an authorization code, once: this is never retried, because a code works only
    /// once and a retry could only fail or, worse, race the first attempt.
    pub(crate) async fn exchange(&self, code: &str) -> Result<Grant, ExchangeError> {
        let started = Instant::now();
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(classify);
        self.record_token_call(&response, started);
        let response = response?;
        if response.extra_fields().bot_id.is_empty() {
            return Err(ExchangeError::Unavailable(
                "the token response has no bot_id".into(),
            ));
        }
        Ok(Grant {
            access_token: Secret::new(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|token| Secret::new(token.secret().clone())),
            fields: response.extra_fields().clone(),
        })
    }

    /// Exchanges a refresh token for a new pair (Notion rotates both). Never retried: the old
    /// refresh token may already be spent.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &Secret<String>,
    ) -> Result<Grant, ExchangeError> {
        let started = Instant::now();
        let response = self
            .client
            .exchange_refresh_token(&oauth2::RefreshToken::new(refresh_token.expose().clone()))
            .request_async(&self.http)
            .await
            .map_err(classify);
        self.record_token_call(&response, started);
        let response = response?;
        Ok(Grant {
            access_token: Secret::new(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|token| Secret::new(token.secret().clone())),
            fields: response.extra_fields().clone(),
        })
    }

    /// Asks Notion to revoke a token.
    pub(crate) async fn revoke(&self, token: &Secret<String>) -> Result<(), RevokeError> {
        self.call_with_token(NotionEndpoint::Revoke, token)
            .await
            .map(drop)
    }

    /// Asks Notion whether a token is still active.
    pub(crate) async fn introspect(&self, token: &Secret<String>) -> Result<bool, RevokeError> {
        #[derive(Deserialize)]
        struct Introspection {
            active: bool,
        }
        let body = self
            .call_with_token(NotionEndpoint::Introspect, token)
            .await?;
        serde_json::from_slice::<Introspection>(&body)
            .map(|answer| answer.active)
            .map_err(|_| RevokeError::Malformed)
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn record_token_call<T>(&self, response: &Result<T, ExchangeError>, started: Instant) {
        let label = match response {
            Ok(_) => "ok",
            Err(ExchangeError::Refused(_)) => "refused",
            Err(ExchangeError::Unavailable(_)) => "unavailable",
        };
        self.metrics
            .notion_call(NotionEndpoint::Token, label, started.elapsed());
    }

    /// `POST {"token": ...}` to a token endpoint with the client's credentials; the body of a
    /// success. Recorded in the metrics.
    async fn call_with_token(
        &self,
        endpoint: NotionEndpoint,
        token: &Secret<String>,
    ) -> Result<Vec<u8>, RevokeError> {
        let started = Instant::now();
        let outcome = self.send_token(endpoint, token).await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.metrics.notion_call(endpoint, label, started.elapsed());
        outcome
    }

    async fn send_token(
        &self,
        endpoint: NotionEndpoint,
        token: &Secret<String>,
    ) -> Result<Vec<u8>, RevokeError> {
        let response = self
            .http
            .post(self.endpoints.url(endpoint.path()))
            .basic_auth(
                &self.endpoints.client_id,
                Some(self.endpoints.client_secret.expose()),
            )
            .header("Notion-Version", &self.endpoints.version)
            .json(&serde_json::json!({ "token": token.expose() }))
            .send()
            .await
            .map_err(|e| RevokeError::Request(e.without_url()))?;
        let status = response.status();
        let body = read_small(response).await?;
        if status.is_success() {
            return Ok(body);
        }
        let bare = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
            .is_ok_and(|object| object.is_empty());
        let code = serde_json::from_slice::<NotionTokenError>(&body)
            .ok()
            .map(|error| error.code().to_owned());
        Err(RevokeError::Status {
            status: status.as_u16(),
            code,
            bare,
        })
    }
}

/// The longest answer read from the revoke and introspect endpoints, which answer with small
/// JSON documents.
const MAX_TOKEN_ANSWER_BYTES: usize = 16 * 1024;

async fn read_small(mut response: reqwest::Response) -> Result<Vec<u8>, RevokeError> {
    let mut body = Vec::new();
    while let Some(piece) = response
        .chunk()
        .await
        .map_err(|e| RevokeError::Request(e.without_url()))?
    {
        if body.len() + piece.len() > MAX_TOKEN_ANSWER_BYTES {
            return Err(RevokeError::Malformed);
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

fn classify<E>(err: RequestTokenError<E, NotionTokenError>) -> ExchangeError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match err {
        RequestTokenError::ServerResponse(error) if TRANSIENT_CODES.contains(&error.code()) => {
            ExchangeError::Unavailable(format!("it answered {}", error.code()).into())
        }
        RequestTokenError::ServerResponse(error) => ExchangeError::Refused(error.code().to_owned()),
        RequestTokenError::Request(e) => ExchangeError::Unavailable(Box::new(e)),
        // The body is not a token or error document, e.g. an HTML page from a proxy. It is not
        // kept: it could echo the request.
        RequestTokenError::Parse(e, _) => ExchangeError::Unavailable(Box::new(e)),
        RequestTokenError::Other(e) => ExchangeError::Unavailable(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: Option<&str>, bare: bool) -> RevokeVerdict {
        RevokeError::Status {
            status,
            code: code.map(str::to_owned),
            bare,
        }
        .verdict()
    }

    #[test]
    fn only_answers_about_the_token_end_a_revocation() {
        assert_eq!(refused(400, None, true), RevokeVerdict::TokenInvalid);
        // Our credentials, however the answer is shaped.
        assert_eq!(
            refused(401, Some("invalid_client"), false),
            RevokeVerdict::Retry
        );
        assert_eq!(refused(401, None, true), RevokeVerdict::Retry);
        assert_eq!(
            refused(400, Some("invalid_client"), false),
            RevokeVerdict::Retry
        );
        // Busy or broken.
        for status in [429, 500, 502, 503, 504, 529] {
            assert_eq!(
                refused(status, None, false),
                RevokeVerdict::Retry,
                "{status}"
            );
        }
        assert_eq!(RevokeError::Malformed.verdict(), RevokeVerdict::Retry);
        // Client errors that may or may not be about the token.
        for (status, code) in [
            (400, "invalid_request"),
            (400, "invalid_grant"),
            (403, "restricted_resource"),
            (404, "object_not_found"),
        ] {
            assert_eq!(
                refused(status, Some(code), false),
                RevokeVerdict::Ambiguous,
                "{status}"
            );
        }
    }
}
