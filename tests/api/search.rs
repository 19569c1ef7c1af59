use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use notion_connect::{entity::notion_connection, sandbox::workspace, store::connections};
use sea_orm::EntityTrait;
use serde_json::Value;

use crate::{
    helpers::{
        Backend, TestApp, Tokens, assert_problem, on_both_databases, retry_after, spawn_app,
        spawn_app_with,
    },
    mock_notion::{MockNotion, SearchReply, TokenReply},
};

/// Searches connection `id` with the query string `params`.
async fn search(app: &TestApp, tokens: &Tokens, id: &str, params: &str) -> reqwest::Response {
    app.get_as(
        &format!("/api/v1/connections/{id}/search?{params}"),
        &tokens.access,
    )
    .await
}

async fn results(app: &TestApp, tokens: &Tokens, id: &str, params: &str) -> Value {
    let response = search(app, tokens, id, params).await;
    assert_eq!(response.status(), 200, "{params}");
    response.json().await.unwrap()
}

/// Every result of a search, following cursors.
async fn all_results(app: &TestApp, tokens: &Tokens, id: &str, params: &str) -> Vec<Value> {
    let mut collected = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_params = match &cursor {
            Some(c) => format!("{params}&cursor={c}"),
            None => params.to_owned(),
        };
        let page = results(app, tokens, id, &page_params).await;
        collected.extend(page["results"].as_array().unwrap().iter().cloned());
        if page["has_more"] == false {
            assert_eq!(page["next_cursor"], Value::Null);
            return collected;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
}

on_both_databases!(
    paging_through_the_sandbox_returns_every_item_exactly_once,
    filter_sort_and_query_change_the_results,
    titles_and_icons_are_simplified,
    searching_another_users_connection_is_not_found,
    invalid_parameters_are_refused_before_calling_notion,
    rate_limits_and_server_errors_are_retried_within_bounds,
    an_absurd_retry_after_is_clamped,
    unusable_answers_and_silence_become_502_and_504,
    an_expired_token_is_refreshed_once_for_many_concurrent_searches,
    a_connection_without_a_refresh_token_needs_reauthorization,
    two_instances_on_one_database_refresh_once,
    refreshed_tokens_are_stored_only_while_the_lease_is_held,
    a_connection_deleted_through_another_instance_is_never_used,
    a_cursor_notion_does_not_recognise_is_an_invalid_parameter,
    calls_beyond_the_concurrency_cap_wait_within_their_deadline,
);

async fn a_cursor_notion_does_not_recognise_is_an_invalid_parameter(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("cursory").await;
    let id = app.connect_sandbox(&user.access).await;

    for cursor in ["0", "not-a-cursor-from-this-search"] {
        assert_problem(
            search(&app, &user, &id, &format!("cursor={cursor}")).await,
            422,
            "invalid_parameter",
        )
        .await;
    }
    // A real cursor still works.
    let first = results(&app, &user, &id, "page_size=5").await;
    let next = first["next_cursor"].as_str().unwrap();
    results(&app, &user, &id, &format!("page_size=5&cursor={next}")).await;
}

async fn paging_through_the_sandbox_returns_every_item_exactly_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("paige").await;
    let id = app.connect_sandbox(&user.access).await;

    let items = all_results(&app, &user, &id, "page_size=37").await;

    let ids: HashSet<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), items.len(), "no repeats");
    assert_eq!(items.len(), workspace::SIZE, "nothing missing");
    let first_page = results(&app, &user, &id, "page_size=37").await;
    assert_eq!(first_page["results"].as_array().unwrap().len(), 37);
    let default_page = results(&app, &user, &id, "").await;
    assert_eq!(default_page["results"].as_array().unwrap().len(), 20);

    let row = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.last_used_at.is_some(), "last_used_at is updated");
}

