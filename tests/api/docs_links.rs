//! The repository is self-contained: every link and path the README and `docs/` cite points
//! to a file inside it that exists, and nothing points outside (a clone has no `../shared`).

use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    docs
}

/// `](target)` of every Markdown link in `text`.
fn link_targets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        let tail = &rest[at + 2..];
        let end = tail.find(')').unwrap_or(tail.len());
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

/// `dir/target` without `.`/`..`, or `None` if it climbs above the repository root.
fn resolve(dir: &Path, target: &str) -> Option<PathBuf> {
    let joined = dir.join(target);
    let relative = joined.strip_prefix(root()).ok()?;
    let mut parts: Vec<Component> = Vec::new();
    for c in relative.components() {
        match c {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            other => parts.push(other),
        }
    }
    Some(root().join(parts.iter().collect::<PathBuf>()))
}

/// Everything wrong with the links of one document.
fn problems(doc: &Path, text: &str) -> Vec<String> {
    let dir = doc.parent().unwrap();
    let mut found = Vec::new();
    if text.contains("../shared") {
        found.push(format!(
            "{}: cites ../shared (outside the repository)",
            doc.display()
        ));
    }
    for target in link_targets(text) {
        let path = target.split('#').next().unwrap_or("").trim();
        if path.is_empty() {
            continue; // an anchor in the same document
        }
        if path.contains("://") || path.starts_with("mailto:") {
            found.push(format!(
                "{}: links {target} (outside the repository)",
                doc.display()
            ));
            continue;
        }
        match resolve(dir, path) {
            None => found.push(format!("{}: {target} leaves the repository", doc.display())),
            Some(p) if !p.exists() => {
                found.push(format!("{}: {target} does not exist", doc.display()))
            }
            Some(_) => {}
        }
    }
    found
}

#[test]
fn readme_and_docs_link_only_to_files_in_the_repository() {
    let docs = documents();
    assert!(
        docs.len() >= 4,
        "README, contract, design, decisions: {docs:?}"
    );
    let all: Vec<String> = docs
        .iter()
        .flat_map(|d| problems(d, &std::fs::read_to_string(d).unwrap()))
        .collect();
    assert!(all.is_empty(), "{all:#?}");
    assert!(root().join("LICENSE").exists());
}

#[test]
fn the_checker_catches_what_it_must() {
    let doc = root().join("docs/x.md");
    let bad = "see [a](../../outside.md), [b](https://example.com), [c](missing.md), ../shared/x";
    assert_eq!(problems(&doc, bad).len(), 4, "{:#?}", problems(&doc, bad));
    let good = "see [d](decisions.md#events), [r](../README.md), [s](#section)";
    assert!(
        problems(&doc, good).is_empty(),
        "{:#?}",
        problems(&doc, good)
    );
}
