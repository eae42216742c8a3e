//! The documentation's examples are part of the test suite. Every fenced code block of every
//! Markdown file in the repository that git tracks or that is new and not ignored (README.md,
//! docs/**/*.md, keyservice/README.md, keyservice/docs/**/*.md, deploy/**/README.md,
//! bench/README.md, …; not fuzz corpora or third-party trees) is checked by its language:
//!
//! - `json`: a keygate plugin configuration, which `keygate::Config::parse` must accept
//!   (`{"env": "JWT_SECRET"}` is set). A block that is not a whole configuration says what it
//!   is in an HTML comment on the line before its fence (blank lines between are allowed):
//!   - `<!-- example: fragment PATH -->`: a piece of a configuration, spliced into a minimal one
//!     at PATH, a dotted path whose last part may end in `[]` (append to that list):
//!     `fragment providers[]` (one provider), `fragment rules[]` (one rule), `fragment cors`.
//!     The minimal configuration is `{"secret": {"env": "JWT_SECRET"}, "revocation":
//!     {"cluster": "keyservice"}}`, or for a PATH into `providers`, `{"revocation": {"cluster":
//!     "keyservice"}, "providers": []}`.
//!   - `<!-- example: refused FIELD -->`: a configuration keygate must refuse, with an error
//!     naming `FIELD`. If the next block is the log line it produces (`… invalid plugin
//!     configuration: …`), that line must be the filter's message, word for word.
//!   - `<!-- example: json -->`: JSON that is not a keygate configuration; it must parse.
//! - `yaml`: each document is an Envoy bootstrap (`static_resources`), a piece of one (HTTP
//!   connection manager options, which go into a minimal bootstrap's connection manager; or only
//!   `http_filters` and `clusters`, which go into a minimal bootstrap with a listener, the
//!   clusters the piece names but does not define, and an upstream), or a Kubernetes object
//!   (`apiVersion`, `kind`). Envoy configurations go through the real `envoy --mode validate`
//!   with the built keygate.wasm (module paths ending in `keygate.wasm` point at it), which runs
//!   the filter's own configuration check; the keygate configuration in them must also name only
//!   clusters they define. Kubernetes core kinds are read strictly through k8s-openapi's types;
//!   Istio kinds against their fields.
//! - `sh`, `bash`, `shell`: not checked, except the JSON bodies of `curl -d '…'`, which must parse.
//! - unlabelled, `text`, `console` (transcripts, logs, responses): not checked, except the JSON
//!   bodies of `curl -d '…'` and every line that starts with `{`: a JSON value (it may run over
//!   several lines) that must parse. A line holding `…` is elided output and is skipped.
//! - `nginx`: not checked.
//!
//! Any other language fails, as does a marker not followed by a block. The test prints how many
//! blocks of each kind it checked and fails if a kind the docs have today drops to zero.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use keygate::{Config, KeyMaterial};
use serde::Deserialize;
use serde_json::{Value, json};
use testkit::bootstrap::{cluster, http_listener};

use crate::support::round_trip::round_trip_losses;

const ENVOY_TIMEOUT: Duration = Duration::from_secs(120);

/// What the docs' configurations read with `{"env": …}`, and its value here.
const SECRET_VAR: &str = "JWT_SECRET";

const HOW_TO_MARK: &str = "If it is a piece of a configuration, put \
    `<!-- example: fragment providers[] -->` (or another path: `rules[]`, `cors`, …) on the line \
    before the block; if keygate must refuse it, `<!-- example: refused FIELD -->`; if it is not \
    a keygate configuration at all, `<!-- example: json -->`";

// Kinds of blocks. Each block is counted under exactly one.
const CONFIG: &str = "json: keygate configuration";
const FRAGMENT: &str = "json: keygate configuration fragment";
const REFUSED: &str = "json: refused keygate configuration";
const PLAIN_JSON: &str = "json: other JSON";
const ENVOY: &str = "yaml: Envoy configuration (envoy --mode validate)";
const KUBERNETES: &str = "yaml: Kubernetes object";
const SHELL: &str = "shell (not checked but for curl bodies)";
const TEXT: &str = "text (not checked but for JSON lines and curl bodies)";
const NGINX: &str = "nginx (not checked)";

// What is checked inside blocks of the kinds above.
const JSON_LINES: &str = "JSON value in text output";
const CURL_BODIES: &str = "curl -d JSON body";
const ENVOY_KEYGATE: &str = "keygate configuration inside Envoy YAML";

/// Kinds the docs have today: none of them may silently drop to zero.
const EXPECTED_KINDS: &[&str] = &[
    CONFIG,
    FRAGMENT,
    REFUSED,
    ENVOY,
    KUBERNETES,
    SHELL,
    TEXT,
    NGINX,
    JSON_LINES,
    CURL_BODIES,
    ENVOY_KEYGATE,
];

/// Files that must be among those checked (others found are checked too).
const EXPECTED_FILES: &[&str] = &[
    "README.md",
    "keyservice/README.md",
    "deploy/README.md",
    "deploy/istio/README.md",
    "bench/README.md",
];

// ---------------------------------------------------------------------------------------------
// Markdown

/// A fenced code block.
struct Block {
    /// `file:line` of the opening fence.
    at: String,
    lang: String,
    /// The `<!-- example: … -->` marker before it, without the comment syntax and `example:`.
    marker: Option<String>,
    text: String,
}

fn marker_of(line: &str) -> Option<String> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    Some(inner.strip_prefix("example:")?.trim().to_owned())
}

