//! The host's layering, checked from its source: imports only point down, and no module
//! imports another that (directly or not) imports it back.
//!
//! Layers, top to bottom: `app` → `daemon` → `platform` → `schedule` → `component` →
//! `store` → `support` (see `src/lib.rs` and `ARCHITECTURE.md`). A module may use its own layer and
//! the layers below it.
//!
//! The graph is read from the code (comments left out): every `crate::a::b…` and
//! `super::b…` path names the deepest module it reaches, or the module whose façade
//! (`mod.rs`) it goes through. A submodule reaches siblings directly (`super::types::X`),
//! never through its parent's re-exports, so a `mod.rs` and its children cannot form a cycle.
//! Run it alone with `cargo test -p attune-core-timer-sensor --test layers`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: [&str; 8] = [
    "support",
    "telemetry",
    "store",
    "component",
    "schedule",
    "platform",
    "daemon",
    "app",
];

/// A module: its path from the crate root, e.g. `["schedule", "clock", "anchor"]`.
type Module = Vec<String>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file of the library (not `main.rs`, the binary), with its module path.
fn modules() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                let mut m = prefix.clone();
                m.push(name);
                walk(&path, &m, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut m = prefix.clone();
                match name.as_str() {
                    "mod" => {}
                    "lib" | "main" if prefix.is_empty() => continue,
                    _ => m.push(name),
                }
                out.insert(m, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&src_dir(), &Vec::new(), &mut out);
    out
}

/// The code of a file without comments (line comments and doc comments) and without its
/// unit tests (`#[cfg(test)] mod tests`, at the end of a file), whose `super` is the file.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names: `crate::…` and `super::…`, with `{a, b}` groups expanded one level.
fn paths(code: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for root in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let segments: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let root = root.trim_end_matches("::").to_string();
            if rest[end..].starts_with('{') {
                let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
                for item in rest[end + 1..close].split(',') {
                    let item = item.trim().split("::").next().unwrap_or("").trim();
                    if !item.is_empty() && item != "self" {
                        let mut s = segments.clone();
                        s.push(item.to_string());
                        out.push((root.clone(), s));
                    }
                }
            }
            out.push((root, segments));
        }
    }
    out
}

/// The module a path reaches: the longest prefix that is a module.
fn target(known: &BTreeMap<Module, PathBuf>, from: &Module, root: &str, segs: &[String]) -> Module {
    let mut base: Module = match root {
        "crate" => Vec::new(),
        _ => {
            let mut parent = from.clone();
            parent.pop();
            parent
        }
    };
    let mut best = base.clone();
    for s in segs {
        base.push(s.clone());
        if known.contains_key(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    best
}

fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules();
    let mut edges = BTreeMap::new();
    for (module, path) in &known {
        let mut to = BTreeSet::new();
        for (root, segs) in paths(&code(path)) {
            let t = target(&known, module, &root, &segs);
            if &t != module && !t.is_empty() {
                to.insert(t);
            }
        }
        edges.insert(module.clone(), to);
    }
    edges
}

fn rank(m: &Module) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| m.first().is_some_and(|f| f == l))
}

fn name(m: &Module) -> String {
    m.join("::")
}

#[test]
fn every_module_belongs_to_a_layer() {
    for m in modules().keys() {
        assert!(rank(m).is_some(), "module {} is in no layer", name(m));
    }
}

#[test]
fn imports_only_point_down() {
    let mut wrong = Vec::new();
    for (from, tos) in graph() {
        for to in tos {
            if rank(&to) > rank(&from) {
                wrong.push(format!("{} uses {}", name(&from), name(&to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_itself_back() {
    let g = graph();
    // Depth-first search for a back edge; reports the first cycle found.
    fn visit(
        g: &BTreeMap<Module, BTreeSet<Module>>,
        m: &Module,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.clone());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.clone());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, next, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(cycle) = visit(&g, m, &mut Vec::new(), &mut done) {
            let text: Vec<String> = cycle.iter().map(name).collect();
            panic!("import cycle: {}", text.join(" → "));
        }
    }
}

#[test]
fn the_graph_is_read_from_the_code() {
    // The checks above are only as good as the graph: it must see known edges.
    let g = graph();
    let edge = |a: &str, b: &str| {
        let a: Module = a.split("::").map(String::from).collect();
        let b: Module = b.split("::").map(String::from).collect();
        g.get(&a).is_some_and(|t| t.contains(&b))
    };
    assert!(edge("platform::outbox", "platform::api"));
    assert!(edge("schedule::clock", "component"));
    assert!(edge("schedule::clock::wait", "support::blocking"));
    assert!(edge("schedule::swap", "schedule::rules"));
    assert!(edge("daemon", "platform::lifecycle"));
    assert!(g.len() >= 20, "{} modules", g.len());
}
