//! Dependencies point one way: no import cycle between the files of `src/` (a module and its
//! own descendants may refer to each other). Edges are the `crate::` paths each file names
//! (in `use` lines and inline), outside its `#[cfg(test)] mod tests`. And no function in
//! `src/` is longer than `MAX_FN_LINES` (a newcomer reads each in one screenful or two).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`archive::write`) -> file text, for every `.rs` file under `src/`.
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            modules(&p, &format!("{prefix}{name}::"), out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let m = match name.as_str() {
                "mod" => prefix.trim_end_matches("::").to_string(),
                "lib" | "main" if prefix.is_empty() => continue,
                _ => format!("{prefix}{name}"),
            };
            out.insert(m, fs::read_to_string(&p).unwrap());
        }
    }
}

/// The modules a file names through `crate::` paths (longest module prefix of each path).
/// `use crate::{a, b::c}` groups are expanded one level.
fn edges(text: &str, mods: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            paths.extend(inner.split(',').map(|s| s.trim().to_string()));
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            paths.push(rest[..end].to_string());
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let parts: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        if let Some(m) = (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|m| mods.contains_key(m))
        {
            out.insert(m);
        }
    }
    out
}

fn related(a: &str, b: &str) -> bool {
    a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Every edge a -> b that lies on a cycle (b reaches a), parent/child edges aside.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(x) = todo.pop() {
            for y in graph.get(&x).into_iter().flatten() {
                if !related(&x, y) && seen.insert(y.clone()) {
                    todo.push(y.clone());
                }
            }
        }
        seen
    };
    let mut found = Vec::new();
    for (a, deps) in graph {
        for b in deps {
            if a != b && !related(a, b) && reach(b).contains(a) {
                found.push(format!("{a} -> {b}"));
            }
        }
    }
    found
}

#[test]
fn no_import_cycle_between_src_files() {
    let mut mods = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut mods,
    );
    let graph: BTreeMap<String, BTreeSet<String>> = mods
        .iter()
        .map(|(m, text)| {
            let mut e = edges(text, &mods);
            e.remove(m);
            (m.clone(), e)
        })
        .collect();
    assert!(
        graph.len() > 20 && graph["backup"].contains("livedb"),
        "the parser sees the crate"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles (edges on a cycle):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["d::e"]),
        ("d::e", vec!["d"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&g), ["a -> b", "b -> c", "c -> a"]);
}

/// The longest a function in `src/` may be, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 120;

/// `(line, name, length)` of every function with a body in `text` (rustfmt'd code: a body
/// ends at the first line that is its `fn` line's indent plus `}`).
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        let mut words = body.split_whitespace().peekable();
        while words
            .peek()
            .is_some_and(|w| w.starts_with("pub") || ["async", "unsafe", "const"].contains(w))
        {
            words.next();
        }
        if words.next() != Some("fn") {
            continue;
        }
        let name: String = words
            .next()
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The signature ends at the body's `{`, or at `;` for a declaration (a trait's).
        let Some(open) = lines[i..]
            .iter()
            .position(|l| l.contains('{') || l.trim_end().ends_with(';'))
        else {
            continue;
        };
        let sig_end = lines[i + open].trim_end();
        if !sig_end.contains('{') {
            continue;
        }
        if sig_end.ends_with('}') {
            out.push((i + 1, name, open + 1)); // a body on one line
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[i..].iter().position(|l| l.trim_end() == close) {
            out.push((i + 1, name, end + 1));
        }
    }
    out
}

#[test]
fn no_function_in_src_is_longer_than_the_limit() {
    let mut mods = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut mods,
    );
    let mut long = Vec::new();
    let mut counted = 0;
    for (m, text) in &mods {
        for (line, name, len) in functions(text) {
            counted += 1;
            if len > MAX_FN_LINES {
                long.push(format!("{m}:{line} {name} ({len} lines)"));
            }
        }
    }
    assert!(counted > 300, "the parser found only {counted} functions");
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into named steps): {long:#?}"
    );
}

#[test]
fn the_length_check_measures_a_function() {
    let text = "impl X {\n    pub async fn long(\n        a: u8,\n    ) -> u8 {\n        let b = a;\n        b\n    }\n\n    fn decl(&self);\n    fn one() {}\n}\n";
    let fns = functions(text);
    assert_eq!(
        fns,
        vec![(2, "long".to_string(), 6), (10, "one".to_string(), 1)]
    );
}
