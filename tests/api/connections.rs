use notion_connect::{
    crypto::{Binding, KeyRing, SealedField, TokenCipher},
    entity::{notion_connection, pending_revocation, session, session_family, user},
};
use poem::http::StatusCode;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::Value;

use crate::{
    helpers::{
        Backend, PASSWORD, TEST_KEYS, Tokens, assert_problem, on_both_databases, spawn_app,
        spawn_app_with,
    },
    mock_notion::{MockNotion, TokenReply},
};

on_both_databases!(
    another_users_connection_is_not_found,
    deleting_revokes_once_and_removes_the_row_even_when_revoke_fails,
    tokens_and_emails_are_never_stored_in_clear,
    a_ciphertext_moved_to_another_row_does_not_decrypt,
    admin_connection_listing_pages_through_every_connection_once,
    an_unreadable_connection_is_shown_as_such_and_the_rest_keeps_working,
    a_failed_revocation_is_retried_by_any_instance_until_notion_confirms,
    a_revocation_failing_for_days_is_given_up,
    deleting_the_account_removes_everything_and_revokes_every_token,
);

async fn another_users_connection_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.signed_in("wanda").await;
    let intruder = app.signed_in("xavier").await;
    let id = app.connect_sandbox(&owner.access).await;
    let path = format!("/api/v1/connections/{id}");

    assert_problem(app.get_as(&path, &intruder.access).await, 404, "not_found").await;
    let delete = app.delete_as(&path, &intruder.access).await;
    assert_problem(delete, 404, "not_found").await;
    let missing = format!("/api/v1/connections/{}", uuid::Uuid::now_v7());
    assert_problem(app.get_as(&missing, &owner.access).await, 404, "not_found").await;
    let list: Value = app
        .get_as("/api/v1/connections", &intruder.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], Value::Array(vec![]));

    assert_eq!(
        app.get_as(&path, &owner.access).await.status(),
        200,
        "still there"
    );
    assert_problem(app.get(&path).await, 401, "unauthorized").await;
}

async fn deleting_revokes_once_and_removes_the_row_even_when_revoke_fails(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-del".into(),
        access_token: "secret_to_revoke".into(),
    })
    .await;
    notion.revoke_answers(StatusCode::INTERNAL_SERVER_ERROR);
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("yara").await;
    let id = app.connect_with_code(&user.access).await;

    let response = app
        .delete_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await;

    assert_eq!(response.status(), 204);
    notion.wait_for_revokes(1).await;
    assert_eq!(notion.revoke_calls(), 1);
    assert_eq!(
        notion_connection::Entity::find()
            .count(&app.db)
            .await
            .unwrap(),
        0
    );
    let again = app
        .delete_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await;
    assert_problem(again, 404, "not_found").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(notion.revoke_calls(), 1);
}

async fn tokens_and_emails_are_never_stored_in_clear(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("zoe").await;
    app.connect_sandbox(&user.access).await;

    let row = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let cipher = TokenCipher::new(KeyRing::parse(TEST_KEYS).unwrap());
    let bind = |field| Binding::new(row.user_id, &row.bot_id, field);
    let access = cipher
        .decrypt(&row.access_token, bind(SealedField::AccessToken))
        .unwrap();
    let refresh = cipher
        .decrypt(
            row.refresh_token.as_deref().unwrap(),
            bind(SealedField::RefreshToken),
        )
        .unwrap();
    assert!(access.expose().starts_with("secret_sbx_"));
    assert!(refresh.expose().starts_with("nrt_sbx_"));
    let email = "sandbox.user@example.com";
    let secrets = [access.expose().as_str(), refresh.expose().as_str(), email];

    let row_text = format!("{row:?}");
    for secret in secrets {
        assert!(!row_text.contains(secret), "{secret} is in the row");
    }
    assert_eq!(row.key_id, "test1");

    // The database file itself, for SQLite (with its write-ahead log).
    if backend == Backend::Sqlite {
        for file in ["test.db", "test.db-wal"] {
            let path = app.dir.path().join(file);
            let bytes = std::fs::read(&path).unwrap_or_default();
            let content = String::from_utf8_lossy(&bytes);
            for secret in secrets {
                assert!(!content.contains(secret), "{secret} is in {file}");
            }
        }
    }
}