async fn filter_sort_and_query_change_the_results(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("felix").await;
    let id = app.connect_sandbox(&user.access).await;
    let seeded = workspace::items();

    let sources = all_results(&app, &user, &id, "filter=data_source&page_size=100").await;
    assert_eq!(
        sources.len(),
        seeded.iter().filter(|i| i.object == "data_source").count()
    );
    assert!(sources.iter().all(|i| i["object"] == "data_source"));
    let pages = all_results(&app, &user, &id, "filter=page&page_size=100").await;
    assert_eq!(pages.len() + sources.len(), seeded.len());
    assert!(pages.iter().all(|i| i["object"] == "page"));

    let newest = results(&app, &user, &id, "sort=descending&page_size=5").await;
    let oldest = results(&app, &user, &id, "sort=ascending&page_size=5").await;
    assert_eq!(newest["results"][0]["id"], seeded[0].id.as_str());
    assert_eq!(
        oldest["results"][0]["id"],
        seeded[seeded.len() - 1].id.as_str()
    );

    let expected = seeded
        .iter()
        .filter(|i| !i.partial && i.title.to_lowercase().contains("roadmap"))
        .count();
    assert!(expected > 0);
    let found = all_results(&app, &user, &id, "query=ROADMAP&page_size=100").await;
    assert_eq!(found.len(), expected);
    assert!(found.iter().all(|i| {
        i["title"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("roadmap")
    }));
}

async fn titles_and_icons_are_simplified(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("tilda").await;
    let id = app.connect_sandbox(&user.access).await;
    let items = all_results(&app, &user, &id, "page_size=100").await;
    let find = |seed: &workspace::SeedItem| {
        items
            .iter()
            .find(|i| i["id"] == seed.id.as_str())
            .unwrap_or_else(|| panic!("{} missing", seed.id))
            .clone()
    };
    let seeded = workspace::items();

    let named = seeded
        .iter()
        .find(|i| {
            i.object == "page" && !i.partial && i.title_property == "Name" && !i.title.is_empty()
        })
        .unwrap();
    assert_eq!(find(named)["title"], named.title.as_str());
    let source = seeded
        .iter()
        .find(|i| i.object == "data_source" && !i.title.is_empty())
        .unwrap();
    assert_eq!(find(source)["title"], source.title.as_str());
    assert_eq!(find(source)["object"], "data_source");
    let untitled = seeded
        .iter()
        .find(|i| i.title.is_empty() && !i.partial)
        .unwrap();
    assert_eq!(find(untitled)["title"], "Untitled");
    let partial = find(seeded.iter().find(|i| i.partial).unwrap());
    assert_eq!(partial["title"], "Untitled");
    assert_eq!(partial["url"], Value::Null);
    assert_eq!(partial["icon"], Value::Null);
    assert_eq!(partial["in_trash"], false);
    let trashed = seeded.iter().find(|i| i.in_trash && !i.partial).unwrap();
    assert_eq!(find(trashed)["in_trash"], true);

    let icon_of = |kind: &str| {
        let seed = seeded
            .iter()
            .find(|i| !i.partial && i.icon.as_ref().is_some_and(|icon| icon["type"] == kind))
            .unwrap();
        find(seed)["icon"].clone()
    };
    let emoji = icon_of("emoji");
    assert_eq!(emoji["type"], "emoji");
    assert!(emoji["emoji"].as_str().is_some());
    let external = icon_of("external");
    assert_eq!(external["type"], "url");
    assert!(
        external["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml,%3Csvg")
    );
    let file = icon_of("file");
    assert_eq!(file["type"], "url");
    assert!(
        file["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml,%3Csvg")
    );
}

async fn searching_another_users_connection_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.signed_in("olga").await;
    let other = app.signed_in("otto").await;
    let id = app.connect_sandbox(&owner.access).await;
    assert_problem(search(&app, &other, &id, "").await, 404, "not_found").await;
    assert_eq!(search(&app, &owner, &id, "").await.status(), 200);
}

/// An app on the mock, with a connected workspace. Returns the app, the user and the id.
async fn connected_to_mock(
    backend: Backend,
    notion: &MockNotion,
    reply: TokenReply,
) -> (TestApp, Tokens, String) {
    connected_to_mock_with(backend, notion, reply, |_| {}).await
}

/// [`connected_to_mock`], with `configure` changing the app's settings last.
async fn connected_to_mock_with(
    backend: Backend,
    notion: &MockNotion,
    reply: TokenReply,
    configure: impl FnOnce(&mut std::collections::HashMap<String, String>),
) -> (TestApp, Tokens, String) {
    notion.reply_with(reply);
    let app = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("NOTION_TIMEOUT".into(), "3s".into());
        vars.insert("NOTION_RATE_LIMIT".into(), "1000".into());
        configure(vars);
    })
    .await;
    let user = app.signed_in("mocked").await;
    let id = app.connect_with_code(&user.access).await;
    (app, user, id)
}

fn grant() -> TokenReply {
    TokenReply::Grant {
        bot_id: "bot-s".into(),
        access_token: "access-1".into(),
    }
}

