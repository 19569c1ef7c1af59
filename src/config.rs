//! Typed settings, read once at start-up from the environment (plus an optional `.env` file and
//! command-line overrides) and validated before anything else happens.
//!
//! Every problem is reported as one line that names the variable and says what was expected.
//! Secret values are never repeated in those messages. An empty variable counts as unset, so a
//! `.env` file may list a variable without a value.

use std::{
    fs,
    io::{self, Write},
    net::{IpAddr, SocketAddr},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use url::Url;

use crate::{client_ip::TrustedProxies, crypto::KeyRing, secret::Secret};

/// Shortest accepted `JWT_SECRET`, in bytes (HS256 wants at least the hash size).
pub(crate) const MIN_JWT_SECRET_LEN: usize = 32;
/// The oldest Notion API version that returns data sources from search.
const OLDEST_NOTION_VERSION: &str = "2025-09-03";
const DEFAULT_NOTION_VERSION: &str = "2026-03-11";
const DEFAULT_NOTION_API_BASE: &str = "https://api.notion.com/v1";
/// Search calls to Notion in flight at once, by default. Each holds a connection with its read
/// buffers and an answer of up to 4 MiB, so the cap is what keeps memory bounded when searches
/// pile up (a burst of users, or Notion slowing down). At Notion's usual 150 to 300 ms per
/// search it still carries fifty to a hundred searches a second.
const DEFAULT_NOTION_CONCURRENCY: usize = 16;
/// How long a search across workspaces waits for the slowest, by default (at most
/// `NOTION_TIMEOUT`): long enough for Notion's usual answers and a retry, short enough that one
/// slow workspace does not keep a person waiting for the others.
const DEFAULT_FANOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time a PostgreSQL statement may run, by default (never more than half of
/// `REQUEST_TIMEOUT`). Every statement of a request is an indexed lookup or a small write that
/// takes milliseconds; one still running after this is stuck behind a lock or a failing disk.
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
const JWT_SECRET_FILE: &str = "jwt_secret";
const KEY_RING_FILE: &str = "token_encryption_keys";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AppEnv {
    Development,
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub(crate) env: AppEnv,
    pub(crate) bind_addr: SocketAddr,
    /// Where `GET /metrics` is served, apart from the API; unset, metrics are not served.
    pub(crate) metrics_bind_addr: Option<SocketAddr>,
    /// Origin under which browsers and Notion reach the service, without a trailing slash.
    pub(crate) public_url: Url,
    /// Where the browser goes after the OAuth callback.
    pub(crate) web_url: Url,
    /// May carry a password, hence secret.
    pub database_url: Secret<String>,
    /// Longest time one PostgreSQL statement may run (`statement_timeout`); `None`: no limit.
    pub statement_timeout: Option<Duration>,
    /// Serve the web app from this directory instead of the copy built into the binary (for
    /// people editing the app).
    pub(crate) web_dir: Option<PathBuf>,
    pub(crate) jwt_secret: Secret<Vec<u8>>,
    pub token_keys: KeyRing,
    pub(crate) notion: NotionSettings,
    pub(crate) allow_registration: bool,
    /// Exact origins (`scheme://host[:port]`) of a separately hosted web app.
    pub(crate) cors_allowed_origins: Vec<String>,
    pub(crate) access_token_ttl: Duration,
    /// Login and registration requests allowed per client IP and minute.
    pub(crate) auth_rate_limit: u32,
    /// Peers whose `X-Forwarded-For` is believed.
    pub(crate) trusted_proxies: TrustedProxies,
    /// Password hashes computed at once.
    pub(crate) password_hash_concurrency: usize,
    /// How long a login or registration may wait for a hashing slot before it gets 503.
    pub(crate) password_hash_wait: Duration,
    /// Deadlines and limits for connections and requests.
    pub(crate) http: HttpLimits,
    pub log_format: LogFormat,
    /// Secrets generated during this start (variable, file), announced once logging is up.
    pub(crate) generated_secrets: Vec<(&'static str, PathBuf)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HttpLimits {
    /// Open connections at once; more wait in the backlog.
    pub max_connections: usize,
    /// From the first byte of a request to the end of its head.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open without starting a request.
    pub keep_alive_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_read_timeout: Duration,
    /// From the head to the response; a request still running then gets 503.
    pub request_timeout: Duration,
}

#[derive(Clone, Debug)]
pub(crate) struct NotionSettings {
    /// `None` means the built-in sandbox stands in for Notion (development only).
    pub credentials: Option<NotionCredentials>,
    pub api_base: Url,
    pub version: String,
    /// Longest time one call to Notion may take, retries included.
    pub timeout: Duration,
    /// Requests per second to Notion per connection.
    pub rate_limit: u32,
    /// Most search calls to Notion in flight at once, across all connections.
    pub concurrency: usize,
    /// How long a search across workspaces waits for the slowest one.
    pub fanout_timeout: Duration,
}

#[derive(Clone, Debug)]
pub(crate) struct NotionCredentials {
    pub client_id: String,
    pub client_secret: Secret<String>,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable}: expected {expected}")]
    Invalid {
        variable: &'static str,
        expected: String,
    },
    #[error("{variable} is required in production: {expected}")]
    Required {
        variable: &'static str,
        expected: &'static str,
    },
    #[error("{variable}: could not use the generated secret file {}: {source}", path.display())]
    SecretFile {
        variable: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn required(variable: &'static str, expected: &'static str) -> ConfigError {
    ConfigError::Required { variable, expected }
}

fn invalid(variable: &'static str, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        variable,
        expected: expected.into(),
    }
}

impl Settings {
    /// Reads the process environment after loading `.env` (if present). `overrides` come from
    /// command-line flags and win over both.
    pub fn from_env(overrides: &[(&'static str, String)]) -> Result<Self, ConfigError> {
        // A missing .env file is normal; a malformed one is worth stopping for.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(invalid(".env", format!("a readable dotenv file ({e})"))),
        }
        Self::from_source(|name| {
            overrides
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
                .or_else(|| std::env::var(name).ok())
        })
    }

    /// Builds settings from any variable lookup; tests pass a map.
    pub fn from_source(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let env = vars.read("APP_ENV", AppEnv::Development, |raw| match raw {
            "development" => Ok(AppEnv::Development),
            "production" => Ok(AppEnv::Production),
            other => Err(invalid(
                "APP_ENV",
                format!("'development' or 'production', not '{other}'"),
            )),
        })?;
        let addresses = Addresses::read(&vars, env)?;
        let storage = Storage::read(&vars)?;
        let mut generated_secrets = Vec::new();
        let (jwt_secret, token_keys) =
            read_secrets(&vars, env, &storage.data_dir, &mut generated_secrets)?;
        let notion = NotionSettings::read(&vars, env)?;
        let accounts = AccountSettings::read(&vars, env)?;
        let http = HttpLimits::read(&vars, notion.timeout, accounts.password_hash_wait)?;
        let statement_timeout = read_statement_timeout(&vars, http.request_timeout)?;
        let log_format = vars.read(
            "LOG_FORMAT",
            if env == AppEnv::Production {
                LogFormat::Json
            } else {
                LogFormat::Pretty
            },
            |raw| match raw {
                "pretty" => Ok(LogFormat::Pretty),
                "json" => Ok(LogFormat::Json),
                other => Err(invalid(
                    "LOG_FORMAT",
                    format!("'pretty' or 'json', not '{other}'"),
                )),
            },
        )?;
        Ok(Self {
            env,
            bind_addr: addresses.bind_addr,
            metrics_bind_addr: addresses.metrics_bind_addr,
            public_url: addresses.public_url,
            web_url: addresses.web_url,
            database_url: Secret::new(storage.database_url),
            statement_timeout,
            web_dir: storage.web_dir,
            jwt_secret,
            token_keys,
            notion,
            allow_registration: accounts.allow_registration,
            cors_allowed_origins: accounts.cors_allowed_origins,
            access_token_ttl: accounts.access_token_ttl,
            auth_rate_limit: accounts.auth_rate_limit,
            trusted_proxies: accounts.trusted_proxies,
            password_hash_concurrency: accounts.password_hash_concurrency,
            password_hash_wait: accounts.password_hash_wait,
            http,
            log_format,
            generated_secrets,
        })
    }

    /// True when the built-in Notion stand-in replaces Notion.
    pub(crate) fn sandbox_enabled(&self) -> bool {
        self.notion.credentials.is_none()
    }
}

/// The variables, as the readers below see them: an empty value counts as unset.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    /// `default` when `name` is unset, else what `parse` makes of its trimmed value.
    fn read<T>(
        &self,
        name: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, ConfigError>,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse(raw.trim()),
        }
    }
}

/// Where the service listens and is reached.
struct Addresses {
    bind_addr: SocketAddr,
    metrics_bind_addr: Option<SocketAddr>,
    public_url: Url,
    web_url: Url,
}

impl Addresses {
    fn read(
        vars: &Vars<impl Fn(&str) -> Option<String>>,
        env: AppEnv,
    ) -> Result<Self, ConfigError> {
        let bind_addr = vars.read(
            "BIND_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 8000)),
            |raw| {
                raw.parse().map_err(|_| {
                    invalid(
                        "BIND_ADDR",
                        format!("an IP address and port such as 127.0.0.1:8000, not '{raw}'"),
                    )
                })
            },
        )?;
        let metrics_bind_addr: Option<SocketAddr> =
            vars.read("METRICS_BIND_ADDR", None, |raw| {
                raw.parse().map(Some).map_err(|_| {
                    invalid(
                        "METRICS_BIND_ADDR",
                        format!("an IP address and port such as 127.0.0.1:9100, not '{raw}'"),
                    )
                })
            })?;
        if metrics_bind_addr.is_some_and(|addr| addr == bind_addr && addr.port() != 0) {
            return Err(invalid(
                "METRICS_BIND_ADDR",
                "an address other than BIND_ADDR's",
            ));
        }
        let public_url = match vars.get("PUBLIC_URL") {
            None if env == AppEnv::Production => {
                return Err(required("PUBLIC_URL", "the https origin of the service"));
            }
            None => Url::parse("http://localhost:8000").expect("valid default URL"),
            Some(raw) => parse_public_url(&raw, env)?,
        };
        let web_url = match vars.get("WEB_URL") {
            None => public_url.clone(),
            Some(raw) => parse_http_url("WEB_URL", &raw, env)?,
        };
        Ok(Self {
            bind_addr,
            metrics_bind_addr,
            public_url,
            web_url,
        })
    }
}

/// Where data lives.
struct Storage {
    data_dir: PathBuf,
    web_dir: Option<PathBuf>,
    database_url: String,
}

impl Storage {
    fn read(vars: &Vars<impl Fn(&str) -> Option<String>>) -> Result<Self, ConfigError> {
        let data_dir = PathBuf::from(vars.get("DATA_DIR").unwrap_or_else(|| "data".to_owned()));
        let web_dir = vars.get("WEB_DIR").map(PathBuf::from);
        if let Some(dir) = &web_dir
            && !dir.join("index.html").is_file()
        {
            return Err(invalid("WEB_DIR", "a directory that contains index.html"));
        }
        let database_url = match vars.get("DATABASE_URL") {
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("notion-connect.db").display()
            ),
            Some(raw) => {
                let raw = raw.trim().to_owned();
                let known = ["sqlite:", "postgres://", "postgresql://"];
                if !known.iter().any(|prefix| raw.starts_with(prefix)) {
                    return Err(invalid("DATABASE_URL", "a sqlite:// or postgres:// URL"));
                }
                raw
            }
        };
        Ok(Self {
            data_dir,
            web_dir,
            database_url,
        })
    }
}

/// `JWT_SECRET` and `TOKEN_ENCRYPTION_KEYS`: mandatory in production, generated once and kept
/// under `data_dir` in development (each one generated is added to `generated`).
fn read_secrets(
    vars: &Vars<impl Fn(&str) -> Option<String>>,
    env: AppEnv,
    data_dir: &Path,
    generated: &mut Vec<(&'static str, PathBuf)>,
) -> Result<(Secret<Vec<u8>>, KeyRing), ConfigError> {
    let production = env == AppEnv::Production;
    let jwt_secret = match vars.get("JWT_SECRET") {
        Some(raw) => parse_jwt_secret("JWT_SECRET", &raw)?,
        None if production => {
            return Err(required(
                "JWT_SECRET",
                "at least 32 random bytes, base64-encoded",
            ));
        }
        None => {
            let raw = load_or_generate(
                "JWT_SECRET",
                &data_dir.join(JWT_SECRET_FILE),
                generated,
                || {
                    crate::crypto::random_bytes::<48>()
                        .map(|bytes| Secret::new(STANDARD.encode(bytes)))
                },
            )?;
            parse_jwt_secret("JWT_SECRET", raw.expose())?
        }
    };
    let token_keys = match vars.get("TOKEN_ENCRYPTION_KEYS") {
        Some(raw) => parse_key_ring(&raw)?,
        None if production => {
            return Err(required(
                "TOKEN_ENCRYPTION_KEYS",
                "a key ring 'kid:base64key,...' (`notion-connect generate-key` prints an entry)",
            ));
        }
        None => {
            let raw = load_or_generate(
                "TOKEN_ENCRYPTION_KEYS",
                &data_dir.join(KEY_RING_FILE),
                generated,
                || KeyRing::generate().map(|ring| ring.to_config_string()),
            )?;
            parse_key_ring(raw.expose())?
        }
    };
    Ok((jwt_secret, token_keys))
}

impl NotionSettings {
    fn read(
        vars: &Vars<impl Fn(&str) -> Option<String>>,
        env: AppEnv,
    ) -> Result<Self, ConfigError> {
        let production = env == AppEnv::Production;
        let credentials = match (
            vars.get("NOTION_CLIENT_ID"),
            vars.get("NOTION_CLIENT_SECRET"),
        ) {
            (Some(client_id), Some(secret)) => Some(NotionCredentials {
                client_id: client_id.trim().to_owned(),
                client_secret: Secret::new(secret.trim().to_owned()),
            }),
            (None, None) if production => {
                return Err(required(
                    "NOTION_CLIENT_ID",
                    "the Notion integration's OAuth client id and secret (the sandbox is for development only)",
                ));
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "NOTION_CLIENT_SECRET",
                    "a value whenever NOTION_CLIENT_ID is set",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "NOTION_CLIENT_ID",
                    "a value whenever NOTION_CLIENT_SECRET is set",
                ));
            }
        };
        let default_base = Url::parse(DEFAULT_NOTION_API_BASE).expect("valid default URL");
        let api_base = vars.read("NOTION_API_BASE", default_base, |raw| {
            parse_http_url("NOTION_API_BASE", raw, env)
        })?;
        // The client secret and every token go to this host: in production a typo must not
        // send them elsewhere, so another host needs an explicit opt-in.
        let custom_base_allowed = vars.read("NOTION_API_BASE_ALLOW_CUSTOM", false, |raw| {
            parse_bool("NOTION_API_BASE_ALLOW_CUSTOM", raw)
        })?;
        if production && !custom_base_allowed && api_base.as_str() != DEFAULT_NOTION_API_BASE {
            return Err(invalid(
                "NOTION_API_BASE",
                format!(
                    "{DEFAULT_NOTION_API_BASE} in production (set \
                     NOTION_API_BASE_ALLOW_CUSTOM=true to use another), not '{api_base}'"
                ),
            ));
        }
        let timeout = vars.read("NOTION_TIMEOUT", Duration::from_secs(15), |raw| {
            parse_duration("NOTION_TIMEOUT", raw, 1, 120)
        })?;
        let fanout_timeout = vars.read(
            "SEARCH_FANOUT_TIMEOUT",
            DEFAULT_FANOUT_TIMEOUT.min(timeout),
            |raw| parse_duration("SEARCH_FANOUT_TIMEOUT", raw, 1, timeout.as_secs()),
        )?;
        Ok(Self {
            credentials,
            api_base,
            timeout,
            fanout_timeout,
            version: vars.read(
                "NOTION_VERSION",
                DEFAULT_NOTION_VERSION.to_owned(),
                parse_notion_version,
            )?,
            rate_limit: vars.read("NOTION_RATE_LIMIT", 3, |raw| {
                parse_in_range("NOTION_RATE_LIMIT", raw, 1..=1000, "requests per second")
            })?,
            concurrency: vars.read("NOTION_CONCURRENCY", DEFAULT_NOTION_CONCURRENCY, |raw| {
                parse_in_range("NOTION_CONCURRENCY", raw, 1..=4096, "a number of calls")
            })?,
        })
    }
}