async fn a_ciphertext_moved_to_another_row_does_not_decrypt(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.signed_in("amir").await;
    let second = app.signed_in("bea").await;
    let first_id = app.connect_sandbox(&first.access).await;
    let second_id = app.connect_sandbox(&second.access).await;
    let load = |id: &str| {
        notion_connection::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap()).one(&app.db)
    };
    let victim = load(&first_id).await.unwrap().unwrap();
    let attacker = load(&second_id).await.unwrap().unwrap();

    // Copy the victim's e-mail ciphertext into the attacker's row: it does not open, so the
    // row shows as unreadable, without the e-mail, and nothing leaks.
    let mut row: notion_connection::ActiveModel = attacker.clone().into();
    row.owner_email = Set(victim.owner_email.clone());
    row.update(&app.db).await.unwrap();
    let response = app
        .get_as(&format!("/api/v1/connections/{second_id}"), &second.access)
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(!body.contains("sandbox.user@example.com"));
    let shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["status"], "unreadable");

    let cipher = TokenCipher::new(KeyRing::parse(TEST_KEYS).unwrap());
    let moved = cipher.decrypt(
        &victim.access_token,
        Binding::new(attacker.user_id, &attacker.bot_id, SealedField::AccessToken),
    );
    assert!(moved.is_err());
    let other_column = cipher.decrypt(
        &victim.access_token,
        Binding::new(victim.user_id, &victim.bot_id, SealedField::RefreshToken),
    );
    assert!(other_column.is_err());
}

async fn admin_connection_listing_pages_through_every_connection_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = crate::cli::create_user_with_cli(&app, "conn-admin", true);
    assert!(admin.status.success());
    let admin = Tokens::from_response(app.login("conn-admin", PASSWORD).await).await;
    let member = app.signed_in("member").await;
    let member_id = app.connect_sandbox(&member.access).await;
    let template = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    for i in 0..249 {
        let row = notion_connection::ActiveModel {
            id: Set(uuid::Uuid::now_v7()),
            bot_id: Set(format!("bot-{i}")),
            ..template.clone().into()
        };
        notion_connection::Entity::insert(row)
            .exec(&app.db)
            .await
            .unwrap();
    }

    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/connections?limit=33&cursor={c}"),
            None => "/api/v1/admin/connections?limit=33".to_owned(),
        };
        let page: Value = app.get_as(&path, &admin.access).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "repeated {item}"
            );
            assert_eq!(item["username"], "member");
            let text = item.to_string();
            assert!(!text.contains("access_token") && !text.contains("secret_sbx_"));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250);
    assert!(seen.contains(&member_id));

    let member_user_id = notion_connection::Entity::find()
        .filter(notion_connection::Column::BotId.eq("bot-0"))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .user_id;
    let filtered: Value = app
        .get_as(
            &format!("/api/v1/admin/connections?user_id={member_user_id}&limit=5"),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 5);
    let nobody: Value = app
        .get_as(
            &format!("/api/v1/admin/connections?user_id={}", uuid::Uuid::now_v7()),
            &admin.access,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(nobody["items"], Value::Array(vec![]));

    let forbidden = app
        .get_as("/api/v1/admin/connections", &member.access)
        .await;
    assert_problem(forbidden, 403, "forbidden").await;
}

