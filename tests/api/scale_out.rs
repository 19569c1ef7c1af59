//! Two instances of the service on one database, as a deployment scaled out behind a load
//! balancer runs them. (Refreshing once across instances, a logout reaching the other instance
//! within a second, and a deletion through one instance reaching the other are tested with
//! their features, in `search.rs` and `auth.rs`.)
//!
//! Notion's rate budget is shared through PostgreSQL; on SQLite the service is one instance, so
//! there the same tests send every request to one instance, whose budget is in memory.

use std::time::Duration;

use notion_connect::entity::notion_connection;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, Statement};

use crate::{
    helpers::{
        Backend, TestApp, assert_problem, on_both_databases, postgres_available, retry_after,
        spawn_app_with,
    },
    mock_notion::{MockNotion, SearchReply, TokenReply},
    notion_oauth::fragment_query,
};

on_both_databases!(
    a_flow_started_on_one_instance_completes_on_another,
    one_callback_sent_to_two_instances_at_once_connects_once,
    instances_share_one_pace_per_connection,
    turns_taken_alone_hold_for_an_instance_that_joins,
    a_rate_limit_seen_by_one_instance_holds_back_the_others,
);

/// Two instances on PostgreSQL, one on SQLite, with these settings on top of the stand-in's.
async fn sharing_instances(
    backend: Backend,
    notion: &MockNotion,
    settings: &[(&str, &str)],
) -> Vec<TestApp> {
    let configure = |vars: &mut std::collections::HashMap<String, String>| {
        notion.configure(vars);
        for (name, value) in settings {
            vars.insert((*name).into(), (*value).into());
        }
    };
    let first = spawn_app_with(backend, configure).await;
    if backend == Backend::Sqlite {
        return vec![first];
    }
    let database_url = first.database_url.clone();
    let second = spawn_app_with(backend, |vars| {
        configure(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    vec![first, second]
}

async fn two_instances(backend: Backend, notion: &MockNotion) -> (TestApp, TestApp) {
    let first = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let database_url = first.database_url.clone();
    let second = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    (first, second)
}

fn grant() -> TokenReply {
    TokenReply::Grant {
        bot_id: "bot-scaled".into(),
        access_token: "secret_scaled".into(),
    }
}

async fn a_flow_started_on_one_instance_completes_on_another(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (first, second) = two_instances(backend, &notion).await;
    let user = first.signed_in("roaming").await;

    let flow = first.start_flow(&user.access).await;
    let landed = second
        .callback(&format!("code=c&state={}", flow.state), Some(&flow.binding))
        .await;

    let id = fragment_query(&landed)
        .get("connected")
        .unwrap_or_else(|| panic!("not connected: {landed}"))
        .clone();
    let listed: serde_json::Value = first
        .get_as("/api/v1/connections", &user.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str(), "{listed}");
    let searched = first
        .get_as(&format!("/api/v1/connections/{id}/search"), &user.access)
        .await;
    assert_eq!(searched.status(), 200);
}

async fn one_callback_sent_to_two_instances_at_once_connects_once(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    // A slow exchange keeps the window between claiming the state and storing the connection
    // wide open.
    notion.delay_exchanges(Duration::from_millis(300));
    let (first, second) = two_instances(backend, &notion).await;
    let user = first.signed_in("twice").await;
    let flow = first.start_flow(&user.access).await;
    let query = format!("code=the-code&state={}", flow.state);

    let attempts = (0..6).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        app.callback(&query, Some(&flow.binding))
    });
    let landed = futures_util::future::join_all(attempts).await;

    let connected = landed
        .iter()
        .filter(|url| fragment_query(url).contains_key("connected"))
        .count();
    assert_eq!(connected, 1, "{landed:?}");
    assert_eq!(notion.token_calls(), 1, "one code exchange");
    let stored = notion_connection::Entity::find()
        .count(&first.db)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}

async fn instances_share_one_pace_per_connection(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let per_second = 4;
    let apps = sharing_instances(
        backend,
        &notion,
        &[("NOTION_RATE_LIMIT", "4"), ("NOTION_TIMEOUT", "2s")],
    )
    .await;
    let user = apps[0].signed_in("eager").await;
    let id = apps[0].connect_with_code(&user.access).await;

    // Far more searches at once than the connection's turns within their deadline, spread over
    // the instances.
    let path = format!("/api/v1/connections/{id}/search");
    let searches = (0..24).map(|i| apps[i % apps.len()].get_as(&path, &user.access));
    let answers = futures_util::future::join_all(searches).await;

    let mut served = 0;
    for answer in answers {
        match answer.status().as_u16() {
            200 => served += 1,
            429 => {
                assert!(answer.headers().contains_key("retry-after"));
                assert_problem(answer, 429, "notion_rate_limited").await;
            }
            status => panic!("unexpected {status}"),
        }
    }
    let times = notion.search_times();
    assert_eq!(times.len(), served, "each search served called Notion once");
    assert!(served >= 2, "searches waited for their turns: {served}");
    assert!(served < 24, "the turns ran out before the deadline");
    // However the calls lined up, no one-second window holds more than the limit.
    assert_paced(&times, per_second);
}

/// Asserts that no one-second window holds more than `per_second` of the calls made at `times`:
/// each call is more than a second after the one `per_second` before it.
fn assert_paced(times: &[std::time::Instant], per_second: usize) {
    for (earlier, later) in times.iter().zip(times.iter().skip(per_second)) {
        assert!(
            later.duration_since(*earlier) > Duration::from_secs(1),
            "{} calls within {:?}",
            per_second + 1,
            later.duration_since(*earlier)
        );
    }
}

async fn turns_taken_alone_hold_for_an_instance_that_joins(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let per_second = 4;
    let settings = |vars: &mut std::collections::HashMap<String, String>| {
        notion.configure(vars);
        vars.insert("NOTION_RATE_LIMIT".into(), per_second.to_string());
        vars.insert("NOTION_TIMEOUT".into(), "4s".into());
    };
    let first = spawn_app_with(backend, |vars| {
        settings(vars);
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    let user = first.signed_in("early").await;
    let id = first.connect_with_code(&user.access).await;
    let path = format!("/api/v1/connections/{id}/search");
    // Alone, the first instance takes the connection's turns in memory: ten searches at once
    // hold turns for the next two and a half seconds.
    first.wait_until_alone(true).await;
    let early = futures_util::future::join_all((0..10).map(|_| first.get_as(&path, &user.access)));
    let later = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // On SQLite the service is one instance: the later searches go to the same one.
        let second = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let database_url = first.database_url.clone();
                Some(
                    spawn_app_with(backend, |vars| {
                        settings(vars);
                        vars.insert("DATABASE_URL".into(), database_url);
                    })
                    .await,
                )
            }
        };
        let app = second.as_ref().unwrap_or(&first);
        let searches = (0..6).map(|_| app.get_as(&path, &user.access));
        let answers = futures_util::future::join_all(searches).await;
        (second, answers)
    };
    let (early, (_second, later)) = tokio::join!(early, later);

    let mut served = 0;
    for answer in early.into_iter().chain(later) {
        match answer.status().as_u16() {
            200 => served += 1,
            429 => {
                assert_problem(answer, 429, "notion_rate_limited").await;
            }
            status => panic!("unexpected {status}"),
        }
    }
    let times = notion.search_times();
    assert_eq!(times.len(), served, "each search served called Notion once");
    assert!(
        served > 10,
        "the instance that joined was served too: {served}"
    );
    // The instance that joined took its turns after the ones the first had taken in memory: no
    // one-second window holds more than the limit.
    assert_paced(&times, per_second);
}

