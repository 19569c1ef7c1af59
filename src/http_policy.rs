//! HTTP policy: what every request may be and what every response carries. Bodies are limited
//! in size, panics become opaque 500s, errors become problem documents, and every response gets
//! the security headers and a Content-Security-Policy: the strictest one for API data, the web
//! app's own, and one for the interactive docs that admits exactly their inline scripts.

use base64::{Engine, engine::general_purpose::STANDARD};
use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Result,
    endpoint::make_sync,
    error::ResponseError,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::CatchPanic,
};
use poem_openapi::{OperationId, error::ParsePathError};
use sha2::{Digest, Sha256};
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};
use tokio::io::AsyncReadExt;

use crate::{
    api::{
        cookies::ResponseCookies,
        problem::{ApiError, BODY_LIMIT},
    },
    config::Settings,
    cors::{self, CorsPolicy},
    metrics::Metrics,
    request_log,
};

/// Everything that is not the web app or the docs is data, never a document to render.
const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The policy the app runs under: its own scripts, styles and images only, plus https images
/// (workspace and page icons come from Notion's and other hosts). No inline script or style.
pub(crate) const WEB_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' https: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// What every request passes through, outermost last: the body limit and deadline, the request
/// deadline, panic recovery, CORS, security headers (which also render errors as problem+json)
/// and the request log.
pub(crate) fn apply<E: Endpoint + 'static>(
    endpoint: E,
    settings: &Settings,
    metrics: &Arc<Metrics>,
) -> impl Endpoint<Output = Response> + use<E> {
    let cors = CorsPolicy::new(settings);
    let hsts = settings.public_url.scheme() == "https";
    let limits = settings.http;
    let metrics = metrics.clone();
    endpoint
        .around(name_path_parameters)
        .around(response_cookies)
        .around(move |next, req| read_body(next, req, limits.body_read_timeout))
        .around(move |next, req| deadline(next, req, limits.request_timeout))
        // The panic hook has logged the panic itself; the client only learns that it failed.
        .with(
            CatchPanic::new()
                .with_handler(|_| ApiError::internal("a request handler panicked").as_response()),
        )
        .around(move |next, req| cors::apply(next, req, cors.clone()))
        .around(move |next, req| security_headers(next, req, hsts))
        .around(move |next, req| request_log::log_request(next, req, metrics.clone()))
        .around(name_allowed_methods)
        // One allocation per request keeps the stack's type (and its future) shallow enough
        // for the compiler.
        .boxed()
}

/// poem-openapi names path parameters `param0`, `param1`, ... internally; an error about one
/// names it as the route template (and the document) does.
async fn name_path_parameters<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let err = match next.call(req).await {
        Ok(response) => return Ok(response.into_response()),
        Err(err) => err,
    };
    let Some(parse) = err.downcast_ref::<ParsePathError>() else {
        return Err(err);
    };
    let operation = err.data::<OperationId>().copied();
    let documented = parse
        .name
        .strip_prefix("param")
        .and_then(|n| n.parse::<usize>().ok())
        .zip(operation)
        .and_then(|(index, operation)| {
            crate::api::spec::document()
                .operations
                .path_parameter(operation.0, index)
        })
        .unwrap_or(parse.name);
    let mut named: poem::Error = ApiError::invalid_path_parameter(documented, &parse.reason).into();
    if let Some(operation) = operation {
        named.set_data(operation);
    }
    Err(named)
}

/// A 405 names the methods the path does accept, as RFC 9110 requires.
async fn name_allowed_methods<E: Endpoint>(next: E, req: Request) -> Result<Response> {
    let path = req.uri().path().to_owned();
    let mut response = next.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && !response.headers().contains_key(header::ALLOW)
        && let Some(allowed) = allowed_methods(&path)
        && let Ok(value) = HeaderValue::from_str(&allowed)
    {
        response.headers_mut().insert(header::ALLOW, value);
    }
    Ok(response)
}

/// The methods `path` accepts: the documented operations' (with `HEAD` wherever `GET` is),
/// or those of the fixed routes outside the API.
fn allowed_methods(path: &str) -> Option<String> {
    if let Some(documented) = crate::api::spec::document()
        .operations
        .allowed_methods(path)
    {
        return Some(documented);
    }
    let sandbox = path.strip_prefix(crate::notion::SANDBOX_PATH);
    Some(
        match sandbox {
            Some("/oauth/authorize") => "GET, HEAD, POST",
            Some(_) => "POST",
            None => "GET, HEAD",
        }
        .to_owned(),
    )
}

