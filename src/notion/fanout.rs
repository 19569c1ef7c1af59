//! One search across several of a user's workspaces.
//!
//! Each workspace is a lane: its results in Notion's order, from where the previous page left
//! it. A page asks each lane for what it may need, all lanes at once (each on a task of its own,
//! within the usual rate limit, retries, token refresh and `NOTION_CONCURRENCY`), and waits for
//! them until the fan-out deadline; a lane that has not answered by then is reported as
//! `timeout` and asked again, from the same place, on the next page. Then:
//!
//! - with a sort, the lanes are merged by last-edited time. Every lane is asked for a whole
//!   page, because any of them may hold the next results; the merge stops early when a lane
//!   runs out of fetched results that may still have more, so the order is exact (among the
//!   lanes that answered).
//! - without one, each lane keeps Notion's relevance order and the page is shared out fairly:
//!   each lane is asked for its share and the results are interleaved, one from each in turn,
//!   starting with a different lane on each page.
//!
//! Results fetched but not returned stay in memory for the next page ([`super::leftovers`]);
//! the cursor says where each lane goes on in any case, so nothing is lost when they are gone.
//! Following the cursors to the end returns every result of every lane once.

use std::{
    cmp::Ordering,
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::task::JoinSet;
use uuid::Uuid;

use super::{
    client::NotionError,
    errors::SearchError,
    fanout_cursor::{CursorKey, FanoutCursor, LanePosition, search_digest},
    leftovers::Leftovers,
    search::{Direction, Item, ObjectFilter, SearchPage, SearchRequest, Sort},
    searcher::ConnectionSearcher,
    segment::{After, Segment},
};
use crate::{
    chain::Chain,
    metrics::Metrics,
    store::{StoreError, connections::ConnectionRow},
};

/// The most Notion returns in one page.
const NOTION_PAGE_MAX: usize = 100;
/// The most workspaces one search covers (the oldest connections first). Each is asked at once
/// on every page, and each has its place in the cursor, which must stay a reasonable query
/// parameter.
const MAX_WORKSPACES: usize = 50;
/// How long past the deadline answers are still collected: a lane that gives up at the
/// deadline itself then reports its own timeout.
const COLLECT_GRACE: Duration = Duration::from_millis(250);

/// A search across workspaces, as the API asks for it.
pub(crate) struct FanoutRequest {
    pub query: Option<String>,
    pub filter: Option<ObjectFilter>,
    /// By last-edited time; `None`: Notion's relevance order.
    pub order: Option<Direction>,
    pub page_size: usize,
    pub cursor: Option<String>,
    /// Only these of the user's connections; empty: every one.
    pub connections: Vec<Uuid>,
}

/// How one workspace's part of a page went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LaneStatus {
    Ok,
    /// Notion asks to wait this long.
    RateLimited(Duration),
    NeedsReauth,
    Unreadable,
    Timeout,
    Error,
}

impl LaneStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::RateLimited(_) => "rate_limited",
            Self::NeedsReauth => "needs_reauth",
            Self::Unreadable => "unreadable",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }
}

/// A workspace searched for a page.
pub(crate) struct LaneReport {
    pub connection: ConnectionRow,
    pub status: LaneStatus,
}

pub(crate) struct FanoutPage {
    /// Results, each with the id of its connection.
    pub results: Vec<(Uuid, Item)>,
    /// The workspaces searched for this page.
    pub lanes: Vec<LaneReport>,
    pub next_cursor: Option<String>,
}

/// Why a search across workspaces answered nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FanoutError {
    #[error("a connection asked for is not the user's")]
    NotFound,
    #[error("the cursor is not one of this search")]
    InvalidCursor,
    /// Every workspace searched failed; this says how, as one status.
    #[error("every workspace failed ({})", .0.as_str())]
    AllFailed(LaneStatus),
    #[error("database")]
    Store(#[from] StoreError),
}