async fn an_unreadable_connection_is_shown_as_such_and_the_rest_keeps_working(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("keys").await;
    let id = app.connect_sandbox(&user.access).await;
    // A second connection of the same user, as another integration would make.
    let row = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let ours = TokenCipher::new(KeyRing::parse(TEST_KEYS).unwrap());
    let seal = |field, plain: &str| {
        ours.encrypt(plain, Binding::new(row.user_id, "another-bot", field))
            .unwrap()
    };
    let sound = notion_connection::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        bot_id: Set("another-bot".into()),
        access_token: Set(seal(SealedField::AccessToken, "secret_other")),
        refresh_token: Set(Some(seal(SealedField::RefreshToken, "nrt_other"))),
        owner_email: Set(None),
        ..row.clone().into()
    };
    notion_connection::Entity::insert(sound)
        .exec(&app.db)
        .await
        .unwrap();

    // The first one's e-mail was sealed with a key that has since left the ring.
    let other_ring = TokenCipher::new(
        KeyRing::parse("gone:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap(),
    );
    let foreign = other_ring
        .encrypt(
            "owner@example.com",
            Binding::new(row.user_id, &row.bot_id, SealedField::OwnerEmail),
        )
        .unwrap();
    let mut broken: notion_connection::ActiveModel = row.into();
    broken.owner_email = Set(Some(foreign));
    broken.update(&app.db).await.unwrap();

    let list: Value = app
        .get_as("/api/v1/connections", &user.access)
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["unreadable", "active"], "{list}");

    let search = app
        .get_as(&format!("/api/v1/connections/{id}/search"), &user.access)
        .await;
    assert_problem(search, 409, "connection_unreadable").await;

    // Connecting the workspace again seals everything afresh.
    assert_eq!(app.connect_sandbox(&user.access).await, id);
    let fixed: Value = app
        .get_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fixed["status"], "active");
    let search = app
        .get_as(&format!("/api/v1/connections/{id}/search"), &user.access)
        .await;
    assert_eq!(search.status(), 200);
}

/// A connection to the mock whose revocation at Notion failed once and is now pending.
async fn pending_after_a_failed_revocation(
    backend: Backend,
    notion: &MockNotion,
) -> crate::helpers::TestApp {
    notion.revoke_answers(StatusCode::SERVICE_UNAVAILABLE);
    let app = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let user = app.signed_in("leaving").await;
    let id = app.connect_with_code(&user.access).await;
    let deleted = app
        .delete_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await;
    assert_eq!(deleted.status(), 204);
    notion.wait_for_revokes(1).await;
    let pending = pending_revocation::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "kept for another try");
    assert_eq!(pending[0].attempts, 1);
    assert!(
        !pending[0].access_token.contains("secret_revoke"),
        "the token stays sealed while it waits"
    );
    app
}

/// Waits (briefly) until no revocation is pending; fails the test with `what` otherwise.
pub(crate) async fn until_nothing_pending(db: &sea_orm::DatabaseConnection, what: &str) {
    for _ in 0..100 {
        if pending_revocation::Entity::find().count(db).await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{what}");
}

/// Makes every pending revocation due now, as if its pause had passed; `age` backdates it.
pub(crate) async fn make_due(app: &crate::helpers::TestApp, age: time::Duration) {
    for row in pending_revocation::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
    {
        let now = time::OffsetDateTime::now_utc();
        let mut due: pending_revocation::ActiveModel = row.clone().into();
        due.next_attempt_at = Set(now - time::Duration::seconds(1));
        due.created_at = Set(row.created_at - age);
        due.update(&app.db).await.unwrap();
    }
}

async fn a_failed_revocation_is_retried_by_any_instance_until_notion_confirms(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-revoke".into(),
        access_token: "secret_revoke".into(),
    })
    .await;
    let mut first = pending_after_a_failed_revocation(backend, &notion).await;
    let database_url = first.database_url.clone();
    // The instance that queued it stops; Notion comes back; another instance takes over.
    first.begin_shutdown().await.unwrap().unwrap();
    notion.revoke_answers(StatusCode::OK);
    make_due(&first, time::Duration::ZERO).await;
    let second = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    notion.wait_for_revokes(2).await;
    assert_eq!(notion.revoke_calls(), 2);
    until_nothing_pending(&second.db, "the confirmed revocation was not removed").await;
}