/// Reads the whole body before the handler runs: at most [`BODY_LIMIT`] bytes (a larger
/// declared `Content-Length` is refused at once) within `within`, so a client that stops sending
/// halfway gets 408 instead of holding a handler.
async fn read_body<E: Endpoint>(next: E, mut req: Request, within: Duration) -> Result<Response> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > BODY_LIMIT as u64) {
        return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT }.into());
    }
    // Without a length or a transfer coding, an HTTP/1 request has no body (HTTP/2 may stream
    // one without either, so it is read).
    let http1 = req.version() <= poem::http::Version::HTTP_11;
    if http1 && declared.unwrap_or(0) == 0 && !req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let mut buffer = Vec::new();
    let mut body = req
        .take_body()
        .into_async_read()
        .take(BODY_LIMIT as u64 + 1);
    match tokio::time::timeout(within, body.read_to_end(&mut buffer)).await {
        Err(_) => return Err(ApiError::RequestTimeout.into()),
        Ok(Err(_)) => {
            return Err(ApiError::BadRequest {
                code: "malformed_body",
                detail: "The request body could not be read.".to_owned(),
            }
            .into());
        }
        Ok(Ok(_)) if buffer.len() > BODY_LIMIT => {
            return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT }.into());
        }
        Ok(Ok(_)) => {}
    }
    req.set_body(buffer);
    next.call(req).await.map(IntoResponse::into_response)
}

