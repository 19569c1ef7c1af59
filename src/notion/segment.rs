//! A run of one workspace's results from one of Notion's pages: the unit in which a search
//! across workspaces keeps what it fetched and says where each workspace goes on.

use std::collections::VecDeque;

use super::search::Item;

/// What comes after one of Notion's pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// The page has not been fetched.
    Unknown,
    /// Notion's cursor for the next page.
    More(String),
    End,
}

/// A run of one lane's results from one of Notion's pages.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    /// Notion's cursor for the page (`None`: the first page).
    pub page: Option<String>,
    /// The place of `items[0]` in the page (or of the next result, when there are no items).
    pub offset: u16,
    pub items: VecDeque<Item>,
    pub after: After,
}
