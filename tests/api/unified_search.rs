//! `GET /api/v1/search`: one search across all of a user's workspaces.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use notion_connect::sandbox::workspace;
use serde_json::Value;

use crate::{
    helpers::{
        Backend, TestApp, assert_problem, on_both_databases, retry_after, spawn_app, spawn_app_with,
    },
    mock_notion::{MockNotion, SearchReply, TokenReply},
};

on_both_databases!(
    three_workspaces_page_through_everything_exactly_once_in_both_orders,
    each_failing_workspace_is_reported_and_the_others_answer_within_the_deadline,
    only_the_callers_connections_can_be_named_and_cursors_cannot_be_forged,
    results_fetched_for_one_page_are_not_fetched_again_nor_lost_on_another_instance,
);

/// The sandbox's three workspaces, connected by one user: their connection ids, in order.
async fn three_workspaces(app: &TestApp, access: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for index in 0..3 {
        ids.push(app.connect_sandbox_workspace(access, index).await);
    }
    ids
}

async fn search(app: &TestApp, access: &str, query: &str) -> reqwest::Response {
    app.get_as(&format!("/api/v1/search?{query}"), access).await
}

/// Every page of a search, followed to the end.
async fn every_page(app: &TestApp, access: &str, query: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{query}&cursor={}", urlencode(cursor)),
            None => query.to_owned(),
        };
        let response = search(app, access, &url).await;
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.unwrap();
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        assert_eq!(page["has_more"], cursor.is_some());
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
        assert!(pages.len() < 200, "the search never ends");
    }
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn results(pages: &[Value]) -> Vec<&Value> {
    pages
        .iter()
        .flat_map(|page| page["results"].as_array().unwrap())
        .collect()
}

async fn three_workspaces_page_through_everything_exactly_once_in_both_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.signed_in("explorer").await;
    let connections = three_workspaces(&app, &user.access).await;
    // Which seeded items each connection's workspace holds, in the sandbox's own order (newest
    // first).
    let seeded: Vec<Vec<String>> = (0..3)
        .map(|i| {
            let mut items: Vec<_> = workspace::items_of(i).iter().collect();
            items.sort_by_key(|item| std::cmp::Reverse(item.last_edited_time));
            items.into_iter().map(|item| item.id.clone()).collect()
        })
        .collect();
    let total: usize = seeded.iter().map(Vec::len).sum();

    for (query, page_size) in [
        ("page_size=37", 37),
        ("page_size=7&sort=descending", 7),
        ("page_size=37&sort=descending", 37),
        ("page_size=100&sort=ascending", 100),
    ] {
        let pages = every_page(&app, &user.access, query).await;
        let found = results(&pages);
        // Everything, once, each from its own workspace.
        assert_eq!(found.len(), total, "{query}");
        let ids: HashSet<&str> = found.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), total, "{query}: a result came twice");
        for result in &found {
            let lane = connections
                .iter()
                .position(|c| c == result["connection_id"].as_str().unwrap())
                .unwrap();
            assert!(seeded[lane].contains(&result["id"].as_str().unwrap().to_owned()));
            let name = ["Sandbox Workspace", "Sandbox Team", "Sandbox Archive"][lane];
            assert_eq!(result["workspace_name"], name);
        }
        for page in &pages[..pages.len() - 1] {
            assert!(!page["results"].as_array().unwrap().is_empty(), "{query}");
            assert!(page["results"].as_array().unwrap().len() <= page_size);
        }
        let per_lane = |lane: usize| -> Vec<String> {
            found
                .iter()
                .filter(|r| r["connection_id"] == connections[lane].as_str())
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        };
        if query.contains("sort=") {
            // One order across workspaces, by last-edited time.
            let times: Vec<&str> = found
                .iter()
                .filter_map(|r| r["last_edited_time"].as_str())
                .collect();
            let mut sorted = times.clone();
            sorted.sort();
            if query.contains("descending") {
                sorted.reverse();
            }
            assert_eq!(times, sorted, "{query}");
        } else {
            // Each workspace in its own (Notion's) order, and every workspace from the start.
            for (lane, items) in seeded.iter().enumerate() {
                assert_eq!(&per_lane(lane), items, "{query}");
            }
            let first: HashSet<&str> = pages[0]["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["connection_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                first.len(),
                3,
                "every workspace has results on the first page"
            );
        }
        let statuses: Vec<&str> = pages[0]["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["ok", "ok", "ok"], "{query}");
    }

    // Narrowed to some workspaces, with a query and a filter.
    let narrowed = every_page(
        &app,
        &user.access,
        &format!(
            "query=team&filter=page&connection_id={}&connection_id={}",
            connections[1], connections[2]
        ),
    )
    .await;
    let found = results(&narrowed);
    assert!(!found.is_empty());
    for result in found {
        assert_ne!(result["connection_id"], connections[0].as_str());
        assert_eq!(result["object"], "page");
        let title = result["title"].as_str().unwrap().to_lowercase();
        assert!(title.contains("team"), "{title}");
    }

    // No connection, nothing to search: an empty page.
    let loner = app.signed_in("loner").await;
    let empty: Value = search(&app, &loner.access, "").await.json().await.unwrap();
    assert_eq!(empty["results"], Value::Array(vec![]));
    assert_eq!(empty["connections"], Value::Array(vec![]));
    assert_eq!(empty["has_more"], false);
}

