use base64::{Engine, engine::general_purpose::STANDARD};
use sha2::{Digest, Sha256};

use crate::helpers::{Backend, on_both_databases, spawn_app};

const COMMITTED_SPEC: &str = include_str!("../../openapi/openapi.json");

#[test]
fn committed_spec_is_current() {
    let generated = notion_connect::api::spec_json();
    assert!(
        generated == COMMITTED_SPEC,
        "openapi/openapi.json is stale; regenerate it with:\n\n    \
         cargo run --quiet -- openapi > openapi/openapi.json\n"
    );
}

on_both_databases!(spec_and_docs_are_served);

async fn spec_and_docs_are_served(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served: serde_json::Value = response.json().await.unwrap();
    let committed: serde_json::Value = serde_json::from_str(COMMITTED_SPEC).unwrap();
    assert_eq!(served, committed);
    assert_eq!(served["servers"][0]["url"], "/api/v1");

    for path in ["/docs", "/docs/"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let html = response.text().await.unwrap();
        assert!(html.contains("SwaggerUIBundle"));
        // Every inline script is allowed by its hash, and nothing else is.
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap();
        assert!(!script_src.contains("unsafe-inline"), "{script_src}");
        // The page has two scripts: the bundle and the call that starts it.
        assert_eq!(script_src.matches("'sha256-").count(), 2, "{script_src}");
        let start = html.rfind("<script>").unwrap() + "<script>".len();
        let end = html.rfind("</script>").unwrap();
        let digest = Sha256::digest(&html[start..end]);
        let expected = format!("'sha256-{}'", STANDARD.encode(digest));
        assert!(script_src.contains(&expected), "{script_src}");
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}

#[test]
fn every_operation_that_can_answer_401_declares_the_bearer_scheme() {
    let spec: serde_json::Value = serde_json::from_str(COMMITTED_SPEC).unwrap();
    let mut protected = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let answers_401 = operation["responses"].get("401").is_some();
            let public = path.starts_with("/auth/");
            if answers_401 && !public {
                protected += 1;
                assert_eq!(
                    operation["security"],
                    serde_json::json!([{ "bearerAuth": [] }]),
                    "{method} {path}"
                );
            }
        }
    }
    assert!(protected >= 2, "the spec lists the protected operations");
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
}

#[test]
fn the_spec_states_what_linters_ask_for() {
    let spec: serde_json::Value = serde_json::from_str(COMMITTED_SPEC).unwrap();
    assert_eq!(spec["info"]["license"]["name"], "MIT");
    let mut public = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            // Security is explicit everywhere: public operations say `[]`.
            let security = operation["security"].as_array().expect("security");
            if security.is_empty() {
                public.push(format!("{method} {path}"));
            }
            let statuses: Vec<&String> =
                operation["responses"].as_object().unwrap().keys().collect();
            assert!(
                statuses
                    .iter()
                    .any(|s| s.starts_with('2') || *s == "default"),
                "{method} {path}: {statuses:?}"
            );
            assert!(
                statuses.iter().any(|s| s.starts_with('4')),
                "{method} {path}: {statuses:?}"
            );
        }
    }
    public.sort();
    assert_eq!(
        public,
        [
            "get /info",
            "get /notion/oauth/callback",
            "post /auth/login",
            "post /auth/logout",
            "post /auth/refresh",
            "post /auth/register",
        ]
    );
    // `nullable` qualifies a type, also beside a reference.
    let icon = &spec["components"]["schemas"]["SearchResult"]["properties"]["icon"];
    assert_eq!(icon["nullable"], true);
    assert_eq!(icon["type"], "object");
}
