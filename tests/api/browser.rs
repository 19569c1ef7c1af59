//! The web app end to end, in headless Chromium, against the real service with the Notion
//! sandbox (or, for Notion's failures, the scripted stand-in).

mod driver;
mod keyboard;
mod live;
mod views;

use std::collections::HashMap;

use driver::Browser;
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, PASSWORD, TestApp, on_both_databases, spawn_app_with},
    mock_notion::{MockNotion, SearchReply, TokenReply},
};

on_both_databases!(
    a_new_user_signs_up_connects_searches_and_signs_out,
    two_tabs_refreshing_at_once_stay_signed_in,
    failures_are_explained_where_they_happen,
    an_administrator_pages_through_users_and_connections,
    expiring_and_ended_sessions_are_handled_for_the_user,
    a_person_with_two_workspaces_searches_both_at_once,
);

/// Starts the app on a port chosen in advance, so that its `PUBLIC_URL` (the origin the browser
/// uses, and where the OAuth flow comes back to) is exact.
async fn app_for_browser(
    backend: Backend,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    spawn_app_with(backend, |vars| {
        vars.insert("BIND_ADDR".into(), format!("127.0.0.1:{port}"));
        vars.insert("PUBLIC_URL".into(), format!("http://127.0.0.1:{port}"));
        configure(vars);
    })
    .await
}

