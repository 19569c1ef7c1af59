//! Cross-origin requests: the bundled app's own origin always works, listed origins get CORS
//! headers for exactly what the API uses, and other origins are refused.

use serde_json::json;

use crate::helpers::{
    Backend, PASSWORD, TestApp, assert_problem, on_both_databases, spawn_app, spawn_app_with,
};

on_both_databases!(
    with_allowed_origins_the_own_origin_still_works_and_strangers_are_refused,
    preflights_allow_only_the_methods_and_headers_the_api_uses,
    without_allowed_origins_nothing_cross_origin_is_granted,
);

const OWN: &str = "http://localhost:8000";
const PARTNER: &str = "https://app.example.com";

async fn spawn_with_partner(backend: Backend) -> TestApp {
    spawn_app_with(backend, |vars| {
        vars.insert("CORS_ALLOWED_ORIGINS".into(), PARTNER.into());
    })
    .await
}

async fn login_from(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .header("origin", origin)
        .json(&json!({ "username": "traveller", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn with_allowed_origins_the_own_origin_still_works_and_strangers_are_refused(
    backend: Backend,
) {
    let app = spawn_with_partner(backend).await;
    assert_eq!(app.register("traveller", PASSWORD).await.status(), 201);

    // The bundled app, served from PUBLIC_URL, sends its own origin with every POST.
    let own = login_from(&app, OWN).await;
    assert_eq!(own.status(), 200);
    assert_eq!(header(&own, "access-control-allow-origin"), None);

    let partner = login_from(&app, PARTNER).await;
    assert_eq!(partner.status(), 200);
    assert_eq!(
        header(&partner, "access-control-allow-origin"),
        Some(PARTNER)
    );
    assert_eq!(
        header(&partner, "access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        header(&partner, "access-control-expose-headers"),
        Some("Retry-After")
    );
    assert!(
        partner
            .headers()
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Origin"))
    );

    // A failure is still a problem document the partner's page can read.
    let unauthorized = app
        .client
        .get(app.url("/api/v1/me"))
        .header("origin", PARTNER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&unauthorized, "access-control-allow-origin"),
        Some(PARTNER)
    );
    assert_problem(unauthorized, 401, "unauthorized").await;

    let stranger = login_from(&app, "https://evil.example").await;
    assert_eq!(header(&stranger, "access-control-allow-origin"), None);
    assert_problem(stranger, 403, "origin_not_allowed").await;
}

async fn preflight(app: &TestApp, method: &str, headers: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/login"))
        .header("origin", PARTNER)
        .header("access-control-request-method", method);
    if let Some(headers) = headers {
        request = request.header("access-control-request-headers", headers);
    }
    request.send().await.unwrap()
}

async fn preflights_allow_only_the_methods_and_headers_the_api_uses(backend: Backend) {
    let app = spawn_with_partner(backend).await;

    let granted = preflight(&app, "POST", Some("content-type, authorization")).await;
    assert_eq!(granted.status(), 204);
    assert_eq!(
        header(&granted, "access-control-allow-origin"),
        Some(PARTNER)
    );
    let methods = header(&granted, "access-control-allow-methods").unwrap();
    assert_eq!(methods, "GET, HEAD, POST, DELETE");
    assert_eq!(
        header(&granted, "access-control-allow-headers"),
        Some("Authorization, Content-Type")
    );
    assert_eq!(header(&granted, "access-control-max-age"), Some("600"));
    assert_eq!(preflight(&app, "DELETE", None).await.status(), 204);

    for method in ["TRACE", "CONNECT", "PUT", "PATCH"] {
        let refused = preflight(&app, method, None).await;
        assert_eq!(header(&refused, "access-control-allow-origin"), None);
        assert_problem(refused, 403, "preflight_refused").await;
    }
    for headers in ["x-evil", "content-type, x-evil", "cookie"] {
        let refused = preflight(&app, "POST", Some(headers)).await;
        assert_problem(refused, 403, "preflight_refused").await;
    }
    let stranger = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/v1/auth/login"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_problem(stranger, 403, "origin_not_allowed").await;
}

async fn without_allowed_origins_nothing_cross_origin_is_granted(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(app.register("traveller", PASSWORD).await.status(), 201);
    assert_eq!(login_from(&app, OWN).await.status(), 200);
    let foreign = login_from(&app, PARTNER).await;
    assert_eq!(header(&foreign, "access-control-allow-origin"), None);
    let preflight = preflight(&app, "POST", Some("content-type")).await;
    assert_eq!(header(&preflight, "access-control-allow-origin"), None);
    assert_eq!(header(&preflight, "access-control-allow-methods"), None);
}