/// A block being read: where it started, its fence and what it holds so far.
struct Open {
    start: usize,
    ticks: usize,
    indent: usize,
    lang: String,
    marker: Option<String>,
    text: String,
}

/// The fenced blocks of `markdown`, and what is wrong with its fences and markers.
fn blocks(file: &str, markdown: &str) -> (Vec<Block>, Vec<String>) {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    let stray = |at: usize| format!("{file}:{at}: example marker not followed by a code block");
    let mut marker: Option<(usize, String)> = None;
    let mut open: Option<Open> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start_matches(' ');
        let indent = line.len() - trimmed.len();
        let ticks = trimmed.len() - trimmed.trim_start_matches('`').len();
        if let Some(block) = &mut open {
            if ticks >= block.ticks && trimmed[ticks..].trim().is_empty() {
                out.push(Block {
                    at: format!("{file}:{}", block.start),
                    lang: std::mem::take(&mut block.lang),
                    marker: block.marker.take(),
                    text: std::mem::take(&mut block.text),
                });
                open = None;
            } else {
                // Lines keep their indentation relative to the fence (YAML in a list item).
                block.text.push_str(&line[indent.min(block.indent)..]);
                block.text.push('\n');
            }
        } else if ticks >= 3 {
            open = Some(Open {
                start: number,
                ticks,
                indent,
                lang: trimmed[ticks..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
                marker: marker.take().map(|(_, marker)| marker),
                text: String::new(),
            });
        } else if let Some(found) = marker_of(line) {
            if let Some((at, _)) = marker.replace((number, found)) {
                failures.push(stray(at));
            }
        } else if !line.trim().is_empty()
            && let Some((at, _)) = marker.take()
        {
            failures.push(stray(at));
        }
    }
    if let Some(block) = open {
        failures.push(format!("{file}:{}: code block never closed", block.start));
    }
    if let Some((at, _)) = marker {
        failures.push(stray(at));
    }
    (out, failures)
}

