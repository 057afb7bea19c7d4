//! Every crate's files stand in layers: no file uses (through `crate::` or `super::` paths) a
//! module that uses it back, directly or around a circle. A circle means two files that can
//! only be read, changed or tested together; this test names the first one it finds.
//!
//! A module is a file (`a.rs`, or `a/mod.rs` for a folder `a`); what a file uses is every
//! `crate::…` and `super::…` path outside its comments and its `#[cfg(test)]` part, resolved to the deepest
//! module it names. A folder's `mod.rs` declaring its files (`mod x;`) is not a use of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "core",
    "storage",
    "replication",
    "actors",
    "proto",
    "iso8583",
    "server",
    "loadtest",
    "benches",
];

/// The module path of each source file below `src` (`lib.rs` and `main.rs` are the root, "").
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name == "bin" {
                    continue;
                }
                let mut inner = prefix.to_vec();
                inner.push(name);
                walk(&path, &inner, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                if !matches!(name.as_str(), "mod" | "lib" | "main") {
                    module.push(name);
                }
                out.insert(module.join("::"), path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The deepest known module a path's segments (after `crate::`) name.
fn resolve(known: &BTreeMap<String, PathBuf>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|candidate| known.contains_key(candidate))
}

/// The modules `text` (the file of `module`) uses.
fn uses(known: &BTreeMap<String, PathBuf>, module: &str, text: &str) -> BTreeSet<String> {
    // Without the tests and without comments (a doc comment may name a module it does not
    // use).
    let text: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let text = text.as_str();
    let own: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut used = BTreeSet::new();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = text;
    while let Some(at) = rest.find(['c', 's']) {
        let tail = &rest[at..];
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let (base, path): (Option<Vec<&str>>, &str) = if before_ok && tail.starts_with("crate::") {
            (Some(Vec::new()), &tail["crate::".len()..])
        } else if before_ok && tail.starts_with("super::") {
            // `super::` from a folder's `mod.rs` is the folder's parent; from `a/b.rs`, `a`.
            let mut parent = own.clone();
            parent.pop();
            (Some(parent), &tail["super::".len()..])
        } else {
            (None, "")
        };
        rest = &rest[at + 1..];
        let Some(mut segments) = base else { continue };
        let end = path.find(|c: char| !word(c)).unwrap_or(path.len());
        let mut named: Vec<&str> = path[..end].split("::").filter(|s| !s.is_empty()).collect();
        // `super::super::x`
        while named.first() == Some(&"super") {
            named.remove(0);
            segments.pop();
        }
        segments.extend(named);
        if let Some(target) = resolve(known, &segments)
            && target != module
            // A module's use of its own folder's `mod.rs` items above it is a use of the
            // folder, not a circle through its declaration.
            && !module.starts_with(&format!("{target}::"))
        {
            used.insert(target);
        }
    }
    used
}

/// A circle in `graph`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap();
                    let mut found = stack[from..].to_vec();
                    found.push(next.clone());
                    return Some(found);
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, graph, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str())
            && let Some(found) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(found);
        }
    }
    None
}

#[test]
fn every_crates_files_stand_in_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut circles = Vec::new();
    for krate in CRATES {
        let known = modules(&root.join(krate).join("src"));
        let graph: BTreeMap<String, BTreeSet<String>> = known
            .iter()
            .filter(|(module, _)| !module.is_empty())
            .map(|(module, path)| {
                let text = std::fs::read_to_string(path).unwrap();
                let used = uses(&known, module, &text)
                    .into_iter()
                    .filter(|m| !m.is_empty())
                    .collect();
                (module.clone(), used)
            })
            .collect();
        if let Some(found) = circle(&graph) {
            circles.push(format!("{krate}: {}", found.join(" → ")));
        }
    }
    assert!(
        circles.is_empty(),
        "files in a circle:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_layer_check_finds_a_circle() {
    let mut known = BTreeMap::new();
    for module in ["a", "b", "c"] {
        known.insert(module.to_owned(), PathBuf::new());
    }
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), uses(&known, "a", "use crate::b::Thing;"));
    graph.insert(
        "b".to_owned(),
        uses(&known, "b", "fn f() { crate::c::g() }"),
    );
    graph.insert(
        "c".to_owned(),
        uses(
            &known,
            "c",
            "use crate::a::X;\n#[cfg(test)]\nmod tests { use crate::b::Y; }",
        ),
    );
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    graph.insert("c".to_owned(), uses(&known, "c", "use std::fmt;"));
    assert_eq!(circle(&graph), None);
}

/// The server reaches `tandem-storage` only in its wiring (`serve.rs`, `backup.rs`,
/// `main.rs`); everything else goes through what `tandem-actors` exposes, so the operations
/// and the gateways know nothing of the log or the checkpoint store.
#[test]
fn the_server_reaches_storage_only_in_its_wiring() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut outside = Vec::new();
    // The root is `main.rs` in the map (it shares the module path with `lib.rs`).
    let files = modules(&src)
        .into_iter()
        .filter(|(module, _)| !matches!(module.as_str(), "serve" | "backup" | ""))
        .map(|(_, path)| path)
        .chain([src.join("lib.rs")]);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        if code.lines().any(|line| {
            line.split("//")
                .next()
                .unwrap_or_default()
                .contains("tandem_storage")
        }) {
            outside.push(path.display().to_string());
        }
    }
    assert!(outside.is_empty(), "tandem_storage used in {outside:?}");
}

/// The operations (`server/src/ops/`) know no wire: no HTTP, gRPC, protobuf or ISO 8583
/// type; each gateway maps their answers and errors in its own file.
#[test]
fn the_operations_know_no_wire() {
    let ops = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src/ops");
    let mut found = Vec::new();
    for path in modules(&ops).into_values() {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or_default();
            for wire in ["axum", "tonic", "hyper", "tandem_proto", "tandem_iso8583"] {
                if line.contains(wire) {
                    found.push(format!("{}: {wire}", path.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "the operations name the wire: {found:?}");
}
