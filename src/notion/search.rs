//! Notion's search response, read in place and simplified.
//!
//! Only the fields we show are deserialised, and strings borrow from the response buffer where
//! JSON escaping allows. A page's title is in the one property whose `type` is `title` (its name
//! varies: "title", "Name", "Task", ...); a data source's or database's title is a top-level
//! rich-text array. Results may be partial (only `object` and `id`): every other field is
//! optional here.

use std::{borrow::Cow, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor},
};

pub(crate) const UNTITLED: &str = "Untitled";

/// The body of `POST /search`. Absent values are left out entirely: Notion rejects a `null`
/// `start_cursor`.
#[derive(Serialize, Debug, Default, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<ObjectFilter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<Sort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_cursor: Option<String>,
    pub page_size: u32,
}

/// `{"property": "object", "value": ...}`: only pages, or only data sources.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectFilter {
    property: FilterProperty,
    value: ObjectType,
}

impl ObjectFilter {
    pub(crate) fn only(value: ObjectType) -> Self {
        Self {
            property: FilterProperty::Object,
            value,
        }
    }
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum FilterProperty {
    Object,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ObjectType {
    Page,
    DataSource,
}

/// `{"direction": ..., "timestamp": "last_edited_time"}`: the only sort Notion's search has.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    direction: Direction,
    timestamp: Timestamp,
}

impl Sort {
    pub(crate) fn by_last_edited(direction: Direction) -> Self {
        Self {
            direction,
            timestamp: Timestamp::LastEditedTime,
        }
    }
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Ascending,
    Descending,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Timestamp {
    LastEditedTime,
}

#[derive(Deserialize)]
pub(crate) struct RawPage<'a> {
    #[serde(borrow)]
    pub results: Vec<RawResult<'a>>,
    #[serde(borrow, default)]
    pub next_cursor: Option<Cow<'a, str>>,
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Deserialize)]
pub(crate) struct RawResult<'a> {
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
    /// Pages: the title property's text; every other property is skipped unread.
    #[serde(borrow, default)]
    pub properties: Option<PageTitle<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct RichText<'a> {
    #[serde(borrow, default)]
    pub plain_text: Cow<'a, str>,
}

/// The text of the one property whose `type` is `title`, read from a `properties` object
/// without collecting the others. `None` when there is none, or when the title is not a
/// rich-text array (a data source's schema has `"title": {}` there).
pub(crate) struct PageTitle<'a>(Option<Vec<RichText<'a>>>);

#[derive(Deserialize)]
struct RawProperty<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    title: Option<TitleValue<'a>>,
}

/// A rich-text array, or any other value, which is skipped.
struct TitleValue<'a>(Option<Vec<RichText<'a>>>);