/// Who may register, log in and call from where.
struct AccountSettings {
    allow_registration: bool,
    cors_allowed_origins: Vec<String>,
    access_token_ttl: Duration,
    auth_rate_limit: u32,
    trusted_proxies: TrustedProxies,
    password_hash_concurrency: usize,
    password_hash_wait: Duration,
}

impl AccountSettings {
    fn read(
        vars: &Vars<impl Fn(&str) -> Option<String>>,
        env: AppEnv,
    ) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            allow_registration: vars.read(
                "ALLOW_REGISTRATION",
                env != AppEnv::Production,
                |raw| parse_bool("ALLOW_REGISTRATION", raw),
            )?,
            cors_allowed_origins: vars.read("CORS_ALLOWED_ORIGINS", Vec::new(), |raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|origin| !origin.is_empty())
                    .map(|origin| parse_origin(origin, env))
                    .collect()
            })?,
            access_token_ttl: vars.read(
                "ACCESS_TOKEN_TTL",
                Duration::from_secs(15 * 60),
                |raw| parse_duration("ACCESS_TOKEN_TTL", raw, 1, 24 * 3600),
            )?,
            auth_rate_limit: vars.read("AUTH_RATE_LIMIT", 20, |raw| {
                parse_in_range("AUTH_RATE_LIMIT", raw, 1..=100_000, "requests per minute")
            })?,
            trusted_proxies: vars.read("TRUSTED_PROXIES", TrustedProxies::default(), |raw| {
                TrustedProxies::parse(raw).map_err(|reason| {
                    invalid(
                        "TRUSTED_PROXIES",
                        format!("IP addresses or CIDR blocks separated by commas ({reason})"),
                    )
                })
            })?,
            password_hash_concurrency: vars.read("PASSWORD_HASH_CONCURRENCY", cores, |raw| {
                parse_in_range("PASSWORD_HASH_CONCURRENCY", raw, 1..=256, "hashes at once")
            })?,
            password_hash_wait: vars.read("PASSWORD_HASH_WAIT", Duration::from_secs(5), |raw| {
                parse_duration("PASSWORD_HASH_WAIT", raw, 0, 60)
            })?,
        })
    }
}

