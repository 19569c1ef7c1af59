//! Revoking Notion tokens: a queued revocation ends only when Notion says the token no longer
//! works, and no token escapes it, whatever races the removal of its connection.

use std::time::Duration;

use notion_connect::entity::pending_revocation;
use poem::http::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

use crate::{
    connections::{make_due, until_nothing_pending},
    helpers::{Backend, PASSWORD, TestApp, on_both_databases, spawn_app_with},
    metrics::{sample, scrape},
    mock_notion::{MockNotion, TokenReply},
};

on_both_databases!(
    a_revocation_ends_only_when_notion_says_the_token_no_longer_works,
    a_token_refreshed_while_its_connection_is_removed_is_revoked_too,
    authorizing_a_workspace_again_revokes_the_token_it_replaces,
);

async fn pending(app: &TestApp) -> u64 {
    pending_revocation::Entity::find()
        .count(&app.db)
        .await
        .unwrap()
}

/// Stops `app` and starts another instance on its database once the queued revocations are
/// due; that instance's worker makes its first pass at once. Waits until Notion has seen
/// `revokes` revocations in all, and a moment more for the outcome to be written.
async fn another_pass(
    app: &mut TestApp,
    backend: Backend,
    notion: &MockNotion,
    revokes: usize,
) -> TestApp {
    let database_url = app.database_url.clone();
    app.begin_shutdown().await.unwrap().unwrap();
    make_due(app, time::Duration::ZERO).await;
    let next = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    notion.wait_for_revokes(revokes).await;
    assert_eq!(notion.revoke_calls(), revokes);
    tokio::time::sleep(Duration::from_millis(300)).await;
    next
}

async fn a_revocation_ends_only_when_notion_says_the_token_no_longer_works(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-verdict".into(),
        access_token: "secret_verdict".into(),
    })
    .await;
    // Notion refuses our client secret (rotated, or mistyped): that says nothing about the
    // token, so the revocation stays queued.
    notion.revoke_answers_with(
        StatusCode::UNAUTHORIZED,
        r#"{"error":"invalid_client","error_description":"Client authentication failed."}"#,
    );
    let mut first = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    let user = first.signed_in("verdict").await;
    let id = first.connect_with_code(&user.access).await;
    let deleted = first
        .delete_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await;
    assert_eq!(deleted.status(), 204);
    notion.wait_for_revokes(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pending(&first).await, 1, "kept after invalid_client");
    let text = scrape(&first).await;
    let revocations = "notion_connect_notion_revocations_total";
    assert_eq!(
        sample(&text, revocations, &[("outcome", "retrying")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "notion_connect_notion_requests_total",
            &[("endpoint", "oauth_revoke"), ("outcome", "invalid_client")]
        ),
        Some(1.0),
        "{text}"
    );

    // A client error that may be about the token: Notion is asked about the token, which
    // still works, so the revocation stays queued.
    notion.revoke_answers_with(
        StatusCode::BAD_REQUEST,
        r#"{"object":"error","status":400,"code":"invalid_request","message":"Invalid request"}"#,
    );
    notion.introspection_says(true);
    let mut second = another_pass(&mut first, backend, &notion, 2).await;
    assert_eq!(notion.introspect_calls(), 1);
    assert_eq!(pending(&second).await, 1, "kept while the token is active");

    // The same kind of answer, and now the token is inactive: nothing is left to revoke.
    notion.revoke_answers_with(
        StatusCode::NOT_FOUND,
        r#"{"object":"error","status":404,"code":"object_not_found","message":"Not found"}"#,
    );
    notion.introspection_says(false);
    let third = another_pass(&mut second, backend, &notion, 3).await;
    assert_eq!(notion.introspect_calls(), 2);
    until_nothing_pending(&third.db, "an inactive token was not let go").await;

    // Notion's documented answer for a token it does not accept ends it without asking.
    notion.reply_with(TokenReply::Grant {
        bot_id: "bot-verdict-2".into(),
        access_token: "secret_verdict_2".into(),
    });
    notion.revoke_answers_with(StatusCode::BAD_REQUEST, "{}");
    let user = third.login("verdict", PASSWORD).await;
    let access = user.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = third.connect_with_code(&access).await;
    let deleted = third
        .delete_as(&format!("/api/v1/connections/{id}"), &access)
        .await;
    assert_eq!(deleted.status(), 204);
    notion.wait_for_revokes(4).await;
    until_nothing_pending(&third.db, "Notion's `400 {}` did not end it").await;
    assert_eq!(notion.introspect_calls(), 2, "no question needed");
    assert_eq!(
        notion.revoked_tokens(),
        [
            "secret_verdict",
            "secret_verdict",
            "secret_verdict",
            "secret_verdict_2"
        ]
    );
}

async fn a_token_refreshed_while_its_connection_is_removed_is_revoked_too(backend: Backend) {
    for delete_account in [false, true] {
        let notion = MockNotion::start(TokenReply::Grant {
            bot_id: "bot-race".into(),
            access_token: "secret_before".into(),
        })
        .await;
        // Long enough to remove the connection while Notion is refreshing its token.
        notion.delay_refreshes(Duration::from_millis(700));
        let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
        let user = app.signed_in("racer").await;
        let id = app.connect_with_code(&user.access).await;
        notion.expire_access_token();
        let search = tokio::spawn(
            app.client
                .get(app.url(&format!("/api/v1/connections/{id}/search")))
                .bearer_auth(&user.access)
                .send(),
        );
        for _ in 0..200 {
            if notion.refresh_calls() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(notion.refresh_calls(), 1, "the refresh is under way");

        let removed = if delete_account {
            app.client
                .delete(app.url("/api/v1/me"))
                .bearer_auth(&user.access)
                .json(&json!({ "password": PASSWORD }))
                .send()
                .await
                .unwrap()
        } else {
            app.delete_as(&format!("/api/v1/connections/{id}"), &user.access)
                .await
        };
        assert_eq!(removed.status(), 204);
        let searched = search.await.unwrap().unwrap();
        assert_eq!(
            searched.status(),
            404,
            "the search ends with its connection"
        );

        // The token the row held when it was removed, and the one the refresh got after.
        notion.wait_for_revokes(2).await;
        let mut revoked = notion.revoked_tokens();
        revoked.sort();
        assert_eq!(
            revoked,
            ["refreshed-access-1", "secret_before"],
            "account deleted: {delete_account}"
        );
        until_nothing_pending(&app.db, "the revocations were not confirmed").await;
    }
}

async fn authorizing_a_workspace_again_revokes_the_token_it_replaces(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-again".into(),
        access_token: "secret_old".into(),
    })
    .await;
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("again").await;
    let first = app.connect_with_code(&user.access).await;

    notion.reply_with(TokenReply::Grant {
        bot_id: "bot-again".into(),
        access_token: "secret_new".into(),
    });
    let second = app.connect_with_code(&user.access).await;
    assert_eq!(first, second, "the same connection, updated");
    notion.wait_for_revokes(1).await;
    until_nothing_pending(&app.db, "the replaced token was not revoked").await;
    assert_eq!(notion.revoked_tokens(), ["secret_old"]);

    // Notion handing back the token the connection already has replaces nothing.
    app.connect_with_code(&user.access).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(notion.revoked_tokens(), ["secret_old"]);
    assert_eq!(pending(&app).await, 0);
    let searched = app
        .get_as(
            &format!("/api/v1/connections/{id}/search", id = second),
            &user.access,
        )
        .await;
    assert_eq!(searched.status(), 200, "the new token is the one in use");
}
