//! No import cycle between the modules of `src/` (issue 27): the layers in README.md's "Layout"
//! hold only while nothing lower reaches back up. This reads every `src/**/*.rs` (not compiled:
//! a plain scan of its paths), builds two graphs and fails naming a cycle with the lines that
//! make it:
//!
//! - the top-level modules (`cli`, `commands`, `model`, `data`, `output`, ...): an edge `a -> b`
//!   when a file of `a` names `crate::b::...` (or reaches it through `super::`);
//! - the submodules of `src/commands/` and of `src/model/`, among themselves (the parent's own
//!   items and re-exports in `mod.rs` are not a node: a family's file may use the model's types).
//!
//! Paths are read from `use` declarations and from any `crate::`/`super::`/`self::` path in code,
//! with `{a, b}` groups expanded; comments and string literals are skipped, and `super::` inside
//! an inline `mod x { ... }` is resolved from that module.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Folders whose submodules form a graph of their own.
const SPLIT: [&str; 2] = ["commands", "model"];

/// An edge of a graph, with where it was seen (`path:line`).
type Edges = BTreeMap<String, BTreeMap<String, String>>;

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`src/model/mod.rs` -> `["model"]`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    Colons,
    Punct(char),
}

/// Identifiers, `::` and single punctuation, each with its line; comments, strings and char
/// literals dropped.
fn tokens(text: &str) -> Vec<(Token, usize)> {
    let b: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let skip_to = |i: usize, end: usize, line: &mut usize| {
        *line += b[i..end.min(b.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count();
        end
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let (mut depth, mut j) = (0, i);
            while j < b.len() {
                if b[j] == '/' && b.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == '*' && b.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            i = skip_to(i, j, &mut line);
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && raw_string_end(&b, i).is_some()
        {
            let end = raw_string_end(&b, i).unwrap();
            i = skip_to(i, end, &mut line);
        } else if c == 'b' && next == Some('"') {
            i += 1;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            i = skip_to(i, j + 1, &mut line);
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): skip only the former.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < b.len() && (b[j].is_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            out.push((Token::Ident(b[i..j].iter().collect()), line));
            i = j;
        } else if c == ':' && next == Some(':') {
            out.push((Token::Colons, line));
            i += 2;
        } else if c.is_whitespace() || c.is_ascii_digit() {
            i += 1;
        } else {
            out.push((Token::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// Where a raw string starting at `i` (`r"`, `r#"`) ends, if it is one.
fn raw_string_end(b: &[char], i: usize) -> Option<usize> {
    if i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_') {
        return None;
    }
    let mut j = i + 1;
    let mut hashes = 0;
    while b.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if b.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < b.len() {
        if b[j] == '"' && (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(b.len())
}

/// Every absolute module path a file names (`crate::`, `super::`, `self::`, groups expanded),
/// each with its line, at most two segments deep.
fn named_paths(file_module: &[String], text: &str) -> Vec<(Vec<String>, usize)> {
    let toks = tokens(text);
    let mut found = Vec::new();
    // Inline modules: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let ident = |k: usize| match toks.get(k) {
        Some((Token::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    while i < toks.len() {
        match &toks[i].0 {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            Token::Ident(m)
                if m == "mod"
                    && ident(i + 1).is_some()
                    && toks.get(i + 2).map(|t| &t.0) == Some(&Token::Punct('{')) =>
            {
                inline.push((ident(i + 1).unwrap().to_string(), depth + 1));
            }
            Token::Ident(start)
                if (start == "crate" || start == "super" || start == "self")
                    && toks.get(i + 1).map(|t| &t.0) == Some(&Token::Colons)
                    && !(i > 0 && toks[i - 1].0 == Token::Colons) =>
            {
                let line = toks[i].1;
                let mut here: Vec<String> = file_module.to_vec();
                here.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut base: Vec<String> = match start.as_str() {
                    "crate" => Vec::new(),
                    _ => here.clone(),
                };
                let mut j = i;
                let mut prefix_only = false;
                // Leading super:: / self:: chain.
                while let Some(s) = ident(j) {
                    if s == "super" {
                        base.pop();
                    } else if s != "self" && s != "crate" {
                        break;
                    }
                    if toks.get(j + 1).map(|t| &t.0) != Some(&Token::Colons) {
                        prefix_only = true;
                        break;
                    }
                    j += 2;
                }
                if prefix_only {
                    i += 1;
                    continue;
                }
                // Named segments, then maybe a group.
                let mut path = base;
                while let Some(s) = ident(j) {
                    path.push(s.to_string());
                    if toks.get(j + 1).map(|t| &t.0) == Some(&Token::Colons) {
                        j += 2;
                    } else {
                        break;
                    }
                }
                if toks.get(j).map(|t| &t.0) == Some(&Token::Punct('{')) {
                    // Each element's first identifier, at the group's own level.
                    let mut level = 0;
                    let mut first = true;
                    let mut k = j;
                    while k < toks.len() {
                        match &toks[k].0 {
                            Token::Punct('{') => {
                                level += 1;
                                if level == 1 {
                                    first = true;
                                }
                            }
                            Token::Punct('}') => {
                                level -= 1;
                                if level == 0 {
                                    break;
                                }
                            }
                            Token::Punct(',') if level == 1 => first = true,
                            Token::Ident(_) if level == 1 && first => {
                                first = false;
                                let mut p = path.clone();
                                let mut e = k;
                                while let Some(s) = ident(e) {
                                    if s != "self" {
                                        p.push(s.to_string());
                                    }
                                    if toks.get(e + 1).map(|t| &t.0) != Some(&Token::Colons) {
                                        break;
                                    }
                                    e += 2;
                                }
                                found.push((p, toks[k].1));
                            }
                            _ => {}
                        }
                        k += 1;
                    }
                } else {
                    found.push((path, line));
                }
            }
            _ => {}
        }
        i += 1;
    }
    for (p, _) in found.iter_mut() {
        p.truncate(2);
    }
    found
}

/// The node a module path belongs to at the top level.
fn top(path: &[String]) -> Option<String> {
    path.first().cloned()
}

/// The node a module path belongs to inside `parent` (a submodule, not the parent itself).
fn sub(parent: &str, path: &[String], submodules: &BTreeSet<String>) -> Option<String> {
    match path {
        [p, s, ..] if p == parent && submodules.contains(s) => Some(s.clone()),
        _ => None,
    }
}

/// One cycle of the graph, if there is one (depth-first search, in name order).
fn find_cycle(edges: &Edges) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        edges: &Edges,
        state: &mut BTreeMap<String, State>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), State::Open);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flat_map(|e| e.keys()) {
            match state.get(m).copied().unwrap_or(State::New) {
                State::Open => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                State::New => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                State::Done => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), State::Done);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n).copied().unwrap_or(State::New) == State::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, edges, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

fn describe(graph: &str, edges: &Edges, cycle: &[String]) -> String {
    let mut s = format!("import cycle among {graph}: {}\n", cycle.join(" -> "));
    for w in cycle.windows(2) {
        s += &format!("  {} -> {} at {}\n", w[0], w[1], edges[&w[0]][&w[1]]);
    }
    s
}

/// The graphs: "src" (top-level modules) and one per folder of `SPLIT`.
fn graphs() -> BTreeMap<String, Edges> {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let submodules = |parent: &str| -> BTreeSet<String> {
        files
            .iter()
            .map(|f| module_of(&src, f))
            .filter(|m| m.len() >= 2 && m[0] == parent)
            .map(|m| m[1].clone())
            .collect()
    };
    let subs: BTreeMap<&str, BTreeSet<String>> =
        SPLIT.iter().map(|p| (*p, submodules(p))).collect();
    let mut graphs: BTreeMap<String, Edges> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        if module.len() == 1 && (module[0] == "lib" || module[0] == "main") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        let at = |line: usize| format!("{}:{line}", f.strip_prefix(&src).unwrap().display());
        for (path, line) in named_paths(&module, &text) {
            if let (Some(a), Some(b)) = (top(&module), top(&path)) {
                if a != b {
                    graphs
                        .entry("src".into())
                        .or_default()
                        .entry(a)
                        .or_default()
                        .entry(b)
                        .or_insert_with(|| at(line));
                }
            }
            for (parent, s) in &subs {
                if let (Some(a), Some(b)) = (sub(parent, &module, s), sub(parent, &path, s)) {
                    if a != b {
                        graphs
                            .entry(format!("src/{parent}"))
                            .or_default()
                            .entry(a)
                            .or_default()
                            .entry(b)
                            .or_insert_with(|| at(line));
                    }
                }
            }
        }
    }
    graphs
}

#[test]
fn no_import_cycle_between_modules() {
    let graphs = graphs();
    assert!(graphs["src"].contains_key("commands"), "no edges read");
    let mut cycles = Vec::new();
    for (name, edges) in &graphs {
        // Every cycle once: name one, drop its closing edge, look again.
        let mut left = edges.clone();
        while let Some(c) = find_cycle(&left) {
            cycles.push(describe(name, edges, &c));
            let (a, b) = (&c[c.len() - 2], &c[c.len() - 1]);
            left.get_mut(a).unwrap().remove(b);
        }
    }
    assert!(cycles.is_empty(), "{}", cycles.join(""));
}

#[test]
fn the_checker_reads_paths_groups_and_super() {
    let m = |s: &str| s.split('/').map(String::from).collect::<Vec<_>>();
    let text = r#"
use crate::{data::glue::Task, output};
use super::{bert, gpt2::X};
// use crate::commented::Out;
const S: &str = "crate::in_string::No";
fn f<'a>(c: char) { let _ = '"'; crate::eval::run(); }
mod tests { use super::Y; use super::super::network::Z; }
"#;
    let got: BTreeSet<Vec<String>> = named_paths(&m("model/families"), text)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    let want: BTreeSet<Vec<String>> = [
        "data/glue",
        "output",
        "model/bert",
        "model/gpt2",
        "eval/run",
        "model/families",
        "model/network",
    ]
    .iter()
    .map(|s| m(s))
    .collect();
    assert_eq!(got, want);
    let mut edges = Edges::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a")] {
        edges
            .entry(a.into())
            .or_default()
            .insert(b.into(), "x".into());
    }
    assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
}

/// Prints the graphs (`cargo test --release --test it module_graph -- --nocapture`), for the
/// diagram in README.md's "Layout".
#[test]
fn print_the_module_graph() {
    for (name, edges) in graphs() {
        println!("{name}:");
        for (a, bs) in edges {
            println!(
                "  {a} -> {}",
                bs.keys().cloned().collect::<Vec<_>>().join(" ")
            );
        }
    }
}