/// Gives each request a [`ResponseCookies`] and adds what the handler put there.
async fn response_cookies<E: Endpoint>(next: E, mut req: Request) -> Result<Response> {
    let cookies = ResponseCookies::default();
    req.extensions_mut().insert(cookies.clone());
    let mut response = next.call(req).await?.into_response();
    for cookie in cookies.take() {
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// Why a request was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request did not finish within {0:?}")]
struct DeadlinePassed(Duration);

/// Answers 503 (with `Retry-After`) for a request still running after `limit`, and stops it.
pub(crate) async fn deadline<E: Endpoint>(
    next: E,
    req: Request,
    limit: Duration,
) -> Result<Response> {
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(result) => result.map(IntoResponse::into_response),
        Err(_) => Err(ApiError::unavailable(DeadlinePassed(limit)).into()),
    }
}

/// Headers every response carries. Endpoints that need another content policy or caching rule
/// (the web app, the docs) set their own, which are kept.
async fn security_headers<E: Endpoint>(next: E, req: Request, hsts: bool) -> Result<Response> {
    let mut response = match next.call(req).await {
        Ok(response) => response.into_response(),
        Err(err) => crate::api::problem::render_error(err).await,
    };
    let headers = response.headers_mut();
    set_default(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set_default(headers, header::REFERRER_POLICY, "no-referrer");
    set_default(headers, header::X_FRAME_OPTIONS, "DENY");
    set_default(headers, header::CONTENT_SECURITY_POLICY, API_CSP);
    set_default(headers, header::CACHE_CONTROL, "no-store");
    set_default(
        headers,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if hsts {
        set_default(
            headers,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000",
        );
    }
    Ok(response)
}

fn set_default(headers: &mut HeaderMap, name: header::HeaderName, value: &'static str) {
    headers
        .entry(name)
        .or_insert_with(|| HeaderValue::from_static(value));
}

/// Serves the interactive docs. Their page carries inline scripts, so instead of weakening the
/// policy with `'unsafe-inline'` the policy allows exactly those scripts by hash.
pub(crate) fn docs_endpoint() -> impl Endpoint<Output = Response> {
    make_sync(|_| {
        let page = DocsPage::get();
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .header(header::CONTENT_SECURITY_POLICY, page.policy.clone())
            .body(page.html.clone())
    })
}

/// The docs page and its policy, built when the page is first asked for and then shared by
/// every request and every app in the process (the page is about 1.5 MB).
struct DocsPage {
    html: bytes::Bytes,
    policy: HeaderValue,
}

impl DocsPage {
    fn get() -> &'static Self {
        static PAGE: OnceLock<DocsPage> = OnceLock::new();
        PAGE.get_or_init(|| {
            let html = crate::api::spec::docs_html();
            let script_hashes: Vec<String> = inline_scripts(&html)
                .into_iter()
                .map(|script| format!("'sha256-{}'", STANDARD.encode(Sha256::digest(script))))
                .collect();
            let policy = format!(
                "default-src 'none'; script-src {}; style-src 'self' 'unsafe-inline'; \
                 img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                script_hashes.join(" ")
            );
            Self {
                html: bytes::Bytes::from(html.into_bytes().into_boxed_slice()),
                policy: HeaderValue::from_str(&policy).expect("hashes are header-safe"),
            }
        })
    }
}

/// The bodies of the `<script>` elements of a page, exactly as the browser hashes them. As in
/// HTML, a script ends at the first `</script>`, whatever its text contains.
fn inline_scripts(html: &str) -> Vec<&str> {
    let mut scripts = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let Some(open_end) = rest[start..].find('>') else {
            break;
        };
        let body = &rest[start + open_end + 1..];
        let Some(end) = body.find("</script>") else {
            break;
        };
        scripts.push(&body[..end]);
        rest = &body[end + "</script>".len()..];
    }
    scripts
}

#[cfg(test)]
mod tests {
    use poem::{Route, get, handler, test::TestClient};
    use poem_openapi::{Object, OpenApi, OpenApiService, param::Query, payload::Json};

    use super::*;

    #[test]
    fn finds_inline_script_bodies() {
        let html = "<head><script charset=\"UTF-8\">a('<script')</script></head>\
                    <script>\nb()\n</script>";
        assert_eq!(inline_scripts(html), ["a('<script')", "\nb()\n"]);
    }

    #[derive(Object)]
    struct Greeting {
        name: String,
    }

    struct Probe;

    #[OpenApi]
    impl Probe {
        #[oai(path = "/greet", method = "post")]
        async fn greet(&self, body: Json<Greeting>) -> Json<String> {
            Json(body.0.name)
        }

        #[oai(path = "/count", method = "get")]
        async fn count(&self, n: Query<u8>) -> Json<u8> {
            Json(n.0)
        }
    }

    #[handler]
    fn explode() -> &'static str {
        panic!("handler bug")
    }

    /// The production middleware around a probe API that can fail in every way poem can.
    fn probe_client() -> TestClient<impl Endpoint> {
        let settings = crate::config::Settings::from_source(|name| {
            match name {
                "JWT_SECRET" => Some("MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="),
                "TOKEN_ENCRYPTION_KEYS" => Some("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
                _ => None,
            }
            .map(str::to_owned)
        })
        .unwrap();
        let routes = Route::new()
            .nest("/api", OpenApiService::new(Probe, "probe", "1"))
            .at("/panic", get(explode));
        TestClient::new(apply(routes, &settings, &Metrics::new()))
    }

    async fn problem_of(response: poem::test::TestResponse) -> (u16, serde_json::Value) {
        let status = response.0.status().as_u16();
        assert_eq!(
            response.0.content_type(),
            Some(crate::api::problem::PROBLEM_JSON)
        );
        let body = response.0.into_body().into_string().await.unwrap();
        (status, serde_json::from_str(&body).unwrap())
    }

    #[tokio::test]
    async fn a_panic_becomes_an_opaque_500_problem() {
        let client = probe_client();
        let (status, problem) = problem_of(client.get("/panic").send().await).await;
        assert_eq!(status, 500);
        assert_eq!(problem["code"], "internal_error");
        assert!(!problem.to_string().contains("handler bug"));
    }

    #[tokio::test]
    async fn unparsable_json_is_a_400_problem() {
        let client = probe_client();
        let response = client
            .post("/api/greet")
            .content_type("application/json")
            .body("{\"name\": ")
            .send()
            .await;
        let (status, problem) = problem_of(response).await;
        assert_eq!(status, 400);
        assert_eq!(problem["code"], "malformed_body");
    }

    #[tokio::test]
    async fn a_wrong_content_type_is_a_415_problem() {
        let client = probe_client();
        let response = client
            .post("/api/greet")
            .content_type("text/plain")
            .body("name")
            .send()
            .await;
        let (status, problem) = problem_of(response).await;
        assert_eq!(status, 415);
        assert_eq!(problem["code"], "unsupported_media_type");
    }

    #[tokio::test]
    async fn an_unparsable_query_parameter_is_a_422_problem() {
        let client = probe_client();
        for query in ["/api/count?n=many", "/api/count?n=300", "/api/count"] {
            let (status, problem) = problem_of(client.get(query).send().await).await;
            assert_eq!(status, 422, "{query}");
            assert_eq!(problem["code"], "invalid_parameter", "{query}");
        }
        client
            .get("/api/count?n=7")
            .send()
            .await
            .assert_status_is_ok();
    }
}
