//! The app with the keyboard alone: where focus lands after returning from Notion, after
//! moving between views and after Load more, and the arrow keys through the results.

use serde_json::Value;

use super::{app_and_browser, driver::Browser, sign_in};
use crate::helpers::{Backend, on_both_databases};

on_both_databases!(the_keyboard_reaches_everything_in_order);

const TAB: char = '\u{E004}';
const ENTER: char = '\u{E007}';
const END: char = '\u{E010}';
const HOME: char = '\u{E011}';
const ARROW_UP: char = '\u{E013}';
const ARROW_DOWN: char = '\u{E015}';

/// Whether the focused element is the title of row `index` (from 0) of the results.
async fn focus_is_on_result(browser: &Browser, index: usize) -> bool {
    browser
        .js(&format!(
            "const rows = document.querySelectorAll('table.results tbody tr');
             return rows[{index}] !== undefined
                 && document.activeElement === rows[{index}].querySelector('.result-target');"
        ))
        .await
        == Value::Bool(true)
}

async fn press_and_expect_result(browser: &Browser, key: char, index: usize) {
    browser.press(key).await;
    assert!(
        focus_is_on_result(browser, index).await,
        "focus should be on result {index}, is on {}",
        browser.focused().await
    );
}

/// A heading the app focused shows no focus ring: it is not a control.
async fn assert_heading_focused_quietly(browser: &Browser, text: &str) {
    browser
        .wait_for_js(&format!(
            "document.activeElement.tagName === 'H1'
             && document.activeElement.textContent.includes({text:?})"
        ))
        .await;
    let outline = browser
        .js("return getComputedStyle(document.activeElement).outlineStyle;")
        .await;
    assert_eq!(outline, "none", "the focused heading {text:?} shows a ring");
}

async fn the_keyboard_reaches_everything_in_order(backend: Backend) {
    let Some((app, browser)) = app_and_browser(backend, "keyboard", |_| {}).await else {
        return;
    };
    let _ = app.signed_in("typist").await;
    sign_in(&browser, "typist").await;

    // Back from Notion, the outcome is focused, and Tab goes on to its link.
    browser
        .js("[...document.querySelectorAll('main button')]
                .find((b) => b.offsetParent !== null && b.textContent.includes('Connect'))
                .click();")
        .await;
    browser.click("button[value=allow]").await;
    browser
        .find_text(".message.success", "Connected Sandbox Workspace")
        .await;
    browser
        .wait_for_js("document.activeElement.matches('.message.success')")
        .await;
    browser.press(TAB).await;
    assert_eq!(
        browser.focused().await["text"],
        "Search it now",
        "Tab from the outcome reaches its link"
    );

    // Moving to a view puts focus on its heading, quietly; on a workspace's search, Tab from
    // the heading reaches the way back.
    browser.press(ENTER).await;
    browser.wait_for_count("table.results tbody tr", 20).await;
    assert_heading_focused_quietly(&browser, "Search Sandbox Workspace").await;
    browser.press(TAB).await;
    assert_eq!(browser.focused().await["class"], "back-link");

    // The search across workspaces, from the navigation (its rows name their workspaces, so
    // the rows waited for are its own, not the last view's).
    browser.click("nav a[data-section=search]").await;
    browser
        .wait_for_count("table.results tbody tr td.workspace", 20)
        .await;
    assert_heading_focused_quietly(&browser, "Search all workspaces").await;

    // `/` goes to the box; the arrows go through the results and back up to the box.
    browser.press('/').await;
    assert_eq!(browser.focused().await["id"], "search-query");
    press_and_expect_result(&browser, ARROW_DOWN, 0).await;
    press_and_expect_result(&browser, ARROW_DOWN, 1).await;
    press_and_expect_result(&browser, END, 19).await;
    press_and_expect_result(&browser, HOME, 0).await;
    browser.press(ARROW_UP).await;
    assert_eq!(browser.focused().await["id"], "search-query");

    // Load more, with the keyboard: focus goes to the first of the new results, not to the page.
    browser
        .js("document.querySelector('.load-more button').focus();")
        .await;
    browser.press(ENTER).await;
    browser.wait_for_count("table.results tbody tr", 40).await;
    browser
        .until("focus on the first new result", || async {
            focus_is_on_result(&browser, 20).await.then_some(())
        })
        .await;
    press_and_expect_result(&browser, ARROW_DOWN, 21).await;
    browser.screenshot("load-more-focus").await;

    browser.assert_console_clean().await;
    browser.close().await;
}