async fn invalid_parameters_are_refused_before_calling_notion(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (app, user, id) = connected_to_mock(backend, &notion, grant()).await;

    for params in [
        "page_size=0",
        "page_size=101",
        "page_size=ten",
        "filter=database",
        "filter=",
        "sort=newest",
        "cursor=",
    ] {
        assert_problem(
            search(&app, &user, &id, params).await,
            422,
            "invalid_parameter",
        )
        .await;
    }
    assert_eq!(notion.search_calls(), 0);
    assert_eq!(
        search(&app, &user, &id, "page_size=100&filter=page&sort=ascending")
            .await
            .status(),
        200
    );
    assert_eq!(notion.search_calls(), 1);
}

async fn rate_limits_and_server_errors_are_retried_within_bounds(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (app, user, id) = connected_to_mock(backend, &notion, grant()).await;

    notion.script_search([SearchReply::json(429, Some(1))]);
    let started = Instant::now();
    let page = results(&app, &user, &id, "").await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for Retry-After"
    );
    assert_eq!(page["results"][0]["title"], "Mock page");
    assert_eq!(notion.search_calls(), 2);

    notion.script_search([SearchReply::json(503, None)]);
    assert_eq!(
        results(&app, &user, &id, "").await["results"][0]["id"],
        "mock-page"
    );
    assert_eq!(notion.search_calls(), 4);

    notion.script_search([
        SearchReply::json(529, Some(1)),
        SearchReply::json(502, None),
    ]);
    assert_eq!(search(&app, &user, &id, "").await.status(), 200);
    assert_eq!(notion.search_calls(), 7);

    notion.script_search(std::iter::repeat_n(SearchReply::json(429, Some(1)), 3));
    let limited = search(&app, &user, &id, "").await;
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_problem(limited, 429, "notion_rate_limited").await;
    assert_eq!(notion.search_calls(), 10, "three attempts");

    notion.script_search(std::iter::repeat_n(SearchReply::json(500, None), 3));
    assert_problem(search(&app, &user, &id, "").await, 502, "notion_error").await;
    assert_eq!(notion.search_calls(), 13, "bounded attempts");

    // A Retry-After beyond the deadline is not waited for, and it holds the connection back:
    // the next search is refused without calling Notion until the pause ends.
    notion.script_search([SearchReply::json(429, Some(120))]);
    let started = Instant::now();
    let limited = search(&app, &user, &id, "").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(limited.headers()["retry-after"], "120");
    assert_eq!(limited.status(), 429);
    assert_eq!(notion.search_calls(), 14);
    let held_back = search(&app, &user, &id, "").await;
    let wait = retry_after(&held_back);
    assert!((115..=120).contains(&wait), "{wait}");
    assert_problem(held_back, 429, "notion_rate_limited").await;
    assert_eq!(
        notion.search_calls(),
        14,
        "Notion was not called during the pause"
    );
}

async fn an_absurd_retry_after_is_clamped(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (app, user, id) = connected_to_mock(backend, &notion, grant()).await;

    // Clamped before any arithmetic: no overflow, no 500, and a pause of an hour at most.
    notion.script_search([SearchReply::json(429, Some(u64::MAX))]);
    let limited = search(&app, &user, &id, "").await;
    assert_eq!(limited.headers()["retry-after"], "3600");
    assert_problem(limited, 429, "notion_rate_limited").await;
    let held_back = search(&app, &user, &id, "").await;
    let wait = retry_after(&held_back);
    assert!((3595..=3600).contains(&wait), "{wait}");
    assert_eq!(notion.search_calls(), 1);

    // Still healthy: the service answers, and its other endpoints work.
    assert_eq!(
        app.get_as("/api/v1/connections", &user.access)
            .await
            .status(),
        200
    );
}

