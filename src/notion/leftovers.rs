//! Results fetched from Notion for a page across workspaces but not returned on it, kept in
//! memory for the next page, so that they need not be fetched again.
//!
//! Notion's cursors only point at the start of its pages, so a workspace's page that was only
//! partly returned could otherwise only be continued by fetching it again. What is kept is
//! bounded (in bytes and in time) and used once; when it is gone (another instance serves the
//! next page, the service restarted, or it expired) the cursor still says where each workspace
//! goes on, and the page is fetched again from there.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use uuid::Uuid;

use super::{search::Item, segment::Segment};
use crate::crypto::random_token;

/// Memory the kept results may take at most, across every user's searches, as
/// `Item::footprint` counts it (allocator overhead comes on top).
const MAX_BYTES: usize = 8 << 20;
/// How long results are kept for the next page.
const KEEP_FOR: Duration = Duration::from_secs(10 * 60);

/// One workspace's leftovers.
pub(crate) type LaneLeftovers = (Uuid, VecDeque<Segment>);

#[derive(Default)]
pub(crate) struct Leftovers(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    entries: HashMap<String, Entry>,
    /// Keys oldest first; may name entries already taken.
    order: VecDeque<String>,
    bytes: usize,
}

struct Entry {
    user_id: Uuid,
    kept_until: Instant,
    lanes: Vec<LaneLeftovers>,
    bytes: usize,
}

impl Leftovers {
    /// Keeps `lanes` for `user_id`; the key to take them with, or `None` when there is nothing
    /// to keep.
    pub(crate) fn keep(&self, user_id: Uuid, lanes: Vec<LaneLeftovers>) -> Option<String> {
        let bytes: usize = lanes
            .iter()
            .flat_map(|(_, segments)| segments)
            .flat_map(|segment| &segment.items)
            .map(Item::footprint)
            .sum();
        if bytes == 0 || bytes > MAX_BYTES {
            return None;
        }
        let key = random_token::<16>().ok()?;
        let now = Instant::now();
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Make room: the expired first, then the oldest.
        while kept.bytes + bytes > MAX_BYTES
            || kept
                .order
                .front()
                .and_then(|oldest| kept.entries.get(oldest))
                .is_some_and(|entry| entry.kept_until <= now)
        {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            if let Some(entry) = kept.entries.remove(&oldest) {
                kept.bytes -= entry.bytes;
            }
        }
        kept.entries.insert(
            key.clone(),
            Entry {
                user_id,
                kept_until: now + KEEP_FOR,
                lanes,
                bytes,
            },
        );
        kept.order.push_back(key.clone());
        kept.bytes += bytes;
        if kept.order.len() > 2 * kept.entries.len() + 64 {
            let entries = &kept.entries;
            let live: VecDeque<String> = kept
                .order
                .iter()
                .filter(|key| entries.contains_key(*key))
                .cloned()
                .collect();
            kept.order = live;
        }
        Some(key)
    }

    /// What was kept under `key` for `user_id`, once.
    pub(crate) fn take(&self, user_id: Uuid, key: &str) -> Vec<LaneLeftovers> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = kept.entries.remove(key) else {
            return Vec::new();
        };
        kept.bytes -= entry.bytes;
        if entry.user_id != user_id || entry.kept_until <= Instant::now() {
            return Vec::new();
        }
        entry.lanes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notion::{search::ObjectKind, segment::After};

    fn item(title_bytes: usize) -> Item {
        Item {
            id: "i".into(),
            object: ObjectKind::Page,
            title: "t".repeat(title_bytes),
            url: None,
            icon: None,
            last_edited_time: None,
            in_trash: false,
        }
    }

    fn lane(items: usize, title_bytes: usize) -> Vec<LaneLeftovers> {
        vec![(
            Uuid::from_u128(9),
            VecDeque::from([Segment {
                page: None,
                offset: 0,
                items: std::iter::repeat_n(item(title_bytes), items).collect(),
                after: After::End,
            }]),
        )]
    }

    #[test]
    fn leftovers_are_taken_once_by_their_user_and_stay_bounded() {
        let kept = Leftovers::default();
        let (owner, stranger) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(kept.keep(owner, lane(0, 1)), None, "nothing to keep");
        let key = kept.keep(owner, lane(3, 1)).unwrap();
        assert!(kept.take(stranger, &key).is_empty());
        let key = kept.keep(owner, lane(3, 1)).unwrap();
        assert_eq!(kept.take(owner, &key).len(), 1);
        assert!(kept.take(owner, &key).is_empty(), "once");

        let half = MAX_BYTES / 2 / item(1).footprint();
        let first = kept.keep(owner, lane(half, 1)).unwrap();
        let second = kept.keep(owner, lane(half, 1)).unwrap();
        let third = kept.keep(owner, lane(10, 1)).unwrap();
        assert!(kept.take(owner, &first).is_empty(), "the oldest made room");
        assert_eq!(kept.take(owner, &second).len(), 1);
        assert_eq!(kept.take(owner, &third).len(), 1);
        assert_eq!(kept.0.lock().unwrap().bytes, 0);
    }

    #[test]
    fn long_results_count_for_what_they_weigh() {
        let kept = Leftovers::default();
        let owner = Uuid::from_u128(1);
        // A hundred results with 100 KB titles weigh more than the whole bound: not kept, and
        // nothing else is pushed out for them.
        let small = kept.keep(owner, lane(3, 1)).unwrap();
        assert_eq!(kept.keep(owner, lane(100, 100_000)), None);
        assert_eq!(kept.take(owner, &small).len(), 1);
        assert!(item(100_000).footprint() > 100_000);
    }
}
