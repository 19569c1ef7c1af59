//! The sandbox's pretend workspaces: a few hundred pages and data sources each, generated the
//! same way every time, with the variety a client must cope with (titles under different
//! property names, untitled items, emoji, external and uploaded-file icons, trashed items, partial
//! objects). Their items were edited at different moments, so that sorting across workspaces
//! interleaves them.
//!
//! Image icons are inline `data:` SVGs rather than addresses of pretend hosts, so that a browser
//! shows them without reaching any other server (development machines may be offline).

use std::sync::OnceLock;

use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

/// The items of the first workspace, "Sandbox Workspace".
pub const SIZE: usize = 320;

/// How one workspace is generated.
struct Recipe {
    seed: u64,
    size: usize,
    /// Minutes between the newest item and the first one.
    shift: i64,
    /// The second group of its items' ids, so that no two workspaces share an id.
    id_group: u16,
    words: &'static [&'static str],
}

const RECIPES: [Recipe; 3] = [
    Recipe {
        seed: 0x5EED,
        size: SIZE,
        shift: 0,
        id_group: 0,
        words: WORDS,
    },
    Recipe {
        seed: 0x7EA4,
        size: 90,
        shift: 13,
        id_group: 0x7ea4,
        words: TEAM_WORDS,
    },
    Recipe {
        seed: 0xA2C4,
        size: 45,
        shift: 29,
        id_group: 0xa2c4,
        words: ARCHIVE_WORDS,
    },
];

const TEAM_WORDS: &[&str] = &[
    "Standup",
    "OKRs",
    "Offsite",
    "Playbook",
    "Customer",
    "Interview",
    "Pipeline",
    "Runbook",
    "Roadmap",
    "Handbook",
    "Incident",
    "Review",
    "Planning",
    "Demo",
    "Sprint",
    "Team",
];
const ARCHIVE_WORDS: &[&str] = &[
    "Legacy",
    "Minutes",
    "2023",
    "2024",
    "Old",
    "Migration",
    "Roadmap",
    "Notes",
    "Export",
    "Snapshot",
    "Team",
];

const WORDS: &[&str] = &[
    "Roadmap",
    "Meeting",
    "Notes",
    "Launch",
    "Budget",
    "Design",
    "Research",
    "Weekly",
    "Retro",
    "Hiring",
    "Onboarding",
    "Ideas",
    "Backlog",
    "Journal",
    "Travel",
    "Recipes",
    "Reading",
    "Goals",
    "Q3",
    "Q4",
    "Product",
    "Marketing",
    "Support",
    "Sprint",
    "Spec",
    "Draft",
    "Archive",
    "Team",
];
const EMOJI: &[&str] = &["📄", "🗺️", "🚀", "✅", "📚", "💡", "🧪", "📅"];
const TITLE_PROPERTIES: &[&str] = &["title", "Name", "Task"];

/// One item of the workspace.
#[derive(Clone, Debug)]
pub struct SeedItem {
    pub id: String,
    /// `page` or `data_source`.
    pub object: &'static str,
    /// Empty for untitled items.
    pub title: String,
    /// For pages: the name of the title property.
    pub title_property: &'static str,
    pub icon: Option<Value>,
    pub last_edited_time: OffsetDateTime,
    pub in_trash: bool,
    /// Search returns only `object` and `id` for it.
    pub partial: bool,
    /// The object as Notion's search returns it, rendered once.
    pub json: String,
}

/// The first workspace's items, built once.
pub fn items() -> &'static [SeedItem] {
    items_of(0)
}

/// The items of workspace `index` (of [`super::WORKSPACES`]), built once.
pub fn items_of(index: usize) -> &'static [SeedItem] {
    static ITEMS: [OnceLock<Vec<SeedItem>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let index = index.min(RECIPES.len() - 1);
    ITEMS[index].get_or_init(|| generate(&RECIPES[index]))
}

