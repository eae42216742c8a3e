//! The ways users deploy keygate, checked offline (no Docker engine, no cluster, no registry):
//!
//! - every Envoy configuration in the repository passes the real Envoy's `--mode validate`,
//!   which loads the built filter and runs its configuration check;
//! - the docker-compose rig (deploy/compose/) is parsed and validated by the compose tool itself
//!   (`docker compose` or Debian's `docker-compose`, installed by `make tools`), and agrees with
//!   its Envoy configuration and deploy/Dockerfile (dev-idp's issuer, audience and keys, the
//!   requirement of each route, which its Envoy decides in a real run); the images' healthcheck
//!   works against a real keyservice; nothing in deploy/ runs keyservice trusting identity headers;
//! - the Kubernetes and Istio manifests (deploy/kubernetes/, deploy/istio/) are Kubernetes
//!   objects of known kinds (core kinds through k8s-openapi's types, strictly; Istio's security
//!   kinds against their fields), the WasmPlugin passes the CRD's openAPIV3Schema and its CEL
//!   rules, its pluginConfig is a valid keygate configuration, and the pieces refer to each other
//!   correctly; keyservice's NetworkPolicies admit exactly the edge, and its AuthorizationPolicy,
//!   evaluated for each caller, lets only the ingress gateway manage keys;
//! - `make oci`'s image layout is Istio's "compat" Wasm image of the built filter, and skopeo
//!   reads and copies it.
//!
//! A missing tool fails the test with what to install; nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use testkit::bins;

use crate::support::round_trip::round_trip_losses;

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// The namespace of the Kubernetes and Istio example.
const NAMESPACE: &str = "keygate";
/// What the filter reads its secret from, in every shipped configuration.
const SECRET_VAR: &str = "JWT_SECRET";
/// The user the runtime images run as (deploy/Dockerfile) and the manifests expect.
const IMAGE_UID: i64 = 10001;

// ---------------------------------------------------------------------------------------------
// Files

fn root() -> PathBuf {
    testkit::bins::repo_root()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// Every document of a YAML file (empty ones dropped), as JSON values.
fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .enumerate()
        .map(|(index, document)| {
            Value::deserialize(document)
                .unwrap_or_else(|err| panic!("{what}: document {}: {err}", index + 1))
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn yaml_file(relative: &str) -> Vec<Value> {
    yaml_documents(&read(relative), relative)
}

/// Files under the repository with one of `extensions`, skipping build output, the venv and VCS.
fn repo_files(extensions: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(
                    name.as_str(),
                    "target" | ".venv" | ".git" | ".run" | "node_modules"
                ) {
                    walk(&path, extensions, out);
                }
            } else if extensions
                .iter()
                .any(|ext| name.ends_with(&format!(".{ext}")))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), extensions, &mut out);
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `a.b.c` in a JSON value (numeric segments index arrays).
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |value, key| match value {
        Value::Array(items) => key
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get(index))
            .unwrap_or(&Value::Null),
        _ => value.get(key).unwrap_or(&Value::Null),
    })
}

fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string in {value:#}"))
}

fn run(command: &mut Command, what: &str) -> testkit::process::Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("starting {what} ({command:?}): {err}"));
    testkit::process::wait_output(child, TOOL_TIMEOUT, what)
}

fn describe(output: &testkit::process::Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Fails with an install hint when `program` cannot run at all.
fn require_tool(program: &str, args: &[&str], hint: &str) {
    let works = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        works,
        "`{program}` is needed by this test and is not on PATH (or fails). {hint}"
    );
}

// ---------------------------------------------------------------------------------------------
// Envoy configurations

/// An Envoy bootstrap: a top-level mapping with Envoy's resource sections.
fn is_envoy_bootstrap(document: &Value) -> bool {
    document.get("static_resources").is_some() || document.get("dynamic_resources").is_some()
}

/// The Wasm filters of a bootstrap: (the filter object's `config`).
fn wasm_filter_configs(bootstrap: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for listener in at(bootstrap, "static_resources.listeners")
        .as_array()
        .into_iter()
        .flatten()
    {
        for chain in listener["filter_chains"].as_array().into_iter().flatten() {
            for filter in chain["filters"].as_array().into_iter().flatten() {
                for http_filter in at(filter, "typed_config.http_filters")
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let typed = &http_filter["typed_config"];
                    if typed["@type"]
                        == "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
                    {
                        out.push(&typed["config"]);
                    }
                }
            }
        }
    }
    out
}

struct EnvoyConfig {
    path: PathBuf,
    document: Value,
}

/// Every Envoy configuration shipped in the repository.
fn envoy_configs() -> Vec<EnvoyConfig> {
    let configs: Vec<EnvoyConfig> = repo_files(&["yaml", "yml", "json"])
        .into_iter()
        .filter_map(|path| {
            let text = fs::read_to_string(&path).ok()?;
            // Files of other formats that happen to fail YAML parsing are not Envoy's.
            let documents: Vec<Value> = serde_norway::Deserializer::from_str(&text)
                .map(Value::deserialize)
                .collect::<Result<_, _>>()
                .ok()?;
            let [document] = <[Value; 1]>::try_from(documents).ok()?;
            is_envoy_bootstrap(&document).then_some(EnvoyConfig { path, document })
        })
        .collect();
    let found: BTreeSet<String> = configs.iter().map(|c| relative(&c.path)).collect();
    for expected in [
        "envoy/envoy.yaml",
        "deploy/compose/envoy.yaml",
        "deploy/envoy/minimal.yaml",
        "deploy/envoy/requirements.yaml",
    ] {
        assert!(
            found.contains(expected),
            "{expected} was not recognised as an Envoy configuration; found {found:?}"
        );
    }
    configs
}

/// The configuration file Envoy should validate: the original, or a copy in `dir` whose Wasm
/// module paths that only exist in a container (absolute, missing here) point at the built
/// filter. Relative paths are left alone: Envoy runs from the repository root.
fn validatable_copy(config: &EnvoyConfig, wasm: &Path, dir: &Path) -> PathBuf {
    let mut text = fs::read_to_string(&config.path).unwrap();
    let mut rewritten = false;
    for filter in wasm_filter_configs(&config.document) {
        let filename = str_at(filter, "vm_config.code.local.filename");
        if Path::new(filename).is_absolute() && !Path::new(filename).exists() {
            assert!(
                filename.ends_with("keygate.wasm"),
                "{}: unexpected Wasm module path {filename}",
                relative(&config.path)
            );
            text = text.replace(filename, &wasm.display().to_string());
            rewritten = true;
        }
    }
    if !rewritten {
        return config.path.clone();
    }
    let name = relative(&config.path).replace('/', "_");
    let copy = dir.join(name);
    fs::write(&copy, text).unwrap();
    copy
}

fn envoy_validate(envoy: &Path, config: &Path, secret: Option<&str>) -> testkit::process::Output {
    let mut command = Command::new(envoy);
    command
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(config)
        .current_dir(root());
    match secret {
        Some(secret) => command.env(SECRET_VAR, secret),
        None => command.env_remove(SECRET_VAR),
    };
    run(&mut command, "envoy --mode validate")
}

#[test]
fn every_envoy_config_in_the_repository_passes_envoy_validate() {
    let (envoy, wasm) = (bins::envoy(), bins::keygate_wasm());
    let dir = tempfile::tempdir().unwrap();
    let configs = envoy_configs();
    // Each validation starts a V8 VM and takes seconds: run them side by side.
    let (tx, rx) = mpsc::channel();
    for config in &configs {
        let file = validatable_copy(config, &wasm, dir.path());
        let (tx, envoy, name) = (tx.clone(), envoy.clone(), relative(&config.path));
        thread::spawn(move || {
            let output = envoy_validate(&envoy, &file, Some(crate::support::SECRET));
            let _ = tx.send((name, output));
        });
    }
    drop(tx);
    let mut failures = Vec::new();
    let mut validated = 0;
    for (name, output) in rx {
        validated += 1;
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Envoy prints "configuration '<file>' OK" and exits 0 when the bootstrap is valid.
        if !(output.status.success() && stdout.contains("' OK")) {
            failures.push(format!("{name}: {}", describe(&output)));
        }
    }
    assert_eq!(validated, configs.len(), "a validation thread died");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The validation above is not a formality: it loads the filter, whose configuration check
/// needs JWT_SECRET. Without it, the same file is refused.
#[test]
fn envoy_validate_runs_the_filters_configuration_check() {
    let output = envoy_validate(
        &bins::envoy(),
        &root().join("deploy/envoy/minimal.yaml"),
        None,
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        log.contains("Unable to create Wasm plugin keygate") && !log.contains("' OK"),
        "Envoy accepted keygate without JWT_SECRET: {}",
        describe(&output)
    );
}

/// The values of every `cluster` field in a keygate configuration.
fn collect_clusters(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("cluster", Value::String(cluster)) => out.push(cluster.clone()),
                    _ => collect_clusters(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_clusters(item, out)),
        _ => {}
    }
}