/// One lane during a page: its connection and its results from where it stands.
struct Lane {
    row: ConnectionRow,
    /// Never empty: the first segment with items, or else the last one, says where the lane
    /// stands.
    segments: VecDeque<Segment>,
}

/// What to ask Notion for, for one lane.
struct Fetch {
    start: Option<String>,
    page_size: usize,
    /// Results at the start of the page already returned.
    skip: usize,
    /// The page replaces the lane's last segment (which only held its position).
    replaces_last: bool,
}

impl Lane {
    fn at(row: ConnectionRow, page: Option<String>, offset: u16) -> Self {
        Self {
            row,
            segments: VecDeque::from([Segment {
                page,
                offset,
                items: VecDeque::new(),
                after: After::Unknown,
            }]),
        }
    }

    fn available(&self) -> usize {
        self.segments.iter().map(|s| s.items.len()).sum()
    }

    fn head(&self) -> Option<&Item> {
        self.segments.iter().find_map(|s| s.items.front())
    }

    fn take(&mut self) -> Option<Item> {
        let segment = self.segments.iter_mut().find(|s| !s.items.is_empty())?;
        segment.offset = segment.offset.saturating_add(1);
        segment.items.pop_front()
    }

    /// Where the lane's next result is, or `None` when it has no more.
    fn position(&self) -> Option<(Option<String>, u16)> {
        if let Some(segment) = self.segments.iter().find(|s| !s.items.is_empty()) {
            return Some((segment.page.clone(), segment.offset));
        }
        let last = self.segments.back()?;
        match &last.after {
            After::Unknown => Some((last.page.clone(), last.offset)),
            After::More(cursor) => Some((Some(cursor.clone()), 0)),
            After::End => None,
        }
    }

    /// Whether the lane has no fetched result left but may have more.
    fn waiting(&self) -> bool {
        self.available() == 0 && self.position().is_some()
    }

    /// The one call to Notion that gives the lane `want` results, if it needs one.
    fn fetch_for(&self, want: usize) -> Option<Fetch> {
        let have = self.available();
        if want == 0 || have >= want {
            return None;
        }
        let last = self.segments.back()?;
        match &last.after {
            After::End => None,
            After::More(cursor) => Some(Fetch {
                start: Some(cursor.clone()),
                page_size: (want - have).min(NOTION_PAGE_MAX),
                skip: 0,
                replaces_last: false,
            }),
            After::Unknown => {
                let skip = usize::from(last.offset);
                Some(Fetch {
                    start: last.page.clone(),
                    page_size: (skip + want - have).min(NOTION_PAGE_MAX),
                    skip,
                    replaces_last: true,
                })
            }
        }
    }

    fn add(&mut self, fetch: Fetch, page: SearchPage) {
        let after = match (page.has_more, page.next_cursor) {
            (true, Some(cursor)) => After::More(cursor),
            _ => After::End,
        };
        let items = page.items.into_iter().skip(fetch.skip).collect();
        if fetch.replaces_last
            && let Some(last) = self.segments.back_mut()
        {
            last.items = items;
            last.after = after;
        } else {
            self.segments.push_back(Segment {
                page: fetch.start,
                offset: 0,
                items,
                after,
            });
        }
    }

    /// The lane's fetched results that were not returned, with where they are.
    fn leftovers(mut self) -> Option<(Uuid, VecDeque<Segment>)> {
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.items.is_empty()) {
            self.segments.pop_front();
        }
        (self.available() > 0).then_some((self.row.id, self.segments))
    }
}

/// Runs searches across workspaces.
pub(crate) struct Fanout {
    searcher: ConnectionSearcher,
    key: CursorKey,
    leftovers: Leftovers,
    /// How long a page waits for its slowest workspace.
    deadline: Duration,
    metrics: Arc<Metrics>,
}