async fn a_rate_limit_seen_by_one_instance_holds_back_the_others(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let apps = sharing_instances(backend, &notion, &[("NOTION_TIMEOUT", "2s")]).await;
    let (first, second) = (&apps[0], apps.last().unwrap());
    // Three people connect the same workspace.
    let mut people = Vec::new();
    for name in ["ann", "bob", "cid"] {
        let user = first.signed_in(name).await;
        let id = first.connect_with_code(&user.access).await;
        people.push((user, format!("/api/v1/connections/{id}/search")));
    }
    let [(ann, ann_search), (bob, bob_search), (cid, cid_search)] = &people[..] else {
        unreachable!()
    };

    // Notion limits Ann's connection for a minute, longer than her search can wait.
    notion.script_search([SearchReply::rate_limited(60, false)]);
    let limited = first.get_as(ann_search, &ann.access).await;
    assert_eq!(retry_after(&limited), 60);
    assert_problem(limited, 429, "notion_rate_limited").await;
    assert_eq!(notion.search_calls(), 1);

    // The other instance holds her connection back without calling Notion...
    let held_back = second.get_as(ann_search, &ann.access).await;
    assert!((55..=60).contains(&retry_after(&held_back)));
    assert_problem(held_back, 429, "notion_rate_limited").await;
    assert_eq!(notion.search_calls(), 1);
    // ...but not the others' connections to the same workspace: the limit was hers.
    assert_eq!(second.get_as(bob_search, &bob.access).await.status(), 200);
    assert_eq!(notion.search_calls(), 2);

    // Now Notion limits the whole workspace, through Bob's connection on the second instance.
    notion.script_search([SearchReply::rate_limited(90, true)]);
    let limited = second.get_as(bob_search, &bob.access).await;
    assert_eq!(retry_after(&limited), 90);
    assert_eq!(notion.search_calls(), 3);
    // Everyone's connection to it waits, on every instance.
    let held_back = first.get_as(cid_search, &cid.access).await;
    assert!((85..=90).contains(&retry_after(&held_back)));
    assert_problem(held_back, 429, "notion_rate_limited").await;
    let held_back = first.get_as(ann_search, &ann.access).await;
    assert!(
        (85..=90).contains(&retry_after(&held_back)),
        "the longer pause wins"
    );
    assert_eq!(
        notion.search_calls(),
        3,
        "Notion was not called during the pauses"
    );

    // The search across workspaces holds back too: with its only workspace paused, it is
    // refused as a whole, without calling Notion.
    let everywhere = first.get_as("/api/v1/search", &cid.access).await;
    assert!((85..=90).contains(&retry_after(&everywhere)));
    assert_problem(everywhere, 429, "notion_rate_limited").await;
    assert_eq!(notion.search_calls(), 3);
}