#[test]
fn every_shipped_keygate_config_parses_and_names_a_cluster_of_its_envoy() {
    let env = |name: &str| (name == SECRET_VAR).then(|| crate::support::SECRET.to_owned());
    for config in envoy_configs() {
        let name = relative(&config.path);
        let filters = wasm_filter_configs(&config.document);
        assert_eq!(filters.len(), 1, "{name}: expected one Wasm filter");
        let filter = filters[0];
        assert_eq!(filter["root_id"], "keygate", "{name}");
        assert_eq!(
            filter["vm_config"]["runtime"], "envoy.wasm.runtime.v8",
            "{name}"
        );
        let host_env = at(filter, "vm_config.environment_variables.host_env_keys");
        assert!(
            host_env
                .as_array()
                .is_some_and(|keys| keys.contains(&json!(SECRET_VAR))),
            "{name}: {SECRET_VAR} must reach the VM: host_env_keys = {host_env}"
        );
        // fail_open (true) would let requests through when the VM fails.
        assert!(
            filter.get("fail_open").is_none_or(|v| v == false),
            "{name}: fail_open must stay false"
        );
        let text = str_at(filter, "configuration.value");
        if let Err(err) = keygate::Config::parse(text.as_bytes(), &env) {
            panic!("{name}: keygate refuses its configuration: {err}");
        }
        let plugin: Value = serde_json::from_str(text).unwrap();
        let clusters: Vec<&str> = at(&config.document, "static_resources.clusters")
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        // Every cluster the filter calls out to (revocation, remote JWKS) is one of Envoy's.
        let mut called = Vec::new();
        collect_clusters(&plugin, &mut called);
        assert!(!called.is_empty(), "{name}: the filter names no cluster");
        for cluster in called {
            assert!(
                clusters.contains(&cluster.as_str()),
                "{name}: the filter's cluster {cluster:?} is not one of {clusters:?}"
            );
        }
        // The http filter chain: keygate strictly before the router.
        let listeners = at(&config.document, "static_resources.listeners");
        let chain: Vec<&str> = at(
            listeners,
            "0.filter_chains.0.filters.0.typed_config.http_filters",
        )
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
        assert_eq!(
            chain.last(),
            Some(&"envoy.filters.http.router"),
            "{name}: {chain:?}"
        );
        assert!(chain.contains(&"keygate"), "{name}: {chain:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// docker-compose

/// The compose command: `docker compose` (v2 plugin) if it works, else `docker-compose`.
fn compose_command() -> Command {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if v2 {
        let mut command = Command::new("docker");
        command.arg("compose");
        return command;
    }
    require_tool(
        "docker-compose",
        &["version"],
        "Install it with `make tools` (Debian's docker-compose package); `config` needs no \
         Docker engine.",
    );
    Command::new("docker-compose")
}

/// `compose config` of deploy/compose/ (with `env_file` as --env-file), parsed. The result is
/// the compose tool's own reading of the file: interpolated, with paths made absolute.
fn compose_config(env_file: Option<&str>) -> Value {
    let mut command = compose_command();
    if let Some(env_file) = env_file {
        command.args(["--env-file", env_file]);
    }
    command
        .args(["--file", "compose.yaml", "config"])
        .current_dir(root().join("deploy/compose"));
    // The defaults in the file, not whatever the caller's shell has.
    for var in [
        "JWT_SECRET",
        "KEYSERVICE_ADMIN_TOKEN",
        "KEYSERVICE_DATABASE_URL",
        "KEYSERVICE_CACHE_ACTIVE_SECONDS",
        "COMPOSE_PROFILES",
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
    ] {
        command.env_remove(var);
    }
    let output = run(&mut command, "compose config");
    assert!(
        output.status.success(),
        "the compose tool refuses deploy/compose/compose.yaml ({}): {}",
        env_file.unwrap_or("default env"),
        describe(&output)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut documents = yaml_documents(&text, "compose config output");
    assert_eq!(documents.len(), 1, "{text}");
    documents.remove(0)
}

/// A service's volumes as (source, target, read_only), from the short or the long syntax.
fn volumes(service: &Value) -> Vec<(String, String, bool)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|volume| match volume {
            Value::String(short) => {
                let parts: Vec<&str> = short.split(':').collect();
                (
                    parts[0].to_owned(),
                    parts.get(1).copied().unwrap_or_default().to_owned(),
                    parts
                        .get(2)
                        .is_some_and(|mode| mode.split(',').any(|m| m == "ro")),
                )
            }
            long => (
                long["source"].as_str().unwrap_or_default().to_owned(),
                long["target"].as_str().unwrap_or_default().to_owned(),
                long["read_only"] == true,
            ),
        })
        .collect()
}

/// The bind mount of `service` whose target is `target`: its source.
fn mount_source(service: &Value, target: &str) -> PathBuf {
    let (source, _, read_only) = volumes(service)
        .into_iter()
        .find(|(_, t, _)| t == target)
        .unwrap_or_else(|| panic!("nothing is mounted on {target}: {:?}", volumes(service)));
    assert!(read_only, "{target} should be mounted read-only");
    PathBuf::from(source)
}

fn env_of<'a>(service: &'a Value, name: &str) -> &'a str {
    service["environment"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {:#}", service["environment"]))
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {address:?}"))
}

/// The Envoy version line the tests run (ENVOY_VERSION in the Makefile), e.g. "1.40".
fn envoy_version_line() -> String {
    let makefile = read("Makefile");
    let version = makefile
        .lines()
        .find_map(|line| line.strip_prefix("ENVOY_VERSION := "))
        .expect("ENVOY_VERSION in the Makefile")
        .trim();
    let mut parts = version.split('.');
    format!("{}.{}", parts.next().unwrap(), parts.next().unwrap())
}

/// Which services `compose up` starts with the given profiles active.
fn started_services(config: &Value, profiles: &[&str]) -> BTreeSet<String> {
    config["services"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, service)| {
            let own: Vec<&str> = service["profiles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            own.is_empty() || own.iter().any(|p| profiles.contains(p))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn compose_file_is_valid_and_wires_envoy_keyservice_and_echo() {
    let config = compose_config(None);
    let services = &config["services"];
    assert_eq!(
        started_services(&config, &[]),
        BTreeSet::from([
            "envoy".into(),
            "keyservice".into(),
            "echo".into(),
            "dev-idp".into()
        ]),
        "`docker compose up` should start Envoy, keyservice, echo and dev-idp: {services:#}"
    );

    // Envoy: the official image, of the line the tests run, with the filter and its config.
    let envoy = &services["envoy"];
    let image = str_at(envoy, "image");
    let line = envoy_version_line();
    assert!(
        image.starts_with(&format!("envoyproxy/envoy:v{line}."))
            || image == format!("envoyproxy/envoy:v{line}-latest"),
        "Envoy image {image} is not of the {line} line the tests use"
    );
    let command: Vec<&str> = envoy["command"]
        .as_array()
        .expect("Envoy's command, as a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = command
        .iter()
        .position(|arg| *arg == "--config-path" || *arg == "-c")
        .map(|i| command[i + 1])
        .expect("Envoy's --config-path");
    assert_eq!(
        mount_source(envoy, config_path),
        root().join("deploy/compose/envoy.yaml")
    );
    let envoy_yaml = yaml_file("deploy/compose/envoy.yaml").remove(0);
    let wasm_in_container = Path::new(str_at(
        wasm_filter_configs(&envoy_yaml)[0],
        "vm_config.code.local.filename",
    ));
    let wasm_dir = wasm_in_container.parent().unwrap().to_str().unwrap();
    assert_eq!(
        mount_source(envoy, wasm_dir).join(wasm_in_container.file_name().unwrap()),
        root().join("target/wasm32-wasip1/release/keygate.wasm"),
        "the filter `make wasm` builds must be mounted where deploy/compose/envoy.yaml loads it"
    );
    for port in ["10000", "9901"] {
        let published = envoy["ports"].to_string();
        assert!(
            published.contains(port),
            "Envoy does not publish {port}: {published}"
        );
    }

    // Envoy waits for keyservice, echo and dev-idp to be healthy (their images' healthchecks).
    for dependency in ["keyservice", "echo", "dev-idp"] {
        assert_eq!(
            at(envoy, &format!("depends_on.{dependency}.condition")),
            "service_healthy",
            "{:#}",
            envoy["depends_on"]
        );
    }

    // The filter and keyservice share the secret.
    let keyservice = &services["keyservice"];
    assert_eq!(env_of(envoy, SECRET_VAR), env_of(keyservice, SECRET_VAR));
    assert!(!env_of(keyservice, "KEYSERVICE_ADMIN_TOKEN").is_empty());
    assert!(
        env_of(keyservice, "DATABASE_URL").starts_with("sqlite:///data/"),
        "by default keyservice keeps SQLite in its volume: {}",
        env_of(keyservice, "DATABASE_URL")
    );
    assert!(
        volumes(keyservice)
            .iter()
            .any(|(_, target, _)| target == "/data"),
        "keyservice's /data should be a volume"
    );

    // Both images come from deploy/Dockerfile, each from its stage.
    let dockerfile = Dockerfile::parse(&read("deploy/Dockerfile"));
    for (service, stage) in [
        ("keyservice", "keyservice"),
        ("echo", "echo-upstream"),
        ("dev-idp", "dev-idp"),
    ] {
        let build = &services[service]["build"];
        assert_eq!(Path::new(str_at(build, "context")), root(), "{service}");
        assert_eq!(
            str_at(build, "dockerfile"),
            "deploy/Dockerfile",
            "{service}"
        );
        assert_eq!(str_at(build, "target"), stage, "{service}");
        assert!(
            dockerfile.stage(stage).is_some(),
            "no stage {stage} in deploy/Dockerfile"
        );
    }

    // Envoy's clusters are the compose services, on the ports they listen on.
    let clusters = cluster_addresses(&envoy_yaml);
    assert_eq!(
        clusters.get("keyservice"),
        Some(&(
            "keyservice".to_owned(),
            port_of(env_of(keyservice, "KEYSERVICE_LISTEN"))
        )),
        "{clusters:?}"
    );
    let echo_command: Vec<&str> = services["echo"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let echo_listen = echo_command[echo_command.iter().position(|a| *a == "--listen").unwrap() + 1];
    assert_eq!(
        clusters.get("echo"),
        Some(&("echo".to_owned(), port_of(echo_listen))),
        "{clusters:?}"
    );
    for (cluster, _) in clusters.values() {
        assert!(
            services.get(cluster).is_some(),
            "cluster address {cluster} is no service"
        );
    }
}

/// (cluster name → (address, port)) of a bootstrap's STRICT_DNS clusters.
fn cluster_addresses(bootstrap: &Value) -> BTreeMap<String, (String, u16)> {
    at(bootstrap, "static_resources.clusters")
        .as_array()
        .unwrap()
        .iter()
        .map(|cluster| {
            assert_eq!(cluster["type"], "STRICT_DNS", "{cluster:#}");
            let address = at(
                cluster,
                "load_assignment.endpoints.0.lb_endpoints.0.endpoint.address.socket_address",
            );
            (
                str_at(cluster, "name").to_owned(),
                (
                    str_at(address, "address").to_owned(),
                    u16::try_from(address["port_value"].as_u64().unwrap()).unwrap(),
                ),
            )
        })
        .collect()
}

/// KEY=VALUE lines of an env file.
fn env_file(relative: &str) -> BTreeMap<String, String> {
    read(relative)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn compose_postgres_profile_switches_keyservice_to_the_postgres_service() {
    let settings = env_file("deploy/compose/postgres.env");
    assert_eq!(
        settings.get("COMPOSE_PROFILES").map(String::as_str),
        Some("postgres")
    );
    let default = compose_config(None);
    let config = compose_config(Some("postgres.env"));
    let services = &config["services"];

    // The postgres service exists only in its profile.
    assert_eq!(
        at(&config, "services.postgres.profiles"),
        &json!(["postgres"])
    );
    assert!(!started_services(&default, &[]).contains("postgres"));
    assert_eq!(
        started_services(&config, &["postgres"]),
        BTreeSet::from([
            "envoy".into(),
            "keyservice".into(),
            "echo".into(),
            "dev-idp".into(),
            "postgres".into()
        ])
    );

    // keyservice's DATABASE_URL names that service with its credentials.
    let url = env_of(&services["keyservice"], "DATABASE_URL");
    let postgres = &services["postgres"];
    let expected = format!(
        "postgres://{}:{}@postgres:5432/{}",
        env_of(postgres, "POSTGRES_USER"),
        env_of(postgres, "POSTGRES_PASSWORD"),
        env_of(postgres, "POSTGRES_DB")
    );
    assert_eq!(url, expected);
    assert!(
        postgres["healthcheck"]["test"]
            .to_string()
            .contains("pg_isready")
    );
    // keyservice is started again until Postgres accepts connections.
    assert_eq!(services["keyservice"]["restart"], "on-failure");
}

/// A service's command (or any list of arguments) as strings.
fn args_of(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("expected a list of arguments, got {list}"))
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// The argument after `flag` (`--flag VALUE` or `--flag=VALUE`).
fn flag_value<'a>(args: &[&'a str], flag: &str) -> &'a str {
    let prefix = format!("{flag}=");
    args.iter()
        .enumerate()
        .find_map(|(index, arg)| match arg.strip_prefix(&prefix) {
            Some(value) => Some(value),
            None => (*arg == flag)
                .then(|| args.get(index + 1).copied())
                .flatten(),
        })
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
}

/// keygate's configuration (the JSON in its `StringValue`) of a bootstrap's one Wasm filter.
fn plugin_config_of(bootstrap: &Value) -> Value {
    let filters = wasm_filter_configs(bootstrap);
    serde_json::from_str(str_at(filters[0], "configuration.value")).unwrap()
}

fn provider<'a>(plugin: &'a Value, name: &str) -> &'a Value {
    plugin["providers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|provider| provider["name"] == name)
        .unwrap_or_else(|| panic!("no provider {name} in {:#}", plugin["providers"]))
}

/// The scopes a key page offers (keyservice --scopes): a JSON list of `{name, description}`,
/// names unique; their names.
fn scope_names(text: &str, what: &str) -> Vec<String> {
    let scopes: Vec<BTreeMap<String, String>> = serde_json::from_str(text)
        .unwrap_or_else(|err| panic!("{what}: not a list of {{name, description}}: {err}"));
    let mut names = Vec::new();
    for scope in &scopes {
        let keys: Vec<&str> = scope.keys().map(String::as_str).collect();
        assert_eq!(keys, ["description", "name"], "{what}: {scope:?}");
        assert!(
            scope.values().all(|value| !value.trim().is_empty()),
            "{what}: {scope:?}"
        );
        assert!(
            !names.contains(&scope["name"]),
            "{what}: {} twice",
            scope["name"]
        );
        names.push(scope["name"].clone());
    }
    assert!(
        names.iter().any(|name| name == "keys:write"),
        "{what} should offer keys:write (a key that manages keys): {names:?}"
    );
    names
}

/// The compose rig signs people in with dev-idp, and every party agrees on its tokens: keyservice
/// and keygate expect the issuer dev-idp writes and the origin Envoy serves the page on, and both
/// fetch its keys from the dev-idp service.
#[test]
fn compose_runs_dev_idp_and_keyservice_verifies_its_sessions() {
    let config = compose_config(None);
    let services = &config["services"];
    let dev_idp = &services["dev-idp"];
    let keyservice = &services["keyservice"];
    let envoy = &services["envoy"];

    // dev-idp: the issuer the rig of `make run` uses, for the origin of Envoy's listener.
    let idp = args_of(&dev_idp["command"]);
    let issuer = flag_value(&idp, "--issuer");
    let authorized_party = flag_value(&idp, "--authorized-party");
    let idp_port = port_of(flag_value(&idp, "--listen"));
    assert_eq!(issuer, "http://127.0.0.1:8082");
    assert_eq!(authorized_party, "http://127.0.0.1:10000");
    assert!(
        envoy["ports"]
            .to_string()
            .contains(&format!("127.0.0.1:{}", port_of(authorized_party))),
        "the authorized party should be the origin Envoy publishes: {}",
        envoy["ports"]
    );
    // Reached through Envoy only; development only, and says so.
    assert!(dev_idp["ports"].is_null(), "dev-idp publishes no port");
    let compose = read("deploy/compose/compose.yaml");
    let before_service = compose
        .split("\n  dev-idp:\n")
        .next()
        .and_then(|text| text.rsplit("\n\n").next())
        .unwrap_or_default();
    assert!(
        before_service.contains("DEVELOPMENT ONLY"),
        "the dev-idp service's comment should say it is for development only: {before_service}"
    );

    // keyservice verifies API keys and dev-idp's sessions itself.
    let args = args_of(&keyservice["command"]);
    assert_eq!(args.first(), Some(&"serve"), "{args:?}");
    assert!(args.contains(&"--api-key-callers"), "{args:?}");
    assert_eq!(flag_value(&args, "--session-issuer"), issuer);
    assert_eq!(
        flag_value(&args, "--session-jwks-url"),
        format!("http://dev-idp:{idp_port}/.well-known/jwks.json")
    );
    assert_eq!(
        flag_value(&args, "--session-authorized-party"),
        authorized_party
    );
    assert_eq!(flag_value(&args, "--sign-in-url"), "/sign-in");
    assert_eq!(flag_value(&args, "--sign-out-url"), "/sign-out");
    let scopes = mount_source(keyservice, flag_value(&args, "--scopes"));
    assert_eq!(scopes, root().join("deploy/compose/scopes.json"));
    scope_names(
        &read("deploy/compose/scopes.json"),
        "deploy/compose/scopes.json",
    );
    for service in [envoy, keyservice] {
        assert_eq!(
            at(service, "depends_on.dev-idp.condition"),
            "service_healthy",
            "{:#}",
            service["depends_on"]
        );
    }

    // keygate's provider for the same sessions, its keys from the dev-idp service.
    let bootstrap = yaml_file("deploy/compose/envoy.yaml").remove(0);
    let plugin = plugin_config_of(&bootstrap);
    let sessions = provider(&plugin, "dev-idp");
    assert_eq!(sessions["issuer"], issuer);
    assert_eq!(sessions["algorithms"], json!(["RS256"]));
    assert_eq!(sessions["sources"], json!([{"cookie": "__session"}]));
    assert_eq!(
        sessions["claims"],
        json!([{"claim": "azp", "in": [authorized_party]}])
    );
    assert_eq!(
        sessions["claims_to_headers"],
        json!({"sub": "x-user-id", "org_id": "x-org-id"})
    );
    assert_eq!(at(sessions, "remote_jwks.path"), "/.well-known/jwks.json");
    let jwks_cluster = str_at(sessions, "remote_jwks.cluster");
    assert_eq!(
        cluster_addresses(&bootstrap).get(jwks_cluster),
        Some(&("dev-idp".to_owned(), idp_port)),
        "keygate should fetch dev-idp's keys from the dev-idp service"
    );
    // keyservice reads the API key provider's tokens itself: keygate leaves them in place.
    let api_keys = provider(&plugin, "api-keys");
    assert_eq!(at(api_keys, "secret.env"), SECRET_VAR);
    for provider in plugin["providers"].as_array().unwrap() {
        assert!(
            provider
                .get("strip_source")
                .is_none_or(|strip| strip == false),
            "keyservice needs the credential: {provider}"
        );
    }
}

/// (match, cluster, requirement named in the route's metadata) of a bootstrap's routes.
fn route_table(bootstrap: &Value) -> Vec<(Value, String, Option<String>)> {
    at(
        connection_manager(bootstrap),
        "route_config.virtual_hosts.0.routes",
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|route| {
        (
            route["match"].clone(),
            str_at(route, "route.cluster").to_owned(),
            at(route, "metadata.filter_metadata.keygate.requirement")
                .as_str()
                .map(str::to_owned),
        )
    })
    .collect()
}

/// The page and the self-service API go to keyservice, sign-in to dev-idp, the rest to echo, each
/// with the requirement its comment gives (the same names as `make run`'s envoy/envoy.yaml).
#[test]
fn compose_envoy_routes_each_path_to_its_service_and_requirement() {
    let bootstrap = yaml_file("deploy/compose/envoy.yaml").remove(0);
    let route = |matcher: Value, cluster: &str, requirement: Option<&str>| {
        (matcher, cluster.to_owned(), requirement.map(str::to_owned))
    };
    let separated = |prefix: &str| json!({"path_separated_prefix": prefix});
    let exact = |path: &str| json!({"path": path});
    assert_eq!(
        route_table(&bootstrap),
        vec![
            route(separated("/keys"), "keyservice", Some("keys-page")),
            route(separated("/v1/keys"), "keyservice", Some("keys-api")),
            route(exact("/v1/me"), "keyservice", Some("keys-api")),
            route(exact("/sign-in"), "dev_idp", Some("sign-in")),
            route(exact("/sign-out"), "dev_idp", Some("sign-in")),
            route(separated("/dev-idp"), "dev_idp", Some("sign-in")),
            route(json!({"prefix": "/"}), "echo", None),
        ]
    );
    let plugin = plugin_config_of(&bootstrap);
    assert_eq!(
        plugin["requirements"],
        json!({
            "api": {"provider": "api-keys"},
            "keys-page": {"provider": "dev-idp", "allow_missing_or_failed": true},
            "keys-api": {"any": ["dev-idp", "api-keys"]},
            "sign-in": {"provider": "dev-idp", "allow_missing_or_failed": true}
        })
    );
    // Every other route: API keys only.
    assert_eq!(plugin["default_requirement"], "api");
    assert_eq!(
        plugin["rules"],
        json!([{"match": {"path": "/healthz", "methods": ["GET", "HEAD"]}, "action": "allow"}])
    );
}

/// What the compose rig's Envoy decides on each route, in a real Envoy with the built filter:
/// `deploy/compose/envoy.yaml` as shipped but on loopback, every route sent to echo-upstream (so
/// the identity each upstream would get shows), a stand-in for dev-idp serving its keys.
#[test]
fn compose_envoy_decides_each_route_as_its_comments_say() {
    const ISSUER: &str = "http://127.0.0.1:8082";
    const ORIGIN: &str = "http://127.0.0.1:10000";
    let mut bootstrap = testkit::bootstrap_edit::shipped_bootstrap("deploy/compose/envoy.yaml");
    let routes = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"];
    for route in routes.as_array_mut().unwrap() {
        route["route"]["cluster"] = json!("echo");
    }
    let idp = testkit::idp::Idp::start(ISSUER);
    let signing = testkit::idp_keys::IdpKey::rsa("dev-0123abcd");
    idp.publish(&signing);
    let rig = crate::support::Rig::builder()
        .bootstrap(bootstrap)
        .cluster("dev_idp", idp.addr)
        .start();
    let now = testkit::token::now();
    let session = |azp: &str, exp: u64| {
        let claims = json!({
            "iss": ISSUER, "azp": azp, "sub": "user_alice", "sid": "sess_1",
            "org_id": "org_acme", "org_role": "org:admin",
            "iat": now - 10, "nbf": now - 10, "exp": exp,
        });
        format!("__session={}", signing.sign(&claims))
    };
    let signed_in = session(ORIGIN, now + 600);
    let expired = session(ORIGIN, now - 3600);
    let elsewhere = session("https://evil.example", now + 600);
    let key = rig.keyservice.issue("user_api", Some("org_api"), None);
    let bearer = format!("Bearer {}", key.key);
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut all = vec![("x-user-id", "mallory")];
        all.extend_from_slice(headers);
        rig.get(path, &all)
    };
    use crate::support::{expect_allowed, expect_missing_credential};

    let mut cases = crate::support::Cases::new();
    cases.check(
        "the key page signed out: it loads, without identity",
        expect_allowed(&get("/keys", &[]), None, None),
    );
    cases.check(
        "the key page's script with an expired session: it loads, without identity",
        expect_allowed(&get("/keys/app.js", &[("cookie", &expired)]), None, None),
    );
    cases.check(
        "the key page signed in: the session's user and org",
        expect_allowed(
            &get("/keys", &[("cookie", &signed_in)]),
            Some("user_alice"),
            Some("org_acme"),
        ),
    );
    cases.check(
        "/v1/me signed out: keygate's 401",
        expect_missing_credential(&get("/v1/me", &[])),
    );
    cases.check(
        "/v1/me signed in",
        expect_allowed(
            &get("/v1/me", &[("cookie", &signed_in)]),
            Some("user_alice"),
            Some("org_acme"),
        ),
    );
    cases.check(
        "/v1/keys with an API key",
        expect_allowed(
            &get("/v1/keys", &[("authorization", &bearer)]),
            Some("user_api"),
            Some("org_api"),
        ),
    );
    cases.check(
        "/v1/keys/{id} with a session",
        expect_allowed(
            &get(&format!("/v1/keys/{}", key.id), &[("cookie", &signed_in)]),
            Some("user_alice"),
            Some("org_acme"),
        ),
    );
    cases.check(
        "/v1/keys with a session made for another origin (azp): refused",
        crate::support::providers::expect_rejected(
            &get("/v1/keys", &[("cookie", &elsewhere)]),
            "token claims are not accepted",
        ),
    );
    cases.check(
        "/v1/keys with an expired session: refused",
        crate::support::expect_status(&get("/v1/keys", &[("cookie", &expired)]), 401),
    );
    for path in [
        "/sign-in?redirect_url=/keys",
        "/sign-out",
        "/dev-idp/style.css",
    ] {
        cases.check(
            &format!("{path}: public"),
            expect_allowed(&get(path, &[]), None, None),
        );
    }
    cases.check(
        "the upstream with a session: API keys only there",
        expect_missing_credential(&get("/hello", &[("cookie", &signed_in)])),
    );
    cases.check(
        "a path that only starts like /keys is the upstream's",
        expect_missing_credential(&get("/keysmith", &[("cookie", &signed_in)])),
    );
    cases.check(
        "the upstream with an API key",
        expect_allowed(
            &get("/hello", &[("authorization", &bearer)]),
            Some("user_api"),
            Some("org_api"),
        ),
    );
    cases.check(
        "/healthz without a key",
        expect_allowed(&get("/healthz", &[]), None, None),
    );
    cases.finish(|| rig.envoy_log_tail(40));
}

/// keyservice no longer takes its caller from identity headers: no deployment may start it so
/// (it would refuse to start anyway).
#[test]
fn nothing_in_deploy_runs_keyservice_trusting_identity_headers() {
    let mut files = Vec::new();
    let mut stack = vec![root().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 10, "{files:?}");
    let offending: Vec<String> = files
        .iter()
        .filter(|path| {
            fs::read_to_string(path).is_ok_and(|text| {
                let text = text.to_ascii_lowercase();
                text.contains("trust-edge-identity") || text.contains("trust_edge_identity")
            })
        })
        .map(|path| relative(path))
        .collect();
    assert!(offending.is_empty(), "{offending:?}");
}

// ---------------------------------------------------------------------------------------------
// Dockerfile and the images' healthcheck (nothing can be built here: no Docker engine)

struct Stage {
    name: String,
    from: String,
    /// (instruction, arguments), continuation lines joined.
    instructions: Vec<(String, String)>,
}

struct Dockerfile {
    args: BTreeMap<String, String>,
    stages: Vec<Stage>,
}

impl Dockerfile {
    fn parse(text: &str) -> Self {
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') && current.is_empty() || trimmed.is_empty() {
                continue;
            }
            if let Some(rest) = trimmed.strip_suffix('\\') {
                current.push_str(rest);
                current.push(' ');
            } else {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
        let mut args = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical {
            let (instruction, rest) = line.split_once(' ').unwrap_or((&line, ""));
            let instruction = instruction.to_ascii_uppercase();
            let rest = rest.trim().to_owned();
            match (instruction.as_str(), stages.last_mut()) {
                ("FROM", _) => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let name = match words.as_slice() {
                        [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                        _ => String::new(),
                    };
                    stages.push(Stage {
                        name,
                        from: words[0].to_owned(),
                        instructions: Vec::new(),
                    });
                }
                ("ARG", None) => {
                    let (key, value) = rest.split_once('=').unwrap_or((&rest, ""));
                    args.insert(key.to_owned(), value.to_owned());
                }
                (_, Some(stage)) => stage.instructions.push((instruction, rest)),
                (other, None) => panic!("{other} before the first FROM"),
            }
        }
        Dockerfile { args, stages }
    }

    fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|stage| stage.name == name)
    }

    /// The stage and the stages it is built FROM, nearest first.
    fn lineage(&self, name: &str) -> Vec<&Stage> {
        let mut out = Vec::new();
        let mut next = self.stage(name);
        while let Some(stage) = next {
            out.push(stage);
            next = self.stage(&stage.from);
        }
        out
    }
}

