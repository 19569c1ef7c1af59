//! Notion's search response, read in place and simplified.
//!
//! Only the fields we show are deserialised, and strings borrow from the response buffer where
//! JSON escaping allows. A page's title is in the one property whose `type` is `title` (its name
//! varies: "title", "Name", "Task", ...); a data source's or database's title is a top-level
//! rich-text array. Results may be partial (only `object` and `id`): every other field is
//! optional here.

use std::{borrow::Cow, collections::HashMap};

use serde::{Deserialize, de::IgnoredAny};

pub const UNTITLED: &str = "Untitled";

#[derive(Deserialize)]
pub struct RawPage<'a> {
    #[serde(borrow)]
    pub results: Vec<RawResult<'a>>,
    #[serde(borrow, default)]
    pub next_cursor: Option<Cow<'a, str>>,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Deserialize)]
pub struct RawResult<'a> {
    #[serde(borrow)]
    pub object: Cow<'a, str>,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub icon: Option<RawIcon<'a>>,
    #[serde(borrow, default)]
    pub last_edited_time: Option<Cow<'a, str>>,
    #[serde(default)]
    pub in_trash: Option<bool>,
    /// Versions before 2026-03-11 say `archived`.
    #[serde(default)]
    pub archived: Option<bool>,
    /// Data sources and databases.
    #[serde(borrow, default)]
    pub title: Option<Vec<RichText<'a>>>,
    /// Pages: values; data sources: the schema. Only a title value is of interest.
    #[serde(borrow, default)]
    pub properties: Option<HashMap<Cow<'a, str>, RawProperty<'a>>>,
}

#[derive(Deserialize)]
pub struct RichText<'a> {
    #[serde(borrow, default)]
    pub plain_text: Cow<'a, str>,
}

#[derive(Deserialize)]
pub struct RawProperty<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Cow<'a, str>,
    /// A page's title value is a rich-text array; in a schema it is an empty object.
    #[serde(borrow, default)]
    pub title: Option<TitleValue<'a>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum TitleValue<'a> {
    Text(#[serde(borrow)] Vec<RichText<'a>>),
    Other(IgnoredAny),
}

#[derive(Deserialize)]
pub struct RawIcon<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub emoji: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub external: Option<RawFile<'a>>,
    #[serde(borrow, default)]
    pub file: Option<RawFile<'a>>,
    #[serde(borrow, default)]
    pub custom_emoji: Option<RawFile<'a>>,
}

#[derive(Deserialize)]
pub struct RawFile<'a> {
    #[serde(borrow, default)]
    pub url: Option<Cow<'a, str>>,
}

/// The kinds of result we show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Page,
    DataSource,
    Database,
}

/// A simplified icon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Icon {
    Emoji(String),
    Url(String),
}

/// One simplified result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub object: ObjectKind,
    pub title: String,
    pub url: Option<String>,
    pub icon: Option<Icon>,
    pub last_edited_time: Option<String>,
    pub in_trash: bool,
}

impl RawResult<'_> {
    /// `None` for kinds we do not show.
    pub fn simplify(self) -> Option<Item> {
        let object = match self.object.as_ref() {
            "page" => ObjectKind::Page,
            "data_source" => ObjectKind::DataSource,
            "database" => ObjectKind::Database,
            _ => return None,
        };
        let title = match object {
            ObjectKind::Page => self
                .properties
                .as_ref()
                .and_then(|properties| {
                    properties
                        .values()
                        .find_map(|p| match (&*p.kind, &p.title) {
                            ("title", Some(TitleValue::Text(text))) => Some(join(text)),
                            _ => None,
                        })
                })
                .unwrap_or_default(),
            ObjectKind::DataSource | ObjectKind::Database => {
                self.title.as_deref().map(join).unwrap_or_default()
            }
        };
        let title = if title.trim().is_empty() {
            UNTITLED.to_owned()
        } else {
            title
        };
        Some(Item {
            id: self.id.into_owned(),
            object,
            title,
            url: self.url.map(Cow::into_owned),
            icon: self.icon.and_then(RawIcon::simplify),
            last_edited_time: self.last_edited_time.map(Cow::into_owned),
            in_trash: self.in_trash.or(self.archived).unwrap_or(false),
        })
    }
}

impl RawIcon<'_> {
    /// Emoji stay emoji; external, uploaded and custom-emoji icons become their URL.
    fn simplify(self) -> Option<Icon> {
        let url_of = |file: Option<RawFile<'_>>| file.and_then(|f| f.url).map(Cow::into_owned);
        match &*self.kind {
            "emoji" => self.emoji.map(|e| Icon::Emoji(e.into_owned())),
            "external" => url_of(self.external).map(Icon::Url),
            "file" => url_of(self.file).map(Icon::Url),
            "custom_emoji" => url_of(self.custom_emoji).map(Icon::Url),
            _ => None,
        }
    }
}

fn join(text: &[RichText<'_>]) -> String {
    text.iter().map(|t| t.plain_text.as_ref()).collect()
}

/// Parses a search response body into simplified results.
pub fn parse(body: &[u8]) -> Result<(Vec<Item>, Option<String>, bool), serde_json::Error> {
    let page: RawPage<'_> = serde_json::from_slice(body)?;
    let next_cursor = page.next_cursor.map(Cow::into_owned);
    let items = page
        .results
        .into_iter()
        .filter_map(RawResult::simplify)
        .collect();
    Ok((items, next_cursor, page.has_more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_right_place() {
        let body = br#"{"object":"list","has_more":true,"next_cursor":"abc","results":[
            {"object":"page","id":"p1","properties":{
                "Status":{"id":"s","type":"select","select":null},
                "Name":{"id":"title","type":"title","title":[{"plain_text":"Road"},{"plain_text":"map \u00e9"}]}},
             "icon":{"type":"emoji","emoji":"\ud83d\uddfa"},"in_trash":false,"url":"https://notion.so/p1",
             "last_edited_time":"2026-01-01T00:00:00.000Z"},
            {"object":"data_source","id":"d1","title":[{"plain_text":"Tasks"}],
             "properties":{"Task":{"id":"title","name":"Task","type":"title","title":{}}},
             "icon":{"type":"external","external":{"url":"https://example.com/i.png"}}},
            {"object":"page","id":"p2","properties":{"title":{"type":"title","title":[]}},
             "icon":{"type":"file","file":{"url":"https://files.example/x","expiry_time":"2026"}},"archived":true},
            {"object":"page","id":"p3"},
            {"object":"database","id":"db1","title":[]},
            {"object":"block","id":"b1"}
        ]}"#;
        let (items, cursor, more) = parse(body).unwrap();
        assert_eq!((cursor.as_deref(), more), (Some("abc"), true));
        let titles: Vec<&str> = items.iter().map(|i| i.title.as_str()).collect();
        assert_eq!(
            titles,
            ["Roadmap é", "Tasks", "Untitled", "Untitled", "Untitled"]
        );
        assert_eq!(items[0].icon, Some(Icon::Emoji("🗺".into())));
        assert_eq!(
            items[1].icon,
            Some(Icon::Url("https://example.com/i.png".into()))
        );
        assert_eq!(
            items[2].icon,
            Some(Icon::Url("https://files.example/x".into()))
        );
        assert!(items[2].in_trash);
        assert_eq!(items[3].url, None);
        assert_eq!(items[4].object, ObjectKind::Database);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse(b"<html>502</html>").is_err());
        assert!(parse(br#"{"results":[{"id":"x"}]}"#).is_err());
    }
}
