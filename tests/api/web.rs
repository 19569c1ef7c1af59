//! Serving the web app's files: content types, validators, HEAD, the policy they run under,
//! compression, versioned addresses, and `WEB_DIR` for people editing them.

use std::{io::Read, path::Path};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::helpers::{Backend, assert_problem, on_both_databases, spawn_app, spawn_app_with};

on_both_databases!(
    the_web_app_is_served_under_a_strict_content_security_policy,
    every_file_answers_get_and_head_with_its_type_and_validator,
    other_methods_and_unknown_or_sneaky_paths_are_refused,
    web_dir_serves_the_files_of_that_directory,
    the_service_tells_the_app_how_it_is_set_up,
    files_are_sent_compressed_when_asked_and_revalidate_with_304,
    versioned_addresses_are_kept_and_every_other_address_revalidates,
);

/// `index.html` as served refers to the other files by versioned addresses: this undoes that,
/// so that it can be compared with the file in `web/`.
fn without_versions(html: &str) -> String {
    let mut plain = String::new();
    let mut rest = html;
    while let Some(at) = rest.find("?v=") {
        plain.push_str(&rest[..at]);
        let version: String = rest[at + 3..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        assert_eq!(version.len(), 16, "a version of 16 hex digits");
        rest = &rest[at + 3 + version.len()..];
    }
    plain.push_str(rest);
    plain
}

/// The import map of the served `index.html`: `(module, versioned address)`.
fn import_map(html: &str) -> (String, Vec<(String, String)>) {
    let start = html
        .find("<script type=\"importmap\">")
        .expect("an import map")
        + "<script type=\"importmap\">".len();
    let text = &html[start..start + html[start..].find("</script>").unwrap()];
    let map: serde_json::Value = serde_json::from_str(text).expect("the import map is JSON");
    let imports = map["imports"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(module, address)| (module.clone(), address.as_str().unwrap().to_owned()))
        .collect();
    (text.to_owned(), imports)
}

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
    assert!(html.contains("<script type=\"module\" src=\"app.js?v="));

    // The one inline script is the import map, admitted by its hash and nothing else.
    let (map, imports) = import_map(&html);
    assert!(imports.len() >= 8, "{imports:?}");
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map.as_bytes()));
    assert!(
        csp.contains(&format!("script-src 'self' 'sha256-{hash}';")),
        "{csp}"
    );
    assert_eq!(html.matches("<script").count(), 2, "{html}");

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
        let source = std::fs::read(root.join(&name)).unwrap();
        if name == "index.html" {
            // Served with versioned addresses, an import map and the preload list.
            let served = without_versions(std::str::from_utf8(&body).unwrap());
            for line in std::str::from_utf8(&source).unwrap().lines() {
                if !line.contains("<!-- modules -->") {
                    assert!(served.contains(line), "{line:?} is not in the served page");
                }
            }
        } else {
            assert_eq!(body, source, "{path} is the file in web/");
        }

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
    // Sent as they are, even to a client that accepts compression.
    let asked = app
        .client
        .get(app.url("/views/extra.js"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert!(asked.headers().get("content-encoding").is_none());
    assert_eq!(asked.text().await.unwrap(), "export {};");
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

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .expect("gzip");
    plain
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    brotli_decompressor::Decompressor::new(bytes, 4096)
        .read_to_end(&mut plain)
        .expect("brotli");
    plain
}

async fn files_are_sent_compressed_when_asked_and_revalidate_with_304(backend: Backend) {
    let app = spawn_app(backend).await;
    let get = |path: &str, accept: &str| {
        app.client
            .get(app.url(path))
            .header("accept-encoding", accept)
            .send()
    };
    // What the files weigh as they are, and as a browser receives them.
    let mut plain_total = 0;
    let mut browser_total = 0;
    for name in web_files() {
        let path = format!("/{name}");
        let plain = get(&path, "identity").await.unwrap();
        assert!(plain.headers().get("content-encoding").is_none(), "{path}");
        assert_eq!(plain.headers()["vary"], "Accept-Encoding");
        let plain_tag = plain.headers()["etag"].to_str().unwrap().to_owned();
        let plain = plain.bytes().await.unwrap().to_vec();

        for (accept, encoding, decode) in [
            (
                "gzip, deflate, br, zstd",
                "br",
                unbrotli as fn(&[u8]) -> Vec<u8>,
            ),
            ("br;q=0, gzip", "gzip", gunzip),
            ("*", "br", unbrotli),
        ] {
            let response = get(&path, accept).await.unwrap();
            assert_eq!(response.status(), 200, "{path} {accept}");
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap();
            if accept.starts_with("gzip, deflate") {
                browser_total += body.len();
            }
            let Some(sent) = headers.get("content-encoding") else {
                // Only where compressing would not make it smaller (a tiny icon, perhaps).
                assert_eq!(body.to_vec(), plain, "{path}");
                continue;
            };
            assert_eq!(sent, encoding, "{path} {accept}");
            assert!(body.len() < plain.len(), "{path} {encoding} is smaller");
            assert_eq!(decode(&body), plain, "{path} {encoding} holds the file");
            assert_eq!(headers["vary"], "Accept-Encoding");
            assert_eq!(
                headers["content-type"],
                app.get(&path).await.headers()["content-type"]
            );
            let tag = headers["etag"].to_str().unwrap().to_owned();
            assert_ne!(tag, plain_tag, "each encoding has its own validator");

            // A cached copy revalidates with a 304 and no body.
            let revalidated = app
                .client
                .get(app.url(&path))
                .header("accept-encoding", accept)
                .header("if-none-match", &tag)
                .send()
                .await
                .unwrap();
            assert_eq!(revalidated.status(), 304, "{path} {accept}");
            assert_eq!(revalidated.headers()["etag"], tag.as_str());
            assert!(revalidated.bytes().await.unwrap().is_empty());
        }
        plain_total += plain.len();
        // HEAD describes the compressed body.
        let head = app
            .client
            .head(app.url(&path))
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        let length: usize = head.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = get(&path, "br").await.unwrap().bytes().await.unwrap();
        assert_eq!(length, body.len(), "HEAD {path}");
    }
    assert!(
        browser_total * 3 < plain_total,
        "compression should save most of the bytes: {browser_total} of {plain_total}"
    );
}

async fn versioned_addresses_are_kept_and_every_other_address_revalidates(backend: Backend) {
    let app = spawn_app(backend).await;
    let html = app.get("/").await.text().await.unwrap();
    let (_, imports) = import_map(&html);
    let mut addresses: Vec<String> = imports.into_iter().map(|(_, address)| address).collect();
    for name in ["style.css", "icon.svg"] {
        let start = html
            .find(&format!("{name}?v="))
            .expect("a versioned address");
        addresses.push(format!("/{}", &html[start..start + name.len() + 19]));
    }
    for module in addresses.iter().filter(|address| address.ends_with(".js")) {
        if !module.starts_with("/app.js") {
            assert!(
                html.contains(&format!("<link rel=\"modulepreload\" href=\"{module}\">")),
                "{module} is preloaded"
            );
        }
    }
    for address in &addresses {
        let current = app.get(address).await;
        assert_eq!(current.status(), 200, "{address}");
        assert_eq!(
            current.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{address}"
        );
        let (path, _) = address.split_once('?').unwrap();
        let body = current.bytes().await.unwrap();
        assert_eq!(body, app.get(path).await.bytes().await.unwrap());

        // Last release's address (or none) gets today's file, to be revalidated every time.
        for other in [
            format!("{path}?v=0000000000000000"),
            path.to_owned(),
            format!("{path}?v="),
        ] {
            let response = app.get(&other).await;
            assert_eq!(response.status(), 200, "{other}");
            assert_eq!(response.headers()["cache-control"], "no-cache", "{other}");
        }
    }
    // The page itself is always revalidated, whatever its query.
    for page in ["/", "/index.html", "/?v=1"] {
        assert_eq!(app.get(page).await.headers()["cache-control"], "no-cache");
    }
}
