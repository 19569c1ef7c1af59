//! The Prometheus registry: what the service counts and measures. The metrics listener
//! ([`crate::scrape`]) serves it at `GET /metrics`.
//!
//! Labels only ever hold values from small fixed sets: a route template (never a raw path, which
//! the request log chooses), a method, a status, an outcome or error code, a key id. Nothing a
//! client sends ends up in a label verbatim, so a scanner cannot blow up the number of series.
//!
//! Every application has its own [`Metrics`] (tests run several in one process).

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use poem::http::{Method, StatusCode};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

const NAMESPACE: &str = "notion_connect";

/// Latency buckets in seconds, from a cached token check to a slow Notion call.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the stored connections are counted for `notion_connections`. Counting is a GROUP BY
/// over the whole table: scrapes in between show the last count, so however often (or however
/// many at once) the listener is scraped, the database does this work at most this often.
const CONNECTION_COUNT_INTERVAL: Duration = Duration::from_secs(15);

pub(crate) struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    notion_requests: IntCounterVec,
    notion_duration: HistogramVec,
    rate_limit_wait: Histogram,
    slot_wait: Histogram,
    oauth_callbacks: IntCounterVec,
    token_refreshes: IntCounterVec,
    revocations: IntCounterVec,
    fanout_width: Histogram,
    fanout_lanes: IntCounterVec,
    logins: IntCounterVec,
    connections: IntGaugeVec,
    instance_alone: IntGauge,
    /// When `connections` was last counted; the lock makes concurrent scrapes count once.
    connections_counted: tokio::sync::Mutex<Option<Instant>>,
}

/// A call to Notion, for [`Metrics::notion_call`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum NotionEndpoint {
    Search,
    /// The token endpoint: code exchanges and refreshes.
    Token,
    Revoke,
    /// Asking whether a token is still active, when a revocation's answer was ambiguous.
    Introspect,
}

impl NotionEndpoint {
    /// The path under Notion's API base.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Self::Search => "/search",
            Self::Token => "/oauth/token",
            Self::Revoke => "/oauth/revoke",
            Self::Introspect => "/oauth/introspect",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Search => "search",
            Self::Token => "oauth_token",
            Self::Revoke => "oauth_revoke",
            Self::Introspect => "oauth_introspect",
        }
    }
}

