//! No import cycles between the modules of `src/`: each folder's modules form a DAG.
//!
//! Layering keeps the crate readable and refactorable: a module can be understood (and moved or
//! feature-gated) knowing only what sits below it. So, for every use of a path `A -> B` (a `use`
//! or an inline `crate::`/`super::`/`self::` path in code), let `P` be the longest common prefix
//! of the two module paths and lift both to their ancestors that are direct children of `P`:
//! `dim::block -> kernels::par` is the edge `dim -> kernels` among the crate root's children,
//! `kernels::gemm::nest -> kernels::par` is `kernels::gemm -> kernels::par` among `kernels`'s.
//! An edge between a module and its own ancestor (a child using its parent's re-exports, a parent
//! declaring and re-exporting its children) is not layering and is ignored. Any cycle in any of
//! these sibling graphs fails the test, listing each cycle with a `file:line` per edge.
//!
//! Model: `src/**/x.rs` is module `x`, `mod.rs` its folder's module, `src/lib.rs` the root;
//! `src/main.rs` and `src/bin/` are other crates and are skipped. Comments, string and char
//! literals, `#[cfg(test)]` items and `mod tests { .. }` are ignored. A path naming an item that
//! a parent re-exports (`super::Float`) counts for the parent only: re-exports and `use .. as`
//! aliases are not followed (the `use` creating an alias is itself an edge).
//!
//! Plain `std`, no build step: the checker also runs standalone, e.g.
//! `CARGO_MANIFEST_DIR=$PWD rustc --edition 2024 --test tests/module_cycles.rs -o /tmp/mc && /tmp/mc`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// A module path below the crate root: `["kernels", "gemm"]`; empty for the root.
type ModPath = Vec<String>;

/// Stop listing after this many cycles (a badly tangled folder has exponentially many).
const MAX_CYCLES: usize = 200;

#[test]
fn src_modules_have_no_import_cycles() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = load_sources(manifest);
    assert!(sources.iter().any(|s| s.module.is_empty()), "no src/lib.rs under {}", manifest.display());
    if let Err(report) = check_sources(&sources) {
        panic!("{report}");
    }
}

/// One source file: its display name (for messages), its module path and its text.
struct Source {
    file: String,
    module: ModPath,
    text: String,
}

/// Reads every library module under `manifest/src`, sorted by file name.
fn load_sources(manifest: &Path) -> Vec<Source> {
    let src = manifest.join("src");
    let mut files = Vec::new();
    collect_rs_files(&src, &mut files);
    files.sort();
    let mut sources = Vec::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("walked file lies under src/");
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display())).to_owned())
            .collect();
        let Some(module) = module_path_of(&parts) else { continue };
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        sources.push(Source { file: format!("src/{}", parts.join("/")), module, text });
    }
    sources
}

