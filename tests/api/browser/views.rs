//! Every view of the app as people see it: a screenshot at 1280 px in the light and the dark
//! theme and one at 390 px, axe-core in both themes, and no sideways scrolling at 320 px
//! (WCAG 1.4.10).

use super::{app_and_browser, driver::Browser, submit_sign_in};
use crate::helpers::{Backend, PASSWORD, on_both_databases};

on_both_databases!(every_view_is_accessible_and_fits_a_small_screen);

/// Waits until the page is settled: `ready` (a JavaScript condition) holds and nothing is
/// loading.
async fn settle(browser: &Browser, ready: &str) {
    browser
        .wait_for_js(&format!(
            "({ready}) && !document.body.classList.contains('booting')
             && !document.querySelector('[aria-busy=true]')
             && !document.querySelector('.status-line .spinner')"
        ))
        .await;
    // One frame, so that what was just laid out is also painted.
    browser
        .js("return new Promise((done) => requestAnimationFrame(() => done(true)));")
        .await;
}

/// Looks at the view at `path` the ways people see it: screenshots, axe-core in both themes,
/// and a 320 px screen without sideways scrolling.
async fn look(browser: &Browser, name: &str, path: &str, ready: &str) {
    // A fresh load, even when the address is the one already shown. The reload waits for the
    // first load to finish starting (its session renewed): a page left while its renewal is on
    // the way never receives the renewed token, and presenting the old one again would end the
    // session as a stolen token's.
    browser.open(path).await;
    browser
        .until("the app to start", || async {
            let booting = browser
                .js("return document.body.classList.contains('booting');")
                .await;
            (booting == false).then_some(())
        })
        .await;
    browser.reload().await;
    for (label, width, dark) in [
        ("1280-light", None, false),
        ("1280-dark", None, true),
        ("390", Some(390), false),
    ] {
        browser.emulate(width, dark).await;
        settle(browser, ready).await;
        browser.screenshot(&format!("{name}-{label}")).await;
        if width.is_none() {
            browser
                .assert_accessible(&format!("{name} ({label})"))
                .await;
        }
    }
    browser.emulate(Some(320), false).await;
    settle(browser, ready).await;
    let overflow = browser
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
        .await;
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "{name} is wider than a 320 px screen by {overflow} px"
    );
    browser.emulate(None, false).await;
}

async fn every_view_is_accessible_and_fits_a_small_screen(backend: Backend) {
    let Some((app, browser)) = app_and_browser(backend, "view", |_| {}).await else {
        return;
    };
    assert!(
        crate::cli::create_user_with_cli(&app, "chief", true)
            .status
            .success()
    );

    look(
        &browser,
        "sign-in",
        "/#/login",
        "document.querySelector('#username')",
    )
    .await;
    look(
        &browser,
        "register",
        "/#/register",
        "document.querySelector('#username')",
    )
    .await;

    browser.open("/#/login?next=%2Fconnections").await;
    submit_sign_in(&browser, "chief").await;
    browser.find_text("h1", "Connections").await;
    look(
        &browser,
        "connections-empty",
        "/#/connections",
        "document.querySelector('.empty')",
    )
    .await;
    // One primary button on the empty page: the one beside the explanation.
    let buttons = browser
        .js(
            "return [...document.querySelectorAll('main button.primary')]
                .filter((b) => b.offsetParent !== null).length;",
        )
        .await;
    assert_eq!(buttons, 1, "the empty page offers one Connect button");

    // The sandbox's consent page, which stands in for Notion's, in the app's look.
    browser
        .js("document.querySelector('.empty button').click();")
        .await;
    browser.find("button[value=allow]").await;
    let consent = browser.url().await;
    let consent = format!("{}?{}", consent.path(), consent.query().unwrap_or_default());
    look(
        &browser,
        "sandbox-consent",
        &consent,
        "document.querySelector('button[value=allow]')",
    )
    .await;

    // Two workspaces, one with a long owner e-mail (the sandbox's), for the narrow screens.
    let login = app.login("chief", PASSWORD).await;
    let access = crate::helpers::Tokens::from_response(login).await.access;
    let first = app.connect_sandbox_workspace(&access, 0).await;
    app.connect_sandbox_workspace(&access, 1).await;

    look(
        &browser,
        "connections",
        "/#/connections",
        "document.querySelectorAll('.connection').length === 2",
    )
    .await;
    look(
        &browser,
        "connected",
        &format!("/#/connections?connected={first}"),
        "document.querySelector('.message.success')",
    )
    .await;
    look(
        &browser,
        "search-everywhere",
        "/#/search",
        "document.querySelectorAll('table.results tbody tr').length === 20",
    )
    .await;
    look(
        &browser,
        "search-everywhere-empty",
        "/#/search?query=nothing%20matches%20this",
        "document.querySelector('.empty')",
    )
    .await;
    look(
        &browser,
        "search-one",
        &format!("/#/connections/{first}/search?query=a"),
        "document.querySelectorAll('table.results tbody tr').length > 0
         && document.querySelector('h1').textContent.includes('Sandbox')",
    )
    .await;
    // The query's words are marked in the titles, and a page of results sorted by edit time
    // shows different dates (the sandbox's edits are more than a week old: dates, not "ago").
    let marks = browser
        .js("return [...document.querySelectorAll('td.title mark')].map((m) => m.textContent);")
        .await;
    let marks = marks.as_array().unwrap();
    assert!(!marks.is_empty(), "no match is marked");
    assert!(
        marks
            .iter()
            .all(|m| m.as_str().unwrap().eq_ignore_ascii_case("a")),
        "{marks:?}"
    );
    let dates = browser
        .js(
            "return [...new Set([...document.querySelectorAll('td.when time')]
                .map((t) => t.textContent))];",
        )
        .await;
    let dates = dates.as_array().unwrap();
    assert!(dates.len() >= 2, "one date for every result: {dates:?}");
    assert!(
        dates.iter().all(|d| !d.as_str().unwrap().contains("ago")),
        "{dates:?}"
    );
    look(
        &browser,
        "admin",
        "/#/admin",
        "document.querySelectorAll('table tbody tr').length >= 3",
    )
    .await;
    look(
        &browser,
        "not-found",
        "/#/no/such/view",
        "document.querySelector('h1')?.textContent === 'Nothing here'",
    )
    .await;

    browser.assert_console_clean().await;
    browser.close().await;
}
