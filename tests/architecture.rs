//! No import cycles: within every crate of the workspace, sibling modules
//! depend on each other one way only (docs/architecture.md).
//!
//! Read from the sources, as a reviewer would: every `crate::…`,
//! `super::…` and `self::…` path outside comments and `#[cfg(test)] mod
//! tests` is an edge from the module that writes it to the module it names.
//! An edge between a module and its own parent or child is structure, not a
//! dependency; an edge between two different branches counts for the
//! children of their common parent. A cycle among those children fails.
//! Dependencies between crates cannot cycle: Cargo refuses them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModulePath = Vec<String>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The source directory of every workspace member.
fn crate_sources() -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let start = manifest
        .find("members = [")
        .expect("members in [workspace]")
        + 11;
    let end = start + manifest[start..].find(']').expect("the end of members");
    manifest[start..end]
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| root().join(m).join("src"))
        .collect()
}

/// Every module of a crate, by path, with its file.
fn modules(src: &Path) -> BTreeMap<ModulePath, PathBuf> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<ModulePath, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).expect("inside src");
                let mut module: ModulePath = relative
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The source without its unit tests and comment lines.
fn code(text: &str) -> String {
    let mut end = text.len();
    for (at, _) in text.match_indices("#[cfg(test)]") {
        if text[at + 12..].trim_start().starts_with("mod tests") {
            end = at;
            break;
        }
    }
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module-like paths written after `crate`, `super` or `self`, with one
/// level of `{a, b::c}` groups expanded: `["super", "check"]`, ….
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for anchor in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(anchor) {
            if code[..at].chars().last().is_some_and(is_ident) {
                continue;
            }
            let head = anchor.trim_end_matches(':').to_string();
            let mut segments = vec![head];
            let mut rest = &code[at + anchor.len()..];
            loop {
                let ident: String = rest.chars().take_while(|c| is_ident(*c)).collect();
                if !ident.is_empty() {
                    rest = &rest[ident.len()..];
                    segments.push(ident);
                    match rest.strip_prefix("::") {
                        Some(more) => rest = more,
                        None => break,
                    }
                } else if let Some(group) = rest.strip_prefix('{') {
                    let inner = &group[..group.find('}').unwrap_or(group.len())];
                    for item in inner.split(',') {
                        let mut path = segments.clone();
                        path.extend(
                            item.trim()
                                .split("::")
                                .map(|s| s.chars().take_while(|c| is_ident(*c)).collect())
                                .take_while(|s: &String| !s.is_empty()),
                        );
                        found.push(path);
                    }
                    break;
                } else {
                    break;
                }
            }
            found.push(segments);
        }
    }
    found
}

/// The module a path written in `from` names: the longest known prefix.
fn resolve(
    from: &ModulePath,
    path: &[String],
    known: &BTreeMap<ModulePath, PathBuf>,
) -> ModulePath {
    let (mut target, rest): (ModulePath, &[String]) = match path[0].as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (from.clone(), &path[1..]),
        _ => {
            let mut base = from.clone();
            base.pop();
            let mut rest = &path[1..];
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
    };
    target.extend(rest.iter().cloned());
    while !target.is_empty() && !known.contains_key(&target) {
        target.pop();
    }
    target
}

/// Edges between siblings: (their parent, from child, to child).
fn sibling_edges(src: &Path) -> BTreeSet<(ModulePath, String, String)> {
    let known = modules(src);
    let mut edges = BTreeSet::new();
    for (module, file) in &known {
        let text = std::fs::read_to_string(file).expect("read source");
        for path in paths(&code(&text)) {
            let target = resolve(module, &path, &known);
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // the same module, or a parent and its child
            }
            edges.insert((
                module[..common].to_vec(),
                module[common].clone(),
                target[common].clone(),
            ));
        }
    }
    edges
}

/// The cycles in one parent's graph of children (Tarjan's components).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(state: &mut State<'g>, node: &'g str) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        for next in state.graph.get(node).into_iter().flatten() {
            let next = next.as_str();
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[node].min(state.low[next]);
                state.low.insert(node, low);
            } else if state.stack.contains(&next) {
                let low = state.low[node].min(state.index[next]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let at = state
                .stack
                .iter()
                .rposition(|n| *n == node)
                .expect("on stack");
            let component: Vec<String> = state.stack.drain(at..).map(String::from).collect();
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.found
}

fn cycles_in(src: &Path) -> Vec<String> {
    let mut graphs: BTreeMap<ModulePath, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (parent, from, to) in sibling_edges(src) {
        graphs
            .entry(parent)
            .or_default()
            .entry(from)
            .or_default()
            .insert(to);
    }
    let mut found = Vec::new();
    for (parent, graph) in &graphs {
        for mut cycle in cycles(graph) {
            cycle.sort();
            let under = if parent.is_empty() {
                "the crate root".to_string()
            } else {
                parent.join("::")
            };
            found.push(format!(
                "{}: under {under}: {}",
                src.display(),
                cycle.join(" <-> ")
            ));
        }
    }
    found
}

#[test]
fn no_crate_has_an_import_cycle() {
    let sources = crate_sources();
    assert!(sources.len() >= 5, "{sources:?}");
    let found: Vec<String> = sources.iter().flat_map(|src| cycles_in(src)).collect();
    assert!(
        found.is_empty(),
        "import cycles (move what both sides share below both):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reader_finds_a_cycle_when_there_is_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("lib.rs", "mod a;\nmod b;\nmod c;\n");
    write("a.rs", "use crate::b::Thing;\n");
    // Braces, and a child reaching its parent's sibling through `super`.
    write("b/mod.rs", "mod inner;\nuse crate::{c::Other, c};\n");
    write("b/inner.rs", "use super::super::c;\n");
    // Tests and comments are not dependencies.
    write(
        "c.rs",
        "// crate::a::X\npub struct Other;\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    );
    assert!(
        cycles_in(dir.path()).is_empty(),
        "{:?}",
        cycles_in(dir.path())
    );

    write("c.rs", "use crate::b::inner;\n");
    let found = cycles_in(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("under the crate root: b <-> c"),
        "{found:?}"
    );
}