/// Another instance's live lease, even one that is never renewed or acknowledges anything,
/// keeps an instance from being alone, and holds a starting instance back, until it runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_of_another_instance_is_waited_for_until_it_runs_out() {
    if !postgres_available() {
        return;
    }
    let notion = MockNotion::start(grant()).await;
    let metrics = |vars: &mut std::collections::HashMap<String, String>| {
        notion.configure(vars);
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
    };
    let first = spawn_app_with(Backend::Postgres, metrics).await;
    first.wait_until_alone(true).await;

    // An instance nobody hears from again, registered just now with a lease of three seconds.
    let lease_until = |seconds: u32| {
        format!(
            "INSERT INTO notion_instances (id, registered_at, lease_until, acked_at) \
             SELECT gen_random_uuid(), now.us, now.us + {seconds} * 1000000, 0 \
             FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us) now"
        )
    };
    first.db.execute_unprepared(&lease_until(3)).await.unwrap();
    first.wait_until_alone(false).await;
    first.wait_until_alone(true).await;

    // A starting instance waits for such a lease to run out before it serves anything.
    first.db.execute_unprepared(&lease_until(2)).await.unwrap();
    let started = std::time::Instant::now();
    let database_url = first.database_url.clone();
    let second = spawn_app_with(Backend::Postgres, |vars| {
        metrics(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "started after {:?}, before the lease ran out",
        started.elapsed()
    );
    assert_eq!(second.get("/healthz").await.status(), 200);
    first.wait_until_alone(false).await;
}

/// An instance whose lease others saw run out while it was alone (as when it is cut off from the
/// database) hands back the turns it took in memory; one whose lease was swept away registers
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_hands_the_turns_back_and_a_swept_one_registers_again() {
    if !postgres_available() {
        return;
    }
    let notion = MockNotion::start(grant()).await;
    let app = spawn_app_with(Backend::Postgres, |vars| {
        notion.configure(vars);
        vars.insert("METRICS_BIND_ADDR".into(), "127.0.0.1:0".into());
        vars.insert("NOTION_RATE_LIMIT".into(), "1".into());
        vars.insert("NOTION_TIMEOUT".into(), "5s".into());
    })
    .await;
    let user = app.signed_in("lapsing").await;
    let id = app.connect_with_code(&user.access).await;
    app.wait_until_alone(true).await;
    // Alone, the instance takes the connection's turns in memory: after two searches its next
    // turn is about a second ahead, and the database knows nothing of it.
    let path = format!("/api/v1/connections/{id}/search");
    for _ in 0..2 {
        assert_eq!(app.get_as(&path, &user.access).await.status(), 200);
    }
    let key = format!("c:{id}");
    let budget_rows = || async {
        app.db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT key FROM notion_rate_budgets WHERE key = '{key}'"),
            ))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(budget_rows().await, 0);

    app.db
        .execute_unprepared("UPDATE notion_instances SET lease_until = 0")
        .await
        .unwrap();
    let mut handed_back = false;
    for _ in 0..40 {
        if budget_rows().await == 1 {
            handed_back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(handed_back, "the turn ahead was written back");

    app.db
        .execute_unprepared("DELETE FROM notion_instances")
        .await
        .unwrap();
    let instances = || async {
        app.db
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT id FROM notion_instances",
            ))
            .await
            .unwrap()
            .len()
    };
    let mut registered = false;
    for _ in 0..40 {
        if instances().await == 1 {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(registered, "the instance registered again");
    app.wait_until_alone(true).await;
    assert_eq!(app.get_as(&path, &user.access).await.status(), 200);
}