impl HttpLimits {
    /// `notion_timeout` and `password_hash_wait` are the longest a request may wait for Notion
    /// or for a hashing slot; the request deadline must let those time out first, so that they
    /// answer with their own errors.
    fn read(
        vars: &Vars<impl Fn(&str) -> Option<String>>,
        notion_timeout: Duration,
        password_hash_wait: Duration,
    ) -> Result<Self, ConfigError> {
        let longest_wait = notion_timeout.max(password_hash_wait);
        let default_deadline =
            (longest_wait + Duration::from_secs(15)).max(Duration::from_secs(60));
        Ok(Self {
            max_connections: vars.read("MAX_CONNECTIONS", 512, |raw| {
                parse_in_range("MAX_CONNECTIONS", raw, 1..=100_000, "connections")
            })?,
            header_read_timeout: vars.read(
                "HEADER_READ_TIMEOUT",
                Duration::from_secs(10),
                |raw| parse_duration("HEADER_READ_TIMEOUT", raw, 1, 300),
            )?,
            keep_alive_timeout: vars.read(
                "KEEP_ALIVE_TIMEOUT",
                Duration::from_secs(30),
                |raw| parse_duration("KEEP_ALIVE_TIMEOUT", raw, 1, 3600),
            )?,
            body_read_timeout: vars.read("BODY_READ_TIMEOUT", Duration::from_secs(15), |raw| {
                parse_duration("BODY_READ_TIMEOUT", raw, 1, 300)
            })?,
            request_timeout: vars.read("REQUEST_TIMEOUT", default_deadline, |raw| {
                let timeout = parse_duration("REQUEST_TIMEOUT", raw, 2, 3600)?;
                if timeout <= longest_wait {
                    return Err(invalid(
                        "REQUEST_TIMEOUT",
                        format!(
                            "a duration longer than NOTION_TIMEOUT and PASSWORD_HASH_WAIT \
                             ({}s), not '{raw}'",
                            longest_wait.as_secs()
                        ),
                    ));
                }
                Ok(timeout)
            })?,
        })
    }
}