fn generate(recipe: &Recipe) -> Vec<SeedItem> {
    let words_of = recipe.words;
    let mut random = recipe.seed;
    let mut next = move || {
        // xorshift64: deterministic, good enough to vary a pretend workspace.
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let newest = OffsetDateTime::from_unix_timestamp(1_793_000_000).expect("a valid timestamp");
    (0..recipe.size)
        .map(|i| {
            let object = if i % 5 == 4 { "data_source" } else { "page" };
            let words = 1 + (next() % 3) as usize;
            let title = if i % 17 == 3 {
                String::new()
            } else {
                (0..words)
                    .map(|_| words_of[(next() % words_of.len() as u64) as usize])
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let icon = match i % 4 {
                0 => Some(json!({ "type": "emoji", "emoji": EMOJI[i % EMOJI.len()] })),
                1 => Some(json!({
                    "type": "external",
                    "external": { "url": svg_icon(Shape::Square, i) }
                })),
                2 => Some(json!({
                    "type": "file",
                    "file": {
                        "url": svg_icon(Shape::Circle, i),
                        "expiry_time": "2030-01-01T00:00:00.000Z"
                    }
                })),
                _ => None,
            };
            SeedItem {
                id: format!(
                    "5a4d1b0e-{:04x}-4{:03x}-8000-{:012x}",
                    i,
                    recipe.id_group % 0x1000,
                    next() % (1 << 48)
                ),
                object,
                title,
                title_property: TITLE_PROPERTIES[i % TITLE_PROPERTIES.len()],
                icon,
                // Hours apart, so that a page of results spans weeks, as a real workspace's does.
                last_edited_time: newest
                    - Duration::hours(7 * i as i64)
                    - Duration::minutes(recipe.shift),
                in_trash: i % 23 == 7,
                partial: object == "page" && i % 41 == 11,
                json: String::new(),
            }
        })
        .map(|mut item| {
            item.json = item.to_json().to_string();
            item
        })
        .collect()
}

enum Shape {
    Square,
    Circle,
}

/// A small coloured shape as a `data:` URL.
fn svg_icon(shape: Shape, i: usize) -> String {
    const COLOURS: &[&str] = &["2f6feb", "1a7f37", "bf8700", "cf222e", "8250df", "0a7ea4"];
    let fill = COLOURS[i % COLOURS.len()];
    let figure = match shape {
        Shape::Square => format!("<rect width='20' height='20' rx='5' fill='#{fill}'/>"),
        Shape::Circle => format!("<circle cx='10' cy='10' r='10' fill='#{fill}'/>"),
    };
    let svg = format!("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 20 20'>{figure}</svg>");
    let escaped = svg
        .replace('%', "%25")
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('#', "%23")
        .replace(' ', "%20");
    format!("data:image/svg+xml,{escaped}")
}

fn rich_text(text: &str) -> Value {
    if text.is_empty() {
        return json!([]);
    }
    json!([{
        "type": "text",
        "text": { "content": text, "link": null },
        "annotations": { "bold": false, "italic": false, "strikethrough": false,
                          "underline": false, "code": false, "color": "default" },
        "plain_text": text,
        "href": null
    }])
}

impl SeedItem {
    /// The object as Notion's search returns it.
    fn to_json(&self) -> Value {
        if self.partial {
            return json!({ "object": self.object, "id": self.id });
        }
        let edited = self.last_edited_time.format(&Rfc3339).unwrap_or_default();
        let url = format!("https://www.notion.so/sandbox/{}", self.id.replace('-', ""));
        let mut value = json!({
            "object": self.object,
            "id": self.id,
            "created_time": edited,
            "last_edited_time": edited,
            "created_by": { "object": "user", "id": "5a4d1b0e-0000-4000-8000-5a4d00000003" },
            "icon": self.icon,
            "cover": null,
            "parent": { "type": "workspace", "workspace": true },
            "in_trash": self.in_trash,
            "url": url,
            "public_url": null,
        });
        if self.object == "page" {
            value["properties"] = json!({
                "Status": { "id": "st", "type": "select", "select": { "name": "Done", "color": "green" } },
                self.title_property: { "id": "title", "type": "title", "title": rich_text(&self.title) },
            });
        } else {
            value["title"] = rich_text(&self.title);
            value["description"] = json!([]);
            value["properties"] = json!({
                "Name": { "id": "title", "name": "Name", "type": "title", "title": {} },
                "Due": { "id": "du", "name": "Due", "type": "date", "date": {} },
            });
        }
        value
    }
}