impl Stage {
    fn all(&self, instruction: &str) -> Vec<&str> {
        self.instructions
            .iter()
            .filter(|(i, _)| i == instruction)
            .map(|(_, rest)| rest.as_str())
            .collect()
    }

    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last().copied()
    }
}

fn version_tuple(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|part| part.parse().unwrap())
        .collect()
}

#[test]
fn dockerfile_is_multi_stage_slim_and_unprivileged_with_healthchecks() {
    let dockerfile = Dockerfile::parse(&read("deploy/Dockerfile"));

    // The build stage: the official Rust image, new enough for the workspace, locked versions.
    let build = dockerfile.stage("build").expect("a stage named build");
    assert!(
        build.from.starts_with("rust:${RUST_VERSION}-slim"),
        "{}",
        build.from
    );
    let rust = &dockerfile.args["RUST_VERSION"];
    for manifest in [
        "Cargo.toml",
        "keyservice/Cargo.toml",
        "echo-upstream/Cargo.toml",
        "dev-idp/Cargo.toml",
    ] {
        let required = read(manifest)
            .lines()
            .find_map(|line| line.strip_prefix("rust-version = "))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("rust-version in {manifest}"));
        assert!(
            version_tuple(rust) >= version_tuple(&required),
            "RUST_VERSION {rust} is older than {manifest}'s rust-version {required}"
        );
    }
    let cargo = build.all("RUN").join("\n");
    assert!(
        cargo.contains("cargo build --locked --release -p keyservice -p echo-upstream -p dev-idp"),
        "{cargo}"
    );

    let runtime = dockerfile.stage("runtime").expect("a stage named runtime");
    assert!(
        runtime.from.starts_with("debian:") && runtime.from.ends_with("-slim"),
        "the runtime base should be slim Debian: {}",
        runtime.from
    );
    let user_setup = runtime.all("RUN").join("\n");
    assert!(
        user_setup.contains(&format!("--uid {IMAGE_UID}")),
        "{user_setup}"
    );

    // keyservice is the default target (the last stage).
    assert_eq!(
        dockerfile.stages.last().map(|s| s.name.as_str()),
        Some("keyservice")
    );
    for (stage, binary, port, path) in [
        ("keyservice", "keyservice", "8081", "/healthz"),
        ("echo-upstream", "echo-upstream", "8080", "/"),
        ("dev-idp", "dev-idp", "8082", "/healthz"),
    ] {
        let lineage = dockerfile.lineage(stage);
        assert!(
            lineage.iter().any(|s| s.name == "runtime"),
            "{stage} is not built on the runtime stage"
        );
        let stage_ = lineage[0];
        assert!(
            stage_
                .all("COPY")
                .iter()
                .any(|copy| copy.starts_with("--from=build") && copy.contains(binary)),
            "{stage} copies its binary from the build stage"
        );
        let user = stage_
            .last("USER")
            .unwrap_or_else(|| panic!("{stage}: no USER"));
        let uid: i64 = user.split(':').next().unwrap().parse().unwrap();
        assert_eq!(uid, IMAGE_UID, "{stage} runs as {user}");
        let healthcheck = stage_
            .last("HEALTHCHECK")
            .unwrap_or_else(|| panic!("{stage}: no HEALTHCHECK"));
        assert!(
            healthcheck.contains("http-healthcheck") && healthcheck.contains(path),
            "{stage}: {healthcheck}"
        );
        assert!(
            stage_.all("EXPOSE").contains(&port),
            "{stage} exposes {port}"
        );
        assert!(
            stage_.last("ENTRYPOINT").unwrap().contains(binary),
            "{stage}: entrypoint"
        );
    }

    // What the build copies, and what it must not send to the engine.
    let healthcheck = root().join("deploy/http-healthcheck");
    assert!(healthcheck.is_file());
    let ignore = read(".dockerignore");
    for excluded in ["/target", "/.venv", "/.git"] {
        assert!(
            ignore.lines().any(|line| line.trim() == excluded),
            ".dockerignore should exclude {excluded}"
        );
    }
}