async fn calls_beyond_the_concurrency_cap_wait_within_their_deadline(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (app, user, id) = connected_to_mock_with(backend, &notion, grant(), |vars| {
        vars.insert("NOTION_TIMEOUT".into(), "4s".into());
        vars.insert("NOTION_CONCURRENCY".into(), "1".into());
    })
    .await;
    notion.script_search([SearchReply::Hang, SearchReply::Hang]);

    let first = search(&app, &user, &id, "");
    let second = async {
        while notion.search_calls() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Half-way through the first call's deadline, a second search queues behind it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        let calls_while_queued = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            notion.search_calls()
        };
        let (response, calls) = tokio::join!(search(&app, &user, &id, ""), calls_while_queued);
        (response, started.elapsed(), calls)
    };
    let (first, (second, took, calls_while_queued)) = tokio::join!(first, second);

    assert_eq!(
        calls_while_queued, 1,
        "the second search waits for the only slot instead of calling Notion"
    );
    assert_problem(first, 504, "notion_timeout").await;
    assert_problem(second, 504, "notion_timeout").await;
    assert_eq!(notion.search_calls(), 2, "it called once the slot was free");
    assert!(
        took < Duration::from_millis(5500),
        "the wait for a slot counts against the search's one deadline: {took:?}"
    );
    assert_eq!(
        search(&app, &user, &id, "").await.status(),
        200,
        "the slots are free again"
    );
}

async fn unusable_answers_and_silence_become_502_and_504(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (app, user, id) = connected_to_mock(backend, &notion, grant()).await;

    notion.script_search(std::iter::repeat_n(
        SearchReply::Status {
            status: 502,
            retry_after: None,
            body: "<html><body>Bad gateway</body></html>",
            content_type: "text/html",
        },
        3,
    ));
    let bad = search(&app, &user, &id, "").await;
    let problem = assert_problem(bad, 502, "notion_error").await;
    assert!(
        !problem.to_string().contains("html"),
        "no upstream body reaches the client"
    );

    notion.script_search([SearchReply::Status {
        status: 200,
        retry_after: None,
        body: "<html>not json</html>",
        content_type: "text/html",
    }]);
    assert_problem(search(&app, &user, &id, "").await, 502, "notion_error").await;

    notion.script_search([SearchReply::json(400, None)]);
    assert_problem(search(&app, &user, &id, "").await, 502, "notion_error").await;

    notion.script_search([SearchReply::Hang]);
    let started = Instant::now();
    assert_problem(search(&app, &user, &id, "").await, 504, "notion_timeout").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(8),
        "{took:?}"
    );

    assert_eq!(
        search(&app, &user, &id, "").await.status(),
        200,
        "still healthy"
    );
}

async fn an_expired_token_is_refreshed_once_for_many_concurrent_searches(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (app, user, id) = connected_to_mock(backend, &notion, grant()).await;
    let before = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    notion.expire_access_token();

    let searches = (0..10).map(|_| search(&app, &user, &id, ""));
    let responses = futures_util::future::join_all(searches).await;

    for response in responses {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(notion.refresh_calls(), 1, "exactly one refresh");
    let after = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        after.access_token, before.access_token,
        "the new access token is stored"
    );
    assert_ne!(
        after.refresh_token, before.refresh_token,
        "the rotated refresh token is stored"
    );
    assert_eq!(after.status.as_str(), "active");
    assert_eq!(after.refreshing_until, None, "the lease is released");
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(30);
    assert!(
        !connections::claim_refresh_lease(&app.db, after.id, &before.access_token, until)
            .await
            .unwrap(),
        "a caller that saw the old token rejected may not spend the rotated refresh token"
    );
    assert!(
        connections::claim_refresh_lease(&app.db, after.id, &after.access_token, until)
            .await
            .unwrap(),
        "the current token can still be refreshed"
    );
    assert_eq!(
        notion.valid_access_token().as_deref(),
        Some("refreshed-access-1")
    );
    let connection: Value = app
        .get_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(connection["status"], "active");
}

async fn a_connection_without_a_refresh_token_needs_reauthorization(backend: Backend) {
    let reply = TokenReply::GrantWithoutRefresh {
        bot_id: "bot-old".into(),
        access_token: "legacy-access".into(),
    };
    let notion = MockNotion::start(reply.clone()).await;
    let (app, user, id) = connected_to_mock(backend, &notion, reply).await;
    assert_eq!(search(&app, &user, &id, "").await.status(), 200);
    notion.expire_access_token();

    assert_problem(
        search(&app, &user, &id, "").await,
        409,
        "connection_needs_reauth",
    )
    .await;

    let connection: Value = app
        .get_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(connection["status"], "needs_reauth");
    let calls = notion.search_calls();
    assert_problem(
        search(&app, &user, &id, "").await,
        409,
        "connection_needs_reauth",
    )
    .await;
    assert_eq!(
        notion.search_calls(),
        calls,
        "no call to Notion for a connection known to be dead"
    );
    assert_eq!(notion.refresh_calls(), 0);
}

