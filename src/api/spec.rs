//! The published OpenAPI document, and what the service knows from it at run time.
//!
//! poem-openapi generates the document from the operations. Some answers come from the layers
//! around the operations rather than from the operations themselves: reading a JSON body (400
//! `malformed_body`, 408, 413, 415) and parsing a path parameter (422 `invalid_parameter`).
//! [`document`] adds those to every operation they can happen to, so that the document lists
//! every status an operation can answer with.
//!
//! The same document tells the service each operation's route template (for metrics), the names
//! of its path parameters (for error messages), and the methods each path accepts (for `Allow`).

use std::{collections::HashMap, sync::OnceLock};

use serde_json::{Value, json};

/// The document, as served at `/api/v1/openapi.json` and committed in `openapi/openapi.json`.
pub(crate) struct Document {
    /// Pretty-printed, ending with a newline.
    pub(crate) json: String,
    pub(crate) operations: Operations,
}

/// The document, built once per process.
pub(crate) fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let service = super::openapi_service();
        let generated = service.spec();
        let mut spec: Value = serde_json::from_str(&generated).expect("the spec is JSON");
        add_layer_responses(&mut spec);
        declare_public_operations(&mut spec);
        describe_handler_rules(&mut spec);
        add_links(&mut spec);
        mark_optional_properties_nullable(&mut spec);
        let operations = Operations::of(&spec);
        let mut json = serde_json::to_string_pretty(&spec).expect("the spec serialises");
        json.push('\n');
        Document { json, operations }
    })
}

/// The interactive docs page (Swagger UI), showing the published document.
///
/// About 1.5 MB, as Swagger UI's script and styles are inline: callers build it when the page
/// is first asked for, not at start-up.
pub(crate) fn docs_html() -> String {
    let service = super::openapi_service();
    // The page embeds the generated document verbatim: it shows the published one instead.
    service
        .swagger_ui_html()
        .replace(&service.spec(), document().json.trim_end())
}

/// Statuses the layers around an operation answer with, by what the operation takes.
fn add_layer_responses(spec: &mut Value) {
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {
                "application/problem+json": {
                    "schema": { "$ref": "#/components/schemas/Problem" }
                }
            }
        })
    };
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, operations) in paths.iter_mut() {
        let has_path_params = path.contains('{');
        let Some(operations) = operations.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            let takes_body = operation.get("requestBody").is_some();
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| problem(description));
            };
            if takes_body {
                add(
                    "400",
                    "The body is not JSON of the documented shape (`malformed_body`).",
                );
                add(
                    "408",
                    "The body did not arrive in time (`request_timeout`).",
                );
                add("413", "The body is too large (`payload_too_large`).");
                add(
                    "415",
                    "The body is not `application/json` (`unsupported_media_type`).",
                );
            }
            if has_path_params {
                add(
                    "422",
                    "A path parameter is malformed (`invalid_parameter`).",
                );
            }
            // The CORS layer, in front of every route.
            add(
                "403",
                "The request came from a web page of an origin this server does not accept \
                 (`origin_not_allowed`; only when `CORS_ALLOWED_ORIGINS` is set).",
            );
            // The HTTP parser, before everything: an address longer than it reads.
            responses.entry("414").or_insert_with(|| {
                json!({
                    "description": "The address is longer than the server reads (64 KiB); the \
                                    answer has no body."
                })
            });
            // An operation whose every outcome is a redirect (the OAuth callback) still says
            // what any other answer would be.
            if !responses.keys().any(|status| status.starts_with('2')) {
                responses
                    .entry("default")
                    .or_insert_with(|| problem("Any other status: a problem document."));
            }
        }
    }
}

/// Operations without a security requirement are public: say so explicitly (`security: []`),
/// so that neither a reader nor a tool takes the absence for an oversight.
fn declare_public_operations(spec: &mut Value) {
    let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
        .filter_map(Value::as_object_mut)
    {
        operation.entry("security").or_insert_with(|| json!([]));
    }
}