impl Metrics {
    pub(crate) fn new() -> Arc<Self> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let histogram = |name: &str, help: &str| {
            HistogramOpts::new(name, help)
                .namespace(NAMESPACE)
                .buckets(LATENCY_BUCKETS.to_vec())
        };
        let metrics = Self {
            http_requests: IntCounterVec::new(
                opts("http_requests_total", "HTTP requests answered, by route template and status."),
                &["method", "route", "status"],
            )
            .expect("a valid metric"),
            http_duration: HistogramVec::new(
                histogram("http_request_duration_seconds", "Time to answer an HTTP request."),
                &["method", "route"],
            )
            .expect("a valid metric"),
            notion_requests: IntCounterVec::new(
                opts("notion_requests_total", "Calls to Notion's API, by endpoint and outcome."),
                &["endpoint", "outcome"],
            )
            .expect("a valid metric"),
            notion_duration: HistogramVec::new(
                histogram("notion_request_duration_seconds", "Time a call to Notion took."),
                &["endpoint"],
            )
            .expect("a valid metric"),
            rate_limit_wait: Histogram::with_opts(histogram(
                "notion_rate_limit_wait_seconds",
                "Time a Notion call waited for its connection's rate limit.",
            ))
            .expect("a valid metric"),
            slot_wait: Histogram::with_opts(histogram(
                "notion_slot_wait_seconds",
                "Time a Notion search call waited for a free slot (NOTION_CONCURRENCY).",
            ))
            .expect("a valid metric"),
            oauth_callbacks: IntCounterVec::new(
                opts(
                    "oauth_callbacks_total",
                    "Notion OAuth callbacks, by outcome (connected, or the error code sent to the web app).",
                ),
                &["outcome"],
            )
            .expect("a valid metric"),
            token_refreshes: IntCounterVec::new(
                opts("token_refreshes_total", "Refreshes of Notion access tokens, by outcome."),
                &["outcome"],
            )
            .expect("a valid metric"),
            revocations: IntCounterVec::new(
                opts(
                    "notion_revocations_total",
                    "Attempts to revoke a Notion token, by outcome (revoked, already_invalid, retrying, given_up).",
                ),
                &["outcome"],
            )
            .expect("a valid metric"),
            fanout_width: Histogram::with_opts(
                HistogramOpts::new(
                    "search_fanout_width",
                    "Workspaces searched for one page of a search across workspaces.",
                )
                .namespace(NAMESPACE)
                .buckets(vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0]),
            )
            .expect("a valid metric"),
            fanout_lanes: IntCounterVec::new(
                opts(
                    "search_fanout_workspaces_total",
                    "Workspaces searched for pages of searches across workspaces, by outcome.",
                ),
                &["status"],
            )
            .expect("a valid metric"),
            logins: IntCounterVec::new(opts("logins_total", "Login attempts, by outcome."), &["outcome"])
                .expect("a valid metric"),
            connections: IntGaugeVec::new(
                opts(
                    "notion_connections",
                    "Stored Notion connections, by the key their tokens are sealed with and status.",
                ),
                &["key_id", "status"],
            )
            .expect("a valid metric"),
            instance_alone: IntGauge::with_opts(opts(
                "instance_alone",
                "1 while this instance is the only one on its database, and so keeps the Notion \
                 rate budget and the connections it searched lately in memory.",
            ))
            .expect("a valid metric"),
            connections_counted: tokio::sync::Mutex::new(None),
            registry,
        };
        for collector in [
            Box::new(metrics.http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.http_duration.clone()),
            Box::new(metrics.notion_requests.clone()),
            Box::new(metrics.notion_duration.clone()),
            Box::new(metrics.rate_limit_wait.clone()),
            Box::new(metrics.slot_wait.clone()),
            Box::new(metrics.oauth_callbacks.clone()),
            Box::new(metrics.token_refreshes.clone()),
            Box::new(metrics.revocations.clone()),
            Box::new(metrics.fanout_width.clone()),
            Box::new(metrics.fanout_lanes.clone()),
            Box::new(metrics.logins.clone()),
            Box::new(metrics.connections.clone()),
            Box::new(metrics.instance_alone.clone()),
        ] {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        Arc::new(metrics)
    }

    /// Records an answered request under `route`, a route template or another label from a
    /// small fixed set.
    pub(crate) fn http_request(
        &self,
        method: &'static str,
        route: &str,
        status: StatusCode,
        took: Duration,
    ) {
        self.http_requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(took.as_secs_f64());
    }

    /// Records one call to Notion and how long it took.
    pub(crate) fn notion_call(&self, endpoint: NotionEndpoint, outcome: &str, took: Duration) {
        self.notion_requests
            .with_label_values(&[endpoint.label(), outcome])
            .inc();
        self.notion_duration
            .with_label_values(&[endpoint.label()])
            .observe(took.as_secs_f64());
    }

    pub(crate) fn rate_limit_waited(&self, waited: Duration) {
        self.rate_limit_wait.observe(waited.as_secs_f64());
    }

    pub(crate) fn slot_waited(&self, waited: Duration) {
        self.slot_wait.observe(waited.as_secs_f64());
    }

    pub(crate) fn instance_alone(&self, alone: bool) {
        self.instance_alone.set(i64::from(alone));
    }

    pub(crate) fn oauth_callback(&self, outcome: &str) {
        self.oauth_callbacks.with_label_values(&[outcome]).inc();
    }

    pub(crate) fn token_refresh(&self, outcome: &str) {
        self.token_refreshes.with_label_values(&[outcome]).inc();
    }

    /// Records how an attempt to revoke a token went.
    pub(crate) fn revocation(&self, outcome: &'static str) {
        self.revocations.with_label_values(&[outcome]).inc();
    }

    /// Records a page of a search across workspaces: how many were searched and how each went.
    pub(crate) fn fanout<'a>(&self, width: usize, statuses: impl Iterator<Item = &'a str>) {
        self.fanout_width.observe(width as f64);
        for status in statuses {
            self.fanout_lanes.with_label_values(&[status]).inc();
        }
    }

    pub(crate) fn login(&self, outcome: LoginOutcome) {
        self.logins.with_label_values(&[outcome.label()]).inc();
    }

    /// Sets `notion_connections` to the counts `count` reads (key id, status, count), unless
    /// they were read less than [`CONNECTION_COUNT_INTERVAL`] before `now`. Concurrent callers
    /// wait for one count; a failed count is tried again by the next caller.
    pub(crate) async fn count_connections<E, F>(&self, now: Instant, count: F) -> Result<(), E>
    where
        F: Future<Output = Result<Vec<(String, String, i64)>, E>>,
    {
        let mut counted = self.connections_counted.lock().await;
        if counted.is_some_and(|at| now.saturating_duration_since(at) < CONNECTION_COUNT_INTERVAL) {
            return Ok(());
        }
        let counts = count.await?;
        // Combinations that no longer exist must disappear rather than keep their last count.
        self.connections.reset();
        for (key_id, status, count) in counts {
            self.connections
                .with_label_values(&[&key_id, &status])
                .set(count);
        }
        *counted = Some(now);
        Ok(())
    }

    /// Every metric in Prometheus' text format.
    pub(crate) fn encode(&self) -> Result<String, prometheus::Error> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    Success,
    /// Wrong username or password.
    Invalid,
    /// Refused by the per-address or per-account limits.
    Throttled,
    /// The service could not decide (no hashing slot in time, the database away).
    Failed,
}

impl LoginOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Invalid => "invalid",
            Self::Throttled => "throttled",
            Self::Failed => "failed",
        }
    }
}

/// The method as a label: the standard ones by name, anything else as `other`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active_connections(metrics: &Metrics) -> Option<f64> {
        metrics
            .encode()
            .unwrap()
            .lines()
            .find(|line| line.starts_with("notion_connect_notion_connections{"))
            .and_then(|line| line.rsplit_once(' '))
            .and_then(|(_, value)| value.parse().ok())
    }

    #[tokio::test]
    async fn connections_are_counted_at_most_every_fifteen_seconds_and_gone_ones_disappear() {
        let one = || async { Ok::<_, ()>(vec![("k1".to_owned(), "active".to_owned(), 1)]) };
        let none = || async { Ok::<_, ()>(Vec::new()) };
        let metrics = Metrics::new();
        let start = Instant::now();
        metrics.count_connections(start, one()).await.unwrap();
        assert_eq!(active_connections(&metrics), Some(1.0));

        let soon = start + CONNECTION_COUNT_INTERVAL - Duration::from_millis(1);
        metrics.count_connections(soon, none()).await.unwrap();
        assert_eq!(active_connections(&metrics), Some(1.0), "the last count");

        let failing = async { Err::<Vec<(String, String, i64)>, _>("database away") };
        let later = start + CONNECTION_COUNT_INTERVAL;
        assert!(metrics.count_connections(later, failing).await.is_err());
        assert_eq!(
            active_connections(&metrics),
            Some(1.0),
            "kept through a failure"
        );
        metrics.count_connections(later, none()).await.unwrap();
        assert_eq!(active_connections(&metrics), None, "no lingering count");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
    }
}
