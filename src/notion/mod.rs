//! Talking to Notion (or to the built-in sandbox, which answers the same way).

pub(crate) mod authorization;
pub(crate) mod budget;
pub(crate) mod client;
pub(crate) mod connection_cache;
pub(crate) mod connections;
pub(crate) mod errors;
pub(crate) mod fanout;
pub(crate) mod fanout_cursor;
pub(crate) mod lease;
pub(crate) mod leftovers;
pub(crate) mod membership;
pub(crate) mod oauth;
pub(crate) mod refresher;
pub(crate) mod revoker;
pub mod search;
pub(crate) mod searcher;
pub(crate) mod segment;
pub mod vault;

use std::{net::SocketAddr, time::Duration};

use url::Url;

use crate::{config::Settings, secret::Secret};

/// Where Notion is and how to authenticate to it, resolved once the listener is bound (the
/// sandbox is reached on the service's own port).
#[derive(Clone, Debug)]
pub struct NotionEndpoints {
    /// Base of the URLs the service calls: `/oauth/token`, `/oauth/revoke`, `/search`, ...
    pub(crate) api_base: Url,
    /// The page the browser is sent to for consent.
    pub(crate) authorize_url: Url,
    /// Must match the integration's settings exactly.
    pub(crate) redirect_uri: Url,
    pub(crate) client_id: String,
    pub client_secret: Secret<String>,
    pub(crate) version: String,
}

/// The client id the sandbox accepts.
pub(crate) const SANDBOX_CLIENT_ID: &str = "notion-connect-sandbox";
/// Where the sandbox is mounted.
pub(crate) const SANDBOX_PATH: &str = "/sandbox/notion/v1";

impl NotionEndpoints {
    /// `sandbox_secret` is the client secret generated for this process when the sandbox stands
    /// in for Notion; `local_addr` is the bound listener.
    pub(crate) fn resolve(
        settings: &Settings,
        local_addr: SocketAddr,
        sandbox_secret: &Secret<String>,
    ) -> Self {
        let redirect_uri = join(&settings.public_url, "/api/v1/notion/oauth/callback");
        match &settings.notion.credentials {
            Some(credentials) => Self {
                api_base: settings.notion.api_base.clone(),
                authorize_url: join(&settings.notion.api_base, "/oauth/authorize"),
                redirect_uri,
                client_id: credentials.client_id.clone(),
                client_secret: credentials.client_secret.clone(),
                version: settings.notion.version.clone(),
            },
            None => {
                // The service calls its own sandbox over loopback, whatever address it listens on.
                let mut loopback = local_addr;
                if loopback.ip().is_unspecified() {
                    loopback.set_ip(if loopback.is_ipv4() {
                        [127, 0, 0, 1].into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                let api_base = Url::parse(&format!("http://{loopback}{SANDBOX_PATH}"))
                    .expect("a socket address makes a valid URL");
                Self {
                    api_base,
                    authorize_url: join(
                        &settings.public_url,
                        &format!("{SANDBOX_PATH}/oauth/authorize"),
                    ),
                    redirect_uri,
                    client_id: SANDBOX_CLIENT_ID.to_owned(),
                    client_secret: sandbox_secret.clone(),
                    version: settings.notion.version.clone(),
                }
            }
        }
    }

    /// `{api_base}{path}`.
    pub(crate) fn url(&self, path: &str) -> Url {
        join(&self.api_base, path)
    }
}

/// Appends `path` to a base URL that may or may not end with a slash.
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

/// The one HTTP client for every outbound call: bounded connect and request time, no redirects
/// (a redirect from the token endpoint must never carry our credentials elsewhere).
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("notion-connect/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is valid")
}