/// `DATABASE_STATEMENT_TIMEOUT`, below `request_timeout`: a statement that outlives it would only
/// be cut off by the request deadline, which answers without saying why; below it, the database
/// says so itself.
fn read_statement_timeout(
    vars: &Vars<impl Fn(&str) -> Option<String>>,
    request_timeout: Duration,
) -> Result<Option<Duration>, ConfigError> {
    let default = Some(DEFAULT_STATEMENT_TIMEOUT.min(request_timeout / 2));
    vars.read("DATABASE_STATEMENT_TIMEOUT", default, |raw| {
        let timeout = parse_duration("DATABASE_STATEMENT_TIMEOUT", raw, 0, 3600)?;
        if timeout >= request_timeout {
            return Err(invalid(
                "DATABASE_STATEMENT_TIMEOUT",
                format!(
                    "a duration shorter than REQUEST_TIMEOUT ({}s), or 0s for none, not '{raw}'",
                    request_timeout.as_secs()
                ),
            ));
        }
        Ok((!timeout.is_zero()).then_some(timeout))
    })
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// An http(s) URL without query or fragment. Plain http is accepted only for loopback hosts in
/// development; the trailing slash is dropped so paths can be appended.
fn parse_http_url(variable: &'static str, raw: &str, env: AppEnv) -> Result<Url, ConfigError> {
    let https_rule = if env == AppEnv::Production {
        "an https URL (production refuses plain http)"
    } else {
        "an https URL, or http on a loopback host such as localhost"
    };
    let url = Url::parse(raw.trim()).map_err(|_| invalid(variable, https_rule))?;
    let allowed = match url.scheme() {
        "https" => true,
        "http" => env == AppEnv::Development && is_loopback_host(&url),
        _ => false,
    };
    if !allowed || url.host().is_none() {
        return Err(invalid(variable, format!("{https_rule}, not '{url}'")));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(
            variable,
            "a URL without credentials, query or fragment",
        ));
    }
    let mut url = url;
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

/// `PUBLIC_URL` is an origin: the OAuth redirect URI is built from it and must match exactly.
fn parse_public_url(raw: &str, env: AppEnv) -> Result<Url, ConfigError> {
    let url = parse_http_url("PUBLIC_URL", raw, env)?;
    if !url.path().is_empty() && url.path() != "/" {
        return Err(invalid(
            "PUBLIC_URL",
            "an origin such as https://connect.example.com, without a path",
        ));
    }
    Ok(url)
}

fn parse_origin(raw: &str, env: AppEnv) -> Result<String, ConfigError> {
    let url = parse_http_url("CORS_ALLOWED_ORIGINS", raw, env)?;
    if !url.path().is_empty() && url.path() != "/" {
        return Err(invalid(
            "CORS_ALLOWED_ORIGINS",
            format!("origins of the form scheme://host[:port], not '{raw}'"),
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn parse_jwt_secret(variable: &'static str, raw: &str) -> Result<Secret<Vec<u8>>, ConfigError> {
    let bytes = STANDARD
        .decode(raw.trim())
        .map_err(|_| invalid(variable, "base64-encoded random bytes"))?;
    if bytes.len() < MIN_JWT_SECRET_LEN {
        return Err(invalid(
            variable,
            format!(
                "at least {MIN_JWT_SECRET_LEN} random bytes, base64-encoded (got {})",
                bytes.len()
            ),
        ));
    }
    Ok(Secret::new(bytes))
}

fn parse_key_ring(raw: &str) -> Result<KeyRing, ConfigError> {
    KeyRing::parse(raw.trim()).map_err(|reason| {
        invalid(
            "TOKEN_ENCRYPTION_KEYS",
            format!("a key ring 'kid:base64key,...' of 32-byte keys ({reason})"),
        )
    })
}

fn parse_notion_version(raw: &str) -> Result<String, ConfigError> {
    let well_formed = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    // ISO dates compare correctly as strings.
    if !well_formed || raw < OLDEST_NOTION_VERSION {
        return Err(invalid(
            "NOTION_VERSION",
            format!(
                "a Notion API version (YYYY-MM-DD) of {OLDEST_NOTION_VERSION} or later, not '{raw}'"
            ),
        ));
    }
    Ok(raw.to_owned())
}

/// A whole number within `range`; `unit` says what it counts, for the message.
fn parse_in_range<T>(
    variable: &'static str,
    raw: &str,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    raw.trim()
        .parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            invalid(
                variable,
                format!(
                    "{unit}, from {} to {}, not '{raw}'",
                    range.start(),
                    range.end()
                ),
            )
        })
}

fn parse_bool(variable: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, format!("true or false, not '{raw}'"))),
    }
}