impl<'de: 'a, 'a> Deserialize<'de> for PageTitle<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Properties<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Properties<'a> {
            type Value = PageTitle<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of properties")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut found = None;
                while let Some(IgnoredAny) = map.next_key()? {
                    let property: RawProperty<'a> = map.next_value()?;
                    if found.is_none()
                        && property.kind == "title"
                        && let Some(TitleValue(Some(text))) = property.title
                    {
                        found = Some(text);
                    }
                }
                Ok(PageTitle(found))
            }
        }

        deserializer.deserialize_map(Properties(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for TitleValue<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Title<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Title<'a> {
            type Value = TitleValue<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rich-text array or any other value")
            }

            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut text = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(part) = seq.next_element()? {
                    text.push(part);
                }
                Ok(TitleValue(Some(text)))
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                IgnoredAny.visit_map(map)?;
                Ok(TitleValue(None))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(TitleValue(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(TitleValue(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(TitleValue(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(TitleValue(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(TitleValue(None))
            }

            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(TitleValue(None))
            }
        }

        deserializer.deserialize_any(Title(PhantomData))
    }
}

#[derive(Deserialize)]
pub(crate) struct RawIcon<'a> {
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
pub(crate) struct RawFile<'a> {
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

impl Item {
    /// About how many bytes of memory the item takes: itself and its strings.
    pub(crate) fn footprint(&self) -> usize {
        let icon = match &self.icon {
            Some(Icon::Emoji(text) | Icon::Url(text)) => text.len(),
            None => 0,
        };
        std::mem::size_of::<Self>()
            + self.id.len()
            + self.title.len()
            + self.url.as_ref().map_or(0, String::len)
            + icon
            + self.last_edited_time.as_ref().map_or(0, String::len)
    }
}

impl RawResult<'_> {
    /// `None` for kinds we do not show.
    pub(crate) fn simplify(self) -> Option<Item> {
        let object = match self.object.as_ref() {
            "page" => ObjectKind::Page,
            "data_source" => ObjectKind::DataSource,
            "database" => ObjectKind::Database,
            _ => return None,
        };
        let title = match object {
            ObjectKind::Page => self
                .properties
                .and_then(|PageTitle(text)| text)
                .map(|text| join(&text))
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

/// One page of simplified results.
#[derive(Debug, PartialEq, Eq)]
pub struct SearchPage {
    pub items: Vec<Item>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// Parses a search response body into simplified results.
///
/// The body is checked to be UTF-8 once, as a whole, and then parsed as text: parsing bytes
/// would check every string the results borrow on its own, which costs more than one pass over
/// the page. A body that is not UTF-8 is not JSON, whatever part of it is at fault.
pub fn parse(body: &[u8]) -> Result<SearchPage, serde_json::Error> {
    let text = std::str::from_utf8(body)
        .map_err(|_| <serde_json::Error as serde::de::Error>::custom("the body is not UTF-8"))?;
    let page: RawPage<'_> = serde_json::from_str(text)?;
    Ok(SearchPage {
        next_cursor: page.next_cursor.map(Cow::into_owned),
        items: page
            .results
            .into_iter()
            .filter_map(RawResult::simplify)
            .collect(),
        has_more: page.has_more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_in_notions_shape() {
        let everything = SearchRequest {
            query: Some("road".into()),
            filter: Some(ObjectFilter::only(ObjectType::DataSource)),
            sort: Some(Sort::by_last_edited(Direction::Ascending)),
            start_cursor: Some("c1".into()),
            page_size: 20,
        };
        assert_eq!(
            serde_json::to_value(&everything).unwrap(),
            serde_json::json!({
                "query": "road",
                "filter": { "property": "object", "value": "data_source" },
                "sort": { "direction": "ascending", "timestamp": "last_edited_time" },
                "start_cursor": "c1",
                "page_size": 20,
            })
        );
        let bare = SearchRequest {
            page_size: 100,
            ..SearchRequest::default()
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"page_size":100}"#
        );
    }

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
        let SearchPage {
            items,
            next_cursor: cursor,
            has_more: more,
        } = parse(body).unwrap();
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
    fn only_the_property_of_type_title_names_a_page() {
        let body = br#"{"has_more":false,"next_cursor":null,"results":[
            {"object":"page","id":"p","properties":{
                "title":{"id":"a","type":"rich_text","rich_text":[{"plain_text":"not this"}]},
                "Tags":{"id":"b","type":"multi_select","multi_select":[{"name":"x","title":[]}]},
                "Odd":{"id":"c","type":"formula","title":"neither"},
                "Due":{"id":"d","type":"date","date":{"start":"2026-11-23"}},
                "Task":{"type":"title","id":"title","title":[{"plain_text":"Ship "},{"plain_text":"it"}]},
                "After":{"type":"title","title":[{"plain_text":"a second title is ignored"}]}}}
        ]}"#;
        let SearchPage {
            items,
            next_cursor: cursor,
            has_more: more,
        } = parse(body).unwrap();
        assert_eq!((cursor, more), (None, false));
        assert_eq!(items[0].title, "Ship it");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse(b"<html>502</html>").is_err());
        assert!(parse(br#"{"results":[{"id":"x"}]}"#).is_err());
    }

    #[test]
    fn a_body_that_is_not_utf8_is_refused_wherever_the_fault_is() {
        let page = |ignored: &[u8], title: &[u8]| {
            let mut body = br#"{"has_more":false,"next_cursor":null,"results":[{"object":"page","id":"p","ignored":""#.to_vec();
            body.extend_from_slice(ignored);
            body.extend_from_slice(
                br#"","properties":{"Name":{"type":"title","title":[{"plain_text":""#,
            );
            body.extend_from_slice(title);
            body.extend_from_slice(br#""}]}}}]}"#);
            body
        };
        let good = parse(&page("Größe".as_bytes(), "Café ☕".as_bytes())).unwrap();
        assert_eq!(good.items[0].title, "Café ☕");
        // A lone continuation byte, in a value nobody reads and in a title.
        assert!(parse(&page(b"\x80", b"t")).is_err());
        assert!(parse(&page(b"x", b"\xff")).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_or_skipped_without_exhausting_the_stack() {
        for depth in [200, 100_000] {
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            // Where values are read, nesting this deep is refused.
            let in_a_title = format!(
                r#"{{"results":[{{"object":"data_source","id":"d","title":{nested}}}],"has_more":false}}"#
            );
            assert!(parse(nested.as_bytes()).is_err(), "{depth} levels");
            assert!(parse(in_a_title.as_bytes()).is_err(), "{depth} levels");
            // Where they are skipped, they are skipped without recursing.
            let in_an_ignored_field = format!(
                r#"{{"results":[{{"object":"page","id":"p","junk":{nested}}}],"has_more":false}}"#
            );
            assert_eq!(
                parse(in_an_ignored_field.as_bytes()).unwrap().items.len(),
                1
            );
        }
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::{Value, json};

        use super::*;

        /// Keys a search response uses, and a few others.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "object",
                    "results",
                    "id",
                    "title",
                    "properties",
                    "type",
                    "plain_text",
                    "icon",
                    "emoji",
                    "external",
                    "file",
                    "url",
                    "has_more",
                    "next_cursor",
                    "in_trash",
                    "archived",
                    "custom_emoji",
                ])
                .prop_map(str::to_owned),
                "[a-z_]{0,10}",
            ]
        }

        /// Any JSON value, a few levels deep.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("JSON numbers are finite", |f| f.is_finite())
                    .prop_map(Value::from),
                prop::sample::select(vec!["page", "data_source", "database", "title", "emoji"])
                    .prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((key(), inner), 0..6)
                        .prop_map(|fields| Value::Object(fields.into_iter().collect())),
                ]
            })
        }

        fn rich_text(parts: &[String]) -> Value {
            parts
                .iter()
                .map(|text| json!({ "type": "text", "plain_text": text, "href": null }))
                .collect()
        }

        proptest! {
            #[test]
            fn any_bytes_are_parsed_or_refused_without_panicking(
                body in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                let _ = parse(&body);
            }

            #[test]
            fn any_json_in_any_place_is_parsed_or_refused_without_panicking(
                page in json_value(),
                result in json_value(),
                properties in json_value(),
                icon in json_value(),
                title in json_value(),
            ) {
                let _ = parse(page.to_string().as_bytes());
                let shaped = json!({
                    "object": "list",
                    "results": [
                        result,
                        { "object": "page", "id": "p", "properties": properties, "icon": icon },
                        { "object": "data_source", "id": "d", "title": title },
                    ],
                    "has_more": false,
                    "next_cursor": null,
                });
                let _ = parse(shaped.to_string().as_bytes());
            }

            #[test]
            fn titles_are_the_concatenated_plain_text(
                parts in prop::collection::vec(".{0,16}", 0..5),
                property in ".{1,16}",
                emoji in ".{1,4}",
                url in "https://[a-z]{1,10}\\.example/[a-z0-9]{0,10}",
            ) {
                let joined: String = parts.concat();
                let expected = if joined.trim().is_empty() { UNTITLED.to_owned() } else { joined };
                let mut page_properties = serde_json::Map::new();
                page_properties.insert(
                    "Tags".into(),
                    json!({ "type": "multi_select", "multi_select": [] }),
                );
                page_properties.insert(
                    property.clone(),
                    json!({ "type": "title", "title": rich_text(&parts) }),
                );
                let mut schema = serde_json::Map::new();
                schema.insert(property, json!({ "type": "title", "title": {} }));
                let body = json!({
                    "object": "list",
                    "results": [
                        {
                            "object": "page",
                            "id": "p",
                            "properties": page_properties,
                            "icon": { "type": "emoji", "emoji": emoji },
                        },
                        {
                            "object": "data_source",
                            "id": "d",
                            "title": rich_text(&parts),
                            "properties": schema,
                            "icon": { "type": "external", "external": { "url": url } },
                        },
                    ],
                    "has_more": false,
                    "next_cursor": null,
                });
                let page = parse(body.to_string().as_bytes()).unwrap();
                prop_assert_eq!(page.items.len(), 2);
                prop_assert_eq!(&page.items[0].title, &expected);
                prop_assert_eq!(&page.items[1].title, &expected);
                prop_assert_eq!(&page.items[0].icon, &Some(Icon::Emoji(emoji)));
                prop_assert_eq!(&page.items[1].icon, &Some(Icon::Url(url)));
            }
        }
    }
}