impl Fanout {
    pub(crate) fn new(
        searcher: ConnectionSearcher,
        key: CursorKey,
        deadline: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            searcher,
            key,
            leftovers: Leftovers::default(),
            deadline,
            metrics,
        }
    }

    /// A page of `request` over `rows`, the user's connections (in the order lanes keep).
    pub(crate) async fn search(
        &self,
        user_id: Uuid,
        request: &FanoutRequest,
        rows: Vec<ConnectionRow>,
    ) -> Result<FanoutPage, FanoutError> {
        if let Some(id) = request
            .connections
            .iter()
            .find(|id| !rows.iter().any(|row| row.id == **id))
        {
            tracing::debug!(connection_id = %id, "a search named a connection that is not the caller's");
            return Err(FanoutError::NotFound);
        }
        let digest = search_digest(
            request.query.as_deref(),
            request.filter,
            request.order,
            &request.connections,
        );
        let (mut lanes, round) = self.lanes(user_id, request, &digest, rows)?;
        let wants = self.wants(request, &lanes, round);
        let statuses = self.fetch(request, &mut lanes, &wants).await;
        let answered: Vec<bool> = statuses
            .iter()
            .map(|status| *status == Some(LaneStatus::Ok))
            .collect();
        let results = match request.order {
            Some(order) => merge_in_order(&mut lanes, &answered, order, request.page_size),
            None => interleave(&mut lanes, &answered, &wants, round, request.page_size),
        };

        let mut reports = Vec::new();
        let mut continuing = Vec::new();
        let mut kept = Vec::new();
        for (lane, status) in lanes.into_iter().zip(statuses) {
            if let Some(status) = status {
                reports.push(LaneReport {
                    connection: lane.row.clone(),
                    status,
                });
            }
            let position = match status {
                // Reconnecting is needed: the lane ends here (it is reported as such).
                Some(LaneStatus::NeedsReauth | LaneStatus::Unreadable) => None,
                _ => lane.position(),
            };
            let Some((page, offset)) = position else {
                continue;
            };
            continuing.push(LanePosition {
                connection: lane.row.id,
                page,
                offset,
            });
            if status == Some(LaneStatus::Ok) {
                kept.extend(lane.leftovers());
            }
        }
        self.metrics.fanout(
            reports.len(),
            reports.iter().map(|report| report.status.as_str()),
        );
        if !reports.is_empty() && reports.iter().all(|r| r.status != LaneStatus::Ok) {
            return Err(FanoutError::AllFailed(summary(&reports)));
        }
        let next_cursor = (!continuing.is_empty()).then(|| {
            let cursor = FanoutCursor {
                search: digest,
                round: round.wrapping_add(1),
                leftovers: self.leftovers.keep(user_id, kept),
                lanes: continuing,
            };
            self.key.seal(user_id, &cursor)
        });
        Ok(FanoutPage {
            results,
            lanes: reports,
            next_cursor,
        })
    }

    /// The lanes where the cursor left them (with the results kept for them), or at the start
    /// of every connection asked for.
    fn lanes(
        &self,
        user_id: Uuid,
        request: &FanoutRequest,
        digest: &str,
        rows: Vec<ConnectionRow>,
    ) -> Result<(Vec<Lane>, u32), FanoutError> {
        let Some(raw) = &request.cursor else {
            let lanes = rows
                .into_iter()
                .filter(|row| {
                    request.connections.is_empty() || request.connections.contains(&row.id)
                })
                .take(MAX_WORKSPACES)
                .map(|row| Lane::at(row, None, 0))
                .collect();
            return Ok((lanes, 0));
        };
        let cursor = self
            .key
            .open(user_id, raw)
            .filter(|cursor| cursor.search == digest)
            .ok_or(FanoutError::InvalidCursor)?;
        let mut kept: HashMap<Uuid, VecDeque<Segment>> = match &cursor.leftovers {
            Some(key) => self.leftovers.take(user_id, key).into_iter().collect(),
            None => HashMap::new(),
        };
        let mut rows: HashMap<Uuid, ConnectionRow> = rows.into_iter().map(|r| (r.id, r)).collect();
        let lanes = cursor
            .lanes
            .into_iter()
            // A connection deleted since has no more results.
            .filter_map(|position| {
                let row = rows.remove(&position.connection)?;
                let mut lane = Lane::at(row, position.page.clone(), position.offset);
                if let Some(segments) = kept.remove(&position.connection) {
                    let resumed = Lane {
                        row: lane.row.clone(),
                        segments,
                    };
                    // Kept results are used only if they start exactly where the lane stands.
                    if resumed.position() == Some((position.page, position.offset)) {
                        lane = resumed;
                    }
                }
                Some(lane)
            })
            .collect();
        Ok((lanes, cursor.round))
    }

    /// How many results each lane is asked for.
    fn wants(&self, request: &FanoutRequest, lanes: &[Lane], round: u32) -> Vec<usize> {
        let size = request.page_size;
        if request.order.is_some() || lanes.is_empty() {
            return vec![size; lanes.len()];
        }
        // Fair shares, the remainder going to the lanes whose turn it is to come first.
        let (share, extra) = (size / lanes.len(), size % lanes.len());
        let first = round as usize % lanes.len();
        (0..lanes.len())
            .map(|i| share + usize::from((i + lanes.len() - first) % lanes.len() < extra))
            .collect()
    }

    /// Asks Notion, for every lane at once, for what it needs, and adds what came back within
    /// the deadline. The status of each lane asked (a lane that already holds what it needs is
    /// `Ok` without a call; one not asked this page has none).
    async fn fetch(
        &self,
        request: &FanoutRequest,
        lanes: &mut [Lane],
        wants: &[usize],
    ) -> Vec<Option<LaneStatus>> {
        let until = Instant::now() + self.deadline;
        let mut statuses: Vec<Option<LaneStatus>> = wants
            .iter()
            .map(|want| (*want > 0).then_some(LaneStatus::Ok))
            .collect();
        let mut fetches: Vec<Option<Fetch>> = Vec::with_capacity(lanes.len());
        let mut tasks = JoinSet::new();
        for (index, (lane, want)) in lanes.iter().zip(wants).enumerate() {
            let fetch = lane.fetch_for(*want);
            if let Some(fetch) = &fetch {
                let body = SearchRequest {
                    query: request.query.clone(),
                    filter: request.filter,
                    sort: request.order.map(Sort::by_last_edited),
                    start_cursor: fetch.start.clone(),
                    page_size: fetch.page_size as u32,
                };
                let (searcher, row) = (self.searcher.clone(), lane.row.clone());
                // On a task of its own, so that a straggler cut off at the deadline still
                // finishes (a token refresh half done must not be lost).
                tasks.spawn(async move {
                    (index, searcher.search(&row, &body, Some(until), None).await)
                });
                statuses[index] = Some(LaneStatus::Timeout);
            }
            fetches.push(fetch);
        }
        let collect_until = tokio::time::Instant::from_std(until + COLLECT_GRACE);
        while let Ok(Some(joined)) = tokio::time::timeout_at(collect_until, tasks.join_next()).await
        {
            let Ok((index, outcome)) = joined else {
                continue;
            };
            let lane = &mut lanes[index];
            statuses[index] = Some(match outcome {
                Ok(page) => {
                    if let Some(fetch) = fetches[index].take() {
                        lane.add(fetch, page);
                    }
                    LaneStatus::Ok
                }
                Err(error) => status_of(lane.row.id, error),
            });
        }
        // Stragglers are left to finish on their own; their answers are not waited for.
        tasks.detach_all();
        statuses
    }
}