/// The app (see [`app_for_browser`]) and a browser for it, or `None` when there is no browser.
/// `name` starts the names of the screenshots.
async fn app_and_browser(
    backend: Backend,
    name: &str,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> Option<(TestApp, Browser)> {
    let app = app_for_browser(backend, configure).await;
    let browser = Browser::start(&app.address, &prefix(backend, name)).await?;
    Some((app, browser))
}

fn prefix(backend: Backend, name: &str) -> String {
    format!("{}-{name}", format!("{backend:?}").to_lowercase())
}

/// Fills in and sends the sign-in form shown on the page.
async fn submit_sign_in(browser: &Browser, username: &str) {
    browser.fill("#username", username).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("form button[type=submit]").await;
}

/// Signs in from the sign-in page and waits for the connections page (asked for as the page to
/// go on to, so that it is shown whether or not the account has connections).
async fn sign_in(browser: &Browser, username: &str) {
    browser.open("/#/login?next=%2Fconnections").await;
    submit_sign_in(browser, username).await;
    browser.find_text("h1", "Connections").await;
}

async fn rows(browser: &Browser) -> Vec<Value> {
    browser
        .js(
            "return [...document.querySelectorAll('table.results tbody tr')].map((row) => ({
                title: row.querySelector('td.title').textContent,
                kind: row.querySelector('td.kind').textContent,
            }));",
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn a_new_user_signs_up_connects_searches_and_signs_out(backend: Backend) {
    let Some((_app, browser)) = app_and_browser(backend, "journey", |_| {}).await else {
        return;
    };

    // A first visit: the sign-in page, under the sandbox banner, without a wasted refresh call.
    browser.open("/").await;
    browser.find_text("h1", "Sign in").await;
    assert!(browser.text("#sandbox-banner").await.contains("Sandbox:"));
    browser.assert_controls_are_labelled().await;
    browser.press('\u{E004}').await; // Tab
    let outline = browser
        .js("return getComputedStyle(document.activeElement).outlineStyle;")
        .await;
    assert_eq!(outline, "solid", "the focused control shows its focus");
    browser.screenshot("01-sign-in").await;

    // Create an account: that signs in and shows the empty connections page.
    browser.click("a[href^='#/register']").await;
    browser.find_text("h1", "Create an account").await;
    submit_sign_in(&browser, "webuser").await;
    browser.find_text("h1", "Connections").await;
    browser
        .find_text(".empty", "No workspace connected yet")
        .await;
    assert!(browser.text("#account-name").await.contains("webuser"));
    browser.assert_controls_are_labelled().await;
    browser.screenshot("02-connections-empty").await;

    // Sign out and in again with the new account.
    browser.click("#sign-out").await;
    browser.find_text("h1", "Sign in").await;
    submit_sign_in(&browser, "webuser").await;
    browser.find_text("h1", "Connections").await;

    // Connect: the sandbox's consent page, in the app's look; Allow brings the workspace back.
    browser.click(".empty button").await;
    browser.find("button[value=allow]").await;
    let styled = browser
        .js("return getComputedStyle(document.querySelector('.card')).borderTopLeftRadius;")
        .await;
    assert_eq!(styled, "8px", "the consent page uses the app's stylesheet");
    browser.screenshot("03-sandbox-consent").await;
    browser.click("button[value=allow]").await;
    browser
        .find_text(".message.success", "Connected Sandbox Workspace")
        .await;
    browser
        .find_text(".connection h2", "Sandbox Workspace")
        .await;
    assert!(
        browser
            .text(".connection .meta")
            .await
            .contains("Sandbox User")
    );
    browser.screenshot("04-connected").await;

    // Search: the first page, then one more.
    browser.click(".connection a.button").await;
    browser.find_text("h1", "Search Sandbox Workspace").await;
    browser.wait_for_count("table.results tbody tr", 20).await;
    browser
        .find_text(".status-line", "Showing 20 results")
        .await;
    let link = browser
        .js(
            "const a = document.querySelector('table.results td.title a');
             return { target: a.target, rel: a.rel, href: a.href };",
        )
        .await;
    assert_eq!(link["target"], "_blank");
    assert!(link["rel"].as_str().unwrap().contains("noopener"), "{link}");
    assert!(
        link["href"]
            .as_str()
            .unwrap()
            .starts_with("https://www.notion.so/")
    );
    let exact_time = browser
        .js("return document.querySelector('table.results time')?.title ?? null;")
        .await;
    assert!(
        exact_time.as_str().is_some_and(|t| !t.is_empty()),
        "exact time on hover"
    );
    browser.assert_controls_are_labelled().await;
    browser.screenshot("05-search").await;

    let first_page = rows(&browser).await;
    browser.click(".load-more button").await;
    browser.wait_for_count("table.results tbody tr", 40).await;
    let both_pages = rows(&browser).await;
    assert_eq!(
        both_pages[..20],
        first_page[..],
        "the first page stays in place"
    );
    assert_ne!(both_pages[20..], first_page[..], "the second page is new");

    // The same screen on a phone, in the dark theme.
    browser.emulate_phone_in_dark(true).await;
    browser.js("window.scrollTo(0, 0);").await;
    browser.assert_no_horizontal_scroll().await;
    browser.screenshot("06-search-phone-dark").await;
    browser.emulate_phone_in_dark(false).await;

    // `/` jumps to the search box.
    browser.click("h1").await;
    browser.press('/').await;
    browser
        .wait_for_js("document.activeElement?.id === 'search-query'")
        .await;

    // Oldest first, then back to newest first.
    let newest_first = rows(&browser).await[0].clone();
    browser
        .find("#search-sort")
        .await
        .select_by_value("ascending")
        .await
        .expect("choose a sort");
    browser.wait_for_count("table.results tbody tr", 20).await;
    browser
        .until("the oldest item to come first", || async {
            let first = rows(&browser).await.first().cloned()?;
            (first != newest_first).then_some(())
        })
        .await;
    assert!(
        browser
            .url()
            .await
            .fragment()
            .unwrap()
            .contains("sort=ascending")
    );
    browser
        .find("#search-sort")
        .await
        .select_by_value("descending")
        .await
        .unwrap();
    browser
        .until("the newest item to come first again", || async {
            let first = rows(&browser).await.first().cloned()?;
            (first == newest_first).then_some(())
        })
        .await;
    assert!(!browser.url().await.fragment().unwrap().contains("sort="));

    // Data sources only.
    browser
        .find("#search-filter")
        .await
        .select_by_value("data_source")
        .await
        .expect("choose a filter");
    browser
        .wait_for_js(
            "(() => { const kinds = [...document.querySelectorAll('table.results td.kind')];
                return kinds.length > 0 && kinds.every((k) => k.textContent === 'Data source'); })()",
        )
        .await;
    assert!(
        browser
            .url()
            .await
            .fragment()
            .unwrap()
            .contains("filter=data_source")
    );

    // A query that matches nothing, typed as a person types.
    browser
        .find("#search-query")
        .await
        .send_keys("zebra")
        .await
        .unwrap();
    browser.find_text(".empty", "No data sources match").await;
    assert!(browser.text(".empty").await.contains("zebra"));
    browser.screenshot("07-search-empty").await;

    // A reload keeps the session and the search.
    browser.reload().await;
    browser.find_text(".empty", "No data sources match").await;
    browser.find_text("h1", "Search Sandbox Workspace").await;
    let controls = browser
        .js("return [document.getElementById('search-query').value,
                     document.getElementById('search-filter').value];")
        .await;
    assert_eq!(controls, json!(["zebra", "data_source"]));
    assert!(browser.text("#account-name").await.contains("webuser"));

    // The back button returns to the same search.
    browser.click(".back-link").await;
    browser.find_text("h1", "Connections").await;
    browser.client().back().await.unwrap();
    browser.find_text(".empty", "No data sources match").await;
    assert_eq!(
        browser
            .js("return document.getElementById('search-query').value;")
            .await,
        "zebra"
    );

    // Disconnect, after confirming.
    browser.click(".back-link").await;
    browser.find_text("h1", "Connections").await;
    browser.click(".connection button.danger").await;
    browser.find("dialog[open]").await;
    browser.screenshot("08-disconnect-dialog").await;
    browser.click("dialog button[value=yes]").await;
    browser
        .find_text(".message.success", "Disconnected Sandbox Workspace")
        .await;
    browser
        .find_text(".empty", "No workspace connected yet")
        .await;

    // Connect again and cancel in Notion: the app says so, and the message can be dismissed.
    browser.click(".empty button").await;
    browser.click("button[value=cancel]").await;
    browser
        .find_text(".message.warning", "You cancelled in Notion")
        .await;
    assert!(
        browser
            .url()
            .await
            .fragment()
            .unwrap()
            .contains("error=access_denied")
    );
    browser.screenshot("09-access-denied").await;
    browser.click(".message .icon-button").await;
    browser.wait_for_count(".message", 0).await;
    assert_eq!(browser.url().await.fragment(), Some("/connections"));

    // Sign out: a reload no longer signs in.
    browser.click("#sign-out").await;
    browser.find_text(".message", "You are signed out").await;
    browser.reload().await;
    browser.find_text("h1", "Sign in").await;
    browser.screenshot("10-signed-out").await;

    browser.assert_console_clean().await;
    browser.close().await;
}