/// A child process killed (and reaped) when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts keyservice on a free loopback port (in-memory SQLite); returns it and the port.
fn start_keyservice() -> (Running, u16) {
    let mut child = Command::new(bins::keyservice())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            "sqlite::memory:",
        ])
        .env(SECRET_VAR, crate::support::SECRET)
        .env("KEYSERVICE_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting keyservice");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.trim().strip_prefix("listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let proc = Running(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("keyservice printed its address");
    (proc, port_of(&addr))
}

fn healthcheck(port: u16, path: &str) -> testkit::process::Output {
    run(
        Command::new("bash")
            .arg(root().join("deploy/http-healthcheck"))
            .arg(port.to_string())
            .arg(path),
        "http-healthcheck",
    )
}

#[test]
fn image_healthcheck_passes_on_keyservice_healthz_and_fails_otherwise() {
    let (keyservice, port) = start_keyservice();
    let ok = healthcheck(port, "/healthz");
    assert!(ok.status.success(), "{}", describe(&ok));
    // A non-2xx answer fails it.
    let missing = healthcheck(port, "/no-such-path");
    assert!(!missing.status.success(), "{}", describe(&missing));

    // The keyservice stage's HEALTHCHECK command itself, as the engine runs it (`/bin/sh -c`),
    // with the image's KEYSERVICE_LISTEN pointing at this keyservice.
    let dockerfile = Dockerfile::parse(&read("deploy/Dockerfile"));
    let instruction = dockerfile
        .stage("keyservice")
        .unwrap()
        .last("HEALTHCHECK")
        .unwrap();
    let shell = instruction
        .split_once("CMD ")
        .map(|(_, command)| command.trim())
        .expect("HEALTHCHECK ... CMD command");
    assert!(!shell.starts_with('['), "expected the shell form: {shell}");
    let path = format!(
        "{}:{}",
        root().join("deploy").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let image_check = run(
        Command::new("sh")
            .args(["-c", shell])
            .env("PATH", path)
            .env("KEYSERVICE_LISTEN", format!("0.0.0.0:{port}")),
        "the Dockerfile's HEALTHCHECK",
    );
    assert!(image_check.status.success(), "{}", describe(&image_check));

    drop(keyservice);
    let down = healthcheck(port, "/healthz");
    assert!(!down.status.success(), "{}", describe(&down));
}

// ---------------------------------------------------------------------------------------------
// Kubernetes and Istio manifests

struct Manifest {
    file: String,
    object: Value,
}

impl Manifest {
    fn kind(&self) -> &str {
        str_at(&self.object, "kind")
    }

    fn name(&self) -> &str {
        str_at(&self.object, "metadata.name")
    }
}

fn manifests() -> Vec<Manifest> {
    let mut out = Vec::new();
    for dir in ["deploy/kubernetes", "deploy/istio"] {
        let mut files: Vec<PathBuf> = fs::read_dir(root().join(dir))
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
            })
            .collect();
        files.sort();
        for path in files {
            let file = relative(&path);
            for object in yaml_file(&file) {
                out.push(Manifest {
                    file: file.clone(),
                    object,
                });
            }
        }
    }
    assert!(!out.is_empty());
    out
}

fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Value {
    &manifests
        .iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes or deploy/istio"))
        .object
}

/// Reads `object` as the Kubernetes type `T` and writes it back: an unknown or misspelt field is
/// dropped on the way (and a wrong type refused), so any difference is a mistake.
fn strict_typed<T>(manifest: &Manifest) -> Result<(), String>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let diff = round_trip_losses::<T>(&manifest.object)
        .map_err(|err| format!("not a valid {}: {err}", manifest.kind()))?;
    if diff.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fields the {} type does not have: {diff:?}",
            manifest.kind()
        ))
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[test]
fn manifests_are_kubernetes_objects_of_known_kinds() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{
        ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
    };
    use k8s_openapi::api::networking::v1::NetworkPolicy;

    let manifests = manifests();
    let mut failures = Vec::new();
    for manifest in &manifests {
        let object = &manifest.object;
        let label = format!(
            "{}: {} {}",
            manifest.file,
            object["kind"].as_str().unwrap_or("(no kind)"),
            at(object, "metadata.name").as_str().unwrap_or("(no name)")
        );
        let (Some(api_version), Some(kind), Some(name)) = (
            object["apiVersion"].as_str(),
            object["kind"].as_str(),
            at(object, "metadata.name").as_str(),
        ) else {
            failures.push(format!("{label}: needs apiVersion, kind and metadata.name"));
            continue;
        };
        if !is_dns_label(name) {
            failures.push(format!("{label}: {name:?} is not a DNS label"));
        }
        let namespace = at(object, "metadata.namespace").as_str();
        let result = match (api_version, kind) {
            ("v1", "Namespace") => {
                if namespace.is_some() {
                    failures.push(format!("{label}: a Namespace has no namespace"));
                }
                strict_typed::<Namespace>(manifest)
            }
            ("v1", "Secret") => strict_typed::<Secret>(manifest),
            ("v1", "ConfigMap") => strict_typed::<ConfigMap>(manifest),
            ("v1", "ServiceAccount") => strict_typed::<ServiceAccount>(manifest),
            ("v1", "Service") => strict_typed::<Service>(manifest),
            ("v1", "PersistentVolumeClaim") => strict_typed::<PersistentVolumeClaim>(manifest),
            ("apps/v1", "Deployment") => strict_typed::<Deployment>(manifest),
            ("networking.k8s.io/v1", "NetworkPolicy") => strict_typed::<NetworkPolicy>(manifest),
            ("security.istio.io/v1", "AuthorizationPolicy") => check_authorization_policy(object),
            ("security.istio.io/v1", "PeerAuthentication") => check_peer_authentication(object),
            ("extensions.istio.io/v1alpha1", "WasmPlugin") => {
                validate_wasmplugin(object).map_err(|errors| errors.join("; "))
            }
            // Istio's EnvoyFilter CRD leaves the patch free-form; the test below checks what
            // it patches with Envoy itself.
            ("networking.istio.io/v1alpha3", "EnvoyFilter") => Ok(()),
            _ => Err(format!("unknown kind {api_version}/{kind}")),
        };
        if let Err(err) = result {
            failures.push(format!("{label}: {err}"));
        }
        if kind != "Namespace" && namespace != Some(NAMESPACE) {
            failures.push(format!(
                "{label}: metadata.namespace should be {NAMESPACE}, is {namespace:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The typed check is not vacuous: a misspelt field is caught.
    let mut wrong = Manifest {
        file: "test".into(),
        object: find(&manifests, "Deployment", "keyservice").clone(),
    };
    wrong.object["spec"]["replica"] = json!(1);
    assert!(strict_typed::<Deployment>(&wrong).is_err());
    wrong.object = find(&manifests, "Deployment", "keyservice").clone();
    wrong.object["spec"]["replicas"] = json!("one");
    assert!(strict_typed::<Deployment>(&wrong).is_err());
}

// ---- the WasmPlugin CRD ----------------------------------------------------------------------

/// Istio's WasmPlugin CRD (reference data, not a manifest to apply), kept in deploy/istio/schema/
/// (or `KEYGATE_WASMPLUGIN_CRD`).
fn wasmplugin_crd() -> Value {
    let path = std::env::var_os("KEYGATE_WASMPLUGIN_CRD")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("deploy/istio/schema/wasmplugin-crd.yaml"));
    let text = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "reading the WasmPlugin CRD {} ({err}); set KEYGATE_WASMPLUGIN_CRD to its path",
            path.display()
        )
    });
    let crd = yaml_documents(&text, "WasmPlugin CRD").remove(0);
    assert_eq!(crd["metadata"]["name"], "wasmplugins.extensions.istio.io");
    crd
}