async fn two_instances_on_one_database_refresh_once(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (first, user, id) = connected_to_mock(backend, &notion, grant()).await;
    let database_url = first.database_url.clone();
    let second = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("NOTION_TIMEOUT".into(), "3s".into());
        vars.insert("NOTION_RATE_LIMIT".into(), "1000".into());
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    notion.expire_access_token();

    let searches = (0..10).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        search(app, &user, &id, "")
    });
    let responses = futures_util::future::join_all(searches).await;

    for response in responses {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        notion.refresh_calls(),
        1,
        "one refresh across both instances"
    );
}

async fn a_connection_deleted_through_another_instance_is_never_used(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (first, user, id) = connected_to_mock_with(backend, &notion, grant(), |vars| {
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    // Alone on its database, the first instance keeps the connections it searches in memory.
    first.wait_until_alone(true).await;
    assert_eq!(search(&first, &user, &id, "").await.status(), 200);
    assert_eq!(search(&first, &user, &id, "").await.status(), 200);
    // On SQLite the service is one instance: the deletion goes through the same one.
    let mut second = None;
    if backend == Backend::Postgres {
        let database_url = first.database_url.clone();
        let joined = spawn_app_with(backend, |vars| {
            notion.configure(vars);
            vars.insert("DATABASE_URL".into(), database_url);
        })
        .await;
        // Its start waited for the first to stop being alone.
        first.wait_until_alone(false).await;
        assert_eq!(search(&joined, &user, &id, "").await.status(), 200);
        second = Some(joined);
    }
    let deleting = second.as_ref().unwrap_or(&first);
    let calls = notion.search_calls();

    let deleted = deleting
        .delete_as(&format!("/api/v1/connections/{id}"), &user.access)
        .await;
    assert_eq!(deleted.status(), 204);

    for app in [deleting, &first] {
        assert_problem(search(app, &user, &id, "").await, 404, "not_found").await;
    }
    if let Some(mut second) = second {
        // Alone again once the other has left, the first has forgotten what it kept before.
        second.begin_shutdown().await.unwrap().unwrap();
        first.wait_until_alone(true).await;
        assert_problem(search(&first, &user, &id, "").await, 404, "not_found").await;
    }
    assert_eq!(
        notion.search_calls(),
        calls,
        "no instance called Notion with the deleted connection's token"
    );
}

async fn refreshed_tokens_are_stored_only_while_the_lease_is_held(backend: Backend) {
    use sea_orm::{ActiveModelTrait, Set};

    let notion = MockNotion::start(grant()).await;
    let (app, user, id) = connected_to_mock(backend, &notion, grant()).await;
    let load = || async {
        notion_connection::Entity::find()
            .one(&app.db)
            .await
            .unwrap()
            .unwrap()
    };
    let before = load().await;
    notion.expire_access_token();

    let searching = tokio::spawn({
        let request = app
            .client
            .get(app.url(&format!("/api/v1/connections/{id}/search")))
            .bearer_auth(&user.access);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    // The lease is taken for longer than a refresh can take (NOTION_TIMEOUT is 3 s here)...
    let leased = loop {
        let row = load().await;
        if let Some(until) = row.refreshing_until {
            break (row, until);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (row, until) = leased;
    let remaining = until - time::OffsetDateTime::now_utc();
    assert!(
        remaining > time::Duration::seconds(30),
        "lease of {remaining}"
    );

    // ...and while the refresh is under way, the lease passes to someone else (as if this one
    // had run out).
    let theirs = time::OffsetDateTime::from_unix_timestamp(
        (time::OffsetDateTime::now_utc() + time::Duration::hours(1)).unix_timestamp(),
    )
    .unwrap();
    let mut taken: notion_connection::ActiveModel = row.into();
    taken.refreshing_until = Set(Some(theirs));
    taken.update(&app.db).await.unwrap();

    // The refreshed pair is discarded: the row keeps what it had and is not blamed.
    let status = searching.await.unwrap();
    assert_eq!(notion.refresh_calls(), 1);
    let after = load().await;
    assert_eq!(after.access_token, before.access_token);
    assert_eq!(after.refresh_token, before.refresh_token);
    assert_eq!(after.refreshing_until, Some(theirs), "their lease stands");
    assert_eq!(after.status.as_str(), "active");
    assert_eq!(
        status, 504,
        "it waited for the other holder until its deadline"
    );
}
