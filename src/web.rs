//! The bundled web app: the files of `web/`, compiled into the binary so that it serves the app
//! from any working directory, or read from `WEB_DIR` for people editing them.
//!
//! Every file answers `GET` and `HEAD`, with its content type, a strong `ETag` (conditional
//! requests get 304) and the app's Content-Security-Policy. The bundled files are prepared by
//! `build.rs`:
//!
//! - they are sent compressed when the request accepts it (brotli, else gzip), from copies made
//!   at build time, with `Vary: Accept-Encoding` and an `ETag` of their own per encoding;
//! - `index.html` names every other file by a versioned address (`app.js?v=…`, the start of the
//!   file's SHA-256) and preloads every module at once. A request for the current version is
//!   answered as immutable for a year, so a reload fetches nothing but `index.html`, which is
//!   always revalidated (`no-cache`; one 304 without a body when nothing changed). Any other
//!   request (no version, or last release's) gets the current file with `no-cache`.
//!
//! Files read from `WEB_DIR` are sent as they are (uncompressed, `no-cache`, no versions), so an
//! edit shows on the next reload.

use std::{borrow::Cow, io, path::PathBuf, sync::LazyLock};

use poem::{
    Endpoint, Request, Response, Result,
    http::{HeaderValue, Method, StatusCode, header},
};
use sha2::{Digest, Sha256};

use crate::{api::problem::ApiError, http_policy::WEB_CSP};

/// One file of `web/` as `build.rs` prepared it.
struct BundledFile {
    name: &'static str,
    /// What `?v=` must say for the file to be cached as immutable (empty for `index.html`).
    version: &'static str,
    sha256: [u8; 32],
    identity: &'static [u8],
    gzip: Option<&'static [u8]>,
    brotli: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/web_bundle.rs"));

/// The policy for the bundled files: the import map in `index.html` is an inline script, admitted
/// by its hash and nothing else.
static BUNDLE_CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = WEB_CSP.replacen(
        "script-src 'self'",
        &format!("script-src 'self' {IMPORT_MAP_HASH}"),
        1,
    );
    HeaderValue::from_str(&policy).expect("the policy is header-safe")
});

/// How long a versioned file may be kept without asking again.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Where the files come from.
#[derive(Clone, Debug)]
pub(crate) enum WebFiles {
    /// The copy compiled into the binary.
    Bundled,
    /// A directory read on every request.
    Directory(PathBuf),
}

/// The bytes to send for one request, and how they are described.
struct Representation {
    bytes: Cow<'static, [u8]>,
    sha256: [u8; 32],
    encoding: Encoding,
    /// The request named the file's current version.
    versioned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    fn token(self) -> Option<&'static str> {
        match self {
            Self::Identity => None,
            Self::Gzip => Some("gzip"),
            Self::Brotli => Some("br"),
        }
    }
}

impl WebFiles {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        dir.map_or(Self::Bundled, Self::Directory)
    }

    /// What to send for `name`, or `None` when there is no such file.
    async fn load(&self, name: &str, req: &Request) -> io::Result<Option<Representation>> {
        match self {
            Self::Bundled => {
                let Some(file) = FILES.iter().find(|file| file.name == name) else {
                    return Ok(None);
                };
                let accepted = accepted_encodings(req);
                let (bytes, encoding) = match (file.brotli, file.gzip) {
                    (Some(bytes), _) if accepted.brotli => (bytes, Encoding::Brotli),
                    (_, Some(bytes)) if accepted.gzip => (bytes, Encoding::Gzip),
                    _ => (file.identity, Encoding::Identity),
                };
                let versioned = !file.version.is_empty()
                    && query_version(req).is_some_and(|version| version == file.version);
                Ok(Some(Representation {
                    bytes: Cow::Borrowed(bytes),
                    sha256: file.sha256,
                    encoding,
                    versioned,
                }))
            }
            Self::Directory(dir) => match tokio::fs::read(dir.join(name)).await {
                Ok(bytes) => Ok(Some(Representation {
                    sha256: Sha256::digest(&bytes).into(),
                    bytes: Cow::Owned(bytes),
                    encoding: Encoding::Identity,
                    versioned: false,
                })),
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

    fn policy(&self) -> HeaderValue {
        match self {
            Self::Bundled => BUNDLE_CSP.clone(),
            Self::Directory(_) => HeaderValue::from_static(WEB_CSP),
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
        let Some(file) = self
            .load(name, &req)
            .await
            .map_err(|e| ApiError::internal(format!("reading the web app's file {name}: {e}")))?
        else {
            return Err(ApiError::NotFound.into());
        };

        let etag = etag(&file.sha256, file.encoding);
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
            let mut builder = Response::builder().content_type(content_type(name));
            if let Some(token) = file.encoding.token() {
                builder = builder.header(header::CONTENT_ENCODING, token);
            }
            builder.body(file.bytes.into_owned())
        };
        let headers = response.headers_mut();
        headers.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex is header-safe"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if file.versioned {
                IMMUTABLE
            } else {
                "no-cache"
            }),
        );
        if matches!(self, Self::Bundled) {
            headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        headers.insert(header::CONTENT_SECURITY_POLICY, self.policy());
        Ok(response)
    }
}