/// Rules the handlers check themselves, so that they answer with their own error codes
/// (`username_invalid`, `password_too_short`, `invalid_cursor`, ...) rather than a generic parse
/// error, written into the schemas they apply to.
fn describe_handler_rules(spec: &mut Value) {
    use crate::auth::password::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

    if let Some(fields) = spec.pointer_mut("/components/schemas/Credentials/properties") {
        merge(
            &mut fields["username"],
            json!({ "pattern": crate::auth::USERNAME_PATTERN, "minLength": 3, "maxLength": 32 }),
        );
        merge(
            &mut fields["password"],
            json!({ "minLength": MIN_PASSWORD_CHARS, "maxLength": MAX_PASSWORD_CHARS }),
        );
    }
    // The admin lists' cursors are the id of the previous page's last item.
    for path in ["/admin/users", "/admin/connections"] {
        let pointer = format!("/paths/{}/get/parameters", path.replace('/', "~1"));
        let Some(parameters) = spec.pointer_mut(&pointer).and_then(Value::as_array_mut) else {
            continue;
        };
        for parameter in parameters {
            if parameter["name"] == "cursor" {
                merge(&mut parameter["schema"], json!({ "format": "uuid" }));
            }
        }
    }
}

/// An absent optional value is written as `null` (and `null` is accepted for one), which
/// OpenAPI 3.0 states with `nullable`; poem-openapi leaves it out.
fn mark_optional_properties_nullable(spec: &mut Value) {
    let Some(schemas) = spec
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let types: HashMap<String, Value> = schemas
        .iter()
        .filter_map(|(name, schema)| Some((name.clone(), schema.get("type")?.clone())))
        .collect();
    for schema in schemas.values_mut() {
        let required: Vec<String> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            if required.contains(name) {
                continue;
            }
            // Keywords beside a `$ref` are ignored: wrap the reference to say it, with the
            // referenced schema's type, which `nullable` qualifies.
            if let Some(reference) = property.as_object_mut().and_then(|p| p.remove("$ref")) {
                if let Some(kind) = reference
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/components/schemas/"))
                    .and_then(|name| types.get(name))
                {
                    property["type"] = kind.clone();
                }
                property["allOf"] = json!([{ "$ref": reference }]);
            }
            property["nullable"] = json!(true);
        }
    }
}

/// Where a listed connection's id can be used next (OpenAPI links, for clients and tools that
/// follow them).
fn add_links(spec: &mut Value) {
    let Some(listed) = spec.pointer_mut("/paths/~1connections/get/responses/200") else {
        return;
    };
    let id = json!({ "id": "$response.body#/items/0/id" });
    listed["links"] = json!({
        "GetConnection": { "operationId": "get_connection", "parameters": id },
        "SearchConnection": { "operationId": "search_connection", "parameters": id },
        "DeleteConnection": { "operationId": "delete_connection", "parameters": id },
    });
}

fn merge(target: &mut Value, rules: Value) {
    if let (Some(target), Value::Object(rules)) = (target.as_object_mut(), rules) {
        target.extend(rules);
    }
}

/// The API's operations as the document lists them.
pub(crate) struct Operations {
    /// Route template (with the server's base path) by operation id.
    templates: HashMap<String, String>,
    /// Each path's segments and the methods it accepts, in the order the document lists them.
    paths: Vec<(Vec<Segment>, Vec<String>)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

impl Operations {
    pub(crate) fn of(spec: &Value) -> Self {
        let base = spec
            .pointer("/servers/0/url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end_matches('/');
        let mut templates = HashMap::new();
        let mut paths = Vec::new();
        for (path, operations) in spec
            .get("paths")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let template = format!("{base}{path}");
            let mut methods = Vec::new();
            for (method, operation) in operations.as_object().into_iter().flatten() {
                methods.push(method.to_ascii_uppercase());
                if let Some(id) = operation.get("operationId").and_then(Value::as_str) {
                    templates.insert(id.to_owned(), template.clone());
                }
            }
            paths.push((segments(&template), methods));
        }
        Self { templates, paths }
    }

