//! Serving the web app's files: content types, validators, HEAD, the policy they run under, and
//! `WEB_DIR` for people editing them.

use std::path::Path;

use crate::helpers::{Backend, assert_problem, on_both_databases, spawn_app, spawn_app_with};

on_both_databases!(
    the_web_app_is_served_under_a_strict_content_security_policy,
    every_file_answers_get_and_head_with_its_type_and_validator,
    other_methods_and_unknown_or_sneaky_paths_are_refused,
    web_dir_serves_the_files_of_that_directory,
    the_service_tells_the_app_how_it_is_set_up,
);

/// Every file of `web/`, relative to it.
fn web_files() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, files: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, files);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                files.push(relative.to_str().unwrap().to_owned());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files.sort();
    files
}

async fn the_web_app_is_served_under_a_strict_content_security_policy(backend: Backend) {
    let app = spawn_app(backend).await;

    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let html = response.text().await.unwrap();
    assert!(html.contains("<script type=\"module\" src=\"app.js\"></script>"));

    // No inline script, style or event handler anywhere in the app.
    for name in web_files() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("web")
                .join(&name),
        )
        .unwrap_or_default();
        if name.ends_with(".html") {
            assert!(!text.contains("<script>"), "inline script in {name}");
            assert!(!text.contains("<style"), "inline style in {name}");
            assert!(!text.contains(" style="), "style attribute in {name}");
            let handler = text.split(" on").skip(1).any(|rest| {
                let attribute: String =
                    rest.chars().take_while(char::is_ascii_alphabetic).collect();
                !attribute.is_empty() && rest[attribute.len()..].starts_with('=')
            });
            assert!(!handler, "inline event handler in {name}");
        }
        if name.ends_with(".js") {
            for forbidden in [
                "eval(",
                "new Function",
                "innerHTML",
                "setAttribute(\"style\"",
            ] {
                assert!(!text.contains(forbidden), "{forbidden} in {name}");
            }
        }
    }
}

async fn every_file_answers_get_and_head_with_its_type_and_validator(backend: Backend) {
    let app = spawn_app(backend).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let files = web_files();
    assert!(files.len() >= 8, "{files:?}");

    for name in files {
        let path = format!("/{name}");
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let content_type = headers["content-type"].to_str().unwrap().to_owned();
        let expected = match name.rsplit_once('.').unwrap().1 {
            "html" => "text/html; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("no expectation for .{other}"),
        };
        assert_eq!(content_type, expected, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        let etag = headers["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
            "{etag}"
        );
        let body = response.bytes().await.unwrap();
        assert_eq!(
            body,
            std::fs::read(root.join(&name)).unwrap(),
            "{path} is the file in web/"
        );

        let head = app.client.head(app.url(&path)).send().await.expect("HEAD");
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_eq!(head.headers()["content-type"], content_type.as_str());
        assert_eq!(head.headers()["etag"], etag.as_str());
        assert_eq!(
            head.headers()["content-length"],
            body.len().to_string().as_str()
        );
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD has no body");

        let revalidated = app
            .client
            .get(app.url(&path))
            .header("if-none-match", format!("W/\"other\", {etag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), 304, "{path}");
        assert_eq!(revalidated.headers()["etag"], etag.as_str());
        assert!(revalidated.bytes().await.unwrap().is_empty());

        let changed = app
            .client
            .get(app.url(&path))
            .header("if-none-match", "\"something-else\"")
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 200, "{path}");
    }
    // `/` is index.html, with the same validator.
    let index = app.get("/index.html").await;
    let root_page = app.get("/").await;
    assert_eq!(index.headers()["etag"], root_page.headers()["etag"]);
}

async fn other_methods_and_unknown_or_sneaky_paths_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;

    let post = app.client.post(app.url("/app.js")).send().await.unwrap();
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_problem(post, 405, "method_not_allowed").await;

    for path in [
        "/missing.js",
        "/views/",
        "/views/missing.js",
        "/.gitignore",
        "/%2e%2e/Cargo.toml",
        "/views/..%2F..%2FCargo.toml",
    ] {
        assert_problem(app.get(path).await, 404, "not_found").await;
    }
    // A raw request line, which no client library would normalise first.
    let raw = app.raw_get("/../Cargo.toml").await;
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert!(!raw.contains("[package]"), "{raw}");
}

async fn web_dir_serves_the_files_of_that_directory(backend: Backend) {
    let edited = tempfile::tempdir().unwrap();
    std::fs::write(
        edited.path().join("index.html"),
        "<!doctype html><p>edited</p>",
    )
    .unwrap();
    std::fs::create_dir(edited.path().join("views")).unwrap();
    std::fs::write(edited.path().join("views/extra.js"), "export {};").unwrap();
    std::fs::write(edited.path().join(".secret"), "hidden").unwrap();
    let dir = edited.path().to_str().unwrap().to_owned();
    let app = spawn_app_with(backend, |vars| {
        vars.insert("WEB_DIR".into(), dir);
    })
    .await;

    let page = app.get("/").await;
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let first_tag = page.headers()["etag"].clone();
    assert_eq!(page.text().await.unwrap(), "<!doctype html><p>edited</p>");
    assert_eq!(app.get("/views/extra.js").await.status(), 200);
    assert_problem(app.get("/.secret").await, 404, "not_found").await;
    assert_problem(app.get("/views").await, 404, "not_found").await;
    assert_problem(app.get("/app.js").await, 404, "not_found").await;

    // Edits show on the next request, with a new validator.
    std::fs::write(edited.path().join("index.html"), "<p>edited again</p>").unwrap();
    let page = app.get("/").await;
    assert_ne!(page.headers()["etag"], first_tag);
    assert_eq!(page.text().await.unwrap(), "<p>edited again</p>");
}

async fn the_service_tells_the_app_how_it_is_set_up(backend: Backend) {
    let sandboxed = spawn_app(backend).await;
    let info: serde_json::Value = sandboxed.get("/api/v1/info").await.json().await.unwrap();
    assert_eq!(
        info,
        serde_json::json!({
            "registration_open": true,
            "notion_sandbox": true,
            "public_url": "http://localhost:8000",
        })
    );

    let real = spawn_app_with(backend, |vars| {
        vars.insert("NOTION_CLIENT_ID".into(), "client".into());
        vars.insert("NOTION_CLIENT_SECRET".into(), "secret".into());
        vars.insert("ALLOW_REGISTRATION".into(), "false".into());
        vars.insert("PUBLIC_URL".into(), "http://127.0.0.1:9999/".into());
    })
    .await;
    let info: serde_json::Value = real.get("/api/v1/info").await.json().await.unwrap();
    assert_eq!(
        info,
        serde_json::json!({
            "registration_open": false,
            "notion_sandbox": false,
            "public_url": "http://127.0.0.1:9999",
        })
    );
}