/// The CRD's openAPIV3Schema as a JSON Schema with Kubernetes' semantics: objects with declared
/// properties take no others (what `kubectl apply` with strict field validation refuses),
/// unless marked x-kubernetes-preserve-unknown-fields; `nullable` admits null; the object's
/// apiVersion, kind and metadata are added at the root.
fn crd_json_schema(crd: &Value) -> Value {
    fn convert(node: &Value) -> Value {
        let Value::Object(map) = node else {
            return node.clone();
        };
        let mut out = Map::new();
        for (key, value) in map {
            match key.as_str() {
                "properties" => {
                    let properties = value
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(name, schema)| (name.clone(), convert(schema)))
                        .collect();
                    out.insert(key.clone(), Value::Object(properties));
                }
                "items" | "additionalProperties" if value.is_object() => {
                    out.insert(key.clone(), convert(value));
                }
                "nullable" | "description" => {}
                _ if key.starts_with("x-kubernetes-") => {}
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        if map.get("nullable") == Some(&Value::Bool(true))
            && let Some(Value::String(ty)) = out.get("type").cloned()
        {
            out.insert("type".into(), json!([ty, "null"]));
        }
        let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if out.contains_key("properties") && !preserve && !out.contains_key("additionalProperties")
        {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
        Value::Object(out)
    }
    let version = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1alpha1")
        .expect("version v1alpha1 in the CRD");
    let mut schema = convert(&version["schema"]["openAPIV3Schema"]);
    let properties = schema["properties"].as_object_mut().unwrap();
    properties.insert(
        "apiVersion".into(),
        json!({"const": "extensions.istio.io/v1alpha1"}),
    );
    properties.insert("kind".into(), json!({"const": "WasmPlugin"}));
    properties.insert(
        "metadata".into(),
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}}
        }),
    );
    properties
        .entry("status")
        .or_insert_with(|| json!({"type": "object"}));
    schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    schema
}

/// The CRD's CEL rules (x-kubernetes-validations), which its openAPIV3Schema cannot express:
/// those the reference file's header lists, plus the others of Istio's full CRD.
fn wasmplugin_cel_rules(spec: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    // At most one of selector, targetRef, targetRefs.
    let targets: Vec<&str> = ["selector", "targetRef", "targetRefs"]
        .into_iter()
        .filter(|key| spec.get(*key).is_some())
        .collect();
    if targets.len() > 1 {
        errors.push(format!(
            "only one of selector, targetRef, targetRefs: {targets:?}"
        ));
    }
    // url: the scheme one of "", http, https, oci, file. CEL's isURL parses like Go's
    // url.ParseRequestURI: "scheme:..." has that scheme; a path ("/x") has none; anything else
    // is read again as "http://" + url (so "host/repo:tag" is accepted, as an OCI reference).
    if let Some(url) = spec["url"].as_str() {
        let scheme = url.split_once(':').and_then(|(scheme, _)| {
            let mut chars = scheme.chars();
            (chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .then(|| scheme.to_ascii_lowercase())
        });
        let allowed = match scheme.as_deref() {
            Some(scheme) => ["http", "https", "oci", "file"].contains(&scheme),
            None => !url.contains(char::is_whitespace),
        };
        if !allowed {
            errors.push(format!(
                "url must have schema one of [http, https, file, oci]: {url}"
            ));
        }
    }
    // vmConfig.env: a value only when valueFrom is not HOST; names unique (a list-map by name).
    let mut names = BTreeSet::new();
    for env in at(spec, "vmConfig.env").as_array().into_iter().flatten() {
        if env["valueFrom"] == "HOST" && env.get("value").is_some() {
            errors.push(format!(
                "value may only be set when valueFrom is INLINE: {env}"
            ));
        }
        if let Some(name) = env["name"].as_str()
            && !names.insert(name)
        {
            errors.push(format!("vmConfig.env: duplicate name {name}"));
        }
    }
    // selector.matchLabels: no wildcard in keys or values, no empty key.
    if let Some(labels) = at(spec, "selector.matchLabels").as_object() {
        for (key, value) in labels {
            if key.contains('*') {
                errors.push(format!("wildcard not allowed in label key match: {key}"));
            }
            if key.is_empty() {
                errors.push("key must not be empty".to_owned());
            }
            if value.as_str().is_some_and(|v| v.contains('*')) {
                errors.push(format!(
                    "wildcard not allowed in label value match: {value}"
                ));
            }
        }
    }
    // targetRef(s): a Service or a Gateway, in the plugin's own namespace.
    let refs = spec["targetRef"]
        .as_object()
        .map(|_| vec![&spec["targetRef"]])
        .unwrap_or_default()
        .into_iter()
        .chain(spec["targetRefs"].as_array().into_iter().flatten());
    for target in refs {
        let group = target["group"].as_str().unwrap_or_default();
        let kind = target["kind"].as_str().unwrap_or_default();
        if !matches!(
            (group, kind),
            ("core" | "", "Service") | ("gateway.networking.k8s.io", "Gateway")
        ) {
            errors.push(format!(
                "Support kinds are core/Service and gateway.networking.k8s.io/Gateway: {target}"
            ));
        }
        if target["namespace"]
            .as_str()
            .is_some_and(|ns| !ns.is_empty())
        {
            errors.push(format!(
                "cross namespace referencing is not currently supported: {target}"
            ));
        }
    }
    // match[].ports: a list-map by number.
    for selector in spec["match"].as_array().into_iter().flatten() {
        let numbers: Vec<&Value> = selector["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|port| &port["number"])
            .collect();
        let unique: BTreeSet<String> = numbers.iter().map(|n| n.to_string()).collect();
        if unique.len() != numbers.len() {
            errors.push(format!("match ports: duplicate number in {numbers:?}"));
        }
    }
    errors
}

/// Every error the API server would answer when this WasmPlugin is applied.
fn validate_wasmplugin(object: &Value) -> Result<(), Vec<String>> {
    let schema = crd_json_schema(&wasmplugin_crd());
    let validator = jsonschema::draft7::new(&schema).expect("the CRD schema compiles");
    let mut errors: Vec<String> = validator
        .iter_errors(object)
        .map(|error| format!("{}: {error}", error.instance_path()))
        .collect();
    errors.extend(wasmplugin_cel_rules(&object["spec"]));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn wasmplugin() -> Value {
    let manifests = manifests();
    let plugins: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| m.kind() == "WasmPlugin")
        .collect();
    assert_eq!(plugins.len(), 1, "one WasmPlugin in deploy/istio");
    plugins[0].object.clone()
}

#[test]
fn wasmplugin_passes_the_crd_schema_and_cel_rules() {
    let plugin = wasmplugin();
    if let Err(errors) = validate_wasmplugin(&plugin) {
        panic!("deploy/istio/wasmplugin.yaml:\n{}", errors.join("\n"));
    }
    let spec = &plugin["spec"];
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["type"], "HTTP");
    assert_eq!(spec["pluginName"], "keygate");
    assert_eq!(
        at(spec, "vmConfig.env"),
        &json!([{"name": SECRET_VAR, "valueFrom": "HOST"}])
    );
    // The image `make oci` builds, at the crate's version.
    let version = read("Cargo.toml")
        .lines()
        .find_map(|line| line.strip_prefix("version = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let url = str_at(spec, "url");
    assert!(
        url.starts_with("oci://") && url.ends_with(&format!("/keygate:{version}")),
        "{url}"
    );
}

#[test]
fn wasmplugin_validation_catches_what_the_api_server_refuses() {
    let plugin = wasmplugin();
    let mutate = |change: &dyn Fn(&mut Value)| {
        let mut copy = plugin.clone();
        change(&mut copy["spec"]);
        copy
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown phase",
            mutate(&|s| s["phase"] = json!("AUTH")),
            "/spec/phase",
        ),
        (
            "misspelt field",
            mutate(&|s| s["failstrategy"] = json!("FAIL_CLOSE")),
            "failstrategy",
        ),
        (
            "misspelt nested field",
            mutate(&|s| s["vmConfig"]["envs"] = json!([])),
            "envs",
        ),
        (
            "no url",
            mutate(&|s| drop(s.as_object_mut().unwrap().remove("url"))),
            "url",
        ),
        (
            "bad sha256",
            mutate(&|s| s["sha256"] = json!("sha256:abc")),
            "/spec/sha256",
        ),
        (
            "port out of range",
            mutate(&|s| s["match"][0]["ports"][0]["number"] = json!(70000)),
            "/spec/match/0/ports/0/number",
        ),
        (
            "unknown valueFrom",
            mutate(&|s| s["vmConfig"]["env"][0]["valueFrom"] = json!("SECRET")),
            "valueFrom",
        ),
        (
            "selector and targetRefs",
            mutate(&|s| s["targetRefs"] = json!([{"kind": "Service", "name": "echo"}])),
            "only one of selector",
        ),
        (
            "ftp url",
            mutate(&|s| s["url"] = json!("ftp://host/keygate.wasm")),
            "schema one of",
        ),
        (
            "host:port without scheme",
            mutate(&|s| s["url"] = json!("registry.example:5000/keygate:0.1.0")),
            "schema one of",
        ),
        (
            "value with HOST",
            mutate(&|s| s["vmConfig"]["env"][0]["value"] = json!("inline-secret")),
            "only be set when valueFrom is INLINE",
        ),
        (
            "wildcard label key",
            mutate(&|s| s["selector"]["matchLabels"]["app*"] = json!("echo")),
            "wildcard not allowed in label key",
        ),
        (
            "empty label key",
            mutate(&|s| s["selector"]["matchLabels"][""] = json!("echo")),
            "key must not be empty",
        ),
        (
            "duplicate env",
            mutate(&|s| {
                let env = s["vmConfig"]["env"][0].clone();
                s["vmConfig"]["env"].as_array_mut().unwrap().push(env);
            }),
            "duplicate name",
        ),
        (
            "targetRef to a Deployment",
            mutate(&|s| {
                s.as_object_mut().unwrap().remove("selector");
                s["targetRef"] = json!({"group": "apps", "kind": "Deployment", "name": "echo"});
            }),
            "Support kinds",
        ),
    ];
    for (name, object, expected) in cases {
        match validate_wasmplugin(&object) {
            Ok(()) => panic!("{name}: accepted"),
            Err(errors) => assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{name}: expected an error mentioning {expected:?}, got {errors:?}"
            ),
        }
    }
    // And what Istio accepts is accepted: an OCI reference without a scheme, an http URL, a
    // Gateway target instead of the selector.
    for ok in [
        mutate(&|s| s["url"] = json!("registry.example/keygate:0.1.0")),
        mutate(&|s| s["url"] = json!("https://downloads.example/keygate.wasm")),
        mutate(&|s| {
            s.as_object_mut().unwrap().remove("selector");
            s["targetRefs"] =
                json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}]);
        }),
    ] {
        validate_wasmplugin(&ok).unwrap_or_else(|errors| panic!("{ok:#}: {errors:?}"));
    }
}

#[test]
fn wasmplugin_plugin_config_is_a_valid_keygate_config() {
    let plugin = wasmplugin();
    // Istio hands pluginConfig to the filter as its JSON.
    let json = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap();
    let with_secret = |name: &str| (name == SECRET_VAR).then(|| crate::support::SECRET.to_owned());
    if let Err(err) = keygate::Config::parse(&json, &with_secret) {
        panic!("keygate refuses the WasmPlugin's pluginConfig: {err}");
    }
    // It reads the secret from the VM's environment, which vmConfig.env provides.
    assert!(
        keygate::Config::parse(&json, &|_| None).is_err(),
        "the pluginConfig should need {SECRET_VAR} from the environment"
    );
    assert_eq!(at(&plugin, "spec.pluginConfig.secret.env"), SECRET_VAR);
}

/// The HttpConnectionManager options keygate relies on (docs/paths-and-headers.md, "Paths and
/// headers as the upstream reads them"), as every shipped configuration sets them.
fn hardening_options() -> Value {
    json!({
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "common_http_protocol_options": {"headers_with_underscores_action": "DROP_HEADER"}
    })
}

