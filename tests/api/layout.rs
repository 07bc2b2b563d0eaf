//! The layout stays the architecture: no import cycle between afw's modules.
//!
//! Reads `src/` as text: each file's `crate::a::b` paths (outside comments and test
//! modules) are edges from its module to the module they name, at every depth (`http` →
//! `storage`, `http::ws` → `http::actions`, ...). A parent and its own submodules may
//! name each other (that is Rust's module tree, not a layer); anything else must form no
//! cycle.

use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::rust_files;
use std::path::{Path, PathBuf};

/// `src/http/ws/conn.rs` → `["http", "ws", "conn"]`; `mod.rs` and `lib.rs` name their dir.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::x::y::...` path's module segments (lowercase ones).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let tail = &code[at + "crate::".len()..];
        let path: Vec<String> = tail
            .split("::")
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| seg.starts_with(|c: char| c.is_ascii_lowercase()))
            .collect();
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Edges between modules cut at `depth` segments.
fn graph(src: &Path, modules: &BTreeSet<Vec<String>>, depth: usize) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g = Graph::new();
    for file in files.iter().filter(|f| !f.starts_with(src.join("bin"))) {
        let from = module_of(src, file);
        if from.is_empty() || from == ["main"] {
            continue;
        }
        let from_key = from[..from.len().min(depth)].join("::");
        for path in crate_paths(&code(&std::fs::read_to_string(file).unwrap())) {
            // The longest prefix of the path that is a module (the rest names items).
            let Some(to) = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            let to_key = to[..to.len().min(depth)].join("::");
            let related = from_key == to_key
                || from_key.starts_with(&format!("{to_key}::"))
                || to_key.starts_with(&format!("{from_key}::"));
            if !related {
                g.entry(from_key.clone()).or_default().insert(to_key);
            }
        }
    }
    g
}

/// A cycle, if there is one: the modules on it.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in g.get(node).into_iter().flatten() {
            if let Some(c) = visit(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

fn all_modules(src: &Path) -> BTreeSet<Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.iter().map(|f| module_of(src, f)).collect()
}

#[test]
fn afw_has_no_import_cycle_at_any_depth() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = all_modules(&src);
    for expected in [["domain"], ["http"], ["storage"]] {
        assert!(modules.contains(expected.map(String::from).as_slice()));
    }
    for depth in 1..=3 {
        let g = graph(&src, &modules, depth);
        assert!(g.contains_key("http"), "the graph is read: {g:?}");
        assert_eq!(cycle(&g), None, "import cycle at depth {depth}: {g:#?}");
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&g).map(|c| c.len()), Some(3));
    let paths =
        crate_paths("use crate::http::error::{ApiError};\nlet x = crate::domain::model::Session;");
    assert_eq!(paths[0], ["http", "error"]);
    assert_eq!(paths[1], ["domain", "model"]);
}