/// Durations such as `90s`, `15m` or `1h`, from `min` to `max` seconds.
fn parse_duration(
    variable: &'static str,
    raw: &str,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    let expected = || {
        invalid(
            variable,
            format!("a duration from {min}s to {max}s such as 90s, 15m or 1h, not '{raw}'"),
        )
    };
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let seconds = match unit {
        "s" => number,
        "m" => number.checked_mul(60).ok_or_else(expected)?,
        "h" => number.checked_mul(3600).ok_or_else(expected)?,
        _ => return Err(expected()),
    };
    if !(min..=max).contains(&seconds) {
        return Err(expected());
    }
    Ok(Duration::from_secs(seconds))
}

/// Reads a development secret from `path`, or generates it and stores it there with mode 0600.
///
/// The file is written under a temporary name and hard-linked into place, so a second process
/// starting at the same moment either wins the race or reads the complete winner; it never sees
/// a half-written file. A secret generated by this call is added to `generated`.
fn load_or_generate(
    variable: &'static str,
    path: &Path,
    generated: &mut Vec<(&'static str, PathBuf)>,
    generate: impl FnOnce() -> Result<Secret<String>, getrandom::Error>,
) -> Result<Secret<String>, ConfigError> {
    let file_error = |source: io::Error| ConfigError::SecretFile {
        variable,
        path: path.to_owned(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(existing) => {
            tighten_permissions(path).map_err(file_error)?;
            return Ok(Secret::new(existing.trim().to_owned()));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_error(e)),
    }

    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(file_error)?;
    let secret = generate().map_err(|e| file_error(io::Error::other(e)))?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id()
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(secret.expose().as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        });
    let linked = written.and_then(|()| fs::hard_link(&temporary, path));
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            generated.push((variable, path.to_owned()));
            Ok(secret)
        }
        // Another process generated it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let existing = fs::read_to_string(path).map_err(file_error)?;
            Ok(Secret::new(existing.trim().to_owned()))
        }
        Err(e) => Err(file_error(e)),
    }
}

