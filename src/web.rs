//! The bundled web app: the files of `web/`, compiled into the binary so that it serves the app
//! from any working directory, or read from `WEB_DIR` for people editing them.
//!
//! Every file answers `GET` and `HEAD`, with its content type, a strong `ETag` (conditional
//! requests get 304), `Cache-Control: no-cache` and the app's Content-Security-Policy. The file
//! names carry no content hash, so browsers must revalidate every file, not only `index.html`,
//! or a new release could run a new page with last release's modules; a revalidation costs one
//! 304 without a body.
//!
//! The bundle is fixed when the crate compiles: Cargo notices edits to the files it holds, but a
//! file added to `web/` is only picked up by the next build of this crate.

use std::{borrow::Cow, io, path::PathBuf};

use poem::{
    Endpoint, Request, Response, Result,
    http::{HeaderValue, Method, StatusCode, header},
};
use sha2::{Digest, Sha256};

use crate::{api::problem::ApiError, http_policy::WEB_CSP};

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Bundle;

/// Where the files come from.
#[derive(Clone, Debug)]
pub(crate) enum WebFiles {
    /// The copy compiled into the binary.
    Bundled,
    /// A directory read on every request.
    Directory(PathBuf),
}

impl WebFiles {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        dir.map_or(Self::Bundled, Self::Directory)
    }

    /// The file's bytes and SHA-256, or `None` when there is no such file.
    async fn load(&self, name: &str) -> io::Result<Option<(Cow<'static, [u8]>, [u8; 32])>> {
        match self {
            Self::Bundled => Ok(Bundle::get(name).map(|file| {
                let hash = file.metadata.sha256_hash();
                (file.data, hash)
            })),
            Self::Directory(dir) => match tokio::fs::read(dir.join(name)).await {
                Ok(bytes) => {
                    let hash = Sha256::digest(&bytes).into();
                    Ok(Some((Cow::Owned(bytes), hash)))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            },
        }
    }
}

impl Endpoint for WebFiles {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = poem::error::ResponseError::as_response(&ApiError::MethodNotAllowed);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(response);
        }
        let Some(name) = file_name(req.uri().path()) else {
            return Err(ApiError::NotFound.into());
        };
        let Some((bytes, hash)) = self
            .load(name)
            .await
            .map_err(|e| ApiError::internal(format!("reading the web app's file {name}: {e}")))?
        else {
            return Err(ApiError::NotFound.into());
        };

        let etag = etag(&hash);
        let fresh = req
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| matches_etag(value, &etag));
        let mut response = if fresh {
            Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .finish()
        } else {
            Response::builder()
                .content_type(content_type(name))
                .body(bytes.into_owned())
        };
        let headers = response.headers_mut();
        headers.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex is header-safe"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(WEB_CSP),
        );
        Ok(response)
    }
}

/// The bundle-relative name a request path asks for: `/` is `index.html`. Only plain names
/// made of letters, digits, `.`, `_` and `-` (in nested folders at most) are served, so a path
/// can never leave the folder or reach a hidden file.
fn file_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix('/')?;
    if name.is_empty() {
        return Some("index.html");
    }
    let plain = |segment: &str| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    name.split('/').all(plain).then_some(name)
}

fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// A strong validator: the first 128 bits of the content's SHA-256, quoted.
fn etag(hash: &[u8; 32]) -> String {
    format!("\"{}\"", crate::crypto::hex(&hash[..16]))
}

/// `If-None-Match` uses the weak comparison (RFC 9110, 13.1.2): `W/` prefixes are ignored.
fn matches_etag(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_inside_the_folder_are_served() {
        assert_eq!(file_name("/"), Some("index.html"));
        assert_eq!(file_name("/app.js"), Some("app.js"));
        assert_eq!(file_name("/views/search.js"), Some("views/search.js"));
        for path in [
            "",
            "/../Cargo.toml",
            "/views/../../secret",
            "/.env",
            "/views/.hidden",
            "/views/",
            "//etc/passwd",
            "/a%2F..",
            "/a\\b",
        ] {
            assert_eq!(file_name(path), None, "{path}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists() {
        let tag = "\"abc\"";
        assert!(matches_etag("\"abc\"", tag));
        assert!(matches_etag("W/\"abc\"", tag));
        assert!(matches_etag("\"x\", \"abc\"", tag));
        assert!(matches_etag("*", tag));
        assert!(!matches_etag("\"abcd\"", tag));
        assert!(!matches_etag("abc", tag));
    }

    #[test]
    fn every_bundled_file_has_a_known_content_type() {
        let names: Vec<_> = Bundle::iter().collect();
        assert!(names.iter().any(|name| name == "index.html"), "{names:?}");
        for name in names {
            assert_ne!(
                content_type(&name),
                "application/octet-stream",
                "{name} would be served without a useful type"
            );
            assert!(
                file_name(&format!("/{name}")).is_some(),
                "{name} is unreachable"
            );
        }
    }
}