async fn two_tabs_refreshing_at_once_stay_signed_in(backend: Backend) {
    let Some((app, browser)) = app_and_browser(backend, "tabs", |_| {}).await else {
        return;
    };
    let registered = app.register("twotabs", PASSWORD).await;
    assert_eq!(registered.status(), 201);
    sign_in(&browser, "twotabs").await;

    let client = browser.client();
    let first = client.window().await.unwrap();
    let second = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second.clone()).await.unwrap();
    browser.open("/#/connections").await;
    browser.find_text("h1", "Connections").await;

    // Each tab refreshes several times in a row while the other does the same. Every refresh
    // rotates the cookie; one sent with an already rotated cookie would end the session.
    let burst = "window.burst = (async () => {
                   const api = await import('/api.js');
                   for (let i = 0; i < 8; i++) await api.refresh();
                   return api.currentUser()?.username ?? null;
                 })().then((name) => { window.burstResult = name; });";
    browser.js(burst).await;
    client.switch_to_window(first.clone()).await.unwrap();
    browser.js(burst).await;
    for tab in [first, second] {
        client.switch_to_window(tab).await.unwrap();
        browser
            .wait_for_js("window.burstResult !== undefined")
            .await;
        assert_eq!(browser.js("return window.burstResult;").await, "twotabs");
        browser.reload().await;
        browser.find_text("h1", "Connections").await;
        assert!(browser.text("#account-name").await.contains("twotabs"));
    }
    browser.assert_console_clean().await;
    browser.close().await;
}