/// Every Markdown file of the repository that git tracks or that is new and not ignored
/// (`git ls-files --cached --others --exclude-standard`), so a new page is checked before it is
/// committed and build output never is; fuzz corpora and third-party trees are left out.
fn markdown_files() -> Vec<PathBuf> {
    let root = testkit::bins::repo_root();
    let output = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
            "--",
            "*.md",
        ])
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("running git ls-files in {}: {err}", root.display()));
    assert!(
        output.status.success(),
        "git ls-files failed in {} ({}): {}",
        root.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = String::from_utf8(output.stdout).expect("git ls-files printed a non-UTF-8 path");
    let mut out: Vec<PathBuf> = listed
        .split('\0')
        .filter(|name| !name.is_empty())
        .filter(|name| {
            !(name.starts_with("fuzz/corpus/")
                || name
                    .split('/')
                    .any(|part| matches!(part, "third_party" | "vendor" | "node_modules")))
        })
        .map(|name| root.join(name))
        // Tracked but deleted in the work tree: nothing to check.
        .filter(|path| path.is_file())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(testkit::bins::repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Checking blocks

/// An Envoy configuration to validate, once every file has been read.
struct EnvoyCheck {
    at: String,
    bootstrap: Value,
}

#[derive(Default)]
struct Checked {
    counts: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
    envoy: Vec<EnvoyCheck>,
}

impl Checked {
    fn count(&mut self, kind: &'static str) {
        *self.counts.entry(kind).or_default() += 1;
    }

    fn fail(&mut self, at: &str, lang: &str, problem: impl std::fmt::Display) {
        let lang = if lang.is_empty() { "unlabelled" } else { lang };
        self.failures
            .push(format!("{at} (```{lang} block): {problem}"));
    }

    /// Checks every block of one Markdown file; `wasm` is the module Envoy configurations load.
    fn file(&mut self, file: &str, markdown: &str, wasm: &Path) {
        let (blocks, failures) = blocks(file, markdown);
        self.failures.extend(failures);
        // The message of the last refused configuration, for the log line that may follow it.
        let mut refusal: Option<String> = None;
        for block in &blocks {
            let previous_refusal = refusal.take();
            if let Some(marker) = &block.marker
                && block.lang != "json"
            {
                self.fail(
                    &block.at,
                    &block.lang,
                    format!("the marker `{marker}` is for json blocks only"),
                );
                continue;
            }
            match block.lang.as_str() {
                "json" => match check_json(block) {
                    Ok((kind, message)) => {
                        self.count(kind);
                        refusal = message;
                    }
                    Err(problem) => self.fail(&block.at, &block.lang, problem),
                },
                "yaml" | "yml" => self.yaml(block, wasm),
                "sh" | "bash" | "shell" => {
                    self.count(SHELL);
                    self.curl_bodies(block);
                }
                "" | "text" | "console" => {
                    self.count(TEXT);
                    self.curl_bodies(block);
                    self.json_lines(block);
                    if let Some(message) = previous_refusal {
                        self.refusal_log(block, &message);
                    }
                }
                "nginx" => self.count(NGINX),
                other => self.fail(
                    &block.at,
                    other,
                    "no check for this language: add it to tests/integration/docs_examples.rs, \
                     as checked or as not checked",
                ),
            }
        }
    }

    /// A log line shown after a refused configuration must be what the filter logs for it.
    fn refusal_log(&mut self, block: &Block, message: &str) {
        const PREFIX: &str = "invalid plugin configuration: ";
        for line in block.text.lines() {
            if let Some((_, shown)) = line.split_once(PREFIX)
                && shown != message
            {
                self.fail(
                    &block.at,
                    &block.lang,
                    format!(
                        "the log line of the refused configuration before it says {shown:?}; \
                         the filter says {message:?}"
                    ),
                );
            }
        }
    }

    /// Every line starting with `{` begins a JSON value (over one line or more) that must parse
    /// and end at a line's end.
    fn json_lines(&mut self, block: &Block) {
        let lines: Vec<&str> = block.text.lines().collect();
        let mut index = 0;
        while index < lines.len() {
            let line = lines[index];
            if !line.trim_start().starts_with('{') || line.contains('…') {
                index += 1;
                continue;
            }
            let rest = lines[index..].join("\n");
            let mut values = serde_json::Deserializer::from_str(&rest).into_iter::<Value>();
            let parsed = values.next();
            let end = values.byte_offset();
            match parsed {
                Some(Ok(_)) if rest[end..].starts_with('\n') || end == rest.len() => {
                    self.count(JSON_LINES);
                    index += rest[..end].lines().count().max(1);
                }
                Some(Ok(_)) => {
                    self.fail(
                        &block.at,
                        &block.lang,
                        format!(
                            "line {} of the block: text after the JSON value on its line",
                            index + 1
                        ),
                    );
                    index += 1;
                }
                Some(Err(err)) => {
                    self.fail(
                        &block.at,
                        &block.lang,
                        format!(
                            "line {} of the block starts with `{{` but is not JSON ({err}); \
                             write `…` in elided output",
                            index + 1
                        ),
                    );
                    index += 1;
                }
                None => index += 1,
            }
        }
    }

    /// The JSON bodies of `curl -d '…'` (and `--data`, `--data-raw`) must parse.
    fn curl_bodies(&mut self, block: &Block) {
        for (number, line) in block.text.lines().enumerate() {
            for flag in ["-d '", "--data '", "--data-raw '"] {
                for (start, _) in line.match_indices(flag) {
                    let quoted = &line[start + flag.len()..];
                    let body = quoted.split('\'').next().unwrap_or_default();
                    if !body.starts_with(['{', '[']) || body.contains('…') {
                        continue;
                    }
                    match serde_json::from_str::<Value>(body) {
                        Ok(_) => self.count(CURL_BODIES),
                        Err(err) => self.fail(
                            &block.at,
                            &block.lang,
                            format!(
                                "line {} of the block: curl body {body:?} is not JSON: {err}",
                                number + 1
                            ),
                        ),
                    }
                }
            }
        }
    }

    fn yaml(&mut self, block: &Block, wasm: &Path) {
        let mut documents = Vec::new();
        for (index, document) in serde_norway::Deserializer::from_str(&block.text).enumerate() {
            match Value::deserialize(document) {
                Ok(Value::Null) => {}
                Ok(value) => documents.push(value),
                Err(err) => {
                    return self.fail(
                        &block.at,
                        &block.lang,
                        format!("YAML document {} does not parse: {err}", index + 1),
                    );
                }
            }
        }
        if documents.is_empty() {
            return self.fail(&block.at, &block.lang, "no YAML document");
        }
        let mut kinds = BTreeSet::new();
        for document in documents {
            let result = if is_bootstrap(&document) {
                kinds.insert(ENVOY);
                self.envoy_keygate(&document, defined_clusters(&document, "static_resources"))
                    .map(|()| document)
                    .and_then(|bootstrap| pointed_at(bootstrap, wasm))
                    .map(Some)
            } else if is_bootstrap_piece(&document) {
                kinds.insert(ENVOY);
                self.envoy_keygate(&document, defined_clusters(&document, ""))
                    .and_then(|()| bootstrap_around(&document))
                    .and_then(|bootstrap| pointed_at(bootstrap, wasm))
                    .map(Some)
            } else if is_connection_manager_piece(&document) {
                kinds.insert(ENVOY);
                bootstrap_with_options(&document)
                    .and_then(|bootstrap| pointed_at(bootstrap, wasm))
                    .map(Some)
            } else if document.get("apiVersion").is_some() && document.get("kind").is_some() {
                kinds.insert(KUBERNETES);
                check_kubernetes(&document).map(|()| None)
            } else {
                Err(
                    "a YAML block must hold an Envoy bootstrap (`static_resources`), a piece of \
                     one (`http_filters`, and `clusters`; or HTTP connection manager options), or \
                     Kubernetes objects (`apiVersion`, `kind`); add a check to \
                     tests/integration/docs_examples.rs for anything else"
                        .to_owned(),
                )
            };
            match result {
                Ok(Some(bootstrap)) => self.envoy.push(EnvoyCheck {
                    at: block.at.clone(),
                    bootstrap,
                }),
                Ok(None) => {}
                Err(problem) => return self.fail(&block.at, &block.lang, problem),
            }
        }
        match <[&str; 1]>::try_from(kinds.into_iter().collect::<Vec<_>>()) {
            Ok([kind]) => self.count(kind),
            Err(_) => self.fail(
                &block.at,
                &block.lang,
                "Envoy configuration and Kubernetes objects in one block; split it",
            ),
        }
    }

    /// The keygate configurations in an Envoy configuration: accepted, and naming only clusters
    /// it defines (a user copies the clusters with the filter).
    fn envoy_keygate(
        &mut self,
        document: &Value,
        clusters: BTreeSet<String>,
    ) -> Result<(), String> {
        let mut configs = Vec::new();
        wasm_configurations(document, &mut configs);
        for text in configs {
            let config = parse_config(text.as_bytes())
                .map_err(|err| format!("its keygate configuration is refused: {err}"))?;
            self.count(ENVOY_KEYGATE);
            let mut named: Vec<&str> = config
                .revocation
                .iter()
                .map(|revocation| revocation.cluster.as_str())
                .collect();
            for provider in &config.providers {
                if let KeyMaterial::Remote(remote) = &provider.keys {
                    named.push(&remote.cluster);
                }
            }
            if let Some(missing) = named.iter().find(|name| !clusters.contains(**name)) {
                return Err(format!(
                    "its keygate configuration names the cluster {missing:?}, which it does not \
                     define (defined: {clusters:?})"
                ));
            }
        }
        Ok(())
    }
}

// ---- JSON: keygate configurations ------------------------------------------------------------

fn secret_from_env(name: &str) -> Option<String> {
    (name == SECRET_VAR).then(|| crate::support::SECRET.to_owned())
}

fn parse_config(json: &[u8]) -> Result<Config, keygate::ConfigError> {
    Config::parse(json, &secret_from_env)
}

/// The kind of a json block, and for a refused configuration the filter's message.
fn check_json(block: &Block) -> Result<(&'static str, Option<String>), String> {
    let value: Value =
        serde_json::from_str(&block.text).map_err(|err| format!("not JSON: {err}"))?;
    let marker = block.marker.as_deref().unwrap_or("");
    let (kind, argument) = marker.split_once(' ').unwrap_or((marker, ""));
    let argument = argument.trim();
    match (kind, argument) {
        ("", _) => parse_config(block.text.as_bytes())
            .map(|_| (CONFIG, None))
            .map_err(|err| {
                format!("not a keygate configuration keygate accepts: {err}. {HOW_TO_MARK}.")
            }),
        ("fragment", path) if !path.is_empty() => {
            let config = spliced(path, value)?;
            parse_config(config.to_string().as_bytes())
                .map(|_| (FRAGMENT, None))
                .map_err(|err| {
                    format!("spliced at `{path}` into {config}, keygate refuses it: {err}")
                })
        }
        ("refused", field) if !field.is_empty() => match parse_config(block.text.as_bytes()) {
            Ok(_) => Err(format!(
                "marked `refused {field}`, but keygate accepts this configuration"
            )),
            Err(err) if err.to_string().contains(&format!("`{field}`")) => {
                Ok((REFUSED, Some(err.to_string())))
            }
            Err(err) => Err(format!(
                "marked `refused {field}`, but keygate refuses it for something else: {err}"
            )),
        },
        ("json", "") => Ok((PLAIN_JSON, None)),
        _ => Err(format!(
            "unknown marker `<!-- example: {marker} -->`. {HOW_TO_MARK}."
        )),
    }
}

/// `fragment` put into a minimal configuration at `path` (`providers[]`, `rules[]`, `cors`).
fn spliced(path: &str, fragment: Value) -> Result<Value, String> {
    let mut config = if path.starts_with("providers") {
        json!({"revocation": {"cluster": "keyservice"}, "providers": []})
    } else {
        json!({"secret": {"env": SECRET_VAR}, "revocation": {"cluster": "keyservice"}})
    };
    let bad =
        || format!("`fragment {path}`: not a path such as `providers[]`, `rules[]` or `cors`");
    let parts: Vec<&str> = path.split('.').collect();
    let (last, parents) = parts.split_last().ok_or_else(bad)?;
    let mut at = &mut config;
    for part in parents {
        if part.is_empty() || part.ends_with("[]") {
            return Err(bad());
        }
        at = at
            .as_object_mut()
            .ok_or_else(bad)?
            .entry(*part)
            .or_insert_with(|| json!({}));
    }
    let object = at.as_object_mut().ok_or_else(bad)?;
    match last.strip_suffix("[]") {
        Some(list) if !list.is_empty() => object
            .entry(list)
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .ok_or_else(bad)?
            .push(fragment),
        Some(_) => return Err(bad()),
        None if last.is_empty() => return Err(bad()),
        None => {
            object.insert((*last).to_owned(), fragment);
        }
    }
    Ok(config)
}

// ---- YAML: Envoy ------------------------------------------------------------------------------

fn is_bootstrap(document: &Value) -> bool {
    document.get("static_resources").is_some() || document.get("dynamic_resources").is_some()
}

/// A piece of a bootstrap as the docs show one: the HTTP filters, and the clusters they use.
fn is_bootstrap_piece(document: &Value) -> bool {
    document.as_object().is_some_and(|object| {
        object.contains_key("http_filters")
            && object
                .keys()
                .all(|key| key == "http_filters" || key == "clusters")
    })
}

/// The names of the clusters under `section` (`static_resources`, or "" for a piece).
fn defined_clusters(document: &Value, section: &str) -> BTreeSet<String> {
    let holder = if section.is_empty() {
        document
    } else {
        &document[section]
    };
    holder["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|cluster| cluster["name"].as_str().map(str::to_owned))
        .collect()
}

/// The keygate configurations (`configuration.value`) of the Wasm filters anywhere in `value`.
fn wasm_configurations<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            if object.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")
                && let Some(text) = value["config"]["configuration"]["value"].as_str()
            {
                out.push(text);
            }
            for child in object.values() {
                wasm_configurations(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| wasm_configurations(item, out)),
        _ => {}
    }
}

/// Every `cluster: NAME` field in `value` (routes, ext_authz's server_uri, …).
fn named_clusters(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("cluster", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    _ => named_clusters(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| named_clusters(item, out)),
        _ => {}
    }
}

fn stub_cluster(name: &str) -> Value {
    cluster(name, SocketAddr::from(([127, 0, 0, 1], 9)))
}

/// HTTP connection manager options a doc may show on their own (docs/paths-and-headers.md).
const CONNECTION_MANAGER_OPTIONS: [&str; 5] = [
    // Routes (to cluster `upstream`, which the bootstrap around them defines), e.g. with
    // keygate's route metadata.
    "route_config",
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "common_http_protocol_options",
];

fn is_connection_manager_piece(document: &Value) -> bool {
    document.as_object().is_some_and(|object| {
        !object.is_empty()
            && object
                .keys()
                .all(|key| CONNECTION_MANAGER_OPTIONS.contains(&key.as_str()))
    })
}

/// A minimal bootstrap whose HTTP connection manager has these options.
fn bootstrap_with_options(options: &Value) -> Result<Value, String> {
    let router = json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    });
    let mut bootstrap = bootstrap_around(&json!({"http_filters": [router]}))?;
    let manager = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"];
    for (key, value) in options.as_object().into_iter().flatten() {
        manager[key] = value.clone();
    }
    Ok(bootstrap)
}