    /// The route template of an operation, such as `/api/v1/connections/{id}`.
    pub(crate) fn template(&self, operation_id: &str) -> Option<&str> {
        self.templates.get(operation_id).map(String::as_str)
    }

    /// The documented name of an operation's `index`th path parameter.
    pub(crate) fn path_parameter(&self, operation_id: &str, index: usize) -> Option<&str> {
        self.template(operation_id)?
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .nth(index)
    }

    /// The methods a request path accepts, for `Allow`: `None` when no documented path matches.
    pub(crate) fn allowed_methods(&self, path: &str) -> Option<String> {
        let requested: Vec<&str> = path.split('/').collect();
        let (_, methods) = self.paths.iter().find(|(segments, _)| {
            segments.len() == requested.len()
                && segments
                    .iter()
                    .zip(&requested)
                    .all(|(segment, part)| match segment {
                        Segment::Literal(literal) => literal == part,
                        Segment::Parameter => !part.is_empty(),
                    })
        })?;
        let mut allowed: Vec<&str> = methods.iter().map(String::as_str).collect();
        // GET operations answer HEAD too.
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        allowed.sort_unstable();
        Some(allowed.join(", "))
    }
}

fn segments(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(segment.to_owned())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations() -> Operations {
        Operations::of(&json!({
            "servers": [{ "url": "/api/v1" }],
            "paths": {
                "/me": { "get": { "operationId": "me" }, "delete": { "operationId": "delete_me" } },
                "/connections/{id}/search": { "get": { "operationId": "search_connection" } }
            }
        }))
    }

    #[test]
    fn templates_parameters_and_methods_come_from_the_document() {
        let ops = operations();
        assert_eq!(ops.template("me"), Some("/api/v1/me"));
        assert_eq!(
            ops.template("search_connection"),
            Some("/api/v1/connections/{id}/search")
        );
        assert_eq!(ops.path_parameter("search_connection", 0), Some("id"));
        assert_eq!(ops.path_parameter("search_connection", 1), None);
        assert_eq!(
            ops.allowed_methods("/api/v1/me").as_deref(),
            Some("DELETE, GET, HEAD")
        );
        assert_eq!(
            ops.allowed_methods("/api/v1/connections/x/search")
                .as_deref(),
            Some("GET, HEAD")
        );
        assert_eq!(ops.allowed_methods("/api/v1/connections//search"), None);
        assert_eq!(ops.allowed_methods("/api/v1/nothing"), None);
    }

    #[test]
    fn the_docs_page_shows_the_published_document() {
        let html = docs_html();
        assert!(html.contains(document().json.trim_end()));
        assert!(!html.contains(&super::super::openapi_service().spec()));
    }

    #[test]
    fn layer_statuses_are_added_where_they_can_happen() {
        let mut spec = json!({
            "paths": {
                "/auth/login": { "post": { "requestBody": {}, "responses": { "200": {} } } },
                "/connections/{id}": { "get": { "responses": { "200": {}, "404": {} } } },
                "/me": { "get": { "responses": { "200": {} } } },
                "/callback": { "get": { "responses": { "303": {} } } }
            }
        });
        add_layer_responses(&mut spec);
        let statuses = |pointer: &str| -> Vec<String> {
            spec.pointer(pointer)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            statuses("/paths/~1auth~1login/post/responses"),
            ["200", "400", "403", "408", "413", "414", "415"]
        );
        assert_eq!(
            statuses("/paths/~1connections~1{id}/get/responses"),
            ["200", "403", "404", "414", "422"]
        );
        assert_eq!(statuses("/paths/~1me/get/responses"), ["200", "403", "414"]);
        assert_eq!(
            statuses("/paths/~1callback/get/responses"),
            ["303", "403", "414", "default"]
        );
    }
}