async fn failures_are_explained_where_they_happen(backend: Backend) {
    // Accounts: the API's words next to the field they concern. The limit of four attempts a
    // minute from one address is reached on purpose at the end.
    let Some((app, browser)) = app_and_browser(backend, "failures", |vars| {
        vars.insert("AUTH_RATE_LIMIT".into(), "4".into());
    })
    .await
    else {
        return;
    };
    assert_eq!(app.register("taken", PASSWORD).await.status(), 201);

    browser.open("/#/register").await;
    browser.fill("#username", "someone").await;
    browser.fill("#password", "password1").await;
    browser.click("form button[type=submit]").await;
    browser.find_text("#password-error", "too common").await;
    assert_eq!(
        browser
            .find("#password")
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    browser.screenshot("01-weak-password").await;

    submit_sign_in(&browser, "taken").await;
    browser.find_text("#username-error", "taken").await;
    assert_eq!(
        browser
            .js("return document.getElementById('password-error').hidden;")
            .await,
        true,
        "the password's earlier error is gone"
    );

    browser.open("/#/login").await;
    browser.find_text("h1", "Sign in").await;
    browser.fill("#username", "taken").await;
    browser.fill("#password", "not the password").await;
    browser.click("form button[type=submit]").await;
    browser.find_text("#password-error", "wrong").await;

    browser.click("form button[type=submit]").await;
    let throttled = browser.find_text("#form-error", "Too many attempts").await;
    let text = throttled.text().await.unwrap();
    assert!(
        text.contains("Try again in") && text.contains("second"),
        "the wait is shown: {text}"
    );
    browser.screenshot("02-throttled").await;

    // The same server under another name: the app says where it must be used.
    let elsewhere = app.address.replace("127.0.0.1", "localhost");
    browser
        .client()
        .goto(&format!("{elsewhere}/"))
        .await
        .unwrap();
    let warning = browser
        .find_text("#origin-banner", "expects to be used at")
        .await;
    assert!(warning.text().await.unwrap().contains(&app.address));
    browser.open("/").await;
    let provoked = [
        ("/api/v1/auth/register", 422),
        ("/api/v1/auth/register", 409),
        ("/api/v1/auth/login", 401),
        ("/api/v1/auth/login", 429),
    ];
    let seen = browser.assert_console_clean_except(&provoked).await;
    assert_eq!(
        seen.len(),
        provoked.len(),
        "each failure reached the console: {seen:?}"
    );

    // Search: what Notion's failures look like, on a connection to the scripted stand-in.
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-web".into(),
        access_token: "access-web".into(),
    })
    .await;
    let mocked = app_for_browser(backend, |vars| notion.configure(vars)).await;
    let browser = {
        browser.close().await;
        Browser::start(&mocked.address, &prefix(backend, "failures"))
            .await
            .expect("the browser started a moment ago")
    };
    let user = mocked.signed_in("searcher").await;
    let id = mocked.connect_with_code(&user.access).await;
    sign_in(&browser, "searcher").await;

    // A second workspace of the same person, which Notion rate-limits for two minutes: the
    // connection is paused, so searching it again sooner does not call Notion.
    notion.reply_with(TokenReply::Grant {
        bot_id: "bot-web-limited".into(),
        access_token: "access-web".into(),
    });
    let limited = mocked.connect_with_code(&user.access).await;
    notion.script_search([SearchReply::json(429, Some(120))]);
    browser
        .open(&format!("/#/connections/{limited}/search"))
        .await;
    browser
        .find_text(".message.warning", "Searching again in 120 seconds")
        .await;
    browser.screenshot("03-rate-limited").await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('.message button').length;")
            .await,
        0,
        "nothing to press while the wait counts down"
    );
    // Opening the search again meanwhile shows what is left of the wait, without calling
    // Notion.
    let calls = notion.search_calls();
    browser.open("/#/connections").await;
    browser
        .open(&format!("/#/connections/{limited}/search"))
        .await;
    browser
        .find_text(".message.warning", "Searching again in 11")
        .await;
    assert_eq!(notion.search_calls(), calls, "the pause held");

    let search_path = format!("/#/connections/{id}/search");
    notion.script_search([SearchReply::Hang]);
    browser.open(&search_path).await;
    browser.find_text(".message.error", "took too long").await;

    notion.script_search([SearchReply::json(400, None)]);
    browser.click(".message button").await;
    browser
        .find_text(".message.error", "Notion answered with an error")
        .await;

    // The stand-in's default page works again.
    browser.click(".message button").await;
    browser
        .find_text("table.results td.title", "Mock page")
        .await;

    // An answer to an older query never replaces a newer one's: the first search hangs until
    // the service gives up on Notion (after a second), the second is answered at once.
    notion.script_search([SearchReply::Hang]);
    browser.fill("#search-query", "slow").await;
    browser.find_text(".status-line", "Searching").await;
    browser.fill("#search-query", "fast").await;
    browser
        .find("#search-query")
        .await
        .send_keys("\u{E007}") // Enter
        .await
        .unwrap();
    browser.find_text(".status-line", "Showing 1 result").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(browser.text(".status-line").await, "Showing 1 result.");
    assert_eq!(
        browser
            .js("return document.querySelectorAll('.message').length;")
            .await,
        0
    );

    // Notion stops accepting the token and no refresh token was issued: reconnect.
    notion.reply_with(TokenReply::GrantWithoutRefresh {
        bot_id: "bot-web".into(),
        access_token: "access-web-2".into(),
    });
    mocked.connect_with_code(&user.access).await;
    notion.expire_access_token();
    browser.fill("#search-query", "anything").await;
    browser
        .find_text(".message.warning", "no longer accepts this connection")
        .await;
    browser.find_text(".message button", "Reconnect").await;
    browser.screenshot("04-needs-reauth").await;

    // The connections page says the same, with its own Reconnect button.
    browser.click(".back-link").await;
    browser
        .find_text(".connection .badge", "Needs reconnecting")
        .await;
    browser
        .find_text(".connection .row-actions button", "Reconnect")
        .await;

    // Every outcome the OAuth callback can report has its own message.
    for (code, words) in [
        ("access_denied", "You cancelled in Notion"),
        (
            "invalid_state",
            "expired, was already used, or was started in another browser",
        ),
        ("exchange_failed", "Notion did not accept the authorization"),
        ("notion_unavailable", "Notion could not be reached"),
        ("server_error", "Something went wrong on our side"),
        ("something_new", "could not be connected (something_new)"),
    ] {
        browser.open(&format!("/#/connections?error={code}")).await;
        browser.find_text(".message", words).await;
    }

    let search_api = format!("/api/v1/connections/{id}/search");
    let limited_api = format!("/api/v1/connections/{limited}/search");
    let provoked = [
        // Notion's 429, then the service's own while the connection is paused.
        (limited_api.as_str(), 429),
        (limited_api.as_str(), 429),
        (search_api.as_str(), 504),
        (search_api.as_str(), 502),
        (search_api.as_str(), 409),
    ];
    let seen = browser.assert_console_clean_except(&provoked).await;
    assert_eq!(
        seen.len(),
        provoked.len(),
        "each failure reached the console: {seen:?}"
    );
    browser.close().await;
}