/// The `v` parameter of the request's query, if any.
fn query_version(req: &Request) -> Option<&str> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("v="))
}

/// Which compressed encodings `Accept-Encoding` admits (RFC 9110, 12.5.3): a coding is accepted
/// when it, or `*`, is listed with a weight above zero, and not refused by name.
#[derive(Debug, Default, PartialEq, Eq)]
struct Accepted {
    gzip: bool,
    brotli: bool,
}

fn accepted_encodings(req: &Request) -> Accepted {
    let mut named: Vec<(String, bool)> = Vec::new();
    let mut any = None;
    for value in req.headers().get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let weight = parts
                .filter_map(|parameter| {
                    let (key, value) = parameter.split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| value.trim().parse::<f32>().ok())?
                })
                .next()
                .unwrap_or(1.0);
            let admitted = weight > 0.0;
            if coding == "*" {
                any = Some(admitted);
            } else {
                named.push((coding, admitted));
            }
        }
    }
    let named_as = |coding: &str| {
        named
            .iter()
            .find(|(name, _)| name == coding)
            .map(|(_, admitted)| *admitted)
    };
    let fallback = any.unwrap_or(false);
    Accepted {
        gzip: named_as("gzip")
            .or_else(|| named_as("x-gzip"))
            .unwrap_or(fallback),
        brotli: named_as("br").unwrap_or(fallback),
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

/// A strong validator: the first 128 bits of the content's SHA-256, quoted, with the encoding
/// after it, since each encoding is a representation of its own.
fn etag(hash: &[u8; 32], encoding: Encoding) -> String {
    let hex = crate::crypto::hex(&hash[..16]);
    match encoding.token() {
        Some(token) => format!("\"{hex}-{token}\""),
        None => format!("\"{hex}\""),
    }
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

    fn request(accept_encoding: &str) -> Request {
        Request::builder()
            .header(header::ACCEPT_ENCODING, accept_encoding)
            .finish()
    }

    #[test]
    fn accept_encoding_is_read_with_its_weights() {
        let both = Accepted {
            gzip: true,
            brotli: true,
        };
        assert_eq!(
            accepted_encodings(&request("gzip, deflate, br, zstd")),
            both
        );
        assert_eq!(accepted_encodings(&request("*")), both);
        assert_eq!(
            accepted_encodings(&request("GZIP;q=0.5, br;q=0")),
            Accepted {
                gzip: true,
                brotli: false
            }
        );
        assert_eq!(
            accepted_encodings(&request("*;q=0.1, gzip; q=0")),
            Accepted {
                gzip: false,
                brotli: true
            }
        );
        assert_eq!(
            accepted_encodings(&request("identity")),
            Accepted::default()
        );
        assert_eq!(accepted_encodings(&request("")), Accepted::default());
        assert_eq!(
            accepted_encodings(&Request::builder().finish()),
            Accepted::default()
        );
    }

    #[test]
    fn the_bundle_is_versioned_compressed_and_preloaded() {
        let index = FILES.iter().find(|file| file.name == "index.html").unwrap();
        let html = std::str::from_utf8(index.identity).unwrap();
        assert!(index.version.is_empty());
        for file in FILES.iter().filter(|file| file.name != "index.html") {
            assert_eq!(file.version.len(), 16, "{}", file.name);
            let address = format!("/{}?v={}", file.name, file.version);
            if file.name.ends_with(".js") {
                assert!(
                    html.contains(&address),
                    "{address} is not in the import map"
                );
                if file.name != "app.js" {
                    assert!(
                        html.contains(&format!("<link rel=\"modulepreload\" href=\"{address}\">")),
                        "{address} is not preloaded"
                    );
                }
            }
            for copy in [file.gzip, file.brotli].into_iter().flatten() {
                assert!(copy.len() < file.identity.len(), "{}", file.name);
            }
        }
        assert!(html.contains("<script type=\"importmap\">"));
        assert!(!html.contains("<!-- modules -->"));
        assert!(IMPORT_MAP_HASH.starts_with("'sha256-"));
    }

    #[test]
    fn the_compressed_copies_hold_the_same_bytes() {
        use std::io::Read as _;
        for file in FILES {
            if let Some(gzip) = file.gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(gzip)
                    .read_to_end(&mut plain)
                    .unwrap();
                assert_eq!(plain, file.identity, "{}", file.name);
            }
            if let Some(brotli) = file.brotli {
                let mut plain = Vec::new();
                brotli_decompressor::Decompressor::new(brotli, 4096)
                    .read_to_end(&mut plain)
                    .unwrap();
                assert_eq!(plain, file.identity, "{}", file.name);
            }
            assert_eq!(
                <[u8; 32]>::from(Sha256::digest(file.identity)),
                file.sha256,
                "{}",
                file.name
            );
        }
        let index = FILES.iter().find(|file| file.name == "index.html").unwrap();
        assert!(index.gzip.is_some() && index.brotli.is_some());
    }

    #[test]
    fn every_bundled_file_has_a_known_content_type() {
        let names: Vec<_> = FILES.iter().map(|file| file.name).collect();
        assert!(names.contains(&"index.html"), "{names:?}");
        for name in names {
            assert_ne!(
                content_type(name),
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
