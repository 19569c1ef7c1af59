//! Calls to Notion's API on behalf of a connection: bounded in time and size, kept to the
//! connection's share of Notion's rate limits (see [`super::budget`]), and retried when Notion
//! says so.
//!
//! Every call has one overall deadline (`NOTION_TIMEOUT`) that covers all attempts, so the
//! caller always gets an answer in time. 429 and 529 pause the connection (or its workspace) for
//! `Retry-After` and are then retried; 500, 502, 503 and 504 are retried with exponential backoff
//! and jitter (search is a read, so this is safe). Other errors are returned at once.

use std::{
    borrow::Cow,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use poem::http::StatusCode;
use serde::Deserialize;
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use super::{
    NotionEndpoints,
    budget::{RateBudget, SLACK, Scope, Turn},
    search::SearchRequest,
};
use crate::{
    metrics::{Metrics, NotionEndpoint},
    store::StoreError,
};

/// The largest response body accepted from Notion.
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Attempts per call, the first included (the official SDK makes the same number).
const MAX_ATTEMPTS: u32 = 3;
const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` believed; Notion's are seconds to minutes, anything longer is a
/// broken or hostile answer and must not reach time arithmetic.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Why a call to Notion did not produce a usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotionError {
    /// The token is not (or no longer) accepted.
    #[error("Notion refused the token")]
    Unauthorized,
    /// Rate limited: by Notion after the retries, or by the connection's own budget when its
    /// next turn comes after the deadline. `retry_after` is when to try again.
    #[error("Notion rate limit")]
    RateLimited { retry_after: Option<Duration> },
    /// No answer within the deadline.
    #[error("Notion did not answer in time")]
    Timeout,
    /// An error status, with Notion's `code` and `request_id` when the body carried them.
    #[error("Notion answered {status} ({code:?}, request {request_id:?})")]
    Status {
        status: u16,
        code: Option<String>,
        request_id: Option<String>,
    },
    /// Notion could not be reached, or the answer broke off.
    #[error("Notion could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("Notion's answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    /// The rate budget the instances share could not be read or written.
    #[error("the shared rate budget")]
    Budget(#[source] StoreError),
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    request_id: Option<String>,
}

pub(crate) struct NotionClient {
    http: reqwest::Client,
    endpoints: NotionEndpoints,
    deadline: Duration,
    budget: RateBudget,
    /// One permit per call in flight; waiters are served in the order they came.
    slots: Semaphore,
    metrics: Arc<Metrics>,
}

/// The connection a call is made for: its own turns, and its workspace's pauses.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub connection: Uuid,
    pub workspace: &'a str,
}

impl NotionClient {
    pub(crate) fn new(
        http: reqwest::Client,
        endpoints: NotionEndpoints,
        deadline: Duration,
        budget: RateBudget,
        concurrency: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            endpoints,
            deadline,
            budget,
            slots: Semaphore::new(concurrency.max(1)),
            metrics,
        }
    }

    /// The rate budget the calls keep to.
    pub(crate) fn budget(&self) -> &RateBudget {
        &self.budget
    }

    /// How long a call may take, retries included (`NOTION_TIMEOUT`).
    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }

    /// `POST /search` for `caller`, retries included, until `NOTION_TIMEOUT` has passed or
    /// `until`, whichever comes first; the first attempt in `turn` if one was taken already.
    /// Returns the raw JSON body, to be parsed in place.
    pub(crate) async fn search(
        &self,
        caller: Caller<'_>,
        token: &str,
        body: &SearchRequest,
        until: Option<Instant>,
        turn: Option<Turn>,
    ) -> Result<Bytes, NotionError> {
        let own = Instant::now() + self.deadline;
        let deadline = until.map_or(own, |until| until.min(own));
        self.post_with_retries(caller, NotionEndpoint::Search, token, body, deadline, turn)
            .await
    }

    async fn post_with_retries(
        &self,
        caller: Caller<'_>,
        endpoint: NotionEndpoint,
        token: &str,
        body: &impl serde::Serialize,
        deadline: Instant,
        mut turn: Option<Turn>,
    ) -> Result<Bytes, NotionError> {
        let url = self.endpoints.url(endpoint.path());
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Held until the whole answer is read: its connection and buffers are in use.
            let _slot = self.wait_for_turn(caller, deadline, turn.take()).await?;
            let started = Instant::now();
            let answer = self.post_once(url.clone(), token, body, deadline).await;
            self.metrics
                .notion_call(endpoint, outcome(&answer), started.elapsed());
            let (status, retry_after, body) = match answer {
                Ok(answer) => answer,
                Err(error @ NotionError::Unreachable(_)) => {
                    self.pause_before_retry(attempt, backoff(attempt), deadline, error)
                        .await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match status {
                StatusCode::OK => return Ok(body),
                StatusCode::UNAUTHORIZED => return Err(NotionError::Unauthorized),
                s if s == StatusCode::TOO_MANY_REQUESTS || s.as_u16() == 529 => {
                    // Every instance holds back for as long as Notion asked: the next turn
                    // waits for the pause, so there is nothing to sleep here.
                    let pause = retry_after.unwrap_or_else(|| backoff(attempt));
                    let scope = match s {
                        StatusCode::TOO_MANY_REQUESTS => {
                            Scope::of(rate_limit_reason(&body).as_deref())
                        }
                        _ => Scope::Connection,
                    };
                    self.budget
                        .pause(caller.connection, caller.workspace, scope, pause)
                        .await
                        .map_err(NotionError::Budget)?;
                    let error = NotionError::RateLimited { retry_after };
                    give_up_unless_time_for(attempt, pause, deadline, error)?;
                }
                StatusCode::INTERNAL_SERVER_ERROR
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT => {
                    let error = status_error(status, &body);
                    self.pause_before_retry(attempt, backoff(attempt), deadline, error)
                        .await?;
                }
                _ => return Err(status_error(status, &body)),
            }
        }
    }

    /// One request and its whole answer: the status, `Retry-After` and the body.
    async fn post_once(
        &self,
        url: reqwest::Url,
        token: &str,
        body: &impl serde::Serialize,
        deadline: Instant,
    ) -> Result<(StatusCode, Option<Duration>, Bytes), NotionError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("Notion-Version", &self.endpoints.version)
            .json(body)
            .timeout(remaining)
            .send();
        let response = match tokio::time::timeout(remaining, request).await {
            Err(_) => return Err(NotionError::Timeout),
            Ok(Err(e)) if e.is_timeout() => return Err(NotionError::Timeout),
            Ok(Err(e)) => return Err(NotionError::Unreachable(e.without_url())),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        let body = read_capped(response, deadline).await?;
        Ok((status, retry_after, body))
    }

    /// Sleeps `wait` and lets the loop try again, or gives up with `error` when attempts are used
    /// up or the wait would pass the deadline.
    async fn pause_before_retry(
        &self,
        attempt: u32,
        wait: Duration,
        deadline: Instant,
        error: NotionError,
    ) -> Result<(), NotionError> {
        give_up_unless_time_for(attempt, wait, deadline, error)?;
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Waits for the caller's next turn (`taken`, or one taken now) and for one of the slots
    /// that bound the calls in flight, or gives up when the turn would come after the deadline.
    ///
    /// A turn whose call goes out more than [`SLACK`] after it (woken late, or waiting for a
    /// slot) is stale: calls held back that way could bunch up with the turns after them. So the
    /// turn is taken again, and the slot is let go while waiting for a new one that is not due
    /// soon.
    async fn wait_for_turn(
        &self,
        caller: Caller<'_>,
        deadline: Instant,
        mut taken: Option<Turn>,
    ) -> Result<SemaphorePermit<'_>, NotionError> {
        let started = Instant::now();
        let mut slot = None;
        loop {
            let turn = match taken.take() {
                Some(turn) => turn,
                None => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    self.budget
                        .reserve(caller.connection, caller.workspace, remaining)
                        .await
                        .map_err(NotionError::Budget)?
                }
            };
            let now = Instant::now();
            let at = match turn {
                Ok(at) if at < deadline => at,
                Ok(at) => {
                    return Err(NotionError::RateLimited {
                        retry_after: Some(at - now),
                    });
                }
                Err(wait) => {
                    return Err(NotionError::RateLimited {
                        retry_after: Some(wait),
                    });
                }
            };
            let wait = at.saturating_duration_since(now);
            if let Some(held) = slot.take() {
                // The turn before this one came late; this one is taken with a slot in hand,
                // and kept only if it comes soon.
                if wait <= SLACK {
                    tokio::time::sleep(wait).await;
                    self.metrics.rate_limit_waited(started.elapsed());
                    return Ok(held);
                }
                drop(held);
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let permit = self.wait_for_slot(deadline).await?;
            // Late by waking up or by waiting for the slot: within SLACK the turn still holds.
            if Instant::now().saturating_duration_since(at) <= SLACK {
                self.metrics.rate_limit_waited(started.elapsed());
                return Ok(permit);
            }
            slot = Some(permit);
        }
    }

    /// Waits for one of the slots that bound the calls in flight, or gives up at the deadline.
    async fn wait_for_slot(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, NotionError> {
        let started = Instant::now();
        let remaining = deadline.saturating_duration_since(started);
        let slot = tokio::time::timeout(remaining, self.slots.acquire()).await;
        self.metrics.slot_waited(started.elapsed());
        match slot {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed, so only the deadline ends the wait.
            Ok(Err(_)) | Err(_) => Err(NotionError::Timeout),
        }
    }
}

/// Gives up with `error` when attempts are used up or waiting `wait` would pass the deadline.
fn give_up_unless_time_for(
    attempt: u32,
    wait: Duration,
    deadline: Instant,
    error: NotionError,
) -> Result<(), NotionError> {
    if attempt >= MAX_ATTEMPTS || wait >= deadline.saturating_duration_since(Instant::now()) {
        return Err(error);
    }
    Ok(())
}

/// `additional_data.rate_limit_reason` of a 429's body, if it says.
fn rate_limit_reason(body: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Limited<'a> {
        #[serde(borrow)]
        additional_data: Option<Reason<'a>>,
    }
    #[derive(Deserialize)]
    struct Reason<'a> {
        #[serde(borrow)]
        rate_limit_reason: Option<Cow<'a, str>>,
    }
    let limited: Limited<'_> = serde_json::from_slice(body).ok()?;
    limited.additional_data?.rate_limit_reason
}

/// `Retry-After` in whole seconds (the only form Notion sends).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Exponential backoff with jitter: a random point in the upper half of 250 ms · 2^(n-1), at
/// most 4 s.
fn backoff(attempt: u32) -> Duration {
    let ceiling = BASE_BACKOFF
        .saturating_mul(1 << (attempt.saturating_sub(1)).min(8))
        .min(MAX_BACKOFF);
    let jitter = crate::crypto::random_bytes::<2>()
        .map(|b| f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX))
        .unwrap_or(0.5);
    ceiling.mul_f64(0.5 + jitter / 2.0)
}

/// An attempt's outcome, as the metrics name it.
fn outcome(answer: &Result<(StatusCode, Option<Duration>, Bytes), NotionError>) -> &'static str {
    match answer {
        Ok((StatusCode::OK, ..)) => "ok",
        Ok((StatusCode::UNAUTHORIZED, ..)) => "unauthorized",
        Ok((status, ..)) if *status == StatusCode::TOO_MANY_REQUESTS || status.as_u16() == 529 => {
            "rate_limited"
        }
        Ok((status, ..)) if status.is_server_error() => "server_error",
        Ok(_) => "client_error",
        Err(NotionError::Timeout) => "timeout",
        Err(NotionError::TooLarge) => "too_large",
        Err(_) => "unreachable",
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> NotionError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    NotionError::Status {
        status: status.as_u16(),
        code: parsed.as_ref().and_then(|b| b.code.clone()),
        request_id: parsed.and_then(|b| b.request_id),
    }
}

/// Reads the body, refusing more than [`MAX_RESPONSE_BYTES`] and stopping at the deadline.
///
/// A body that arrives in one piece (the usual case for a search page) is returned as it is.
/// One that arrives in pieces is copied into a single buffer, sized from `Content-Length` when
/// Notion sends it, as the pieces arrive: each piece is let go once copied, so a page read over
/// a slow or new connection never holds its pieces and its copy at once.
async fn read_capped(
    mut response: reqwest::Response,
    deadline: Instant,
) -> Result<Bytes, NotionError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > MAX_RESPONSE_BYTES as u64 {
        return Err(NotionError::TooLarge);
    }
    // `declared` is at most MAX_RESPONSE_BYTES, checked above.
    let declared = usize::try_from(declared).unwrap_or(0);
    let pieces = async {
        let mut first: Option<Bytes> = None;
        let mut joined: Vec<u8> = Vec::new();
        let mut received = 0;
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                NotionError::Timeout
            } else {
                NotionError::Unreachable(e.without_url())
            }
        })? {
            received += chunk.len();
            if received > MAX_RESPONSE_BYTES {
                return Err(NotionError::TooLarge);
            }
            if received == chunk.len() {
                // Nothing came before it: kept as it is, in case it is the only piece.
                first = Some(chunk);
                continue;
            }
            if let Some(first) = first.take() {
                joined.reserve(declared.max(received));
                joined.extend_from_slice(&first);
            }
            joined.extend_from_slice(&chunk);
        }
        Ok(first.unwrap_or_else(|| joined.into()))
    };
    // One timer for the whole body, not one per piece.
    tokio::time::timeout_at(deadline.into(), pieces)
        .await
        .unwrap_or(Err(NotionError::Timeout))
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;

    /// An upstream that answers one request with `head` and then each of `pieces` in turn,
    /// pausing between them. Then it closes the connection if `head` says so, and otherwise
    /// keeps it open without a word. Returns its URL.
    async fn upstream(head: String, pieces: Vec<Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            socket.write_all(head.as_bytes()).await.unwrap();
            for piece in pieces {
                socket.write_all(&piece).await.unwrap();
                socket.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !head.contains("connection: close") {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        url
    }

    async fn read_from(url: &str, within: Duration) -> Result<Bytes, NotionError> {
        let response = reqwest::get(url).await.unwrap();
        read_capped(response, Instant::now() + within).await
    }

    #[tokio::test]
    async fn a_body_in_pieces_is_joined_whole() {
        let pieces: Vec<Vec<u8>> = (0u8..5)
            .map(|i| vec![b'a' + i; 3000 + usize::from(i)])
            .collect();
        let expected = pieces.concat();
        for head in [
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                expected.len()
            ),
            // Without a declared length the body ends with the connection, and the buffer grows
            // as the pieces come.
            "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_owned(),
        ] {
            let url = upstream(head, pieces.clone()).await;
            let body = read_from(&url, Duration::from_secs(10)).await.unwrap();
            assert_eq!(body.as_ref(), expected.as_slice());
        }
    }

    #[tokio::test]
    async fn a_body_declared_or_growing_past_the_cap_is_refused() {
        let declared = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_RESPONSE_BYTES + 1
        );
        let url = upstream(declared, vec![b"{}".to_vec()]).await;
        assert!(matches!(
            read_from(&url, Duration::from_secs(10)).await,
            Err(NotionError::TooLarge)
        ));

        // Chunked, so nothing is declared: the cap applies to what arrives.
        let piece = 1024 * 1024;
        let mut chunks = Vec::new();
        for _ in 0..MAX_RESPONSE_BYTES / piece + 1 {
            let mut chunk = format!("{piece:x}\r\n").into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', piece));
            chunk.extend_from_slice(b"\r\n");
            chunks.push(chunk);
        }
        let url = upstream(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
            chunks,
        )
        .await;
        assert!(matches!(
            read_from(&url, Duration::from_secs(10)).await,
            Err(NotionError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn a_body_that_stalls_midway_ends_at_the_deadline() {
        let url = upstream(
            "HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n".to_owned(),
            vec![vec![b'x'; 10]],
        )
        .await;
        assert!(matches!(
            read_from(&url, Duration::from_millis(500)).await,
            Err(NotionError::Timeout)
        ));
    }

    #[tokio::test]
    async fn a_body_that_keeps_dribbling_ends_at_the_deadline() {
        // Each piece comes well within the deadline, but the whole body would take over a
        // second: the deadline is for the whole read, not for each piece.
        let pieces = vec![vec![b'x'; 10]; 60];
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 10 * 60);
        let url = upstream(head, pieces).await;
        assert!(matches!(
            read_from(&url, Duration::from_millis(300)).await,
            Err(NotionError::Timeout)
        ));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_bounded() {
        for attempt in 1..=10 {
            let ceiling = BASE_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(8))
                .min(MAX_BACKOFF);
            let wait = backoff(attempt);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{attempt}: {wait:?}"
            );
        }
    }
}
