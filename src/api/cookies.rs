//! The service's cookies: their names, their `Set-Cookie` values, reading them from a request,
//! and cookies a handler adds beyond the one its response type declares.

use std::sync::{Arc, Mutex};

use poem::{Request, http::header};

use crate::config::Settings;

/// The name a cookie of this service has. Over https it carries the `__Secure-` prefix, which
/// browsers accept only with the Secure attribute from a secure origin, so a plain-http page
/// cannot plant a cookie of that name.
fn cookie_name(settings: &Settings, base: &str) -> String {
    if settings.public_url.scheme() == "https" {
        format!("__Secure-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value for the cookie called `base` (see [`cookie_name`]): HttpOnly always,
/// Secure whenever the service is served over https. An empty `value` with `max_age` 0 deletes
/// the cookie.
pub(crate) fn set_cookie(
    settings: &Settings,
    base: &str,
    value: &str,
    path: &str,
    max_age: u64,
    same_site: &str,
) -> String {
    let secure = if settings.public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    let name = cookie_name(settings, base);
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    )
}

/// Every non-empty value of the cookie called `base` in the request. A browser sends several
/// when another page planted cookies of the same name, so callers must not simply take the
/// first.
pub(crate) fn cookies<'a>(settings: &Settings, req: &'a Request, base: &str) -> Vec<&'a str> {
    let name = cookie_name(settings, base);
    let mut values: Vec<&str> = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
        .collect();
    values.dedup();
    values
}

/// Cookies a handler sets beyond the one `Set-Cookie` header its response type declares
/// (poem-openapi writes one value per header field).
#[derive(Clone, Default)]
pub(crate) struct ResponseCookies(Arc<Mutex<Vec<String>>>);

impl ResponseCookies {
    pub(crate) fn add(&self, set_cookie: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(set_cookie);
    }

    /// The cookies added so far, leaving none.
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