fn connection_manager(bootstrap: &Value) -> &Value {
    at(
        bootstrap,
        "static_resources.listeners.0.filter_chains.0.filters.0.typed_config",
    )
}

#[test]
fn every_shipped_envoy_config_sets_the_path_and_header_options() {
    for config in envoy_configs() {
        let manager = connection_manager(&config.document);
        for (option, value) in hardening_options().as_object().unwrap() {
            assert_eq!(
                &manager[option],
                value,
                "{}: {option} (docs/paths-and-headers.md)",
                relative(&config.path)
            );
        }
    }
}

/// JSON merge as Istio's `MERGE` patch does it for these fields: objects field by field.
fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(into), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(into.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

#[test]
fn istio_envoyfilter_sets_the_options_on_the_wasmplugins_connection_manager() {
    let manifests = manifests();
    let filters: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| m.kind() == "EnvoyFilter")
        .collect();
    assert_eq!(filters.len(), 1, "one EnvoyFilter in deploy/istio");
    let filter = &filters[0].object;
    let plugin = wasmplugin();
    assert_eq!(
        at(filter, "spec.workloadSelector.labels"),
        at(&plugin, "spec.selector.matchLabels"),
        "the EnvoyFilter must select the WasmPlugin's pods"
    );
    let [patch] = at(filter, "spec.configPatches")
        .as_array()
        .unwrap()
        .as_slice()
    else {
        panic!("one config patch")
    };
    assert_eq!(patch["applyTo"], "NETWORK_FILTER");
    assert_eq!(at(patch, "match.context"), "SIDECAR_INBOUND");
    assert_eq!(
        at(patch, "match.listener.portNumber"),
        at(&plugin, "spec.match.0.ports.0.number"),
        "the EnvoyFilter must patch the port the WasmPlugin runs on"
    );
    assert_eq!(
        at(patch, "match.listener.filterChain.filter.name"),
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(at(patch, "patch.operation"), "MERGE");
    // Merged into a connection manager without the options, it gives the shipped ones, and Envoy
    // accepts the result.
    let mut bootstrap = yaml_file("envoy/envoy.yaml").remove(0);
    let manager =
        &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
    for option in hardening_options().as_object().unwrap().keys() {
        manager["typed_config"]
            .as_object_mut()
            .unwrap()
            .remove(option);
    }
    merge(manager, at(patch, "patch.value"));
    for (option, value) in hardening_options().as_object().unwrap() {
        assert_eq!(&manager["typed_config"][option], value, "{option}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("patched.yaml");
    fs::write(&file, serde_json::to_string(&bootstrap).unwrap()).unwrap();
    let output = envoy_validate(&testkit::bins::envoy(), &file, Some(crate::support::SECRET));
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn istio_example_pieces_refer_to_each_other() {
    let manifests = manifests();
    let plugin = wasmplugin();
    let spec = &plugin["spec"];

    // The callout cluster is the one Istio generates for the keyservice Service.
    let service = find(&manifests, "Service", "keyservice");
    let port = at(service, "spec.ports.0");
    assert_eq!(
        port["appProtocol"], "http",
        "Istio must treat keyservice as HTTP"
    );
    let host = format!(
        "{}.{}.svc.cluster.local",
        str_at(service, "metadata.name"),
        str_at(service, "metadata.namespace")
    );
    assert_eq!(
        at(spec, "pluginConfig.revocation.cluster"),
        &json!(format!("outbound|{}||{host}", port["port"])),
    );
    assert_eq!(at(spec, "pluginConfig.revocation.authority"), &json!(host));

    // Services select their Deployments' pods, on ports those pods name.
    for name in ["keyservice", "echo"] {
        let service = find(&manifests, "Service", name);
        let deployment = find(&manifests, "Deployment", name);
        let pod_labels = at(deployment, "spec.template.metadata.labels")
            .as_object()
            .unwrap();
        for (key, value) in at(service, "spec.selector").as_object().unwrap() {
            assert_eq!(
                pod_labels.get(key),
                Some(value),
                "Service {name} selects {key}"
            );
        }
        let container = at(deployment, "spec.template.spec.containers.0");
        let target = &service["spec"]["ports"][0]["targetPort"];
        assert!(
            container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| &p["name"] == target || &p["containerPort"] == target),
            "Service {name}'s targetPort {target} is not a port of its pods"
        );
        // The pods run as the image's user.
        assert_eq!(
            at(deployment, "spec.template.spec.securityContext.runAsUser"),
            &json!(IMAGE_UID),
            "{name}"
        );
    }

    // The plugin selects the echo pods, never keyservice's (whose answers would need a key).
    let matches = |name: &str| {
        let labels = at(
            find(&manifests, "Deployment", name),
            "spec.template.metadata.labels",
        );
        at(spec, "selector.matchLabels")
            .as_object()
            .unwrap()
            .iter()
            .all(|(key, value)| &labels[key] == value)
    };
    assert!(
        matches("echo"),
        "the WasmPlugin should select the echo pods"
    );
    assert!(
        !matches("keyservice"),
        "the WasmPlugin must not select keyservice"
    );

    // Every variable the VM takes from the host is in the selected pods' istio-proxy environment.
    let echo = find(&manifests, "Deployment", "echo");
    let proxy = at(echo, "spec.template.spec.containers")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "istio-proxy")
        .expect("an istio-proxy entry in the echo pods (merged into the injected sidecar)");
    assert_eq!(proxy["image"], "auto");
    let secret = find(&manifests, "Secret", "keygate");
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_object()
        .into_iter()
        .chain(secret["data"].as_object())
        .flat_map(|map| map.keys().map(String::as_str))
        .collect();
    for env in at(spec, "vmConfig.env").as_array().unwrap() {
        let name = str_at(env, "name");
        let var = proxy["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("istio-proxy has no {name}"));
        assert_eq!(at(var, "valueFrom.secretKeyRef.name"), "keygate");
        assert!(secret_keys.contains(str_at(var, "valueFrom.secretKeyRef.key")));
    }
    // keyservice signs with the same secret.
    let keyservice = at(
        find(&manifests, "Deployment", "keyservice"),
        "spec.template.spec.containers.0",
    );
    for env in keyservice["env"].as_array().unwrap() {
        if let Some(key) = at(env, "valueFrom.secretKeyRef.key").as_str() {
            assert!(secret_keys.contains(key), "Secret keygate has no {key}");
        }
    }
    let jwt = keyservice["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == SECRET_VAR)
        .unwrap();
    assert_eq!(
        at(jwt, "valueFrom.secretKeyRef"),
        at(
            proxy["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == SECRET_VAR)
                .unwrap(),
            "valueFrom.secretKeyRef"
        )
    );

    // The plugin's port match is the echo container's port.
    assert_eq!(
        at(spec, "match.0.ports.0.number"),
        at(
            echo,
            "spec.template.spec.containers.0.ports.0.containerPort"
        )
    );
    // The namespace has sidecar injection.
    let namespace = find(&manifests, "Namespace", NAMESPACE);
    assert_eq!(at(namespace, "metadata.labels.istio-injection"), "enabled");
}

// ---- keyservice behind the edge: NetworkPolicy, AuthorizationPolicy ---------------------------

/// Fields that `object` has and `known` does not, with `what` for the path.
fn unknown_fields(object: &Value, known: &[&str], what: &str) -> Result<(), String> {
    let map = object
        .as_object()
        .ok_or_else(|| format!("`{what}` is not a mapping"))?;
    match map.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(format!("`{what}.{key}` is not a field (known: {known:?})")),
        None => Ok(()),
    }
}

fn string_list(value: &Value, what: &str) -> Result<(), String> {
    match value.as_array() {
        Some(items) if !items.is_empty() && items.iter().all(Value::is_string) => Ok(()),
        _ => Err(format!("`{what}` must be a non-empty list of strings")),
    }
}

/// Istio's workload selector: `matchLabels` only.
fn check_workload_selector(selector: &Value, what: &str) -> Result<(), String> {
    unknown_fields(selector, &["matchLabels"], what)?;
    match selector["matchLabels"].as_object() {
        Some(labels) if !labels.is_empty() && labels.values().all(Value::is_string) => Ok(()),
        _ => Err(format!("`{what}.matchLabels` must map labels to strings")),
    }
}

/// Istio's string match in principals, namespaces and paths: exact, `prefix*`, `*suffix` or `*`.
fn check_istio_patterns(value: &Value, what: &str) -> Result<(), String> {
    string_list(value, what)?;
    for pattern in value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let inner = pattern.trim_start_matches('*').trim_end_matches('*');
        if pattern.is_empty() || inner.contains('*') || pattern.starts_with("**") {
            return Err(format!(
                "`{what}`: {pattern:?} (a `*` only at the start or the end)"
            ));
        }
    }
    Ok(())
}

/// Istio's AuthorizationPolicy (security.istio.io/v1), against the fields of its API.
fn check_authorization_policy(object: &Value) -> Result<(), String> {
    const SOURCE: &[&str] = &[
        "principals",
        "notPrincipals",
        "requestPrincipals",
        "notRequestPrincipals",
        "namespaces",
        "notNamespaces",
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
        "serviceAccounts",
        "notServiceAccounts",
    ];
    const OPERATION: &[&str] = &[
        "hosts",
        "notHosts",
        "ports",
        "notPorts",
        "methods",
        "notMethods",
        "paths",
        "notPaths",
    ];
    unknown_fields(object, &["apiVersion", "kind", "metadata", "spec"], "")?;
    let spec = &object["spec"];
    unknown_fields(
        spec,
        &[
            "selector",
            "targetRef",
            "targetRefs",
            "rules",
            "action",
            "provider",
        ],
        "spec",
    )?;
    if !spec["selector"].is_null() {
        check_workload_selector(&spec["selector"], "spec.selector")?;
    }
    if !spec["action"].is_null() {
        let action = spec["action"].as_str().unwrap_or_default();
        if !["ALLOW", "DENY", "AUDIT", "CUSTOM"].contains(&action) {
            return Err(format!("`spec.action` is {}", spec["action"]));
        }
    }
    for (index, rule) in spec["rules"].as_array().into_iter().flatten().enumerate() {
        let what = format!("spec.rules[{index}]");
        unknown_fields(rule, &["from", "to", "when"], &what)?;
        for (i, from) in rule["from"].as_array().into_iter().flatten().enumerate() {
            let what = format!("{what}.from[{i}]");
            unknown_fields(from, &["source"], &what)?;
            unknown_fields(&from["source"], SOURCE, &format!("{what}.source"))?;
            for (field, value) in from["source"].as_object().into_iter().flatten() {
                check_istio_patterns(value, &format!("{what}.source.{field}"))?;
            }
        }
        for (i, to) in rule["to"].as_array().into_iter().flatten().enumerate() {
            let what = format!("{what}.to[{i}]");
            unknown_fields(to, &["operation"], &what)?;
            unknown_fields(&to["operation"], OPERATION, &format!("{what}.operation"))?;
            for (field, value) in to["operation"].as_object().into_iter().flatten() {
                check_istio_patterns(value, &format!("{what}.operation.{field}"))?;
            }
        }
        for (i, when) in rule["when"].as_array().into_iter().flatten().enumerate() {
            unknown_fields(
                when,
                &["key", "values", "notValues"],
                &format!("{what}.when[{i}]"),
            )?;
        }
    }
    Ok(())
}

/// Istio's PeerAuthentication (security.istio.io/v1), against the fields of its API.
fn check_peer_authentication(object: &Value) -> Result<(), String> {
    unknown_fields(object, &["apiVersion", "kind", "metadata", "spec"], "")?;
    let spec = &object["spec"];
    unknown_fields(spec, &["selector", "mtls", "portLevelMtls"], "spec")?;
    if !spec["selector"].is_null() {
        check_workload_selector(&spec["selector"], "spec.selector")?;
    }
    unknown_fields(&spec["mtls"], &["mode"], "spec.mtls")?;
    let mode = at(spec, "mtls.mode").as_str().unwrap_or_default();
    if ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"].contains(&mode) {
        Ok(())
    } else {
        Err(format!("`spec.mtls.mode` is {}", at(spec, "mtls.mode")))
    }
}

/// The labels of a Deployment's pods.
fn pod_labels(manifests: &[Manifest], deployment: &str) -> BTreeMap<String, String> {
    serde_json::from_value(
        at(
            find(manifests, "Deployment", deployment),
            "spec.template.metadata.labels",
        )
        .clone(),
    )
    .unwrap()
}

/// Whether every label of a (non-empty) `selector` holds for `labels`.
fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn network_policies(
    manifests: &[Manifest],
) -> Vec<k8s_openapi::api::networking::v1::NetworkPolicy> {
    manifests
        .iter()
        .filter(|m| m.kind() == "NetworkPolicy")
        .map(|m| {
            serde_json::from_value(m.object.clone())
                .unwrap_or_else(|err| panic!("{}: not a NetworkPolicy: {err}", m.file))
        })
        .collect()
}

/// The label selector as labels, refusing what this check does not evaluate (expressions).
fn match_labels(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<BTreeMap<String, String>, String> {
    let Some(selector) = selector else {
        return Ok(BTreeMap::new());
    };
    if selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return Err(format!(
            "matchExpressions are not evaluated here: {selector:?}"
        ));
    }
    Ok(selector.match_labels.clone().unwrap_or_default())
}

/// A source of traffic as a NetworkPolicy names it, in a form to compare (an empty label map
/// selects everything).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// Pods of the policy's own namespace with these labels (empty: all of them).
    Pods(BTreeMap<String, String>),
    /// Pods with these labels (empty: all) in namespaces with those labels (empty: all).
    PodsInNamespaces(BTreeMap<String, String>, BTreeMap<String, String>),
    /// An IP block, or a rule without `from` (anyone at all): where it is.
    Anyone(String),
}

/// What is wrong with the NetworkPolicies of keyservice's pods (whose labels are `keyservice`):
/// they must deny by default, and admit exactly `edge`, on `port` alone.
fn keyservice_ingress_problems(
    policies: &[k8s_openapi::api::networking::v1::NetworkPolicy],
    keyservice: &BTreeMap<String, String>,
    edge: &BTreeSet<Source>,
    port: i32,
) -> Vec<String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut problems = Vec::new();
    let mut admitted = BTreeSet::new();
    let mut default_deny = false;
    for policy in policies {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &policy.spec else {
            problems.push(format!("{name}: no spec"));
            continue;
        };
        let selector = match match_labels(spec.pod_selector.as_ref()) {
            Ok(selector) => selector,
            Err(err) => {
                problems.push(format!("{name}: {err}"));
                continue;
            }
        };
        // An empty podSelector selects every pod of the namespace, keyservice's included.
        if !(selector.is_empty() || selects(&selector, keyservice)) {
            continue;
        }
        let types = spec.policy_types.clone().unwrap_or_default();
        let rules = spec.ingress.clone().unwrap_or_default();
        if !types.iter().any(|t| t == "Ingress") && rules.is_empty() {
            continue;
        }
        if rules.is_empty() {
            default_deny = true;
        }
        for (index, rule) in rules.iter().enumerate() {
            let at = format!("{name}: ingress[{index}]");
            let ports: Vec<(Option<&str>, Option<&IntOrString>, Option<i32>)> = rule
                .ports
                .iter()
                .flatten()
                .map(|p| (p.protocol.as_deref(), p.port.as_ref(), p.end_port))
                .collect();
            let expected_port = IntOrString::Int(port);
            if ports != [(Some("TCP"), Some(&expected_port), None)] {
                problems.push(format!("{at}: ports {ports:?}, expected TCP {port} alone"));
            }
            let peers = rule.from.clone().unwrap_or_default();
            if peers.is_empty() {
                admitted.insert(Source::Anyone(format!("{at}: no `from`")));
            }
            for peer in peers {
                if let Some(block) = &peer.ip_block {
                    admitted.insert(Source::Anyone(format!("{at}: ipBlock {}", block.cidr)));
                    continue;
                }
                let pods = match_labels(peer.pod_selector.as_ref());
                let namespaces = match_labels(peer.namespace_selector.as_ref());
                match (pods, namespaces, &peer.namespace_selector) {
                    (Ok(pods), _, None) if peer.pod_selector.is_some() => {
                        admitted.insert(Source::Pods(pods));
                    }
                    (Ok(pods), Ok(namespaces), Some(_)) => {
                        admitted.insert(Source::PodsInNamespaces(pods, namespaces));
                    }
                    (Err(err), _, _) | (_, Err(err), _) => problems.push(format!("{at}: {err}")),
                    _ => problems.push(format!("{at}: an empty peer")),
                }
            }
        }
    }
    if !default_deny {
        problems
            .push("no default deny (policyTypes [Ingress], no rules) selects keyservice".into());
    }
    if &admitted != edge {
        problems.push(format!(
            "keyservice admits {admitted:?}, expected exactly the edge {edge:?}"
        ));
    }
    problems
}

