//! The crate's layers, checked from its own imports: each file imports only from its own layer
//! or the layers below, and no files import each other in a circle (sea-orm's two related
//! entities excepted). See "Architecture" in the README.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// The layers, lowest first, by top-level module.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "allocator",
            "chain",
            "client_ip",
            "config",
            "crypto",
            "metrics",
            "rate_limit",
            "secret",
            "telemetry",
        ],
    ),
    ("store", &["db", "entity", "store"]),
    ("domain", &["auth", "housekeeping", "notion", "sandbox"]),
    (
        "http",
        &[
            "api",
            "cors",
            "http_policy",
            "request_log",
            "scrape",
            "state",
            "transport",
            "web",
        ],
    ),
    ("shell", &["main", "startup"]),
];

/// The one circle allowed: sea-orm's `Related` impls of two entities name each other.
const ALLOWED_CIRCLE: &[&str] = &["entity::session", "entity::user"];

/// Every file of `src/` as a module path (`api::auth`; `lib.rs` is the empty path), with its
/// code: comments and the trailing test module removed.
fn modules() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|last| last == "mod") {
                parts.pop();
            }
            let name = match parts.join("::").as_str() {
                "lib" => String::new(),
                other => other.to_owned(),
            };
            found.insert(name, code_of(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    found
}

fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(end) => &text[..end],
        None => text,
    };
    let mut code = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    code.push_str(rest);
    code.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect();
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let head = tree[..open].trim_end_matches("::");
    let body = &tree[open + 1..tree.len() - 1];
    let (mut parts, mut depth, mut current) = (Vec::new(), 0, String::new());
    for c in body.chars() {
        match c {
            ',' if depth == 0 => parts.push(std::mem::take(&mut current)),
            '{' => {
                depth += 1;
                current.push(c);
            }
            '}' => {
                depth -= 1;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    parts.push(current);
    parts
        .iter()
        .filter(|part| !part.is_empty())
        .flat_map(|part| expand(part))
        .map(|path| format!("{head}::{path}"))
        .collect()
}

/// The paths a file names through `crate::` or `super::`, made absolute.
fn paths(code: &str, here: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        if let Some(tree) = statement
            .strip_prefix("use ")
            .or_else(|| statement.strip_prefix("pub use "))
            .or_else(|| statement.strip_prefix("pub(crate) use "))
            .filter(|tree| tree.starts_with("crate") || tree.starts_with("super"))
        {
            found.extend(expand(tree));
        }
    }
    for prefix in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            let path: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !preceded {
                found.push(path.clone());
            }
            rest = &rest[at + path.len().max(1)..];
        }
    }
    found
        .into_iter()
        .map(|path| {
            let mut resolved: Vec<String> = if here.is_empty() {
                Vec::new()
            } else {
                here.split("::").map(str::to_owned).collect()
            };
            let mut parts = path.split("::").filter(|p| !p.is_empty()).peekable();
            match parts.peek() {
                Some(&"crate") => {
                    resolved.clear();
                    parts.next();
                }
                _ => {
                    while parts.peek() == Some(&"super") {
                        resolved.pop();
                        parts.next();
                    }
                }
            }
            resolved.extend(
                parts
                    .filter(|p| !matches!(*p, "self" | "*" | "as"))
                    .map(str::to_owned),
            );
            resolved
        })
        .collect()
}

/// Which files each file imports from.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &modules {
        for path in paths(code, module) {
            let target = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = target
                && !target.is_empty()
                && &target != module
                && !module.starts_with(&format!("{target}::"))
            {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    edges
}

fn layer_of(module: &str) -> Option<usize> {
    let top = module.split("::").next().unwrap_or_default();
    LAYERS.iter().position(|(_, tops)| tops.contains(&top))
}

#[test]
fn every_file_has_a_layer_and_imports_only_downward() {
    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    for module in modules().keys().filter(|m| !m.is_empty()) {
        if layer_of(module).is_none() {
            unplaced.push(module.clone());
        }
    }
    for (module, targets) in imports() {
        for target in targets {
            if let (Some(from), Some(to)) = (layer_of(&module), layer_of(&target))
                && to > from
            {
                upward.push(format!(
                    "{module} ({}) imports {target} ({})",
                    LAYERS[from].0, LAYERS[to].0
                ));
            }
        }
    }
    assert!(unplaced.is_empty(), "files without a layer: {unplaced:?}");
    assert!(upward.is_empty(), "imports pointing up: {upward:#?}");
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let edges = imports();
    // Every file that can reach itself through its imports is on a circle.
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<&str> = edges
            .get(from)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        while let Some(next) = pending.pop() {
            if seen.insert(next.to_owned()) {
                pending.extend(edges.get(next).into_iter().flatten().map(String::as_str));
            }
        }
        seen
    };
    let circular: Vec<String> = edges
        .keys()
        .filter(|module| reaches(module).contains(*module))
        .filter(|module| !ALLOWED_CIRCLE.contains(&module.as_str()))
        .cloned()
        .collect();
    assert!(
        circular.is_empty(),
        "files on an import circle: {circular:?}"
    );
}

#[test]
fn the_check_sees_imports() {
    // The checks above prove nothing if the parser finds no imports at all.
    let edges = imports();
    assert!(edges["api::auth"].contains("auth::accounts"), "{edges:#?}");
    assert!(edges["notion::connections"].contains("notion::vault"));
    assert!(edges["entity::user"].contains("entity::session"));
    assert!(edges["api::problem"].contains("store"));
}