async fn a_revocation_failing_for_days_is_given_up(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-revoke".into(),
        access_token: "secret_revoke".into(),
    })
    .await;
    let mut first = pending_after_a_failed_revocation(backend, &notion).await;
    let database_url = first.database_url.clone();
    first.begin_shutdown().await.unwrap().unwrap();
    make_due(&first, time::Duration::days(4)).await;
    let second = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    notion.wait_for_revokes(2).await;
    until_nothing_pending(&second.db, "the revocation was not given up").await;
    // One last attempt was made, then it was dropped (and logged), not retried.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(notion.revoke_calls(), 2);
}

async fn deleting_the_account_removes_everything_and_revokes_every_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let leaving = app.signed_in("leaving").await;
    let staying = app.signed_in("staying").await;
    app.connect_sandbox(&leaving.access).await;
    app.connect_sandbox(&staying.access).await;
    let cipher = TokenCipher::new(KeyRing::parse(TEST_KEYS).unwrap());
    let rows = notion_connection::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    let leaving_id: uuid::Uuid = leaving.body["user"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let token_of = |row: &notion_connection::Model| {
        cipher
            .decrypt(
                &row.access_token,
                Binding::new(row.user_id, &row.bot_id, SealedField::AccessToken),
            )
            .unwrap()
            .expose()
            .clone()
    };
    let leaving_token = token_of(rows.iter().find(|r| r.user_id == leaving_id).unwrap());
    let staying_token = token_of(rows.iter().find(|r| r.user_id != leaving_id).unwrap());

    let delete = |password: &str| {
        app.client
            .delete(app.url("/api/v1/me"))
            .bearer_auth(&leaving.access)
            .json(&serde_json::json!({ "password": password }))
            .send()
    };
    // The wrong password changes nothing.
    assert_problem(
        delete("not my password").await.unwrap(),
        403,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.get_as("/api/v1/me", &leaving.access).await.status(),
        200
    );

    assert_eq!(delete(PASSWORD).await.unwrap().status(), 204);
    assert_eq!(
        app.get_as("/api/v1/me", &leaving.access).await.status(),
        401
    );
    let refreshed = app
        .post_with_cookie("/api/v1/auth/refresh", &leaving.refresh)
        .await;
    assert_eq!(refreshed.status(), 401);
    assert_eq!(app.login("leaving", PASSWORD).await.status(), 401);
    let users: Vec<String> = user::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(users, ["staying"]);
    for (table, count) in [
        (
            "connections",
            notion_connection::Entity::find()
                .filter(notion_connection::Column::UserId.eq(leaving_id))
                .count(&app.db)
                .await
                .unwrap(),
        ),
        (
            "sessions",
            session::Entity::find()
                .filter(session::Column::UserId.eq(leaving_id))
                .count(&app.db)
                .await
                .unwrap(),
        ),
        (
            "families",
            session_family::Entity::find()
                .filter(session_family::Column::UserId.eq(leaving_id))
                .count(&app.db)
                .await
                .unwrap(),
        ),
    ] {
        assert_eq!(count, 0, "{table} left behind");
    }

    // The worker revokes the token at Notion (here the sandbox), and only that one.
    let introspect = |token: String| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url("/sandbox/notion/v1/oauth/introspect"))
                .basic_auth("notion-connect-sandbox", Some(&app.notion_client_secret))
                .json(&serde_json::json!({ "token": token }))
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()["active"] == true
        }
    };
    let mut revoked = false;
    for _ in 0..100 {
        if !introspect(leaving_token.clone()).await {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(revoked, "the deleted account's token still works at Notion");
    assert!(
        introspect(staying_token).await,
        "other users' tokens are untouched"
    );
    until_nothing_pending(&app.db, "the confirmed revocation was not removed").await;
}