async fn each_failing_workspace_is_reported_and_the_others_answer_within_the_deadline(
    backend: Backend,
) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-fine".into(),
        access_token: "fine".into(),
    })
    .await;
    let app = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("NOTION_TIMEOUT".into(), "5s".into());
        vars.insert("SEARCH_FANOUT_TIMEOUT".into(), "1s".into());
        vars.insert("NOTION_RATE_LIMIT".into(), "1000".into());
    })
    .await;
    let user = app.signed_in("many").await;
    let mut ids = HashMap::new();
    for (token, reply) in [
        ("fine", None),
        ("revoked", Some(SearchReply::json(401, None))),
        ("limited", Some(SearchReply::json(429, Some(30)))),
        ("slow", Some(SearchReply::Hang)),
    ] {
        let grant = if token == "revoked" {
            // Without a refresh token, a refused token cannot be renewed.
            TokenReply::GrantWithoutRefresh {
                bot_id: format!("bot-{token}"),
                access_token: token.into(),
            }
        } else {
            TokenReply::Grant {
                bot_id: format!("bot-{token}"),
                access_token: token.into(),
            }
        };
        notion.reply_with(grant);
        ids.insert(token, app.connect_with_code(&user.access).await);
        notion.serve_workspace(token, 30);
        if let Some(reply) = reply {
            notion.answer_searches_of(token, reply);
        }
    }
    let status_of = |page: &Value, token: &str| -> (String, Value) {
        let entry = page["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["connection_id"] == ids[token].as_str())
            .cloned()
            .unwrap_or(Value::Null);
        (
            entry["status"].as_str().unwrap_or("absent").to_owned(),
            entry["retry_after"].clone(),
        )
    };

    let started = Instant::now();
    let response = search(&app, &user.access, "page_size=12").await;
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert!(
        took < Duration::from_secs(4),
        "the slow workspace held the page: {took:?}"
    );
    // The results of the one that answered; each other one with what happened to it.
    let found = page["results"].as_array().unwrap();
    assert_eq!(found.len(), 3, "its share of the page: {page}");
    assert!(
        found
            .iter()
            .all(|r| r["connection_id"] == ids["fine"].as_str())
    );
    assert_eq!(status_of(&page, "fine").0, "ok");
    assert_eq!(status_of(&page, "revoked").0, "needs_reauth");
    assert_eq!(
        status_of(&page, "limited"),
        ("rate_limited".into(), 30.into())
    );
    assert_eq!(status_of(&page, "slow").0, "timeout");
    assert_eq!(page["has_more"], true);

    // The next page asks again those that may answer now, from where they were; the one that
    // needs reconnecting is not asked again.
    notion.serve_workspace("slow", 30);
    notion.answer_searches_of(
        "slow",
        SearchReply::Status {
            status: 200,
            retry_after: None,
            body: r#"{"object":"list","results":[],"next_cursor":null,"has_more":false}"#,
            content_type: "application/json",
        },
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let next: Value = search(
        &app,
        &user.access,
        &format!("page_size=12&cursor={}", urlencode(cursor)),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(status_of(&next, "revoked").0, "absent");
    assert_eq!(status_of(&next, "slow").0, "ok");
    assert_eq!(status_of(&next, "limited").0, "rate_limited");
    let fine: Vec<&str> = next["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(fine, ["fine-3", "fine-4", "fine-5", "fine-6"], "{next}");

    // When every workspace searched fails, so does the search.
    let limited = search(
        &app,
        &user.access,
        &format!("connection_id={}", ids["limited"]),
    )
    .await;
    // The workspace has been held back since its first 429: what is left of those 30 s.
    let wait = retry_after(&limited);
    assert!((20..=30).contains(&wait), "{wait}");
    assert_problem(limited, 429, "notion_rate_limited").await;
    let revoked = search(
        &app,
        &user.access,
        &format!("connection_id={}", ids["revoked"]),
    )
    .await;
    assert_problem(revoked, 409, "connection_needs_reauth").await;
}

async fn only_the_callers_connections_can_be_named_and_cursors_cannot_be_forged(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.signed_in("owner").await;
    let stranger = app.signed_in("stranger").await;
    let mine = app.connect_sandbox_workspace(&owner.access, 1).await;
    let theirs = app.connect_sandbox_workspace(&stranger.access, 1).await;

    let foreign = search(&app, &owner.access, &format!("connection_id={theirs}")).await;
    assert_problem(foreign, 404, "not_found").await;
    let mixed = format!("connection_id={mine}&connection_id={theirs}");
    assert_problem(search(&app, &owner.access, &mixed).await, 404, "not_found").await;
    let missing = format!("connection_id={}", uuid::Uuid::now_v7());
    assert_problem(
        search(&app, &owner.access, &missing).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        search(&app, &owner.access, "connection_id=zzz").await,
        422,
        "invalid_parameter",
    )
    .await;
    assert_problem(search(&app, "not a token", "").await, 401, "unauthorized").await;

    let first: Value = search(&app, &owner.access, "page_size=5")
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let with = |cursor: &str, rest: &str| format!("page_size=5&cursor={}{rest}", urlencode(cursor));
    assert_eq!(
        search(&app, &owner.access, &with(&cursor, ""))
            .await
            .status(),
        200
    );

    let (payload, signature) = cursor.split_once('.').unwrap();
    let mut changed = payload.to_owned().into_bytes();
    changed[3] = if changed[3] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}.{signature}", String::from_utf8(changed).unwrap());
    for (who, cursor, rest) in [
        (&owner, tampered.as_str(), ""),
        (&owner, "not-a-cursor", ""),
        (&owner, cursor.as_str(), "&query=other"),
        (&owner, cursor.as_str(), "&sort=ascending"),
        (&stranger, cursor.as_str(), ""),
    ] {
        let response = search(&app, &who.access, &with(cursor, rest)).await;
        let problem = assert_problem(response, 422, "invalid_parameter").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("cursor"),
            "{problem}"
        );
    }
}

async fn results_fetched_for_one_page_are_not_fetched_again_nor_lost_on_another_instance(
    backend: Backend,
) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-a".into(),
        access_token: "a".into(),
    })
    .await;
    let configure = |vars: &mut HashMap<String, String>| {
        notion.configure(vars);
        vars.insert("NOTION_RATE_LIMIT".into(), "1000".into());
    };
    let first = spawn_app_with(backend, configure).await;
    let user = first.signed_in("thrifty").await;
    for token in ["a", "b"] {
        notion.reply_with(TokenReply::Grant {
            bot_id: format!("bot-{token}"),
            access_token: token.into(),
        });
        first.connect_with_code(&user.access).await;
        notion.serve_workspace(token, 25);
    }

    // Both workspaces' results were edited at the same moments: sorted, they alternate, and
    // each page returns only part of what it fetched from each.
    let pages = every_page(&first, &user.access, "page_size=10&sort=descending").await;
    let ids: Vec<&str> = results(&pages)
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..25)
        .flat_map(|n| [format!("a-{n}"), format!("b-{n}")])
        .collect();
    assert_eq!(ids, expected);
    // Every page of Notion's was asked for once: what one page fetched and did not return
    // served the next.
    let asked = notion.pages_asked();
    let starts: HashSet<(String, Option<String>)> = asked
        .iter()
        .map(|(token, start, _)| (token.clone(), start.clone()))
        .collect();
    assert_eq!(
        starts.len(),
        asked.len(),
        "a page was fetched twice: {asked:?}"
    );
    let fetched: u64 = asked.iter().map(|(_, _, size)| size).sum();
    assert!(fetched <= 50 + 2 * 10, "{fetched} results asked for");

    // Another instance, which does not hold what the first kept, goes on from the cursor.
    let database_url = first.database_url.clone();
    let second = spawn_app_with(backend, |vars| {
        configure(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    let page: Value = search(&first, &user.access, "page_size=10&sort=descending")
        .await
        .json()
        .await
        .unwrap();
    let mut ids: Vec<String> = results(std::slice::from_ref(&page))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut cursor = page["next_cursor"].as_str().map(str::to_owned);
    while let Some(current) = cursor {
        let page: Value = search(
            &second,
            &user.access,
            &format!(
                "page_size=10&sort=descending&cursor={}",
                urlencode(&current)
            ),
        )
        .await
        .json()
        .await
        .unwrap();
        ids.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(ids, expected);
}