fn collect_rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path();
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module of a file, given its path components below `src/`; `None` for other crates' roots.
fn module_path_of(parts: &[String]) -> Option<ModPath> {
    let (file, dirs) = parts.split_last()?;
    let stem = file.strip_suffix(".rs")?;
    match (dirs.first().map(String::as_str), stem) {
        (Some("bin"), _) => None,
        (None, "lib") => Some(Vec::new()),
        (None, "main") => None,
        (_, "mod") => Some(dirs.to_vec()),
        _ => Some(dirs.iter().cloned().chain([stem.to_owned()]).collect()),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens: identifiers, `::` and single punctuation; comments dropped, literals opaque.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
    /// A string, char, number or lifetime: never part of a module path.
    Lit,
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

fn tokenize(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < c.len() {
        let (ch, next) = (c[i], c.get(i + 1).copied());
        let start_line = line;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            i = skip_block_comment(&c, i, &mut line);
        } else if ch == '"' {
            i = skip_string(&c, i + 1, &mut line);
            out.push(Token { tok: Tok::Lit, line: start_line });
        } else if ch == '\'' {
            i = skip_quote(&c, i);
            out.push(Token { tok: Tok::Lit, line });
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            i = skip_ident(&c, i);
            let word: String = c[start..i].iter().collect();
            match (word.as_str(), c.get(i)) {
                ("r" | "br" | "cr", Some('"' | '#')) if is_raw_string(&c, i) => {
                    i = skip_raw_string(&c, i, &mut line);
                    out.push(Token { tok: Tok::Lit, line: start_line });
                }
                ("r", Some('#')) => {
                    let start = i + 1;
                    i = skip_ident(&c, start);
                    out.push(Token { tok: Tok::Ident(c[start..i].iter().collect()), line });
                }
                ("b" | "c", Some('"')) => {
                    i = skip_string(&c, i + 1, &mut line);
                    out.push(Token { tok: Tok::Lit, line: start_line });
                }
                ("b", Some('\'')) => {
                    i = skip_quote(&c, i);
                    out.push(Token { tok: Tok::Lit, line });
                }
                _ => out.push(Token { tok: Tok::Ident(word), line }),
            }
        } else if ch.is_ascii_digit() {
            i = skip_ident(&c, i);
            out.push(Token { tok: Tok::Lit, line });
        } else if ch == ':' && next == Some(':') {
            out.push(Token { tok: Tok::PathSep, line });
            i += 2;
        } else {
            out.push(Token { tok: Tok::Punct(ch), line });
            i += 1;
        }
    }
    out
}

fn skip_ident(c: &[char], mut i: usize) -> usize {
    while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
        i += 1;
    }
    i
}

/// From the `/` of `/*`: past the matching `*/` (block comments nest).
fn skip_block_comment(c: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut depth = 0usize;
    while i < c.len() {
        match (c[i], c.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            (ch, _) => {
                *line += usize::from(ch == '\n');
                i += 1;
            }
        }
    }
    i
}

/// From just after an opening `"`: past the closing one.
fn skip_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < c.len() {
        match c[i] {
            '\\' => {
                *line += usize::from(c.get(i + 1) == Some(&'\n'));
                i += 2;
            }
            '"' => return i + 1,
            ch => {
                *line += usize::from(ch == '\n');
                i += 1;
            }
        }
    }
    i
}

/// From a `'`: past a char literal (`'x'`, `'"'`, `'\u{1F600}'`) or a lifetime / label (`'a`).
fn skip_quote(c: &[char], i: usize) -> usize {
    if c.get(i + 1) == Some(&'\\') {
        let mut j = i + 3;
        while j < c.len() && c[j] != '\'' {
            j += 1;
        }
        j + 1
    } else if c.get(i + 2) == Some(&'\'') {
        i + 3
    } else {
        skip_ident(c, i + 1)
    }
}

/// Whether `#*"` starts at `i` (after an `r`, `br` or `cr` prefix).
fn is_raw_string(c: &[char], mut i: usize) -> bool {
    while c.get(i) == Some(&'#') {
        i += 1;
    }
    c.get(i) == Some(&'"')
}