/// The edge, as the other manifests define it: the pods the WasmPlugin runs keygate in (this
/// namespace), and the ingress gateway's pods in the namespace of its principal.
fn edge_sources() -> BTreeSet<Source> {
    let plugin_pods: BTreeMap<String, String> =
        serde_json::from_value(at(&wasmplugin(), "spec.selector.matchLabels").clone()).unwrap();
    let gateway_namespace = GATEWAY_PRINCIPAL
        .split('/')
        .nth(2)
        .expect("cluster.local/ns/<namespace>/sa/<account>");
    BTreeSet::from([
        Source::Pods(plugin_pods),
        Source::PodsInNamespaces(
            BTreeMap::from([("istio".to_owned(), "ingressgateway".to_owned())]),
            BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                gateway_namespace.to_owned(),
            )]),
        ),
    ])
}

/// The identity of Istio's default ingress gateway.
const GATEWAY_PRINCIPAL: &str =
    "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account";

#[test]
fn networkpolicy_admits_only_the_edge_to_keyservice() {
    use k8s_openapi::api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer,
    };
    let manifests = manifests();
    let policies = network_policies(&manifests);
    assert!(
        manifests
            .iter()
            .filter(|m| m.kind() == "NetworkPolicy")
            .all(|m| m.file == "deploy/kubernetes/40-networkpolicy.yaml"),
        "the NetworkPolicies live in deploy/kubernetes/40-networkpolicy.yaml"
    );
    let keyservice = pod_labels(&manifests, "keyservice");
    let edge = edge_sources();
    let port = i32::try_from(
        at(
            find(&manifests, "Deployment", "keyservice"),
            "spec.template.spec.containers.0.ports.0.containerPort",
        )
        .as_i64()
        .unwrap(),
    )
    .unwrap();
    let problems = keyservice_ingress_problems(&policies, &keyservice, &edge, port);
    assert!(problems.is_empty(), "{problems:#?}");
    // The edge selectors select the workloads they mean, and not keyservice.
    let echo = pod_labels(&manifests, "echo");
    for source in &edge {
        if let Source::Pods(selector) = source {
            assert!(
                selects(selector, &echo),
                "{selector:?} should select echo's pods"
            );
            assert!(
                !selects(selector, &keyservice),
                "{selector:?} selects keyservice"
            );
        }
    }

    // The check is not vacuous: each way of opening keyservice to more than the edge is caught.
    let allow: NetworkPolicy = policies
        .iter()
        .find(|p| p.spec.as_ref().is_some_and(|s| s.ingress.is_some()))
        .cloned()
        .expect("an allow policy");
    let with_rules = |edit: &dyn Fn(&mut Vec<NetworkPolicyIngressRule>)| {
        let mut policies = policies.clone();
        for policy in &mut policies {
            if let Some(rules) = policy.spec.as_mut().and_then(|s| s.ingress.as_mut()) {
                edit(rules);
            }
        }
        policies
    };
    let peer = |json: Value| -> NetworkPolicyPeer { serde_json::from_value(json).unwrap() };
    let opened: Vec<(&str, Vec<NetworkPolicy>)> = vec![
        (
            "from removed: every source",
            with_rules(&|rules| rules[0].from = None),
        ),
        (
            "every namespace",
            with_rules(&|rules| {
                rules[0]
                    .from
                    .get_or_insert_with(Vec::new)
                    .push(peer(json!({"namespaceSelector": {}})))
            }),
        ),
        (
            "every pod of the namespace",
            with_rules(&|rules| {
                rules[0]
                    .from
                    .get_or_insert_with(Vec::new)
                    .push(peer(json!({"podSelector": {}})))
            }),
        ),
        (
            "an IP block",
            with_rules(&|rules| {
                rules[0]
                    .from
                    .get_or_insert_with(Vec::new)
                    .push(peer(json!({"ipBlock": {"cidr": "0.0.0.0/0"}})))
            }),
        ),
        (
            "the gateway's pod label in every namespace",
            with_rules(&|rules| {
                for peer in rules[0].from.iter_mut().flatten() {
                    if peer.namespace_selector.is_some() {
                        peer.namespace_selector = Some(Default::default());
                    }
                }
            }),
        ),
        ("every port", with_rules(&|rules| rules[0].ports = None)),
        (
            "a second rule from anyone",
            with_rules(&|rules| rules.push(NetworkPolicyIngressRule::default())),
        ),
        (
            "no default deny",
            policies
                .iter()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.ingress.is_some()))
                .cloned()
                .collect(),
        ),
        ("another policy allowing all", {
            let mut everything = allow.clone();
            if let Some(spec) = everything.spec.as_mut() {
                spec.pod_selector = Some(Default::default());
                spec.ingress = Some(vec![NetworkPolicyIngressRule::default()]);
            }
            let mut policies = policies.clone();
            policies.push(everything);
            policies
        }),
    ];
    for (name, policies) in opened {
        assert!(
            !keyservice_ingress_problems(&policies, &keyservice, &edge, port).is_empty(),
            "opening keyservice ({name}) went unnoticed"
        );
    }
}

/// A caller of keyservice as Istio sees it: its mutual-TLS principal (none in plain text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Caller<'a> {
    name: &'static str,
    principal: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn namespace(&self) -> Option<&'a str> {
        self.principal
            .and_then(|principal| principal.split('/').nth(2))
    }
}

/// Istio's string match: exact, `prefix*`, `*suffix`, or `*` (anything present).
fn istio_matches(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else {
        pattern == value
    }
}

/// Whether one field's patterns match `value` (a field not set matches everything; one set
/// never matches an absent value).
fn field_matches(patterns: &Value, value: Option<&str>) -> bool {
    match patterns.as_array() {
        None => true,
        Some(patterns) => value.is_some_and(|value| {
            patterns
                .iter()
                .filter_map(Value::as_str)
                .any(|pattern| istio_matches(pattern, value))
        }),
    }
}

