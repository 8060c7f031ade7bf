//! The module map kept honest: which top-level module may import which. Lower layers never
//! reach up into the HTTP edge, dispatch and ingest do not know each other, and no two
//! top-level modules import each other (directly or around a cycle). docs/architecture.md
//! draws the same map.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Modules that may import `api`: the HTTP and WebSocket edges and the assembly.
const MAY_IMPORT_API: &[&str] = &["api", "ws", "startup", "proptests"];
// `ui` (the page) and `simulate` (a client) must not import it either: they are not listed.
// `proptests` (tests only) feeds the REST bodies' parsers.

/// (module, module it must not import).
const FORBIDDEN: &[(&str, &str)] = &[
    ("dispatch", "ingest"),
    ("ingest", "dispatch"),
    ("realtime", "ingest"),
    ("realtime", "dispatch"),
    ("domain", "storage"),
    ("storage", "auth"),
    // The alert engine sits beside the realtime core and reads what it committed: ingest and
    // dispatch never wait on it, and it never reaches into ingest's internals.
    ("ingest", "alerts"),
    ("dispatch", "alerts"),
    ("realtime", "alerts"),
    ("alerts", "ingest"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module of a file under src/ (`ingest` for src/ingest/events/mod.rs).
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file names through `crate::…`, in paths and `use` groups.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::…, b, c::{…}}`: the names at depth 0.
            let mut depth = 0;
            let mut name = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(name.trim().split("::").next().unwrap_or("").to_owned());
                        name.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    name.push(ch);
                }
            }
            found.insert(name.trim().split("::").next().unwrap_or("").to_owned());
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found.remove("");
    found.remove("self");
    found
}

/// Module → the other top-level modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = top_module(&src, &file);
        if matches!(module.as_str(), "lib" | "main" | "layering") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(imports(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

#[test]
fn only_the_edges_import_the_api() {
    for (module, deps) in graph() {
        if deps.contains("api") {
            assert!(
                MAY_IMPORT_API.contains(&module.as_str()),
                "{module} imports api"
            );
        }
    }
}

#[test]
fn forbidden_imports_stay_absent() {
    let graph = graph();
    for (module, banned) in FORBIDDEN {
        assert!(
            !graph.get(*module).is_some_and(|d| d.contains(*banned)),
            "{module} imports {banned}"
        );
    }
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = graph();
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(at) = path.iter().position(|n| *n == node) {
            panic!("import cycle: {} -> {node}", path[at..].join(" -> "));
        }
        path.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            visit(dep, graph, path, done);
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_scanner_sees_imports() {
    let text = "use crate::{\n    api::error::ApiError,\n    auth::{bearer, session},\n    state::AppState,\n};\nfn f() { crate::domain::geo::metres(0.0, 0.0, 0.0, 0.0); }";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["api", "auth", "domain", "state"]);
}