/// A minimal bootstrap around a piece: one listener whose HTTP connection manager has the
/// piece's filters and routes to `upstream`, the piece's clusters, and stubs for the clusters it
/// names without defining (ext_authz's `keyservice`, say).
fn bootstrap_around(piece: &Value) -> Result<Value, String> {
    let filters = piece["http_filters"]
        .as_array()
        .ok_or("`http_filters` is not a list")?;
    let mut clusters: Vec<Value> = match piece.get("clusters") {
        None => Vec::new(),
        Some(Value::Array(clusters)) => clusters.clone(),
        Some(_) => return Err("`clusters` is not a list".to_owned()),
    };
    let defined = defined_clusters(piece, "");
    let mut named = BTreeSet::from(["upstream".to_owned()]);
    named_clusters(&piece["http_filters"], &mut named);
    clusters.extend(named.difference(&defined).map(|name| stub_cluster(name)));
    let routes = json!([{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]);
    Ok(json!({
        "static_resources": {
            "listeners": [http_listener("docs", routes, filters.clone())],
            "clusters": clusters
        }
    }))
}

/// `bootstrap` with every Wasm module path ending in `keygate.wasm` pointed at the built module
/// (the docs show the path in a container, `/etc/envoy/keygate.wasm`).
fn pointed_at(mut bootstrap: Value, wasm: &Path) -> Result<Value, String> {
    fn walk(value: &mut Value, wasm: &Path, problems: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    match child {
                        Value::String(path) if key == "filename" && path.ends_with(".wasm") => {
                            if path.ends_with("keygate.wasm") {
                                *path = wasm.display().to_string();
                            } else {
                                problems.push(format!("unexpected Wasm module {path:?}"));
                            }
                        }
                        _ => walk(child, wasm, problems),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, wasm, problems)),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    walk(&mut bootstrap, wasm, &mut problems);
    if problems.is_empty() {
        Ok(bootstrap)
    } else {
        Err(problems.join("; "))
    }
}

/// Runs `envoy --mode validate` on each configuration, side by side (each loads a V8 VM).
fn envoy_validate(checks: Vec<EnvoyCheck>, envoy: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel();
    let count = checks.len();
    for (index, check) in checks.into_iter().enumerate() {
        let file = dir.path().join(format!("bootstrap-{index}.json"));
        fs::write(
            &file,
            serde_json::to_string_pretty(&check.bootstrap).unwrap(),
        )
        .unwrap();
        let (tx, envoy) = (tx.clone(), envoy.to_owned());
        thread::spawn(move || {
            let child = Command::new(&envoy)
                .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
                .arg(&file)
                .env(SECRET_VAR, crate::support::SECRET)
                .current_dir(testkit::bins::repo_root())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|err| panic!("starting {}: {err}", envoy.display()));
            let output =
                testkit::process::wait_output(child, ENVOY_TIMEOUT, "envoy --mode validate");
            let _ = tx.send((check.at, file, output));
        });
    }
    drop(tx);
    let mut failures = Vec::new();
    let mut validated = 0;
    for (at, file, output) in rx {
        validated += 1;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Envoy prints "configuration '<file>' OK" and exits 0 when the bootstrap is valid.
        if !(output.status.success() && stdout.contains("' OK")) {
            let log = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            failures.push(format!(
                "{at} (```yaml block): envoy --mode validate refuses it ({}; the bootstrap \
                 tested, with the module path rewritten, was {}):\n{}",
                output.status,
                file.display(),
                tail.join("\n")
            ));
        }
    }
    assert_eq!(validated, count, "an envoy validation thread died");
    if !failures.is_empty() {
        // Keep the bootstraps for the reader of the failure.
        let _ = dir.keep();
    }
    failures
}