/// The status of a lane whose search failed with `error`.
fn status_of(connection: Uuid, error: SearchError) -> LaneStatus {
    match error {
        SearchError::NeedsReauth => LaneStatus::NeedsReauth,
        SearchError::Undecryptable => LaneStatus::Unreadable,
        SearchError::Notion(NotionError::RateLimited { retry_after }) => {
            LaneStatus::RateLimited(retry_after.unwrap_or(Duration::from_secs(1)))
        }
        SearchError::Notion(NotionError::Timeout) => LaneStatus::Timeout,
        error => {
            tracing::warn!(connection_id = %connection, error = %Chain(&error), "a workspace's search failed");
            LaneStatus::Error
        }
    }
}

/// One status for a page on which every workspace failed.
fn summary(reports: &[LaneReport]) -> LaneStatus {
    let all = |test: fn(LaneStatus) -> bool| reports.iter().all(|r| test(r.status));
    if all(|s| matches!(s, LaneStatus::NeedsReauth | LaneStatus::Unreadable)) {
        return LaneStatus::NeedsReauth;
    }
    if all(|s| matches!(s, LaneStatus::Timeout)) {
        return LaneStatus::Timeout;
    }
    let waits: Option<Vec<Duration>> = reports
        .iter()
        .map(|r| match r.status {
            LaneStatus::RateLimited(wait) => Some(wait),
            _ => None,
        })
        .collect();
    match waits.and_then(|waits| waits.into_iter().min()) {
        Some(shortest) => LaneStatus::RateLimited(shortest),
        None => LaneStatus::Error,
    }
}

