use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, assert_problem, on_both_databases, spawn_app};

on_both_databases!(
    unknown_routes_are_problem_json_404,
    wrong_methods_are_problem_json_405,
    a_malformed_path_parameter_is_named_as_documented,
    bodies_over_64_kib_are_refused_with_413,
    chunked_bodies_over_64_kib_are_refused_with_413,
    small_bodies_and_requests_without_a_body_pass_the_limit,
    api_responses_carry_security_headers_and_a_request_id,
    a_safe_client_request_id_is_kept_and_an_unsafe_one_replaced,
);

async fn unknown_routes_are_problem_json_404(backend: Backend) {
    let app = spawn_app(backend).await;

    for path in ["/api/v1/nothing-here", "/nothing-here", "/docs-not"] {
        let response = app.get(path).await;
        assert_problem(response, 404, "not_found").await;
    }
}

async fn wrong_methods_are_problem_json_405(backend: Backend) {
    let app = spawn_app(backend).await;

    // Each 405 names what the path accepts (RFC 9110).
    for (method, path, allowed) in [
        ("DELETE", "/healthz", "GET, HEAD"),
        ("POST", "/api/v1/openapi.json", "GET, HEAD"),
        ("TRACE", "/api/v1/me", "DELETE, GET, HEAD"),
        (
            "PUT",
            "/api/v1/connections/0195d7a6-3b1c-7cc3-9f1e-2f1f4c6d7e8f",
            "DELETE, GET, HEAD",
        ),
        ("GET", "/api/v1/auth/login", "POST"),
        ("PATCH", "/", "GET, HEAD"),
    ] {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allowed),
            "{method} {path}"
        );
        assert_problem(response, 405, "method_not_allowed").await;
    }
}

async fn a_malformed_path_parameter_is_named_as_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("pathy").await;

    let response = app
        .get_as("/api/v1/connections/not-an-id", &user.access)
        .await;
    assert_eq!(response.status(), 422);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_parameter");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.starts_with("Path parameter `id`"), "{detail}");
    assert!(!detail.contains("param0"), "{detail}");
}

async fn bodies_over_64_kib_are_refused_with_413(backend: Backend) {
    let app = spawn_app(backend).await;

    let refused = app
        .post_declaring_length("/api/v1/anything", 64 * 1024 + 1)
        .await;

    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
    let problem: serde_json::Value = serde_json::from_str(body).expect("a problem body");
    assert_eq!(problem["code"], "payload_too_large");
    assert!(problem["detail"].as_str().unwrap().contains("65536"));
    assert!(
        refused
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json")
    );
}

async fn chunked_bodies_over_64_kib_are_refused_with_413(backend: Backend) {
    let app = spawn_app(backend).await;
    // One byte over the limit, so nothing but the final empty chunk is left unread.
    let mut chunks = vec![vec![b'x'; 16 * 1024]; 4];
    chunks.push(vec![b'x']);
    let stream = futures_stream(chunks);

    let response = app
        .client
        .post(app.url("/healthz"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();

    assert_problem(response, 413, "payload_too_large").await;
}

async fn small_bodies_and_requests_without_a_body_pass_the_limit(backend: Backend) {
    let app = spawn_app(backend).await;

    // A chunked body under the limit reaches the router, which then answers for the route.
    let stream = futures_stream(vec![vec![b'x'; 1024]; 4]);
    let response = app
        .client
        .post(app.url("/healthz"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_problem(response, 405, "method_not_allowed").await;

    // A raw request with neither Content-Length nor Transfer-Encoding.
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    socket.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
}

async fn api_responses_carry_security_headers_and_a_request_id(backend: Backend) {
    let app = spawn_app(backend).await;

    for path in ["/healthz", "/api/v1/openapi.json", "/api/v1/missing"] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        let id = headers["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{path}: {id}");
    }
    let first = app.get("/healthz").await.headers()["x-request-id"].clone();
    let second = app.get("/healthz").await.headers()["x-request-id"].clone();
    assert_ne!(first, second);
}

async fn a_safe_client_request_id_is_kept_and_an_unsafe_one_replaced(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "edge-proxy.1234_abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "edge-proxy.1234_abc");

    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "has spaces and \"quotes\"")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

/// A body stream of the given chunks, sent with chunked transfer encoding.
fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}
