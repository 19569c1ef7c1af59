//! Prepares the bundled web app (`web/`) for serving, once, when the crate compiles:
//!
//! - every file gets a version (the start of its SHA-256) and a gzip and a brotli copy, kept
//!   only where they are smaller, so that the service never compresses per request;
//! - `index.html` refers to every file by its versioned address (`app.js?v=…`), lists every
//!   module with `modulepreload` so that the browser fetches them all at once instead of one
//!   import after another, and carries an import map that sends the modules' own imports
//!   (`./api.js`) to the same versioned addresses. A versioned address never changes content,
//!   so browsers keep those files without asking again; only `index.html` is revalidated.
//!
//! The result is `$OUT_DIR/web_bundle.rs`, included by `src/web.rs`.

use std::{
    collections::BTreeMap,
    env,
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Where `index.html` takes the import map and the preload list.
const MODULES_MARKER: &str = "<!-- modules -->";

fn main() {
    println!("cargo:rerun-if-changed=web");
    let web = Path::new("web");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let copies = out.join("web");
    if copies.exists() {
        fs::remove_dir_all(&copies).expect("clear the previous copies");
    }

    let mut names = Vec::new();
    collect(web, web, &mut names);
    names.sort();
    let mut sources: BTreeMap<String, Vec<u8>> = names
        .into_iter()
        .map(|name| {
            let bytes = fs::read(web.join(&name)).expect("read a web file");
            (name, bytes)
        })
        .collect();
    let versions: BTreeMap<String, String> = sources
        .iter()
        .filter(|(name, _)| name.as_str() != "index.html")
        .map(|(name, bytes)| (name.clone(), version(bytes)))
        .collect();

    let index = String::from_utf8(sources.remove("index.html").expect("web/index.html"))
        .expect("index.html is UTF-8");
    let (index, import_map) = prepare_index(&index, &versions);
    sources.insert("index.html".into(), index.into_bytes());
    let script_hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&import_map));

    let mut table = String::from("&[\n");
    for (name, bytes) in &sources {
        let path = copies.join(name);
        fs::create_dir_all(path.parent().expect("a parent")).expect("a copy directory");
        let identity = write(&path, bytes);
        let gzip = smaller(bytes, gzip(bytes)).map(|copy| write(&suffixed(&path, "gz"), &copy));
        let brotli = smaller(bytes, brotli(bytes)).map(|copy| write(&suffixed(&path, "br"), &copy));
        let sha: [u8; 32] = Sha256::digest(bytes).into();
        writeln!(
            table,
            "    BundledFile {{ name: {name:?}, version: {version:?}, sha256: {sha:?}, \
             identity: include_bytes!({identity:?}), gzip: {gzip}, brotli: {brotli} }},",
            version = versions.get(name).map_or("", String::as_str),
            gzip = included(gzip),
            brotli = included(brotli),
        )
        .expect("write to a string");
    }
    table.push(']');

    let code = format!(
        "/// Every file of `web/`, as prepared by `build.rs`.\n\
         static FILES: &[BundledFile] = {table};\n\n\
         /// The CSP source that admits the import map of the bundled `index.html`.\n\
         const IMPORT_MAP_HASH: &str = \"'sha256-{script_hash}'\";\n"
    );
    fs::write(out.join("web_bundle.rs"), code).expect("write web_bundle.rs");
}

/// The names of the plain files under `dir`, relative to `root`, with `/` between folders.
/// Hidden files (editor swap files and the like) are left out, as the server would refuse them.
fn collect(root: &Path, dir: &Path, names: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("read web/") {
        let path = entry.expect("a directory entry").path();
        let hidden = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_none_or(|name| name.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, names);
        } else {
            let relative = path.strip_prefix(root).expect("under web/");
            let parts: Vec<_> = relative
                .components()
                .map(|part| part.as_os_str().to_str().expect("UTF-8 names"))
                .collect();
            names.push(parts.join("/"));
        }
    }
}

/// A file's version: 16 hex digits of its SHA-256.
fn version(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..8]
        .iter()
        .fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// `index.html` with versioned addresses, and the import map that went into it.
fn prepare_index(index: &str, versions: &BTreeMap<String, String>) -> (String, String) {
    let mut html = index.to_owned();
    for (name, version) in versions {
        for attribute in ["href", "src"] {
            html = html.replace(
                &format!("{attribute}=\"{name}\""),
                &format!("{attribute}=\"{name}?v={version}\""),
            );
        }
    }
    let modules: Vec<_> = versions
        .iter()
        .filter(|(name, _)| name.ends_with(".js"))
        .collect();
    let imports: Vec<_> = modules
        .iter()
        .map(|(name, version)| format!("\"/{name}\":\"/{name}?v={version}\""))
        .collect();
    let import_map = format!("{{\"imports\":{{{}}}}}", imports.join(","));
    let mut head = format!("<script type=\"importmap\">{import_map}</script>");
    for (name, version) in &modules {
        if name.as_str() != "app.js" {
            let _ = write!(
                head,
                "\n  <link rel=\"modulepreload\" href=\"/{name}?v={version}\">"
            );
        }
    }
    assert!(
        html.contains(MODULES_MARKER),
        "web/index.html must contain {MODULES_MARKER}"
    );
    (html.replacen(MODULES_MARKER, &head, 1), import_map)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = brotli::CompressorWriter::new(Vec::new(), 4096, 11, 22);
    encoder.write_all(bytes).expect("brotli");
    encoder.into_inner()
}

fn smaller(original: &[u8], copy: Vec<u8>) -> Option<Vec<u8>> {
    (copy.len() < original.len()).then_some(copy)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn write(path: &Path, bytes: &[u8]) -> String {
    fs::write(path, bytes).expect("write a prepared copy");
    path.to_str().expect("a UTF-8 OUT_DIR").to_owned()
}

fn included(path: Option<String>) -> String {
    path.map_or_else(
        || "None".to_owned(),
        |path| format!("Some(include_bytes!({path:?}))"),
    )
}