// ---- YAML: Kubernetes --------------------------------------------------------------------------

/// Reads `object` as the Kubernetes type `T` and writes it back: a misspelt field is dropped on
/// the way (and a wrong type refused), so any difference is a mistake (as `deploy` does).
fn strict_typed<T>(object: &Value) -> Result<(), String>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let diff = round_trip_losses::<T>(object)?;
    if diff.is_empty() {
        Ok(())
    } else {
        Err(format!("fields its type does not have: {diff:?}"))
    }
}

/// Fields that `object` has and `known` does not.
fn unknown_fields(object: &Value, known: &[&str], what: &str) -> Result<(), String> {
    let object = object
        .as_object()
        .ok_or_else(|| format!("`{what}` is not a mapping"))?;
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(format!("`{what}.{key}` is not a field (known: {known:?})")),
        None => Ok(()),
    }
}

fn one_of(value: &Value, allowed: &[&str], what: &str) -> Result<(), String> {
    match value.as_str() {
        Some(text) if allowed.contains(&text) => Ok(()),
        _ => Err(format!("`{what}` is {value}, not one of {allowed:?}")),
    }
}

/// Istio's ServiceEntry (networking.istio.io), against the fields of its API.
fn check_service_entry(object: &Value) -> Result<(), String> {
    unknown_fields(object, &["apiVersion", "kind", "metadata", "spec"], "")?;
    let spec = &object["spec"];
    unknown_fields(
        spec,
        &[
            "hosts",
            "addresses",
            "ports",
            "location",
            "resolution",
            "endpoints",
            "workloadSelector",
            "exportTo",
            "subjectAltNames",
        ],
        "spec",
    )?;
    let hosts = spec["hosts"].as_array().filter(|hosts| !hosts.is_empty());
    if !hosts.is_some_and(|hosts| hosts.iter().all(Value::is_string)) {
        return Err("`spec.hosts` must be a non-empty list of host names".to_owned());
    }
    if !spec["location"].is_null() {
        one_of(
            &spec["location"],
            &["MESH_EXTERNAL", "MESH_INTERNAL"],
            "spec.location",
        )?;
    }
    if !spec["resolution"].is_null() {
        one_of(
            &spec["resolution"],
            &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"],
            "spec.resolution",
        )?;
    }
    for (index, port) in spec["ports"].as_array().into_iter().flatten().enumerate() {
        let what = format!("spec.ports[{index}]");
        unknown_fields(port, &["number", "protocol", "name", "targetPort"], &what)?;
        if !port["number"]
            .as_u64()
            .is_some_and(|number| (1..=65535).contains(&number))
        {
            return Err(format!("`{what}.number` must be a port number"));
        }
        one_of(
            &port["protocol"],
            &["HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"],
            &format!("{what}.protocol"),
        )?;
        if !port["name"].is_string() {
            return Err(format!("`{what}.name` is required"));
        }
    }
    Ok(())
}

