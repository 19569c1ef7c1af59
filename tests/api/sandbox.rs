use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, on_both_databases, spawn_app},
    notion_oauth::query_of,
};

on_both_databases!(
    the_sandbox_token_endpoint_behaves_like_notions,
    the_sandbox_search_answers_in_notions_shape,
);

const REDIRECT_URI: &str = "http://localhost:8000/api/v1/notion/oauth/callback";
const CLIENT_ID: &str = "notion-connect-sandbox";

/// A fresh authorization code from the sandbox's consent page.
async fn code(app: &TestApp, access_token: &str) -> String {
    let flow = app.start_flow(access_token).await;
    let location = app.decide(&flow, "allow").await;
    query_of(&location)["code"].clone()
}

/// Sends a request to the sandbox with HTTP Basic client authentication.
async fn post(secret: &str, request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request
        .basic_auth(CLIENT_ID, Some(secret))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn the_sandbox_token_endpoint_behaves_like_notions(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("sandy").await;
    let secret = app.notion_client_secret.clone();
    let token_url = app.url("/sandbox/notion/v1/oauth/token");
    let exchange = |code: &str, redirect_uri: &str| {
        app.client.post(&token_url).json(&json!({
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }))
    };

    let first = code(&app, &user.access).await;
    let (status, body) = post("wrong-secret", exchange(&first, REDIRECT_URI)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let (status, grant) = post(&secret, exchange(&first, REDIRECT_URI)).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["token_type"], "bearer");
    assert_eq!(grant["workspace_name"], "Sandbox Workspace");
    assert!(
        grant["access_token"]
            .as_str()
            .unwrap()
            .starts_with("secret_")
    );
    let (status, reused) = post(&secret, exchange(&first, REDIRECT_URI)).await;
    assert_eq!(
        (status, reused["error"].as_str()),
        (400, Some("invalid_grant")),
        "single use"
    );

    let second = code(&app, &user.access).await;
    let (status, mismatch) = post(
        &secret,
        exchange(&second, "http://localhost:8000/elsewhere"),
    )
    .await;
    assert_eq!(
        (status, mismatch["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A form-encoded refresh rotates the pair.
    let refresh_token = grant["refresh_token"].as_str().unwrap().to_owned();
    let refresh = || {
        app.client.post(&token_url).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ])
    };
    let (status, rotated) = post(&secret, refresh()).await;
    assert_eq!(status, 200);
    assert_ne!(rotated["refresh_token"], grant["refresh_token"]);
    let (status, stale) = post(&secret, refresh()).await;
    assert_eq!(
        (status, stale["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let access = rotated["access_token"].as_str().unwrap().to_owned();
    let introspect = || {
        app.client
            .post(app.url("/sandbox/notion/v1/oauth/introspect"))
            .json(&json!({ "token": access }))
    };
    let (status, live) = post(&secret, introspect()).await;
    assert_eq!((status, &live["active"]), (200, &json!(true)));
    let revoke = app
        .client
        .post(app.url("/sandbox/notion/v1/oauth/revoke"))
        .json(&json!({ "token": access }));
    let (status, revoked) = post(&secret, revoke).await;
    assert_eq!((status, revoked), (200, json!({})));
    let (_, dead) = post(&secret, introspect()).await;
    assert_eq!(dead["active"], json!(false));
    let revoke_again = app
        .client
        .post(app.url("/sandbox/notion/v1/oauth/revoke"))
        .json(&json!({ "token": access }));
    let (status, unknown) = post(&secret, revoke_again).await;
    assert_eq!(
        (status, unknown),
        (400, json!({})),
        "Notion's answer for a dead token"
    );

    let (status, bad_json) = post(
        &secret,
        app.client
            .post(&token_url)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!((status, bad_json["object"].as_str()), (400, Some("error")));
    assert_eq!(bad_json["code"], "invalid_json");
}

async fn the_sandbox_search_answers_in_notions_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("shape").await;
    let code = code(&app, &user.access).await;
    let (status, grant) = post(
        &app.notion_client_secret,
        app.client
            .post(app.url("/sandbox/notion/v1/oauth/token"))
            .json(&json!({
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
            })),
    )
    .await;
    assert_eq!(status, 200, "{grant}");
    let access_token = grant["access_token"].as_str().unwrap();
    let search = |token: &str, body: Value| {
        app.client
            .post(app.url("/sandbox/notion/v1/search"))
            .bearer_auth(token)
            .header("Notion-Version", "2026-03-11")
            .json(&body)
    };

    let response = search(access_token, json!({ "page_size": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["object"], "list");
    assert_eq!(page["type"], "page_or_data_source");
    assert_eq!(page["page_or_data_source"], json!({}));
    assert_eq!(page["has_more"], true);
    assert!(page["request_id"].is_string());
    let results = page["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r["id"].is_string()));
    let cursor = page["next_cursor"].as_str().unwrap();

    let last: Value = search(
        access_token,
        json!({ "page_size": 100, "start_cursor": cursor, "query": "zzz-nothing" }),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(last["results"], json!([]));
    assert_eq!(last["next_cursor"], Value::Null);
    assert_eq!(last["has_more"], false);

    // A crafted cursor far past the end is an empty last page, not an overflow.
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let crafted = URL_SAFE_NO_PAD.encode(format!("sbx:{}", usize::MAX));
    let response = search(
        access_token,
        json!({ "page_size": 100, "start_cursor": crafted }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let beyond: Value = response.json().await.unwrap();
    assert_eq!(beyond["results"], json!([]));
    assert_eq!(beyond["has_more"], false);

    let refused = search("secret_not-issued", json!({})).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(
        (error["object"].as_str(), error["code"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
}