/// Up to `size` results in exact last-edited order across the lanes that answered. Stops early
/// when such a lane has no fetched result left but may have more: its next one could come
/// first.
fn merge_in_order(
    lanes: &mut [Lane],
    answered: &[bool],
    order: Direction,
    size: usize,
) -> Vec<(Uuid, Item)> {
    let mut results = Vec::with_capacity(size);
    while results.len() < size {
        let taking_part = || {
            lanes
                .iter()
                .zip(answered)
                .filter(|(_, a)| **a)
                .map(|(l, _)| l)
        };
        if taking_part().any(Lane::waiting) {
            break;
        }
        let next = lanes
            .iter()
            .enumerate()
            .filter(|(i, _)| answered[*i])
            .filter_map(|(i, lane)| lane.head().map(|head| (i, head)))
            // `min_by` keeps the first of equals: ties go to the earlier lane.
            .min_by(|(_, a), (_, b)| compare(a, b, order))
            .map(|(i, _)| i);
        let Some(index) = next else {
            break;
        };
        let lane = &mut lanes[index];
        if let Some(item) = lane.take() {
            results.push((lane.row.id, item));
        }
    }
    results
}

/// Which of two results comes first. A result without a time (Notion sends some partially) is
/// taken at once, which keeps its lane's own order.
fn compare(a: &Item, b: &Item, order: Direction) -> Ordering {
    match (a.last_edited_time.as_deref(), b.last_edited_time.as_deref()) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match order {
            Direction::Ascending => a.cmp(b),
            Direction::Descending => b.cmp(a),
        },
    }
}

/// Each answering lane's share, one result from each in turn, the page's first lane first.
fn interleave(
    lanes: &mut [Lane],
    answered: &[bool],
    wants: &[usize],
    round: u32,
    size: usize,
) -> Vec<(Uuid, Item)> {
    let mut results = Vec::with_capacity(size);
    if lanes.is_empty() {
        return results;
    }
    let first = round as usize % lanes.len();
    let turns: Vec<usize> = (0..lanes.len())
        .map(|i| (first + i) % lanes.len())
        .collect();
    let mut given = vec![0; lanes.len()];
    loop {
        let before = results.len();
        for &index in &turns {
            if results.len() == size {
                return results;
            }
            if !answered[index] || given[index] >= wants[index] {
                continue;
            }
            let lane = &mut lanes[index];
            if let Some(item) = lane.take() {
                given[index] += 1;
                results.push((lane.row.id, item));
            }
        }
        if results.len() == before {
            return results;
        }
    }
}
