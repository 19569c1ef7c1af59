//! The app keeping itself current: a rate-limited search that counts down and runs again by
//! itself, and a workspace connected or disconnected in one tab showing in the others.

use super::{app_and_browser, app_for_browser, driver::Browser, prefix, sign_in};
use crate::{
    helpers::{Backend, on_both_databases},
    mock_notion::{MockNotion, SearchReply, TokenReply},
};

on_both_databases!(
    a_rate_limited_search_counts_down_and_runs_again_by_itself,
    a_connection_change_in_one_tab_shows_in_the_others,
);

async fn a_rate_limited_search_counts_down_and_runs_again_by_itself(backend: Backend) {
    let notion = MockNotion::start(TokenReply::Grant {
        bot_id: "bot-wait".into(),
        access_token: "access-wait".into(),
    })
    .await;
    let app = app_for_browser(backend, |vars| notion.configure(vars)).await;
    let Some(browser) = Browser::start(&app.address, &prefix(backend, "countdown")).await else {
        return;
    };
    let user = app.signed_in("patient").await;
    let id = app.connect_with_code(&user.access).await;
    sign_in(&browser, "patient").await;

    // One workspace's search: Notion asks for two seconds; the wait counts down and the search
    // runs again without anyone pressing anything.
    notion.script_search([SearchReply::json(429, Some(2))]);
    browser.open(&format!("/#/connections/{id}/search")).await;
    browser
        .find_text(".message.warning", "Searching again in 2 seconds")
        .await;
    browser
        .find_text(".message.warning", "Searching again in 1 second")
        .await;
    browser.screenshot("one-workspace").await;
    browser
        .find_text("table.results td.title", "Mock page")
        .await;
    assert_eq!(
        browser
            .js("return document.querySelectorAll('.message').length;")
            .await,
        0,
        "the notice is gone with the wait"
    );

    // The search across workspaces (here, all of them are limited) does the same.
    notion.script_search([SearchReply::json(429, Some(2))]);
    browser.open("/#/search?query=again").await;
    browser
        .find_text(".message.warning", "Searching again in")
        .await;
    browser.screenshot("everywhere").await;
    browser
        .find_text("table.results td.title", "Mock page")
        .await;

    let single = format!("/api/v1/connections/{id}/search");
    let provoked = [(single.as_str(), 429), ("/api/v1/search", 429)];
    let seen = browser.assert_console_clean_except(&provoked).await;
    assert_eq!(seen.len(), 2, "both waits reached the console: {seen:?}");
    browser.close().await;
}

/// The workspaces the chips of the search view offer.
async fn chips(browser: &Browser) -> Vec<String> {
    browser
        .js(
            "return [...document.querySelectorAll('.chip[data-connection]')]
                .map((chip) => chip.textContent.trim());",
        )
        .await
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|chip| chip.as_str().map(str::to_owned))
        .collect()
}

async fn a_connection_change_in_one_tab_shows_in_the_others(backend: Backend) {
    let Some((app, browser)) = app_and_browser(backend, "cross-tab", |_| {}).await else {
        return;
    };
    let user = app.signed_in("juggler").await;
    app.connect_sandbox_workspace(&user.access, 0).await;
    app.connect_sandbox_workspace(&user.access, 1).await;
    sign_in(&browser, "juggler").await;
    browser.wait_for_count(".connection", 2).await;

    // A second tab searches both workspaces.
    let client = browser.client();
    let first = client.window().await.unwrap();
    let second = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second.clone()).await.unwrap();
    browser.open("/#/search").await;
    browser.wait_for_count(".chip[data-connection]", 2).await;
    browser.wait_for_count("table.results tbody tr", 20).await;

    // The first tab disconnects Sandbox Team.
    client.switch_to_window(first.clone()).await.unwrap();
    browser
        .js("[...document.querySelectorAll('.connection')]
                .find((card) => card.textContent.includes('Sandbox Team'))
                .querySelector('button.danger').click();")
        .await;
    browser.click("dialog button[value=yes]").await;
    browser.wait_for_count(".connection", 1).await;

    // The second tab drops its chip and its results, without a reload.
    client.switch_to_window(second.clone()).await.unwrap();
    browser
        .until("the second tab to forget Sandbox Team", || async {
            let chips = chips(&browser).await;
            let workspaces = browser
                .js(
                    "return [...document.querySelectorAll('table.results td.workspace')]
                        .map((cell) => cell.textContent);",
                )
                .await;
            let team_gone = !workspaces.to_string().contains("Sandbox Team");
            (chips.len() == 1 && team_gone).then_some(())
        })
        .await;
    browser.screenshot("after-disconnect").await;

    // The first tab connects it again; the second tab offers it again.
    client.switch_to_window(first).await.unwrap();
    browser.click(".view-header button").await;
    browser.click("input[name=workspace][value='1']").await;
    browser.click("button[value=allow]").await;
    browser
        .find_text(".message.success", "Connected Sandbox Team")
        .await;
    client.switch_to_window(second).await.unwrap();
    browser
        .until("the second tab to offer Sandbox Team again", || async {
            let chips = chips(&browser).await;
            (chips.len() == 2 && chips.iter().any(|chip| chip.contains("Sandbox Team")))
                .then_some(())
        })
        .await;

    browser.assert_console_clean().await;
    browser.close().await;
}