/// Istio's VirtualService, against the fields of its API; every HTTP route named (the name is
/// what an EnvoyFilter selects it by).
fn check_virtual_service(object: &Value) -> Result<(), String> {
    unknown_fields(object, &["apiVersion", "kind", "metadata", "spec"], "")?;
    let spec = &object["spec"];
    unknown_fields(
        spec,
        &["hosts", "gateways", "http", "tls", "tcp", "exportTo"],
        "spec",
    )?;
    for (index, route) in spec["http"].as_array().into_iter().flatten().enumerate() {
        let what = format!("spec.http[{index}]");
        unknown_fields(
            route,
            &[
                "name",
                "match",
                "route",
                "redirect",
                "directResponse",
                "delegate",
                "rewrite",
                "timeout",
                "retries",
                "fault",
                "mirror",
                "mirrors",
                "corsPolicy",
                "headers",
            ],
            &what,
        )?;
        if !route["name"].is_string() {
            return Err(format!(
                "`{what}.name` is what an EnvoyFilter selects the route by; set it"
            ));
        }
        for (index, destination) in route["route"].as_array().into_iter().flatten().enumerate() {
            unknown_fields(
                destination,
                &["destination", "weight", "headers"],
                &format!("{what}.route[{index}]"),
            )?;
        }
    }
    Ok(())
}

/// Istio's EnvoyFilter, against the fields of its API; a route patch that carries keygate's
/// metadata names a requirement as a string.
fn check_envoy_filter(object: &Value) -> Result<(), String> {
    unknown_fields(object, &["apiVersion", "kind", "metadata", "spec"], "")?;
    let spec = &object["spec"];
    unknown_fields(
        spec,
        &[
            "workloadSelector",
            "targetRefs",
            "configPatches",
            "priority",
        ],
        "spec",
    )?;
    let patches = spec["configPatches"].as_array().filter(|p| !p.is_empty());
    for (index, patch) in patches
        .ok_or("`spec.configPatches` is empty")?
        .iter()
        .enumerate()
    {
        let what = format!("spec.configPatches[{index}]");
        unknown_fields(patch, &["applyTo", "match", "patch"], &what)?;
        one_of(
            &patch["applyTo"],
            &[
                "LISTENER",
                "FILTER_CHAIN",
                "NETWORK_FILTER",
                "HTTP_FILTER",
                "ROUTE_CONFIGURATION",
                "VIRTUAL_HOST",
                "HTTP_ROUTE",
                "CLUSTER",
                "EXTENSION_CONFIG",
                "BOOTSTRAP",
                "LISTENER_FILTER",
            ],
            &format!("{what}.applyTo"),
        )?;
        if !patch["match"].is_null() {
            unknown_fields(
                &patch["match"],
                &[
                    "context",
                    "proxy",
                    "listener",
                    "routeConfiguration",
                    "cluster",
                ],
                &format!("{what}.match"),
            )?;
            one_of(
                &patch["match"]["context"],
                &["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"],
                &format!("{what}.match.context"),
            )?;
        }
        unknown_fields(
            &patch["patch"],
            &["operation", "value", "filterClass"],
            &format!("{what}.patch"),
        )?;
        let keygate = &patch["patch"]["value"]["metadata"]["filter_metadata"]["keygate"];
        if !keygate.is_null() {
            unknown_fields(
                keygate,
                &["requirement"],
                &format!("{what}.patch.value.metadata.filter_metadata.keygate"),
            )?;
            if !keygate["requirement"].is_string() || patch["applyTo"] != "HTTP_ROUTE" {
                return Err(format!(
                    "`{what}`: keygate's route metadata is a `requirement` string on an HTTP_ROUTE"
                ));
            }
        }
    }
    Ok(())
}

