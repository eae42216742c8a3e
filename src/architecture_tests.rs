//! The layout as a test: each folder uses only the folders before it, and no two files import
//! each other, directly or round a circle. Read from the sources (every `crate::…` path outside
//! test code), so a new import that breaks the order fails here, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The folders in dependency order: each may use those of a lower rank only (and `testing`,
/// which only tests use). Folders of one rank do not use each other.
const RANKS: &[(&str, u8)] = &[
    ("jose", 0),
    ("extract", 0),
    ("policy", 0),
    ("revocation", 1),
    ("metering", 2),
    ("config", 3),
    ("gate", 4),
    ("proxy", 5),
];

/// Every non-test source file under `src/<folder>/`, by module path (`gate::decision`), with
/// its text up to its inline test module.
fn sources() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    for (folder, _) in RANKS {
        for entry in fs::read_dir(src.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if name.ends_with("_tests") || name == "tests" {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(end) => text[..end].to_owned(),
                None => text,
            };
            let module = if name == "mod" {
                (*folder).to_owned()
            } else {
                format!("{folder}::{name}")
            };
            files.insert(module, text);
        }
    }
    files
}

/// The modules `text` names by `crate::` paths: the longest known module prefix of each.
fn imports(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (start, _) in text.match_indices("crate::") {
        let path: String = text[start + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        if let Some(module) = (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|candidate| modules.contains(candidate))
        {
            found.insert(module);
        }
    }
    found
}

fn rank(module: &str) -> Option<u8> {
    let folder = module.split("::").next()?;
    RANKS.iter().find(|(name, _)| *name == folder).map(|r| r.1)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, text)| {
            let mut uses = imports(text, &modules);
            uses.remove(module);
            (module.clone(), uses)
        })
        .collect()
}

#[test]
fn each_folder_uses_only_the_folders_before_it() {
    let graph = graph();
    assert!(graph.len() > 30, "the sources were not found: {graph:?}");
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        let folder = module.split("::").next().unwrap();
        for used in uses {
            let used_folder = used.split("::").next().unwrap();
            if used_folder != folder && rank(used) >= rank(module) {
                wrong.push(format!("{module} uses {used}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the folder order: {wrong:#?}"
    );
}

#[test]
fn no_file_imports_itself_round_a_circle() {
    let graph = graph();
    // Depth-first search; a module met again on the current path closes a circle.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| *m == module) {
            let mut circle: Vec<String> = path[at..].iter().map(|m| (*m).to_owned()).collect();
            circle.push(module.to_owned());
            return Some(circle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module);
        for used in graph.get(module).into_iter().flatten() {
            if let Some(circle) = visit(used, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(module);
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let circle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert_eq!(circle, None, "an import circle");
    }
}

#[test]
fn the_check_sees_a_wrong_import() {
    let modules: BTreeSet<String> = ["gate::decision", "jose::keys", "config"]
        .map(str::to_owned)
        .into();
    let uses = imports(
        "use crate::gate::decision::{Gate, Decision};\nfn f() { crate::config::Config::x() }",
        &modules,
    );
    assert_eq!(uses, ["config", "gate::decision"].map(str::to_owned).into());
    assert!(rank("gate::decision") > rank("config"));
    assert!(rank("jose::keys") < rank("config"));
}