async fn an_administrator_pages_through_users_and_connections(backend: Backend) {
    use notion_connect::{
        auth::{Username, accounts},
        entity::{notion_connection, user},
    };
    use sea_orm::{ActiveValue::Set, EntityTrait};

    let Some((app, browser)) = app_and_browser(backend, "admin", |_| {}).await else {
        return;
    };
    assert!(
        crate::cli::create_user_with_cli(&app, "boss", true)
            .status
            .success()
    );
    let member = app.signed_in("member").await;
    app.connect_sandbox(&member.access).await;
    // More users and connections than one page holds (50), without hashing 58 passwords: 58
    // people, 54 of them with a copy of the member's connection (without its sealed e-mail,
    // which is bound to the original row).
    let hash = user::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    let template = notion_connection::Entity::find()
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    for i in 0..58 {
        let name = Username::parse(&format!("person{i:02}")).unwrap();
        let person = accounts::create_user(&app.db, &name, hash.clone(), false)
            .await
            .unwrap();
        if i < 54 {
            let row = notion_connection::ActiveModel {
                id: Set(uuid::Uuid::now_v7()),
                user_id: Set(person.id),
                owner_email: Set(None),
                ..template.clone().into()
            };
            notion_connection::Entity::insert(row)
                .exec(&app.db)
                .await
                .unwrap();
        }
    }

    sign_in(&browser, "boss").await;
    browser.click("#nav-admin").await;
    browser.find_text("h1", "Admin").await;
    browser
        .wait_for_count("#admin-users-table tbody tr", 50)
        .await;
    browser
        .wait_for_count("#admin-connections-table tbody tr", 50)
        .await;
    browser.screenshot("01-admin").await;

    browser.click("#admin-users-more").await;
    browser
        .wait_for_count("#admin-users-table tbody tr", 60)
        .await;
    browser
        .find_text("#admin-users-count", "Showing 60 users")
        .await;
    browser
        .wait_for_js("document.getElementById('admin-users-more').hidden")
        .await;
    browser.click("#admin-connections-more").await;
    browser
        .wait_for_count("#admin-connections-table tbody tr", 55)
        .await;
    browser
        .wait_for_js("document.getElementById('admin-connections-more').hidden")
        .await;
    let names = browser
        .js(
            "return [...document.querySelectorAll('#admin-users-table tbody tr td:first-child')]
                .map((cell) => cell.textContent);",
        )
        .await;
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 60, "every user once");
    assert!(names.contains(&"boss") && names.contains(&"member"));
    browser.assert_controls_are_labelled().await;

    // Anyone else sees no Admin link, and the address alone shows nothing.
    browser.click("#sign-out").await;
    browser.find_text("h1", "Sign in").await;
    submit_sign_in(&browser, "member").await;
    // With a connection, signing in lands on the search across workspaces.
    browser.find_text("h1", "Search all workspaces").await;
    assert!(
        !browser
            .js("return !document.getElementById('nav-admin').hidden;")
            .await
            .as_bool()
            .unwrap()
    );
    browser.open("/#/admin").await;
    browser
        .find_text(".message.error", "Only administrators")
        .await;

    browser.assert_console_clean().await;
    browser.close().await;
}

