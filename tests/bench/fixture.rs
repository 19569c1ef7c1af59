//! A realistic Notion search page: 100 results, about 135 KiB, with what real workspaces contain
//! (titles under different property names, data sources, emoji, external and signed-file icons,
//! many properties per page) or the first part of it, and token responses for connecting
//! workspaces.

use serde_json::{Value, json};

const WORDS: &[&str] = &[
    "Roadmap",
    "Quarterly",
    "Planning",
    "Retro",
    "Hiring",
    "Design",
    "Review",
    "Launch",
    "Budget",
    "Notes",
    "Research",
    "Onboarding",
    "Sprint",
    "Backlog",
    "Customer",
    "Interviews",
    "Spec",
];

fn rich_text(text: &str) -> Value {
    json!([{
        "type": "text",
        "text": { "content": text, "link": null },
        "annotations": { "bold": false, "italic": false, "strikethrough": false,
                         "underline": false, "code": false, "color": "default" },
        "plain_text": text,
        "href": null
    }])
}

fn title(i: usize) -> String {
    (0..3)
        .map(|k| WORDS[(i * 7 + k * 5) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

fn icon(i: usize) -> Value {
    match i % 4 {
        0 => json!({ "type": "emoji", "emoji": "📄" }),
        1 => {
            json!({ "type": "external", "external": { "url": format!("https://images.example.com/icons/{i}.png") } })
        }
        2 => json!({ "type": "file", "file": {
            "url": format!(
                "https://prod-files-secure.s3.us-west-2.amazonaws.com/5a4d1b0e/{i:08x}/icon.png?\
                 X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&\
                 X-Amz-Credential=ASIAZI2LB466T6UGGG4A%2F20261125%2Fus-west-2%2Fs3%2Faws4_request&\
                 X-Amz-Date=20261125T120000Z&X-Amz-Expires=3600&X-Amz-Signature={:064x}&\
                 X-Amz-SignedHeaders=host&x-id=GetObject", i * 7919),
            "expiry_time": "2026-11-25T13:00:00.000Z" } }),
        _ => Value::Null,
    }
}

/// A page in a database ("Name" or "Task" as its title property, with the database's other
/// properties), or, for every other one, a page of its own under another page, whose only
/// property is its title, always named "title".
fn page(i: usize) -> Value {
    let id = format!("5a4d1b0e-{:04x}-4000-8000-{:012x}", i, i * 104_729);
    let title = json!({ "id": "title", "type": "title", "title": rich_text(&title(i)) });
    let (parent, properties) = if i.is_multiple_of(2) {
        (
            json!({ "type": "page_id", "page_id": "5a4d1b0e-0000-4000-8000-0000000000ab" }),
            json!({ "title": title }),
        )
    } else {
        let title_property = ["Name", "Task"][i / 2 % 2];
        (
            json!({ "type": "database_id", "database_id": "5a4d1b0e-0000-4000-8000-0000000000aa" }),
            json!({
                "Status": { "id": "st", "type": "status",
                            "status": { "id": "s1", "name": "In progress", "color": "blue" } },
                "Owner": { "id": "ow", "type": "people", "people": [
                    { "object": "user", "id": "5a4d1b0e-0000-4000-8000-000000000003" } ] },
                "Due": { "id": "du", "type": "date",
                         "date": { "start": "2026-12-01", "end": null, "time_zone": null } },
                "Tags": { "id": "tg", "type": "multi_select", "multi_select": [
                    { "id": "t1", "name": "Engineering", "color": "purple" },
                    { "id": "t2", "name": "Q4", "color": "green" } ] },
                "Estimate": { "id": "es", "type": "number", "number": i },
                "Done": { "id": "dn", "type": "checkbox", "checkbox": i.is_multiple_of(3) },
                "Summary": { "id": "sm", "type": "rich_text",
                             "rich_text": rich_text("A short summary of what this page is about.") },
                title_property: title,
            }),
        )
    };
    json!({
        "object": "page",
        "id": id,
        "created_time": "2026-10-01T09:00:00.000Z",
        "last_edited_time": format!("2026-11-{:02}T10:{:02}:00.000Z", 1 + i % 28, i % 60),
        "created_by": { "object": "user", "id": "5a4d1b0e-0000-4000-8000-000000000001" },
        "last_edited_by": { "object": "user", "id": "5a4d1b0e-0000-4000-8000-000000000002" },
        "cover": null,
        "icon": icon(i),
        "parent": parent,
        "in_trash": i.is_multiple_of(19),
        "url": format!("https://www.notion.so/{}", id.replace('-', "")),
        "public_url": null,
        "properties": properties,
    })
}

fn data_source(i: usize) -> Value {
    let id = format!("5a4d1b0e-{:04x}-4000-9000-{:012x}", i, i * 7_919);
    json!({
        "object": "data_source",
        "id": id,
        "created_time": "2026-09-01T09:00:00.000Z",
        "last_edited_time": "2026-11-20T08:00:00.000Z",
        "icon": icon(i),
        "cover": null,
        "parent": { "type": "database_id", "database_id": "5a4d1b0e-0000-4000-8000-0000000000bb" },
        "in_trash": false,
        "url": format!("https://www.notion.so/{}", id.replace('-', "")),
        "public_url": null,
        "title": rich_text(&title(i)),
        "description": rich_text("Everything the team tracks."),
        "properties": {
            "Name": { "id": "title", "name": "Name", "type": "title", "title": {} },
            "Status": { "id": "st", "name": "Status", "type": "status", "status": {} },
            "Due": { "id": "du", "name": "Due", "type": "date", "date": {} },
            "Tags": { "id": "tg", "name": "Tags", "type": "multi_select",
                      "multi_select": { "options": [] } },
        }
    })
}

/// A full search page: 100 results.
pub(crate) fn search_page() -> String {
    search_page_of(100)
}

/// The first `size` results of the full page (1 to 100), as Notion answers a search asking for
/// `page_size: size`.
pub(crate) fn search_page_of(size: usize) -> String {
    let results: Vec<Value> = (0..size.clamp(1, 100))
        .map(|i| if i % 5 == 4 { data_source(i) } else { page(i) })
        .collect();
    json!({
        "object": "list",
        "results": results,
        "next_cursor": "5a4d1b0e-ffff-4000-8000-000000000000",
        "has_more": true,
        "type": "page_or_data_source",
        "page_or_data_source": {},
        "request_id": "5a4d1b0e-0000-4000-8000-0000000000cc"
    })
    .to_string()
}

/// A token response for the authorization code `code` (one workspace per code).
pub(crate) fn grant(code: &str) -> String {
    json!({
        "access_token": format!("secret_bench_{code}"),
        "token_type": "bearer",
        "refresh_token": format!("nrt_bench_{code}"),
        "bot_id": format!("bot-{code}"),
        "workspace_id": format!("ws-{code}"),
        "workspace_name": format!("Workspace {code}"),
        "workspace_icon": "🏁",
        "owner": { "type": "workspace", "workspace": true },
        "duplicated_template_id": null,
        "request_id": "r"
    })
    .to_string()
}