/// Whether an ALLOW AuthorizationPolicy lets `caller` send `method path`, as Istio decides it;
/// `Err` for fields this evaluation does not know (so it never guesses).
fn authorization_allows(
    spec: &Value,
    caller: Caller,
    method: &str,
    path: &str,
) -> Result<bool, String> {
    if spec["action"] != "ALLOW" {
        return Err(format!("only ALLOW is evaluated: {}", spec["action"]));
    }
    for rule in spec["rules"].as_array().into_iter().flatten() {
        unknown_fields(rule, &["from", "to"], "rule")?;
        let from = match rule["from"].as_array() {
            None => true,
            Some(sources) => {
                let mut any = false;
                for source in sources {
                    let source = &source["source"];
                    unknown_fields(source, &["principals", "namespaces"], "source")?;
                    any |= field_matches(&source["principals"], caller.principal)
                        && field_matches(&source["namespaces"], caller.namespace());
                }
                any
            }
        };
        let to = match rule["to"].as_array() {
            None => true,
            Some(operations) => {
                let mut any = false;
                for operation in operations {
                    let operation = &operation["operation"];
                    unknown_fields(operation, &["methods", "paths"], "operation")?;
                    any |= field_matches(&operation["methods"], Some(method))
                        && field_matches(&operation["paths"], Some(path));
                }
                any
            }
        };
        if from && to {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where the AuthorizationPolicy's decisions differ from keyservice's intended exposure.
fn authorization_mismatches(spec: &Value, echo_principal: &str) -> Vec<String> {
    let gateway = Caller {
        name: "the ingress gateway",
        principal: Some(GATEWAY_PRINCIPAL),
    };
    let keygate = Caller {
        name: "echo's sidecar (keygate)",
        principal: Some(echo_principal),
    };
    let monitoring = Caller {
        name: "Prometheus",
        principal: Some("cluster.local/ns/monitoring/sa/prometheus"),
    };
    let other = Caller {
        name: "a pod of another namespace",
        principal: Some("cluster.local/ns/shop/sa/default"),
    };
    let plain = Caller {
        name: "a caller without identity",
        principal: None,
    };
    let everyone = [gateway, keygate, monitoring, other, plain];
    let management: &[Caller] = &[gateway];
    let filter: &[Caller] = &[keygate];
    let scraper: &[Caller] = &[monitoring];
    let cases: Vec<(&str, &str, &[Caller])> = vec![
        ("GET", "/keys", management),
        ("GET", "/keys/app.js", management),
        ("GET", "/v1/keys", management),
        ("POST", "/v1/keys", management),
        ("DELETE", "/v1/keys/0b4d", management),
        ("GET", "/v1/keys/0b4d/usage", management),
        ("GET", "/v1/me", management),
        ("GET", "/v1/revocations/9f86d081", filter),
        ("GET", "/v1/revocations", filter),
        ("POST", "/v1/usage", filter),
        ("POST", "/v1/revocations", &[]),
        ("GET", "/v1/usage", &[]),
        ("GET", "/healthz", &everyone),
        ("GET", "/readyz", &everyone),
        ("GET", "/metrics", scraper),
        ("GET", "/v1/authorize/anything", &[]),
        ("GET", "/", &[]),
        ("GET", "/keysmith", &[]),
        ("GET", "/v1/me/keys", &[]),
    ];
    let mut mismatches = Vec::new();
    for (method, path, allowed) in cases {
        for caller in everyone {
            let expected = allowed.contains(&caller);
            match authorization_allows(spec, caller, method, path) {
                Ok(decided) if decided == expected => {}
                Ok(decided) => mismatches.push(format!(
                    "{method} {path} from {}: {}, expected {}",
                    caller.name,
                    if decided { "allowed" } else { "denied" },
                    if expected { "allowed" } else { "denied" }
                )),
                Err(err) => mismatches.push(format!("{method} {path}: {err}")),
            }
        }
    }
    mismatches
}

#[test]
fn authorizationpolicy_lets_only_the_gateway_manage_keys() {
    let manifests = manifests();
    let of_kind =
        |kind: &str| -> Vec<&Manifest> { manifests.iter().filter(|m| m.kind() == kind).collect() };
    let [policy] = of_kind("AuthorizationPolicy")[..] else {
        panic!("one AuthorizationPolicy in deploy/istio")
    };
    let [peer_authentication] = of_kind("PeerAuthentication")[..] else {
        panic!("one PeerAuthentication in deploy/istio")
    };
    assert_eq!(policy.file, "deploy/istio/authorizationpolicy.yaml");
    let spec = &policy.object["spec"];
    // keyservice's pods, and only them; mutual TLS required there, so principals are proven.
    let keyservice = pod_labels(&manifests, "keyservice");
    let selector: BTreeMap<String, String> =
        serde_json::from_value(at(spec, "selector.matchLabels").clone()).unwrap();
    assert!(selects(&selector, &keyservice), "{selector:?}");
    assert!(
        !selects(&selector, &pod_labels(&manifests, "echo")),
        "{selector:?}"
    );
    assert_eq!(
        at(&peer_authentication.object, "spec.selector"),
        at(spec, "selector"),
        "STRICT mutual TLS on the pods the policy guards"
    );
    assert_eq!(at(&peer_authentication.object, "spec.mtls.mode"), "STRICT");

    // echo's sidecar runs keygate; its principal is its pods' service account.
    let echo = find(&manifests, "Deployment", "echo");
    let account = at(echo, "spec.template.spec.serviceAccountName")
        .as_str()
        .unwrap_or("default");
    let echo_principal = format!("cluster.local/ns/{NAMESPACE}/sa/{account}");
    let mismatches = authorization_mismatches(spec, &echo_principal);
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    // The evaluation is not vacuous: each way of opening key management is caught.
    let mutate = |edit: &dyn Fn(&mut Value)| {
        let mut copy = spec.clone();
        edit(&mut copy);
        copy
    };
    let opened = [
        (
            "a rule for everything",
            mutate(&|s| s["rules"].as_array_mut().unwrap().push(json!({}))),
        ),
        (
            "the first rule from anyone",
            mutate(&|s| drop(s["rules"][0].as_object_mut().unwrap().remove("from"))),
        ),
        (
            "any principal",
            mutate(&|s| s["rules"][0]["from"][0]["source"]["principals"] = json!(["*"])),
        ),
        (
            "the namespace's workloads",
            mutate(&|s| {
                s["rules"][0]["from"][0]["source"]["principals"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(format!("cluster.local/ns/{NAMESPACE}/sa/*")))
            }),
        ),
        (
            "every path",
            mutate(&|s| s["rules"][1]["to"][0]["operation"]["paths"] = json!(["*"])),
        ),
    ];
    for (name, spec) in opened {
        assert!(
            !authorization_mismatches(&spec, &echo_principal).is_empty(),
            "{name} went unnoticed"
        );
    }
}

/// keyservice in Kubernetes verifies its callers itself: API keys, and Clerk sessions whose
/// settings come from a ConfigMap, the scopes it offers from another.
#[test]
fn kubernetes_keyservice_verifies_api_keys_and_clerk_sessions() {
    let manifests = manifests();
    let deployment = find(&manifests, "Deployment", "keyservice");
    let pod = at(deployment, "spec.template.spec");
    let container = &pod["containers"][0];
    let args = args_of(&container["args"]);
    assert_eq!(args.first(), Some(&"serve"), "{args:?}");
    assert!(args.contains(&"--api-key-callers"), "{args:?}");

    // Every setting of the session flags from a key its ConfigMap has.
    let env = container["env"].as_array().unwrap();
    let from_config_map = |name: &str| -> String {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("keyservice has no {name}"));
        let reference = at(var, "valueFrom.configMapKeyRef");
        let map = find(&manifests, "ConfigMap", str_at(reference, "name"));
        at(map, &format!("data.{}", str_at(reference, "key")))
            .as_str()
            .unwrap_or_else(|| panic!("{name}: ConfigMap {reference} has no such key"))
            .to_owned()
    };
    let issuer = from_config_map("KEYSERVICE_SESSION_ISSUER");
    assert_eq!(
        issuer, "https://clerk.example.com",
        "the placeholder issuer"
    );
    assert_eq!(
        from_config_map("KEYSERVICE_SESSION_JWKS_URL"),
        format!("{issuer}/.well-known/jwks.json")
    );
    assert_eq!(
        from_config_map("KEYSERVICE_SESSION_AUTHORIZED_PARTIES"),
        "https://app.example.com"
    );
    for name in ["KEYSERVICE_SIGN_IN_URL", "KEYSERVICE_SIGN_OUT_URL"] {
        assert!(from_config_map(name).starts_with("https://"), "{name}");
    }

    // --scopes: a file of a ConfigMap volume, offering what the compose rig offers.
    let path = Path::new(flag_value(&args, "--scopes"));
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| path.parent() == Some(Path::new(str_at(m, "mountPath"))))
        .unwrap_or_else(|| panic!("nothing is mounted where {} is", path.display()));
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let map = find(&manifests, "ConfigMap", str_at(volume, "configMap.name"));
    let file = path.file_name().unwrap().to_str().unwrap();
    let text = map["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {file}"));
    assert_eq!(
        scope_names(text, "ConfigMap keyservice-scopes"),
        scope_names(
            &read("deploy/compose/scopes.json"),
            "deploy/compose/scopes.json"
        )
    );
}

// ---------------------------------------------------------------------------------------------
// The OCI image (`make oci`)

const OCI_TAG: &str = "0.0.0-test";

fn build_oci_layout(dir: &Path) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = run(
        Command::new(&python)
            .arg(root().join("scripts/oci-image.py"))
            .arg("--wasm")
            .arg(bins::keygate_wasm())
            .arg("--out")
            .arg(dir)
            .args(["--tag", OCI_TAG]),
        "scripts/oci-image.py",
    );
    assert!(output.status.success(), "{}", describe(&output));
}

/// A blob of the layout by its descriptor, checked against the descriptor's digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = str_at(descriptor, "digest");
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|err| panic!("blob {digest}: {err}"));
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "blob {digest} does not hash to its name"
    );
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "size of blob {digest}"
    );
    bytes
}

fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in fs::read_dir(&next).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn oci_layout_is_an_istio_compat_image_of_the_built_filter() {
    let wasm = fs::read(testkit::bins::keygate_wasm()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("keygate");
    build_oci_layout(&layout);

    let oci_layout: Value =
        serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout, json!({"imageLayoutVersion": "1.0.0"}));

    // index.json → one manifest, tagged.
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index:#}");
    let descriptor = &manifests[0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        at(descriptor, "annotations").get("org.opencontainers.image.ref.name"),
        Some(&json!(OCI_TAG))
    );
    let manifest_bytes = blob(&layout, descriptor);
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();

    // The manifest: compat variant, a config and exactly one gzip tar layer.
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"].get("module.wasm.image/variant"),
        Some(&json!("compat")),
        "the compat variant with OCI media types needs this annotation"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "exactly one layer: {manifest:#}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    let compressed = blob(&layout, &layers[0]);

    // The layer: a tar holding exactly plugin.wasm, the built filter byte for byte.
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut tar_bytes)
        .expect("the layer is gzip");
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.push((entry.path().unwrap().display().to_string(), header, bytes));
    }
    assert_eq!(entries.len(), 1, "the layer holds one file");
    let (path, header, bytes) = &entries[0];
    assert_eq!(path, "plugin.wasm");
    assert_eq!(header.entry_type(), tar::EntryType::Regular);
    assert_eq!(header.mode().unwrap() & 0o777, 0o644);
    assert_eq!(
        header.mtime().unwrap(),
        0,
        "fixed mtime, for reproducible digests"
    );
    assert!(
        *bytes == wasm,
        "plugin.wasm differs from the built keygate.wasm"
    );

    // The config: its diff_id is the uncompressed layer's digest.
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!([format!("sha256:{}", sha256_hex(&tar_bytes))])
    );
    assert!(config["architecture"].is_string() && config["os"].is_string());

    // Nothing else in the layout.
    let mut expected: BTreeSet<String> = ["oci-layout".to_owned(), "index.json".to_owned()].into();
    for descriptor in [descriptor, &manifest["config"], &layers[0]] {
        let hex = str_at(descriptor, "digest").trim_start_matches("sha256:");
        expected.insert(format!("blobs/sha256/{hex}"));
    }
    let files = tree(&layout);
    assert_eq!(files.keys().cloned().collect::<BTreeSet<_>>(), expected);

    // Deterministic: the same filter gives the same bytes, so the same digest.
    let again = dir.path().join("again");
    build_oci_layout(&again);
    assert!(tree(&again) == files, "a second build differs");

    // skopeo (which pushes it: `skopeo copy oci:DIR:TAG docker://…`) reads it and copies it
    // unchanged to another layout.
    require_tool(
        "skopeo",
        &["--version"],
        "Install it with `make tools` (Debian's skopeo package).",
    );
    let reference = format!("oci:{}:{OCI_TAG}", layout.display());
    let raw = run(
        Command::new("skopeo").args(["--insecure-policy", "inspect", "--raw", &reference]),
        "skopeo inspect",
    );
    assert!(raw.status.success(), "{}", describe(&raw));
    assert!(
        raw.stdout == manifest_bytes,
        "skopeo reads another manifest"
    );
    let copy = dir.path().join("copy");
    let copied = run(
        Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            &reference,
            &format!("oci:{}:{OCI_TAG}", copy.display()),
        ]),
        "skopeo copy",
    );
    assert!(copied.status.success(), "{}", describe(&copied));
    let copied_index: Value =
        serde_json::from_slice(&fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        copied_index["manifests"][0]["digest"], descriptor["digest"],
        "skopeo copy changed the manifest (and so the digest Istio would pin)"
    );
}

#[test]
fn makefile_has_the_deploy_targets() {
    let makefile = read("Makefile");
    for target in ["compose-up:", "oci:"] {
        assert!(
            makefile.lines().any(|line| line.starts_with(target)),
            "Makefile has no {target} target"
        );
    }
    assert!(makefile.contains("scripts/oci-image.py"));
}