fn check_kubernetes(object: &Value) -> Result<(), String> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{
        ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
    };

    let (Some(api_version), Some(kind), Some(_)) = (
        object["apiVersion"].as_str(),
        object["kind"].as_str(),
        object["metadata"]["name"].as_str(),
    ) else {
        return Err("a Kubernetes object needs apiVersion, kind and metadata.name".to_owned());
    };
    let result = match (api_version, kind) {
        ("v1", "Namespace") => strict_typed::<Namespace>(object),
        ("v1", "Secret") => strict_typed::<Secret>(object),
        ("v1", "ConfigMap") => strict_typed::<ConfigMap>(object),
        ("v1", "ServiceAccount") => strict_typed::<ServiceAccount>(object),
        ("v1", "Service") => strict_typed::<Service>(object),
        ("v1", "PersistentVolumeClaim") => strict_typed::<PersistentVolumeClaim>(object),
        ("apps/v1", "Deployment") => strict_typed::<Deployment>(object),
        ("networking.istio.io/v1" | "networking.istio.io/v1beta1", "ServiceEntry") => {
            check_service_entry(object)
        }
        ("networking.istio.io/v1" | "networking.istio.io/v1beta1", "VirtualService") => {
            check_virtual_service(object)
        }
        ("networking.istio.io/v1alpha3", "EnvoyFilter") => check_envoy_filter(object),
        _ => {
            Err("no check for this kind: add one to tests/integration/docs_examples.rs".to_owned())
        }
    };
    result.map_err(|err| format!("{api_version} {kind}: {err}"))
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn every_example_in_the_docs_is_valid() {
    let wasm = testkit::bins::keygate_wasm();
    let files = markdown_files();
    let names: BTreeSet<String> = files.iter().map(|path| relative(path)).collect();
    for expected in EXPECTED_FILES {
        assert!(
            names.contains(*expected),
            "{expected} was not found among the Markdown files: {names:?}"
        );
    }
    let mut checked = Checked::default();
    for path in &files {
        let text = fs::read_to_string(path).unwrap();
        checked.file(&relative(path), &text, &wasm);
    }
    let envoy = std::mem::take(&mut checked.envoy);
    let envoy_count = envoy.len();
    checked
        .failures
        .extend(envoy_validate(envoy, &testkit::bins::envoy()));

    println!("checked the code blocks of {} Markdown files:", files.len());
    for (kind, count) in &checked.counts {
        println!("  {count:4}  {kind}");
    }
    println!("  ({envoy_count} Envoy configurations through envoy --mode validate)");
    assert!(
        checked.failures.is_empty(),
        "{} example(s) in the docs are wrong:\n\n{}",
        checked.failures.len(),
        checked.failures.join("\n\n")
    );
    let missing: Vec<&str> = EXPECTED_KINDS
        .iter()
        .copied()
        .filter(|kind| checked.counts.get(kind).copied().unwrap_or(0) == 0)
        .collect();
    assert!(
        missing.is_empty(),
        "no block of these kinds was found, though the docs had them: {missing:?}. A block is \
         no longer recognised (a changed language or marker?) or was removed; if removed on \
         purpose, drop the kind from EXPECTED_KINDS."
    );
}

