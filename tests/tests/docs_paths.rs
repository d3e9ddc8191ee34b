//! The README and `docs/` name only files and folders that exist: a moved or renamed file whose
//! old path stays in the documentation sends the next reader to nothing.

use std::path::Path;

use radio_tests::workspace_root;

/// Top-level folders of the workspace whose paths the documents cite.
const ROOTS: &[&str] = &[
    "server/",
    "relay-agent/",
    "proto/",
    "config/",
    "tests/",
    "benches/",
    "fuzz/",
    "docs/",
];

/// Every workspace path cited in `text`: a token that starts with one of [`ROOTS`] and is not
/// itself the tail of a longer path (`/etc/relay-agent/agent.toml` is a path on a station).
fn cited_paths(text: &str) -> Vec<String> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut found = Vec::new();
    for (i, _) in text.char_indices() {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| is_path_char(c) || c == '~' || c == '$') {
            continue;
        }
        let rest = &text[i..];
        if !ROOTS.iter().any(|root| rest.starts_with(root)) {
            continue;
        }
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(['.', ',', '-']);
        found.push(path.to_owned());
    }
    found
}

#[test]
fn documents_cite_only_existing_paths() {
    let root = workspace_root();
    let mut documents = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("read docs/") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            documents.push(path);
        }
    }
    let mut missing = Vec::new();
    let mut cited = 0;
    for document in &documents {
        let text = std::fs::read_to_string(document).expect("read document");
        for path in cited_paths(&text) {
            cited += 1;
            if !root.join(&path).exists() {
                let name = document.strip_prefix(&root).unwrap_or(document);
                missing.push(format!("{}: {path}", name.display()));
            }
        }
    }
    assert!(cited > 50, "only {cited} paths found: is the scan broken?");
    assert!(
        missing.is_empty(),
        "documents cite paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scan_finds_workspace_paths_and_skips_station_paths() {
    let text = "see `server/src/broadcast/on_air.rs`, and /etc/relay-agent/agent.toml; \
                server/src/ingest/.";
    assert_eq!(
        cited_paths(text),
        ["server/src/broadcast/on_air.rs", "server/src/ingest/"]
    );
    assert!(Path::new(&workspace_root()).join("server/src").is_dir());
}