async fn expiring_and_ended_sessions_are_handled_for_the_user(backend: Backend) {
    use notion_connect::entity::session;
    use sea_orm::EntityTrait;

    let Some((app, browser)) = app_and_browser(backend, "sessions", |vars| {
        vars.insert("ACCESS_TOKEN_TTL".into(), "8s".into());
    })
    .await
    else {
        return;
    };
    assert_eq!(app.register("renewer", PASSWORD).await.status(), 201);
    browser.open("/#/login").await;
    submit_sign_in(&browser, "renewer").await;
    browser
        .find_text(".empty", "No workspace connected yet")
        .await;
    let refreshes = "performance.getEntriesByType('resource')
        .filter((entry) => entry.name.endsWith('/api/v1/auth/refresh')).length";
    assert_eq!(browser.js(&format!("return {refreshes};")).await, 0);

    // The token is renewed shortly before it runs out (at 6 of its 8 seconds), unprompted.
    browser.wait_for_js(&format!("{refreshes} >= 1")).await;

    // A request the server refuses with 401 is repeated once after a renewal. The page's fetch
    // is made to send a broken token once, as if it had expired.
    browser
        .js("const original = window.fetch;
             window.fetch = (url, options = {}) => {
               if (options.headers?.Authorization) {
                 window.fetch = original;
                 options = { ...options, headers: { ...options.headers, Authorization: 'Bearer broken' } };
               }
               return original(url, options);
             };")
        .await;
    let before = browser
        .js(&format!("return {refreshes};"))
        .await
        .as_u64()
        .unwrap();
    browser.js("location.hash = '#/connections?again=1';").await;
    browser
        .wait_for_js(&format!("{refreshes} > {before}"))
        .await;
    browser
        .find_text(".empty", "No workspace connected yet")
        .await;
    let seen = browser
        .assert_console_clean_except(&[("/api/v1/connections", 401)])
        .await;
    assert_eq!(seen.len(), 1, "refused once, then repeated: {seen:?}");

    // The server ends the session (every session row is deleted): the next request takes the
    // visitor to sign in, and back to where they were afterwards.
    session::Entity::delete_many().exec(&app.db).await.unwrap();
    // As when another instance ended it: this one notices within `BELIEVED_FOR`.
    tokio::time::sleep(notion_connect::auth::liveness::BELIEVED_FOR).await;
    browser.js("location.hash = '#/connections?again=2';").await;
    browser
        .find_text(".message.warning", "Your session has ended")
        .await;
    browser.find_text("h1", "Sign in").await;
    assert!(browser.url().await.fragment().unwrap().contains("next="));
    submit_sign_in(&browser, "renewer").await;
    browser
        .find_text(".empty", "No workspace connected yet")
        .await;
    assert!(
        browser
            .url()
            .await
            .fragment()
            .unwrap()
            .starts_with("/connections?again=2")
    );
    let seen = browser
        .assert_console_clean_except(&[("/api/v1/connections", 401), ("/api/v1/auth/refresh", 401)])
        .await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    browser.close().await;
}

/// The workspace column of the results shown.
async fn result_workspaces(browser: &Browser) -> Vec<String> {
    browser
        .js(
            "return [...document.querySelectorAll('table.results td.workspace')]
                .map((cell) => cell.textContent.trim());",
        )
        .await
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|name| name.as_str().map(|n| n.trim().to_owned()))
        .collect()
}