/// The checker itself: each way an example can be wrong is reported, at the block's line.
#[test]
fn the_checker_reports_wrong_examples() {
    let wasm = Path::new("/nowhere/keygate.wasm");
    let check = |markdown: &str| {
        let mut checked = Checked::default();
        checked.file("doc.md", markdown, wasm);
        checked
    };
    let failure = |markdown: &str| {
        let checked = check(markdown);
        assert_eq!(
            checked.failures.len(),
            1,
            "{markdown}\n{:?}",
            checked.failures
        );
        checked.failures[0].clone()
    };
    let config = r#"{"secret": {"env": "JWT_SECRET"}, "revocation": {"cluster": "k"}}"#;

    let accepted = check(&format!("text\n\n```json\n{config}\n```\n"));
    assert!(accepted.failures.is_empty(), "{:?}", accepted.failures);
    assert_eq!(accepted.counts[CONFIG], 1);

    // An unmarked piece of a configuration fails, saying how to mark it.
    let provider = r#"{"name": "p", "secret": {"env": "JWT_SECRET"}}"#;
    let message = failure(&format!("a\n\n```json\n{provider}\n```\n"));
    assert!(message.starts_with("doc.md:3 (```json block)"), "{message}");
    assert!(
        message.contains("<!-- example: fragment providers[] -->"),
        "{message}"
    );
    // Marked, it is spliced in and accepted.
    let marked = check(&format!(
        "<!-- example: fragment providers[] -->\n```json\n{provider}\n```\n"
    ));
    assert!(marked.failures.is_empty(), "{:?}", marked.failures);
    assert_eq!(marked.counts[FRAGMENT], 1);
    let rule = r#"{"match": {"prefix": "/a/"}, "action": "deny"}"#;
    let marked = check(&format!(
        "<!-- example: fragment rules[] -->\n\n```json\n{rule}\n```\n"
    ));
    assert!(marked.failures.is_empty(), "{:?}", marked.failures);
    // A wrong fragment fails.
    let message = failure(&format!(
        "<!-- example: fragment providers[] -->\n```json\n{}\n```\n",
        r#"{"name": "p", "secret": {"env": "JWT_SECRET"}, "strip_authorization": true}"#
    ));
    assert!(message.contains("strip_authorization"), "{message}");

    // A refused example must be refused, for the field it names.
    let timeout =
        r#"{"secret": {"env": "JWT_SECRET"}, "revocation": {"cluster": "k", "timeout_ms": 0}}"#;
    let refused = check(&format!(
        "<!-- example: refused revocation.timeout_ms -->\n```json\n{timeout}\n```\n"
    ));
    assert!(refused.failures.is_empty(), "{:?}", refused.failures);
    assert_eq!(refused.counts[REFUSED], 1);
    let message = failure(&format!(
        "<!-- example: refused revocation.timeout_ms -->\n```json\n{config}\n```\n"
    ));
    assert!(message.contains("keygate accepts"), "{message}");
    let message = failure(&format!(
        "<!-- example: refused realm -->\n```json\n{timeout}\n```\n"
    ));
    assert!(message.contains("for something else"), "{message}");
    // The log line shown after it must be the filter's.
    let message = failure(&format!(
        "<!-- example: refused revocation.timeout_ms -->\n```json\n{timeout}\n```\n\n```\n\
         wasm log keygate keygate: invalid plugin configuration: `revocation.timeout_ms`: wrong\n```\n"
    ));
    assert!(message.contains("the filter says"), "{message}");

    // Markers: unknown, stray, or on another language.
    assert!(
        failure(&format!("<!-- example: frag -->\n```json\n{config}\n```\n"))
            .contains("unknown marker")
    );
    assert!(failure("<!-- example: json -->\n\ntext\n").contains("not followed by a code block"));
    assert!(failure("<!-- example: json -->\n```sh\nls\n```\n").contains("json blocks only"));

    // JSON in text output and curl bodies.
    let message = failure("```\n$ curl -d '{\"a\": 1,}' x\n{\"ok\": true}\n```\n");
    assert!(message.contains("curl body"), "{message}");
    let message = failure("```\nHTTP/1.1 200 OK\n\n{\"id\": \"x\",\n```\n");
    assert!(message.contains("line 3 of the block"), "{message}");
    let text = check("```\n{\"a\":\n 1}\n{\"elided\": …}\n```\n");
    assert!(text.failures.is_empty(), "{:?}", text.failures);
    assert_eq!(text.counts[JSON_LINES], 1);

    // YAML: unknown shapes and kinds, a keygate configuration naming an undefined cluster.
    assert!(failure("```yaml\nfoo: 1\n```\n").contains("a YAML block must hold"));
    assert!(
        failure(
            "```yaml\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {portz: []}\n```\n"
        )
        .contains("fields its type does not have")
    );
    // Istio's routing kinds: a VirtualService route without a name, keygate's route metadata
    // anywhere but on an HTTP_ROUTE or not a string.
    let message = failure(
        "```yaml\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n\
         spec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n```\n",
    );
    assert!(message.contains("`spec.http[0].name`"), "{message}");
    let envoy_filter = |apply_to: &str, requirement: &str| {
        format!(
            "```yaml\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: a}}\n\
             spec:\n  configPatches:\n  - applyTo: {apply_to}\n    match: {{context: GATEWAY}}\n    \
             patch: {{operation: MERGE, value: {{metadata: {{filter_metadata: {{keygate: {{requirement: {requirement}}}}}}}}}}}\n```\n"
        )
    };
    let fine = check(&envoy_filter("HTTP_ROUTE", "dashboard"));
    assert!(fine.failures.is_empty(), "{:?}", fine.failures);
    assert!(failure(&envoy_filter("VIRTUAL_HOST", "dashboard")).contains("on an HTTP_ROUTE"));
    assert!(failure(&envoy_filter("HTTP_ROUTE", "[a]")).contains("`requirement` string"));
    assert!(failure(&envoy_filter("HTTP_ROOT", "a")).contains("applyTo"));

    let piece = r#"```yaml
http_filters:
- name: keygate
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      configuration:
        "@type": type.googleapis.com/google.protobuf.StringValue
        value: '{"secret": {"env": "JWT_SECRET"}, "revocation": {"cluster": "keyservice"}}'
      vm_config: {code: {local: {filename: /etc/envoy/keygate.wasm}}}
```
"#;
    assert!(failure(piece).contains("does not define"));
    let defined = format!(
        "{}clusters: [{{name: keyservice}}]\n```\n",
        piece.trim_end_matches("```\n")
    );
    let checked = check(&defined);
    assert!(checked.failures.is_empty(), "{:?}", checked.failures);
    let bootstrap = &checked.envoy[0].bootstrap;
    let listener = &bootstrap["static_resources"]["listeners"][0];
    let manager = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(
        manager["http_filters"][0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"],
        "/nowhere/keygate.wasm"
    );
    let clusters = defined_clusters(bootstrap, "static_resources");
    assert_eq!(
        clusters,
        BTreeSet::from(["keyservice".to_owned(), "upstream".to_owned()])
    );

    // A language with no check, and a block never closed.
    assert!(failure("```python\nprint()\n```\n").contains("no check for this language"));
    assert!(failure("```json\n{}\n").contains("never closed"));
}