/// Creates `dir` (and parents) readable by the owner only, when it does not exist yet.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn tighten_permissions(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const JWT: &str = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=";
    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_source(|name| map.get(name).cloned())
    }

    fn production(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars = vec![
            ("APP_ENV", "production"),
            ("PUBLIC_URL", "https://connect.example.com"),
            ("DATABASE_URL", "postgres://app@db/app"),
            ("JWT_SECRET", JWT),
            ("TOKEN_ENCRYPTION_KEYS", KEYS),
            ("NOTION_CLIENT_ID", "client-id"),
            ("NOTION_CLIENT_SECRET", "client-secret"),
        ];
        for (key, value) in extra {
            vars.retain(|(k, _)| k != key);
            vars.push((key, value));
        }
        vars
    }

    fn variable_of(err: ConfigError) -> &'static str {
        match err {
            ConfigError::Invalid { variable, .. }
            | ConfigError::Required { variable, .. }
            | ConfigError::SecretFile { variable, .. } => variable,
        }
    }

    #[test]
    fn web_dir_must_hold_the_app() {
        let base = [("JWT_SECRET", JWT), ("TOKEN_ENCRYPTION_KEYS", KEYS)];
        assert_eq!(settings(&base).unwrap().web_dir, None, "the bundled copy");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        let empty = settings(&[base[0], base[1], ("WEB_DIR", path)]).unwrap_err();
        assert_eq!(variable_of(empty), "WEB_DIR");
        fs::write(dir.path().join("index.html"), "<p>app</p>").unwrap();
        let edited = settings(&[base[0], base[1], ("WEB_DIR", path)]).unwrap();
        assert_eq!(edited.web_dir.as_deref(), Some(dir.path()));
    }

    #[test]
    fn development_defaults_generate_secrets_once() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let first = settings(&[("DATA_DIR", data)]).unwrap();
        assert_eq!(first.env, AppEnv::Development);
        assert_eq!(first.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(first.public_url.as_str(), "http://localhost:8000/");
        assert!(first.allow_registration);
        assert!(first.sandbox_enabled());
        assert_eq!(first.generated_secrets.len(), 2);
        assert_eq!(first.access_token_ttl, Duration::from_secs(900));

        for file in [JWT_SECRET_FILE, KEY_RING_FILE] {
            let mode = fs::metadata(dir.path().join("data").join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }

        let second = settings(&[("DATA_DIR", data)]).unwrap();
        assert!(second.generated_secrets.is_empty());
        assert_eq!(second.jwt_secret, first.jwt_secret);
        assert_eq!(
            second.token_keys.to_config_string(),
            first.token_keys.to_config_string()
        );
    }

    #[test]
    fn production_accepts_a_complete_configuration() {
        let s = settings(&production(&[])).unwrap();
        assert_eq!(s.env, AppEnv::Production);
        assert!(!s.allow_registration);
        assert_eq!(s.log_format, LogFormat::Json);
        assert!(!s.sandbox_enabled());
        assert!(s.generated_secrets.is_empty());
    }

    #[test]
    fn production_refuses_missing_secrets_sandbox_and_plain_http() {
        for missing in [
            "JWT_SECRET",
            "TOKEN_ENCRYPTION_KEYS",
            "NOTION_CLIENT_ID",
            "NOTION_CLIENT_SECRET",
            "PUBLIC_URL",
        ] {
            let vars: Vec<_> = production(&[])
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = settings(&vars).expect_err(missing);
            assert_eq!(variable_of(err), missing);
        }
        let no_notion: Vec<_> = production(&[])
            .into_iter()
            .filter(|(k, _)| !k.starts_with("NOTION_CLIENT"))
            .collect();
        assert_eq!(
            variable_of(settings(&no_notion).unwrap_err()),
            "NOTION_CLIENT_ID"
        );

        for url in ["http://example.com", "http://localhost:8000"] {
            let err = settings(&production(&[("PUBLIC_URL", url)])).unwrap_err();
            assert_eq!(err.to_string().lines().count(), 1);
            assert_eq!(variable_of(err), "PUBLIC_URL");
        }
        let err =
            settings(&production(&[("NOTION_API_BASE", "http://127.0.0.1:9/v1")])).unwrap_err();
        assert_eq!(variable_of(err), "NOTION_API_BASE");
    }

    #[test]
    fn production_sends_notion_credentials_only_to_notion_unless_told_otherwise() {
        let typo = [("NOTION_API_BASE", "https://api.notoin.com/v1")];
        let err = settings(&production(&typo)).unwrap_err();
        assert_eq!(variable_of(err), "NOTION_API_BASE");
        let explicit = settings(&production(&[
            typo[0],
            ("NOTION_API_BASE_ALLOW_CUSTOM", "true"),
        ]))
        .unwrap();
        assert_eq!(
            explicit.notion.api_base.as_str(),
            "https://api.notoin.com/v1"
        );
        let exact = settings(&production(&[(
            "NOTION_API_BASE",
            "https://api.notion.com/v1/",
        )]));
        assert!(exact.is_ok(), "the real base, with a trailing slash");
        // Development may point anywhere (the sandbox, test stand-ins).
        let base = [
            ("JWT_SECRET", JWT),
            ("TOKEN_ENCRYPTION_KEYS", KEYS),
            typo[0],
        ];
        assert!(settings(&base).is_ok());
    }

    #[test]
    fn development_allows_http_only_on_loopback() {
        let base = [("JWT_SECRET", JWT), ("TOKEN_ENCRYPTION_KEYS", KEYS)];
        for ok in [
            "http://localhost:3000",
            "http://127.0.0.1:8000",
            "http://[::1]:8000",
            "https://x.example",
        ] {
            let vars = [base.as_slice(), &[("PUBLIC_URL", ok)]].concat();
            settings(&vars).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "http://example.com",
            "ftp://localhost",
            "not a url",
            "https://x.example/sub",
            "https://u:p@x.example",
        ] {
            let vars = [base.as_slice(), &[("PUBLIC_URL", bad)]].concat();
            assert_eq!(
                variable_of(settings(&vars).unwrap_err()),
                "PUBLIC_URL",
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let base = [("JWT_SECRET", JWT), ("TOKEN_ENCRYPTION_KEYS", KEYS)];
        for (variable, value) in [
            ("APP_ENV", "staging"),
            ("BIND_ADDR", "localhost"),
            ("DATABASE_URL", "mysql://db"),
            ("JWT_SECRET", "c2hvcnQ="),
            ("JWT_SECRET", "not base64!"),
            ("TOKEN_ENCRYPTION_KEYS", "k1:c2hvcnQ="),
            ("NOTION_VERSION", "2022-06-28"),
            ("NOTION_VERSION", "latest"),
            ("ALLOW_REGISTRATION", "maybe"),
            ("CORS_ALLOWED_ORIGINS", "https://app.example.com/path"),
            ("ACCESS_TOKEN_TTL", "0s"),
            ("ACCESS_TOKEN_TTL", "2d"),
            ("ACCESS_TOKEN_TTL", "25h"),
            ("LOG_FORMAT", "xml"),
            ("AUTH_RATE_LIMIT", "0"),
            ("TRUSTED_PROXIES", "10.0.0.0/40"),
            ("PASSWORD_HASH_CONCURRENCY", "many"),
            ("NOTION_CONCURRENCY", "0"),
            ("NOTION_CONCURRENCY", "5000"),
            ("METRICS_BIND_ADDR", "localhost"),
            ("METRICS_BIND_ADDR", "127.0.0.1:8000"),
            ("PASSWORD_HASH_WAIT", "2m"),
            ("NOTION_CLIENT_ID", "only-the-id"),
        ] {
            let mut vars = base.to_vec();
            vars.retain(|(k, _)| *k != variable);
            vars.push((variable, value));
            let err = settings(&vars).expect_err(variable);
            let message = err.to_string();
            let named = variable_of(err);
            assert!(named.starts_with(&variable[..6]), "{variable} -> {named}");
            assert!(message.starts_with(named));
            if variable == "JWT_SECRET" {
                assert!(!message.contains(value));
            }
        }
    }

    #[test]
    fn optional_values_are_parsed() {
        let s = settings(&[
            ("JWT_SECRET", JWT),
            ("TOKEN_ENCRYPTION_KEYS", KEYS),
            ("ACCESS_TOKEN_TTL", "90s"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://app.example.com, http://localhost:5173/",
            ),
            ("WEB_URL", "http://localhost:5173/app/"),
            ("ALLOW_REGISTRATION", "no"),
            ("NOTION_CLIENT_ID", ""),
            ("AUTH_RATE_LIMIT", "5"),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
            ("PASSWORD_HASH_WAIT", "0s"),
            ("NOTION_CONCURRENCY", "64"),
        ])
        .unwrap();
        assert_eq!(s.auth_rate_limit, 5);
        assert_eq!(s.notion.concurrency, 64);
        assert!(s.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
        assert_eq!(s.password_hash_wait, Duration::ZERO);
        assert_eq!(s.access_token_ttl, Duration::from_secs(90));
        assert_eq!(
            s.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        assert_eq!(s.web_url.as_str(), "http://localhost:5173/app");
        assert!(!s.allow_registration);
        assert!(s.sandbox_enabled(), "an empty variable counts as unset");
    }

    #[test]
    fn http_limits_have_defaults_and_a_request_deadline_that_outlasts_its_waits() {
        let base = [("JWT_SECRET", JWT), ("TOKEN_ENCRYPTION_KEYS", KEYS)];
        let defaults = settings(&base).unwrap().http;
        assert_eq!(defaults.max_connections, 512);
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.request_timeout, Duration::from_secs(60));

        let slow_notion = [base[0], base[1], ("NOTION_TIMEOUT", "120s")];
        assert_eq!(
            settings(&slow_notion).unwrap().http.request_timeout,
            Duration::from_secs(135)
        );
        let too_short = [base[0], base[1], ("REQUEST_TIMEOUT", "10s")];
        assert_eq!(
            variable_of(settings(&too_short).unwrap_err()),
            "REQUEST_TIMEOUT"
        );
        let set = settings(&[
            base[0],
            base[1],
            ("MAX_CONNECTIONS", "64"),
            ("HEADER_READ_TIMEOUT", "2s"),
            ("KEEP_ALIVE_TIMEOUT", "1m"),
            ("BODY_READ_TIMEOUT", "3s"),
            ("REQUEST_TIMEOUT", "20s"),
        ])
        .unwrap()
        .http;
        assert_eq!(
            set,
            HttpLimits {
                max_connections: 64,
                header_read_timeout: Duration::from_secs(2),
                keep_alive_timeout: Duration::from_secs(60),
                body_read_timeout: Duration::from_secs(3),
                request_timeout: Duration::from_secs(20),
            }
        );
        for (variable, bad) in [("MAX_CONNECTIONS", "0"), ("HEADER_READ_TIMEOUT", "0s")] {
            let vars = [base[0], base[1], (variable, bad)];
            assert_eq!(variable_of(settings(&vars).unwrap_err()), variable);
        }
    }

    #[test]
    fn the_statement_timeout_stays_below_the_request_deadline() {
        let base = [("JWT_SECRET", JWT), ("TOKEN_ENCRYPTION_KEYS", KEYS)];
        let timeout = |extra: &[(&'static str, &'static str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            settings(&vars).map(|s| s.statement_timeout)
        };
        assert_eq!(timeout(&[]).unwrap(), Some(Duration::from_secs(10)));
        assert_eq!(
            timeout(&[
                ("REQUEST_TIMEOUT", "4s"),
                ("NOTION_TIMEOUT", "1s"),
                ("PASSWORD_HASH_WAIT", "1s")
            ])
            .unwrap(),
            Some(Duration::from_secs(2)),
            "half the request deadline when that is short"
        );
        assert_eq!(
            timeout(&[("DATABASE_STATEMENT_TIMEOUT", "30s")]).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            timeout(&[("DATABASE_STATEMENT_TIMEOUT", "0s")]).unwrap(),
            None
        );
        for bad in ["60s", "2h", "soon"] {
            let err = timeout(&[("DATABASE_STATEMENT_TIMEOUT", bad)]).unwrap_err();
            assert_eq!(variable_of(err), "DATABASE_STATEMENT_TIMEOUT", "{bad}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = settings(&production(&[])).unwrap();
        let shown = format!("{s:?}");
        for secret in [
            JWT,
            "client-secret",
            "postgres://app@db/app",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked");
        }
    }
}