async fn a_person_with_two_workspaces_searches_both_at_once(backend: Backend) {
    let Some((app, browser)) = app_and_browser(backend, "everywhere", |_| {}).await else {
        return;
    };
    assert_eq!(app.register("roamer", PASSWORD).await.status(), 201);

    // Without a connection, signing in leads to connecting one.
    browser.open("/").await;
    submit_sign_in(&browser, "roamer").await;
    browser.find_text("h1", "Connections").await;

    // Two workspaces: the sandbox's first, then "Sandbox Team", chosen on its consent page.
    browser.click(".empty button").await;
    browser.click("button[value=allow]").await;
    browser
        .find_text(".message.success", "Connected Sandbox Workspace")
        .await;
    browser.click(".view-header button").await;
    browser.find("input[name=workspace][value='1']").await;
    browser.assert_controls_are_labelled().await;
    browser.click("input[name=workspace][value='1']").await;
    browser.screenshot("01-consent-second-workspace").await;
    browser.click("button[value=allow]").await;
    browser
        .find_text(".message.success", "Connected Sandbox Team")
        .await;

    // Search, from the navigation: one box across both.
    browser.click("nav a[data-section=search]").await;
    browser.find_text("h1", "Search all workspaces").await;
    browser.wait_for_count("table.results tbody tr", 20).await;
    let shown = result_workspaces(&browser).await;
    assert!(
        shown.iter().any(|w| w.ends_with("Sandbox Workspace")),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|w| w.ends_with("Sandbox Team")),
        "{shown:?}"
    );
    browser
        .find_text(".status-line", "Showing 20 results")
        .await;
    browser.assert_controls_are_labelled().await;
    browser.screenshot("02-search-everywhere").await;

    // Narrow it to one workspace with its chip, then load more of it.
    let team = browser
        .js("return [...document.querySelectorAll('.chip')]
                .find((chip) => chip.textContent.includes('Sandbox Team'))?.dataset.connection;")
        .await;
    let team = team.as_str().expect("a chip for Sandbox Team").to_owned();
    browser
        .click(&format!(".chip[data-connection='{team}']"))
        .await;
    browser
        .until("only Sandbox Team's results", || async {
            let shown = result_workspaces(&browser).await;
            (shown.len() == 20 && shown.iter().all(|w| w.ends_with("Sandbox Team"))).then_some(())
        })
        .await;
    let pressed = browser
        .js(&format!(
            "return document.querySelector(\".chip[data-connection='{team}']\").getAttribute('aria-pressed');"
        ))
        .await;
    assert_eq!(pressed, "true");
    assert!(browser.url().await.fragment().unwrap().contains(&team));
    browser.click(".load-more button").await;
    browser.wait_for_count("table.results tbody tr", 40).await;
    let shown = result_workspaces(&browser).await;
    assert!(
        shown.iter().all(|w| w.ends_with("Sandbox Team")),
        "{shown:?}"
    );
    browser.screenshot("03-search-one-workspace").await;

    // On a phone, in the dark theme.
    browser.emulate_phone_in_dark(true).await;
    browser.js("window.scrollTo(0, 0);").await;
    browser.assert_no_horizontal_scroll().await;
    browser.screenshot("04-search-everywhere-phone-dark").await;
    browser.emulate_phone_in_dark(false).await;

    // A reload keeps the search, and signing in again lands on it.
    browser.reload().await;
    browser.wait_for_count("table.results tbody tr", 20).await;
    assert!(
        result_workspaces(&browser)
            .await
            .iter()
            .all(|w| w.ends_with("Sandbox Team"))
    );
    browser.click("#sign-out").await;
    browser.find_text("h1", "Sign in").await;
    submit_sign_in(&browser, "roamer").await;
    browser.find_text("h1", "Search all workspaces").await;

    browser.assert_console_clean().await;
    browser.close().await;
}