/// From the `#*"` after a raw prefix: past the closing `"#*`.
fn skip_raw_string(c: &[char], mut i: usize, line: &mut usize) -> usize {
    let mut hashes = 0;
    while c.get(i) == Some(&'#') {
        hashes += 1;
        i += 1;
    }
    i += 1;
    while i < c.len() {
        if c[i] == '"' && (1..=hashes).all(|k| c.get(i + k) == Some(&'#')) {
            return i + 1 + hashes;
        }
        *line += usize::from(c[i] == '\n');
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------------------------
// Paths: every `use` tree and every inline `crate::`/`super::`/`self::` path, per module.

/// A path as written (`super::gemm::MatRef`) in module `from`, at `line`.
#[derive(Debug)]
struct Reference {
    from: ModPath,
    segments: Vec<String>,
    line: usize,
}

#[derive(Debug, Default)]
struct Parsed {
    refs: Vec<Reference>,
    /// Inline `mod name { .. }` modules (not test ones).
    inline_mods: Vec<ModPath>,
    /// Modules declared under `#[cfg(test)]` (`#[cfg(test)] mod x;`) or marked `#![cfg(test)]`.
    test_mods: Vec<ModPath>,
}

fn tok_at(toks: &[Token], i: usize) -> Option<&Tok> {
    toks.get(i).map(|t| &t.tok)
}

fn ident_at(toks: &[Token], i: usize) -> Option<&str> {
    match tok_at(toks, i) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

/// The paths named by the code of the file of module `module`.
fn parse_module(module: &[String], text: &str) -> Parsed {
    let toks = tokenize(text);
    let mut parsed = Parsed::default();
    // Inline modules entered, with the brace depth of their `{`.
    let mut stack: Vec<(ModPath, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let current = stack.last().map_or(module, |(m, _)| m.as_slice());
        match &toks[i].tok {
            Tok::Punct('#') => {
                let inner = tok_at(&toks, i + 1) == Some(&Tok::Punct('!'));
                let open = i + 1 + usize::from(inner);
                if tok_at(&toks, open) != Some(&Tok::Punct('[')) {
                    i += 1;
                    continue;
                }
                let close = matching_close(&toks, open);
                let test_only = is_cfg_test(&toks[open + 1..close.min(toks.len())]);
                i = close + 1;
                if test_only && inner {
                    parsed.test_mods.push(current.to_vec());
                } else if test_only {
                    i = skip_item(&toks, i, current, &mut parsed.test_mods);
                }
            }
            Tok::Ident(w) if w == "mod" => match (ident_at(&toks, i + 1), tok_at(&toks, i + 2)) {
                (Some("tests"), Some(Tok::Punct('{'))) => i = matching_close(&toks, i + 2) + 1,
                (Some(name), Some(Tok::Punct('{'))) => {
                    let inline: ModPath = current.iter().cloned().chain([name.to_owned()]).collect();
                    parsed.inline_mods.push(inline.clone());
                    depth += 1;
                    stack.push((inline, depth));
                    i += 3;
                }
                _ => i += 1,
            },
            Tok::Ident(w) if w == "use" => {
                let from = current.to_vec();
                i += 1;
                let mut leaves = Vec::new();
                parse_tree(&toks, &mut i, &[], &mut leaves);
                parsed.refs.extend(leaves.into_iter().map(|(segments, line)| Reference {
                    from: from.clone(),
                    segments,
                    line,
                }));
            }
            Tok::Ident(w)
                if matches!(w.as_str(), "crate" | "super" | "self")
                    && tok_at(&toks, i + 1) == Some(&Tok::PathSep)
                    && (i == 0 || tok_at(&toks, i - 1) != Some(&Tok::PathSep)) =>
            {
                let from = current.to_vec();
                let mut leaves = Vec::new();
                parse_tree(&toks, &mut i, &[], &mut leaves);
                parsed.refs.extend(leaves.into_iter().map(|(segments, line)| Reference {
                    from: from.clone(),
                    segments,
                    line,
                }));
            }
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    parsed
}

/// The index of the bracket closing the one at `open` (`toks.len()` if unclosed).
fn matching_close(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        match t.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// Whether attribute tokens (inside `#[..]`) are `cfg(test)` or `cfg(all(.., test, ..))`.
fn is_cfg_test(attr: &[Token]) -> bool {
    let word = |i: usize, w: &str| ident_at(attr, i) == Some(w);
    if !word(0, "cfg") || tok_at(attr, 1) != Some(&Tok::Punct('(')) {
        return false;
    }
    if word(2, "test") {
        return tok_at(attr, 3) == Some(&Tok::Punct(')'));
    }
    if !word(2, "all") || tok_at(attr, 3) != Some(&Tok::Punct('(')) {
        return false;
    }
    let mut depth = 0usize;
    for t in &attr[4..] {
        match &t.tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') if depth == 0 => return false,
            Tok::Punct(')') => depth -= 1,
            Tok::Ident(w) if depth == 0 && w == "test" => return true,
            _ => {}
        }
    }
    false
}

/// From just after a `#[cfg(test)]`: past the item it applies to (its other attributes, then up
/// to a `;` or the close of its body). A `mod x;` skipped so is recorded as a test module.
fn skip_item(toks: &[Token], mut i: usize, current: &[String], test_mods: &mut Vec<ModPath>) -> usize {
    while tok_at(toks, i) == Some(&Tok::Punct('#')) && tok_at(toks, i + 1) == Some(&Tok::Punct('[')) {
        i = matching_close(toks, i + 1) + 1;
    }
    let mut depth = 0usize;
    while i < toks.len() {
        match &toks[i].tok {
            Tok::Ident(w) if w == "mod" && tok_at(toks, i + 2) == Some(&Tok::Punct(';')) => {
                if let Some(name) = ident_at(toks, i + 1) {
                    test_mods.push(current.iter().cloned().chain([name.to_owned()]).collect());
                }
            }
            Tok::Punct(';') if depth == 0 => return i + 1,
            Tok::Punct('(' | '[' | '{') => depth += 1,
            // An unmatched close: the attribute was on the last field or arm of a block.
            Tok::Punct(')' | ']' | '}') if depth == 0 => return i,
            Tok::Punct('}') if depth == 1 => return i + 1,
            Tok::Punct(')' | ']' | '}') => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Parses a use tree (or a path in code) at `*i` under `prefix`, appending each leaf path with
/// the line of its last segment: `crate::{a::x, b::{self, y as z}}` gives `crate::a::x`,
/// `crate::b`, `crate::b::y`. A path in code ends at its first non-path token (`(`, `<`, ..).
fn parse_tree(toks: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<(Vec<String>, usize)>) {
    let mut segments = prefix.to_vec();
    let mut line = toks.get(*i).map_or(0, |t| t.line);
    if tok_at(toks, *i) == Some(&Tok::PathSep) {
        *i += 1;
    }
    loop {
        match tok_at(toks, *i) {
            Some(Tok::Ident(name)) if name != "as" => {
                segments.push(name.clone());
                line = toks[*i].line;
                *i += 1;
                if tok_at(toks, *i) != Some(&Tok::PathSep) {
                    break;
                }
                *i += 1;
            }
            Some(Tok::Punct('*')) => {
                line = toks[*i].line;
                *i += 1;
                break;
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                while !matches!(tok_at(toks, *i), None | Some(Tok::Punct('}'))) {
                    let before = *i;
                    parse_tree(toks, i, &segments, out);
                    if tok_at(toks, *i) == Some(&Tok::Punct(',')) || *i == before {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => break,
        }
    }
    if ident_at(toks, *i) == Some("as") {
        *i += 2;
    }
    if segments.len() > 1 && segments.last().is_some_and(|s| s == "self") {
        segments.pop();
    }
    if !segments.is_empty() {
        out.push((segments, line));
    }
}

/// The full path a reference in `from` names, or `None` if it is not `crate`/`super`/`self`
/// rooted (an extern crate, a local name or alias); an error if it climbs above the root.
fn resolve(from: &[String], segments: &[String]) -> Result<Option<ModPath>, String> {
    let mut base: ModPath = match segments.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("self" | "super") => from.to_vec(),
        _ => return Ok(None),
    };
    let mut rest = &segments[usize::from(segments[0] != "super")..];
    while rest.first().is_some_and(|s| s == "super") {
        if base.pop().is_none() {
            return Err(format!("`{}` climbs above the crate root", segments.join("::")));
        }
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Ok(Some(base))
}

// ---------------------------------------------------------------------------------------------
// Sibling graphs and their cycles.

/// Where an edge of a sibling graph comes from: the first path found that creates it.
struct Evidence {
    file: String,
    line: usize,
    path: String,
    from: ModPath,
    to: ModPath,
}

/// For a dependency `a -> b`: their common parent `P` and their ancestors that are children of
/// `P`, or `None` if one is the other's ancestor (or they are the same module).
fn lift(a: &[String], b: &[String]) -> Option<(ModPath, ModPath, ModPath)> {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if common == a.len() || common == b.len() {
        return None;
    }
    Some((a[..common].to_vec(), a[..=common].to_vec(), b[..=common].to_vec()))
}

fn name(m: &[String]) -> String {
    if m.is_empty() { "crate".to_owned() } else { m.join("::") }
}

/// Checks the sources for sibling cycles: `Err` is the report listing them.
fn check_sources(sources: &[Source]) -> Result<(), String> {
    let parsed: Vec<(&Source, Parsed)> = sources.iter().map(|s| (s, parse_module(&s.module, &s.text))).collect();
    let mut known: BTreeSet<ModPath> = sources.iter().map(|s| s.module.clone()).collect();
    known.insert(Vec::new());
    known.extend(parsed.iter().flat_map(|(_, p)| p.inline_mods.iter().cloned()));
    let test_mods: Vec<&ModPath> = parsed.iter().flat_map(|(_, p)| &p.test_mods).collect();
    let in_tests = |m: &[String]| test_mods.iter().any(|t| m.starts_with(t));

    // Parent P -> child a -> child b -> first evidence.
    let mut graphs: BTreeMap<ModPath, BTreeMap<ModPath, BTreeMap<ModPath, Evidence>>> = BTreeMap::new();
    let mut errors = String::new();
    for (source, p) in &parsed {
        for r in p.refs.iter().filter(|r| !in_tests(&r.from)) {
            let full = match resolve(&r.from, &r.segments) {
                Ok(Some(full)) => full,
                Ok(None) => continue,
                Err(e) => {
                    let _ = writeln!(errors, "{}:{}: {e}", source.file, r.line);
                    continue;
                }
            };
            let to_len = (0..=full.len()).rev().find(|&n| known.contains(&full[..n])).unwrap_or(0);
            let to = &full[..to_len];
            if in_tests(to) {
                continue;
            }
            let Some((parent, a, b)) = lift(&r.from, to) else { continue };
            let evidence = || Evidence {
                file: source.file.clone(),
                line: r.line,
                path: r.segments.join("::"),
                from: r.from.clone(),
                to: to.to_vec(),
            };
            graphs.entry(parent).or_default().entry(a).or_default().entry(b).or_insert_with(evidence);
        }
    }
    if !errors.is_empty() {
        return Err(format!("unresolvable paths in src/:\n{errors}"));
    }

    let mut cycles = Vec::new();
    for graph in graphs.values() {
        find_cycles(graph, &mut cycles);
    }
    if cycles.is_empty() {
        return Ok(());
    }
    let mut report = format!(
        "{} import cycle(s) between sibling modules of src/ (each folder's modules must form a DAG, \
         see tests/module_cycles.rs):\n",
        cycles.len()
    );
    for cycle in &cycles {
        let graph = &graphs[&cycle[0][..cycle[0].len() - 1]];
        let names: Vec<String> = cycle.iter().chain(&cycle[..1]).map(|m| name(m)).collect();
        let _ = writeln!(report, "\n{}", names.join(" -> "));
        for (k, a) in cycle.iter().enumerate() {
            let b = &cycle[(k + 1) % cycle.len()];
            let e = &graph[a][b];
            let _ = write!(report, "    {} -> {}: {}:{} `{}`", name(a), name(b), e.file, e.line, e.path);
            if (&e.from, &e.to) != (a, b) {
                let _ = write!(report, " (in {} -> {})", name(&e.from), name(&e.to));
            }
            report.push('\n');
        }
    }
    if cycles.len() >= MAX_CYCLES {
        let _ = writeln!(report, "\n(stopped after {MAX_CYCLES} cycles)");
    }
    Err(report)
}

/// Appends every elementary cycle of `graph` (adjacency with evidence), each once, starting at
/// its smallest node, until `MAX_CYCLES` are found.
fn find_cycles<E>(graph: &BTreeMap<ModPath, BTreeMap<ModPath, E>>, cycles: &mut Vec<Vec<ModPath>>) {
    let nodes: Vec<&ModPath> =
        graph.keys().chain(graph.values().flat_map(BTreeMap::keys)).collect::<BTreeSet<_>>().into_iter().collect();
    let index: BTreeMap<&ModPath, usize> = nodes.iter().enumerate().map(|(k, m)| (*m, k)).collect();
    let succ: Vec<Vec<usize>> =
        nodes.iter().map(|m| graph.get(*m).map_or(Vec::new(), |out| out.keys().map(|b| index[b]).collect())).collect();
    for start in 0..nodes.len() {
        // Nodes (>= start) from which `start` can be reached: prunes the search to its component.
        let mut reaches = vec![false; nodes.len()];
        reaches[start] = true;
        let mut changed = true;
        while changed {
            changed = false;
            for v in start..nodes.len() {
                if !reaches[v] && succ[v].iter().any(|&w| w >= start && reaches[w]) {
                    reaches[v] = true;
                    changed = true;
                }
            }
        }
        let mut path = vec![start];
        let mut on_path = vec![false; nodes.len()];
        on_path[start] = true;
        // Depth-first over simple paths from `start`, with an explicit stack of successor cursors.
        let mut cursors = vec![0usize];
        while let Some(cursor) = cursors.last_mut() {
            let v = path[path.len() - 1];
            let Some(&w) = succ[v].get(*cursor) else {
                on_path[v] = false;
                path.pop();
                cursors.pop();
                continue;
            };
            *cursor += 1;
            if w == start {
                cycles.push(path.iter().map(|&k| nodes[k].clone()).collect());
                if cycles.len() >= MAX_CYCLES {
                    return;
                }
            } else if w > start && reaches[w] && !on_path[w] {
                on_path[w] = true;
                path.push(w);
                cursors.push(0);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker itself, on small in-memory crates.

mod checker {
    use super::*;

    fn module(path: &str) -> ModPath {
        path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }

    /// `(module, text)` pairs as sources, with file names derived from the module paths.
    fn sources(modules: &[(&str, &str)]) -> Vec<Source> {
        modules
            .iter()
            .map(|(m, text)| {
                let file =
                    if m.is_empty() { "src/lib.rs".to_owned() } else { format!("src/{}.rs", m.replace("::", "/")) };
                Source { file, module: module(m), text: (*text).to_owned() }
            })
            .collect()
    }

    fn paths(module_path: &str, text: &str) -> Vec<String> {
        parse_module(&module(module_path), text).refs.iter().map(|r| r.segments.join("::")).collect()
    }

    #[test]
    fn a_three_module_cycle_is_reported_with_its_lines() {
        let src = sources(&[
            ("", "pub mod kernels;"),
            ("kernels", "pub mod gemm;\npub mod sgemm;\npub mod igemm;\npub use gemm::gemm;"),
            ("kernels::gemm", "use super::Float;\n\npub fn gemm() { super::sgemm::sgemm() }"),
            ("kernels::sgemm", "use crate::kernels::igemm::{MR, pack};"),
            ("kernels::igemm", "//! Tiles.\nuse super::{Float, gemm::MatRef};"),
        ]);
        let report = check_sources(&src).expect_err("the cycle must be found");
        assert!(report.contains("kernels::gemm -> kernels::sgemm -> kernels::igemm -> kernels::gemm"), "{report}");
        assert!(
            report.contains("kernels::gemm -> kernels::sgemm: src/kernels/gemm.rs:3 `super::sgemm::sgemm`"),
            "{report}"
        );
        assert!(
            report.contains("kernels::sgemm -> kernels::igemm: src/kernels/sgemm.rs:1 `crate::kernels::igemm::MR`")
        );
        assert!(report.contains("kernels::igemm -> kernels::gemm: src/kernels/igemm.rs:2 `super::gemm::MatRef`"));
        assert!(report.starts_with("1 import cycle(s)"), "{report}");
    }

    #[test]
    fn a_layered_crate_passes() {
        let src = sources(&[
            ("", "pub mod kernels;\npub mod dim;\npub use kernels::Float;"),
            (
                "kernels",
                "pub mod gemm;\npub mod par;\npub use gemm::{gemm, MatRef};\nmod float;\npub use float::Float;",
            ),
            ("kernels::float", "pub trait Float {}"),
            ("kernels::gemm", "use super::Float;\nuse crate::kernels::Float as F;"),
            ("kernels::par", "use super::gemm::{self, MatRef};\nfn f() { crate::kernels::gemm::gemm(); }"),
            ("dim", "pub mod block;\nuse crate::kernels::par;"),
            ("dim::block", "use crate::kernels::{self as k, par::par_gemm};\nuse super::super::Float;"),
        ]);
        assert_eq!(check_sources(&src), Ok(()));
    }

    #[test]
    fn cycles_between_folders_are_lifted_to_the_common_parent() {
        let src = sources(&[
            ("", "pub mod dim;\npub mod kernels;"),
            ("dim", "pub mod block;"),
            ("dim::block", "use crate::kernels::par::par_gemm;"),
            ("kernels", "pub mod par;"),
            ("kernels::par", "fn f(m: crate::dim::Mode) {}"),
        ]);
        let report = check_sources(&src).expect_err("dim and kernels use each other");
        assert!(report.contains("\ndim -> kernels -> dim\n"), "{report}");
        assert!(report.contains("src/dim/block.rs:1 `crate::kernels::par::par_gemm` (in dim::block -> kernels::par)"));
        assert!(report.contains("src/kernels/par.rs:1 `crate::dim::Mode` (in kernels::par -> dim)"), "{report}");
    }

    #[test]
    fn every_cycle_is_listed_once() {
        let src = sources(&[
            ("", "mod a; mod b; mod c;"),
            ("a", "use crate::b::X; use crate::c::Y;"),
            ("b", "use crate::a::X; use crate::c::Y;"),
            ("c", "use crate::a::X;"),
        ]);
        let report = check_sources(&src).expect_err("cycles");
        assert!(report.starts_with("3 import cycle(s)"), "{report}");
        for cycle in ["\na -> b -> a\n", "\na -> b -> c -> a\n", "\na -> c -> a\n"] {
            assert!(report.contains(cycle), "{cycle:?} missing from {report}");
        }
    }

    #[test]
    fn grouped_and_nested_use_trees_are_flattened() {
        let text = "pub(crate) use crate::{a::x, b::{y, z as _, self}, c::{self as k, *}};\nuse ::std::fmt;\n\
                    use {super::d, self::e::f};\nuse super::super::g::H;";
        assert_eq!(
            paths("m::n", text),
            [
                "crate::a::x",
                "crate::b::y",
                "crate::b::z",
                "crate::b",
                "crate::c",
                "crate::c",
                "std::fmt",
                "super::d",
                "self::e::f",
                "super::super::g::H",
            ]
        );
    }

    #[test]
    fn inline_paths_in_code_are_found_with_their_lines() {
        let text = "fn f() -> crate::error::Result<()> {\n    let s = super::gemm::MatRef::<f32>::new();\n    \
                    x.map_err(crate::Error::from)?;\n    Self::g(self.h, self::k::K)\n}";
        let refs = parse_module(&module("kernels::par"), text).refs;
        let found: Vec<(String, usize)> = refs.iter().map(|r| (r.segments.join("::"), r.line)).collect();
        let expected =
            [("crate::error::Result", 1), ("super::gemm::MatRef", 2), ("crate::Error::from", 3), ("self::k::K", 4)];
        assert_eq!(found, expected.map(|(p, l)| (p.to_owned(), l)));
    }

    #[test]
    fn comments_strings_and_chars_are_ignored() {
        let text = r####"
            // use super::b;
            /// [`super::b`] in a doc comment
            /* crate::b::x /* nested */ super::b::y */
            const S: &str = "super::b::f() \" crate::b";
            const R: &str = r#"crate::b::" super::b"#;
            const B: &[u8] = b"super::b";
            const Q: char = '"'; const E: char = '\''; fn l<'a>(x: &'a u8) {}
            const U: &str = "use super::b;";
            fn ok() { super::c::g() }
        "####;
        assert_eq!(paths("a", text), ["super::c::g"]);
        let src = sources(&[("", "mod a; mod b;"), ("a", text), ("b", "use crate::a::X;")]);
        assert_eq!(check_sources(&src), Ok(()));
    }

    #[test]
    fn test_code_is_ignored() {
        let text = "use super::c;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::b::X;\n}\n\
                    mod tests { use crate::b::Y; }\n#[cfg(test)]\nuse crate::b::Z;\n\
                    #[cfg(all(test, feature = \"std\"))]\n#[allow(dead_code)]\nfn helper() { crate::b::w() }\n\
                    #[cfg(test)]\nmod fixtures;\n#[cfg(not(test))]\nfn prod() { crate::d::v() }";
        assert_eq!(paths("a", text), ["super::c", "crate::d::v"]);
        let src = sources(&[
            ("", "mod a; mod b; mod c; mod d;"),
            ("a", text),
            ("a::fixtures", "use crate::b::Fixture;"),
            ("b", "use crate::a::X;"),
        ]);
        assert_eq!(check_sources(&src), Ok(()));
        let inner =
            sources(&[("", "mod a; mod b;"), ("a", "#![cfg(test)]\nuse crate::b::X;"), ("b", "use crate::a::X;")]);
        assert_eq!(check_sources(&inner), Ok(()));
    }

    #[test]
    fn inline_modules_shift_super_and_self() {
        let text = "pub mod faults {\n    use super::write;\n    pub mod deep { use super::super::super::b::X; }\n}\n\
                    fn f() { self::faults::g() }";
        let parsed = parse_module(&module("t::a"), text);
        assert_eq!(parsed.inline_mods, [module("t::a::faults"), module("t::a::faults::deep")]);
        let froms: Vec<String> = parsed.refs.iter().map(|r| name(&r.from)).collect();
        assert_eq!(froms, ["t::a::faults", "t::a::faults::deep", "t::a"]);
        let src =
            sources(&[("", "mod t;"), ("t", "mod a; mod b;"), ("t::a", text), ("t::b", "use super::a::faults::Y;")]);
        let report = check_sources(&src).expect_err("t::a::faults::deep uses t::b");
        assert!(report.contains("\nt::a -> t::b -> t::a\n"), "{report}");
        assert!(report.contains("`super::super::super::b::X` (in t::a::faults::deep -> t::b)"), "{report}");
        assert!(report.contains("`super::a::faults::Y` (in t::b -> t::a::faults)"), "{report}");
    }

    #[test]
    fn ancestors_and_descendants_are_not_edges() {
        assert_eq!(lift(&module("k::gemm"), &module("k")), None);
        assert_eq!(lift(&module("k"), &module("k::gemm::view")), None);
        assert_eq!(lift(&module(""), &module("k")), None);
        assert_eq!(
            lift(&module("k::gemm::nest"), &module("k::par")),
            Some((module("k"), module("k::gemm"), module("k::par")))
        );
        let src = sources(&[
            ("", "pub mod k;\nuse k::gemm;"),
            ("k", "pub mod gemm;\npub use gemm::X;\nuse self::gemm::Y;"),
            ("k::gemm", "use super::Z;\nuse crate::k::W;"),
        ]);
        assert_eq!(check_sources(&src), Ok(()));
    }

    #[test]
    fn climbing_above_the_root_is_an_error() {
        let src = sources(&[("", "mod a;"), ("a", "\nuse super::super::X;")]);
        let report = check_sources(&src).expect_err("bad path");
        assert!(report.contains("src/a.rs:2: `super::super::X` climbs above the crate root"), "{report}");
    }

    #[test]
    fn files_map_to_modules() {
        let parts = |p: &str| p.split('/').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(module_path_of(&parts("lib.rs")), Some(module("")));
        assert_eq!(module_path_of(&parts("main.rs")), None);
        assert_eq!(module_path_of(&parts("bin/infomax.rs")), None);
        assert_eq!(module_path_of(&parts("rng.rs")), Some(module("rng")));
        assert_eq!(module_path_of(&parts("kernels/mod.rs")), Some(module("kernels")));
        assert_eq!(module_path_of(&parts("kernels/gemm/nest.rs")), Some(module("kernels::gemm::nest")));
    }
}
