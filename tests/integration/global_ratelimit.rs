//! The shipped example of exact global rate limits: `deploy/envoy/global-ratelimit.yaml` (keygate,
//! then Envoy's rate limit filter with descriptors from keygate's identity headers) and
//! `deploy/ratelimit/config.yaml` (the limits of the reference rate limit service); docs/deploy.md,
//! "Exact global limits with Envoy's rate limit service".
//!
//! - The bootstrap passes the real Envoy's `--mode validate`, which loads keygate and runs its
//!   configuration check.
//! - Its wiring: keygate, then the rate limit filter, then the router; every header a rate limit
//!   action reads is one keygate sets from verified claims (and removes from clients); the
//!   filter's domain is the service configuration's; its gRPC cluster exists and speaks HTTP/2
//!   (`--mode validate` accepts a filter naming a cluster the bootstrap lacks); no descriptor
//!   can go out empty (Envoy 1.40 sends one whose every action has `skip_if_absent: true` and
//!   no header, as the test in Envoy shows if that is changed).
//! - The two files cannot drift apart: every descriptor the route's actions can build has a limit
//!   in the service configuration (matched as envoyproxy/ratelimit matches: at each level the
//!   key with the value, then the key alone), and every limit there is one an action can reach.
//! - In the real Envoy, against a stand-in for the service ([`stand_in`]): the descriptors are
//!   the verified identity, never a client's own `x-user-id`/`x-org-id`; a key without an
//!   organisation sends no organisation descriptor; refused requests are never counted; the
//!   service's `OVER_LIMIT` is 429 with RateLimit headers, per user and per organisation, other
//!   users and organisations unaffected; every descriptor Envoy sent has a limit in the service
//!   configuration.
//! - With the service down, the documented failure mode: the request goes on with
//!   `failure_mode_deny: false` (as shipped) and is answered 500 with `true`.

mod stand_in;

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::bins;
use testkit::bootstrap::load_assignment;
use testkit::bootstrap_edit::{loopback_bootstrap, shipped_bootstrap};
use testkit::envoy::Envoy;
use testkit::http::{Reply, client};
use testkit::ports::closed_port;
use testkit::process::{Server, spawn_listening};
use testkit::token::{now, sign};

use crate::support::{Cases, SECRET, expect_allowed, expect_missing_credential, expect_status};
use stand_in::{Call, RateLimitService};

const EXAMPLE: &str = "deploy/envoy/global-ratelimit.yaml";
const SERVICE_CONFIG: &str = "deploy/ratelimit/config.yaml";
const RATELIMIT_FILTER: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit";
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The two files

fn root() -> PathBuf {
    bins::repo_root()
}

/// The example's HTTP filters, in order.
fn http_filters(bootstrap: &Value) -> &Vec<Value> {
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"]
        .as_array()
        .expect("the example's listener has HTTP filters")
}

/// The rate limit filter's configuration (its `typed_config`).
fn ratelimit_filter(bootstrap: &Value) -> &Value {
    let filters: Vec<&Value> = http_filters(bootstrap)
        .iter()
        .filter(|filter| filter["typed_config"]["@type"] == RATELIMIT_FILTER)
        .collect();
    assert_eq!(filters.len(), 1, "{EXAMPLE}: one rate limit filter");
    &filters[0]["typed_config"]
}

fn ratelimit_filter_mut(bootstrap: &mut Value) -> &mut Value {
    let filters = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array_mut()
        .expect("the example's listener has HTTP filters");
    let filter = filters
        .iter_mut()
        .find(|filter| filter["typed_config"]["@type"] == RATELIMIT_FILTER)
        .expect("the example has a rate limit filter");
    &mut filter["typed_config"]
}

fn cluster<'a>(bootstrap: &'a Value, name: &str) -> &'a Value {
    bootstrap["static_resources"]["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|cluster| cluster["name"] == name)
        .unwrap_or_else(|| panic!("{EXAMPLE}: no cluster {name:?}"))
}

/// The rate limit service's configuration, checked against the format envoyproxy/ratelimit
/// reads (only the fields this test knows how to match: anything else fails, to be taught):
/// its `domain` and its `descriptors`.
fn service_config() -> (String, Value) {
    let path = root().join(SERVICE_CONFIG);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let config: Value = serde_norway::from_str(&text)
        .unwrap_or_else(|err| panic!("{SERVICE_CONFIG} is not YAML: {err}"));
    let object = config
        .as_object()
        .unwrap_or_else(|| panic!("{SERVICE_CONFIG}: not a mapping"));
    for key in object.keys() {
        assert!(
            ["domain", "descriptors"].contains(&key.as_str()),
            "{SERVICE_CONFIG}: unknown top-level field {key:?}"
        );
    }
    let domain = config["domain"]
        .as_str()
        .filter(|domain| !domain.is_empty())
        .unwrap_or_else(|| panic!("{SERVICE_CONFIG}: `domain` must be a non-empty string"))
        .to_owned();
    let descriptors = config["descriptors"].clone();
    check_descriptors(&descriptors, "descriptors");
    (domain, descriptors)
}

/// A `descriptors` list of the service's configuration, recursively.
fn check_descriptors(list: &Value, at: &str) {
    let items = list
        .as_array()
        .filter(|items| !items.is_empty())
        .unwrap_or_else(|| panic!("{SERVICE_CONFIG}: `{at}` must be a non-empty list"));
    let mut seen = BTreeSet::new();
    for (index, descriptor) in items.iter().enumerate() {
        let here = format!("{at}[{index}]");
        let object = descriptor
            .as_object()
            .unwrap_or_else(|| panic!("{SERVICE_CONFIG}: `{here}` is not a mapping"));
        for key in object.keys() {
            assert!(
                [
                    "key",
                    "value",
                    "rate_limit",
                    "descriptors",
                    "detailed_metric"
                ]
                .contains(&key.as_str()),
                "{SERVICE_CONFIG}: `{here}.{key}` is not a field this test matches; teach \
                 limit_for in {} about it",
                file!()
            );
        }
        let key = descriptor["key"]
            .as_str()
            .filter(|key| !key.is_empty())
            .unwrap_or_else(|| panic!("{SERVICE_CONFIG}: `{here}.key` is required"));
        let value = match &descriptor["value"] {
            Value::Null => None,
            Value::String(value) => Some(value.clone()),
            other => panic!("{SERVICE_CONFIG}: `{here}.value` must be a string, not {other}"),
        };
        // The service refuses a configuration with the same key and value twice at one level.
        assert!(
            seen.insert((key.to_owned(), value.clone())),
            "{SERVICE_CONFIG}: `{here}` repeats {key:?} {value:?}"
        );
        if !descriptor["rate_limit"].is_null() {
            rate_limit_of(descriptor, &here);
        }
        if !descriptor["descriptors"].is_null() {
            check_descriptors(&descriptor["descriptors"], &format!("{here}.descriptors"));
        }
        assert!(
            !descriptor["rate_limit"].is_null() || !descriptor["descriptors"].is_null(),
            "{SERVICE_CONFIG}: `{here}` has neither a rate_limit nor descriptors (it would \
             exempt {key:?} from every limit)"
        );
    }
}

/// A descriptor's limit: `requests_per_unit` per `unit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub requests_per_unit: u64,
    pub unit: String,
}

fn rate_limit_of(descriptor: &Value, at: &str) -> Limit {
    let rate_limit = &descriptor["rate_limit"];
    for key in rate_limit.as_object().into_iter().flat_map(|o| o.keys()) {
        assert!(
            ["unit", "requests_per_unit", "name"].contains(&key.as_str()),
            "{SERVICE_CONFIG}: `{at}.rate_limit.{key}` is not a field this test matches"
        );
    }
    let unit = rate_limit["unit"]
        .as_str()
        .filter(|unit| ["second", "minute", "hour", "day"].contains(unit))
        .unwrap_or_else(|| {
            panic!("{SERVICE_CONFIG}: `{at}.rate_limit.unit` must be second, minute, hour or day")
        });
    let requests_per_unit = rate_limit["requests_per_unit"]
        .as_u64()
        .filter(|count| u32::try_from(*count).is_ok())
        .unwrap_or_else(|| {
            panic!("{SERVICE_CONFIG}: `{at}.rate_limit.requests_per_unit` must be a uint32")
        });
    Limit {
        requests_per_unit,
        unit: unit.to_owned(),
    }
}

/// A descriptor entry: its key, and its value when known (`None`: any value, as a header gives).
pub type Entry = (String, Option<String>);

/// The limit the rate limit service applies to a descriptor with these entries, as
/// envoyproxy/ratelimit finds it: level by level, the entry's key with its value, else a value
/// ending in `*` that is a prefix of it, else the key alone (an unknown value matches only the
/// key alone: it must be limited whatever it is); the last entry's match must have a limit.
pub fn limit_for(descriptors: &Value, entries: &[Entry]) -> Option<Limit> {
    let mut level = descriptors;
    for (index, (key, value)) in entries.iter().enumerate() {
        let with_key: Vec<&Value> = level
            .as_array()?
            .iter()
            .filter(|descriptor| descriptor["key"] == key.as_str())
            .collect();
        let configured = |descriptor: &&&Value| descriptor["value"].as_str().map(str::to_owned);
        let node = value
            .as_ref()
            .and_then(|value| {
                with_key
                    .iter()
                    .find(|d| configured(d).as_ref() == Some(value))
                    .or_else(|| {
                        with_key.iter().find(|d| {
                            configured(d)
                                .and_then(|c| c.strip_suffix('*').map(str::to_owned))
                                .is_some_and(|prefix| value.starts_with(&prefix))
                        })
                    })
            })
            .or_else(|| with_key.iter().find(|d| d["value"].is_null()))?;
        if index + 1 == entries.len() {
            return (!node["rate_limit"].is_null()).then(|| rate_limit_of(node, key));
        }
        level = &node["descriptors"];
    }
    None
}

/// Every path of (key, value) to a limit in the service's configuration.
fn limited_paths(descriptors: &Value, prefix: &[Entry], out: &mut Vec<Vec<Entry>>) {
    for descriptor in descriptors.as_array().into_iter().flatten() {
        let mut path = prefix.to_vec();
        path.push((
            descriptor["key"].as_str().unwrap_or_default().to_owned(),
            descriptor["value"].as_str().map(str::to_owned),
        ));
        if !descriptor["rate_limit"].is_null() {
            out.push(path.clone());
        }
        limited_paths(&descriptor["descriptors"], &path, out);
    }
}

/// A descriptor a route's `rate_limits` entry builds: its entries, and the request headers its
/// actions read.
#[derive(Debug)]
struct Shape {
    route: String,
    entries: Vec<Entry>,
    headers: Vec<String>,
    /// Whether each entry is left out when its header is absent (`skip_if_absent: true`).
    skippable: Vec<bool>,
}

/// The descriptors every route's (and virtual host's) `rate_limits` build, for the filter's
/// stage (0). Actions this test does not know fail it.
fn descriptor_shapes(bootstrap: &Value) -> Vec<Shape> {
    let manager = &bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"];
    let mut shapes = Vec::new();
    let mut add = |route: String, rate_limits: &Value| {
        for limit in rate_limits.as_array().into_iter().flatten() {
            if limit["stage"].as_u64().unwrap_or(0) != 0 {
                continue;
            }
            let mut shape = Shape {
                route: route.clone(),
                entries: Vec::new(),
                headers: Vec::new(),
                skippable: Vec::new(),
            };
            for action in limit["actions"].as_array().into_iter().flatten() {
                if let Some(header) = action.get("request_headers") {
                    shape.headers.push(
                        header["header_name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_ascii_lowercase(),
                    );
                    let key = header["descriptor_key"].as_str().unwrap_or_default();
                    shape.entries.push((key.to_owned(), None));
                    shape.skippable.push(header["skip_if_absent"] == true);
                } else if let Some(generic) = action.get("generic_key") {
                    let key = generic["descriptor_key"].as_str().unwrap_or("generic_key");
                    let value = generic["descriptor_value"].as_str().map(str::to_owned);
                    shape.entries.push((key.to_owned(), value));
                    shape.skippable.push(false);
                } else {
                    panic!("{route}: a rate limit action this test does not know: {action}");
                }
            }
            shapes.push(shape);
        }
    };
    for host in manager["route_config"]["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let host_name = host["name"].as_str().unwrap_or_default();
        add(format!("virtual host {host_name}"), &host["rate_limits"]);
        for (index, route) in host["routes"].as_array().into_iter().flatten().enumerate() {
            add(
                format!("virtual host {host_name}, route {index}"),
                &route["route"]["rate_limits"],
            );
        }
    }
    shapes
}

/// The request headers keygate sets from verified claims (every provider's
/// `claims_to_headers`), which it also removes from every request first.
fn keygate_identity_headers(bootstrap: &Value) -> BTreeSet<String> {
    let keygate = http_filters(bootstrap)
        .iter()
        .find(|filter| filter["name"] == "keygate")
        .expect("the example has keygate");
    let text = keygate["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("keygate's configuration");
    let env = |name: &str| (name == "JWT_SECRET").then(|| SECRET.to_owned());
    let config = keygate::Config::parse(text.as_bytes(), &env)
        .unwrap_or_else(|err| panic!("{EXAMPLE}: keygate refuses its configuration: {err}"));
    config
        .providers
        .iter()
        .flat_map(|provider| provider.claims_to_headers.iter())
        .map(|claim| claim.header.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Offline: the files and `envoy --mode validate`

#[test]
fn the_example_passes_envoy_validate() {
    let bootstrap = shipped_bootstrap(EXAMPLE);
    let keygate = http_filters(&bootstrap)
        .iter()
        .find(|filter| filter["name"] == "keygate")
        .expect("the example has keygate");
    let module = keygate["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"]
        .as_str()
        .expect("keygate's module path");
    // The file as shipped, from the repository root where its module path leads to the built
    // filter; elsewhere (KEYGATE_WASM set to another build) a copy pointing at that one.
    let wasm = bins::keygate_wasm();
    let dir = tempfile::tempdir().unwrap();
    let file = if root().join(module) == wasm {
        root().join(EXAMPLE)
    } else {
        let text = fs::read_to_string(root().join(EXAMPLE))
            .unwrap()
            .replace(module, &wasm.display().to_string());
        let copy = dir.path().join("global-ratelimit.yaml");
        fs::write(&copy, text).unwrap();
        copy
    };
    let output = envoy_validate(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Envoy prints "configuration '<file>' OK" and exits 0 when the bootstrap is valid.
    assert!(
        output.status.success() && stdout.contains("' OK"),
        "envoy --mode validate refuses {EXAMPLE}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn envoy_validate(config: &Path) -> testkit::process::Output {
    let child = Command::new(bins::envoy())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(config)
        .env("JWT_SECRET", SECRET)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("starting {}: {err}", bins::envoy().display()));
    testkit::process::wait_output(child, VALIDATE_TIMEOUT, "envoy --mode validate")
}

#[test]
fn the_example_counts_keygates_verified_identity() {
    let bootstrap = shipped_bootstrap(EXAMPLE);
    let mut cases = Cases::new();

    // keygate, then the rate limit filter, then the router.
    let names: Vec<&str> = http_filters(&bootstrap)
        .iter()
        .map(|filter| filter["name"].as_str().unwrap_or_default())
        .collect();
    let position = |name: &str| names.iter().position(|n| *n == name);
    cases.check(
        "keygate runs before the rate limit filter, the router last",
        match (
            position("keygate"),
            position("envoy.filters.http.ratelimit"),
            position("envoy.filters.http.router"),
        ) {
            (Some(keygate), Some(ratelimit), Some(router))
                if keygate < ratelimit && router + 1 == names.len() =>
            {
                Ok(())
            }
            _ => Err(format!("the HTTP filters are {names:?}")),
        },
    );

    // The filter: the service's domain, an explicit failure mode (false, as docs/deploy.md
    // says), a timeout, RateLimit headers, a cluster of the bootstrap speaking HTTP/2.
    let filter = ratelimit_filter(&bootstrap);
    let (domain, descriptors) = service_config();
    cases.check(
        "the filter's domain is the service configuration's",
        (filter["domain"] == domain.as_str())
            .then_some(())
            .ok_or_else(|| format!("{} vs {domain:?}", filter["domain"])),
    );
    cases.check(
        "failure_mode_deny is set, to false",
        (filter["failure_mode_deny"] == false)
            .then_some(())
            .ok_or_else(|| format!("failure_mode_deny is {}", filter["failure_mode_deny"])),
    );
    cases.check(
        "a timeout is set",
        filter["timeout"]
            .as_str()
            .map(|_| ())
            .ok_or_else(|| "no timeout".to_owned()),
    );
    cases.check(
        "clients get the RateLimit headers",
        (filter["enable_x_ratelimit_headers"] == "DRAFT_VERSION_03")
            .then_some(())
            .ok_or_else(|| format!("{}", filter["enable_x_ratelimit_headers"])),
    );
    let service = &filter["rate_limit_service"];
    let cluster_name = service["grpc_service"]["envoy_grpc"]["cluster_name"]
        .as_str()
        .unwrap_or_default();
    cases.check(
        "the service's cluster exists and speaks HTTP/2 (gRPC), API v3",
        (|| {
            if service["transport_api_version"] != "V3" {
                return Err(format!("transport_api_version {}", service));
            }
            let cluster = bootstrap["static_resources"]["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|cluster| cluster["name"] == cluster_name)
                .ok_or_else(|| format!("no cluster {cluster_name:?} for the filter"))?;
            let options = &cluster["typed_extension_protocol_options"][HTTP_PROTOCOL_OPTIONS];
            if options["explicit_http_config"]["http2_protocol_options"].is_object() {
                Ok(())
            } else {
                Err(format!("cluster {cluster_name:?} is not HTTP/2: {cluster}"))
            }
        })(),
    );

    // The descriptors: built from keygate's identity headers only, and all limited by the
    // service; every limit of the service reached by one of them.
    let shapes = descriptor_shapes(&bootstrap);
    let identity = keygate_identity_headers(&bootstrap);
    let read: BTreeSet<String> = shapes.iter().flat_map(|s| s.headers.clone()).collect();
    cases.check(
        "the actions read x-user-id and x-org-id, which keygate sets",
        (read == BTreeSet::from(["x-org-id".to_owned(), "x-user-id".to_owned()])
            && read.is_subset(&identity))
        .then_some(())
        .ok_or_else(|| format!("actions read {read:?}; keygate sets {identity:?}")),
    );
    let routes = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    cases.check(
        "every route is rate limited",
        (!routes.is_empty()
            && routes.iter().all(|route| {
                route["route"]["rate_limits"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            }))
        .then_some(())
        .ok_or_else(|| format!("routes: {routes:?}")),
    );
    for shape in &shapes {
        // Envoy 1.40 sends a descriptor whose every action was skipped, empty.
        cases.check(
            &format!(
                "{}: descriptor {:?} is never empty",
                shape.route, shape.entries
            ),
            (shape.skippable.contains(&false))
                .then_some(())
                .ok_or_else(|| "every action has skip_if_absent: true".to_owned()),
        );
        cases.check(
            &format!(
                "{}: descriptor {:?} has a limit",
                shape.route, shape.entries
            ),
            limit_for(&descriptors, &shape.entries)
                .map(|_| ())
                .ok_or_else(|| {
                    format!(
                        "no limit in {SERVICE_CONFIG} matches it: the service would let it \
                         through unlimited"
                    )
                }),
        );
    }
    let mut paths = Vec::new();
    limited_paths(&descriptors, &[], &mut paths);
    for path in paths {
        let reached = shapes.iter().any(|shape| {
            shape.entries.len() == path.len()
                && shape
                    .entries
                    .iter()
                    .zip(&path)
                    .all(|((key, value), (k, v))| {
                        key == k && (value.is_none() || v.is_none() || value == v)
                    })
        });
        cases.check(
            &format!("the limit of {path:?} is reached by a descriptor of {EXAMPLE}"),
            reached
                .then_some(())
                .ok_or_else(|| "no rate_limits action builds it".to_owned()),
        );
    }
    cases.finish(String::new);
}

/// The matching used above, on the cases that tell it apart from a plain lookup.
#[test]
fn limit_for_matches_as_the_rate_limit_service_does() {
    let descriptors = json!([
        {"key": "user_id", "rate_limit": {"unit": "minute", "requests_per_unit": 10}},
        {"key": "user_id", "value": "vip", "rate_limit": {"unit": "minute", "requests_per_unit": 99}},
        {"key": "org_id", "value": "team-*", "rate_limit": {"unit": "hour", "requests_per_unit": 5}},
        {"key": "plan", "value": "free", "descriptors": [
            {"key": "user_id", "rate_limit": {"unit": "day", "requests_per_unit": 1}}
        ]}
    ]);
    let limit = |entries: &[(&str, Option<&str>)]| {
        let entries: Vec<Entry> = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect();
        limit_for(&descriptors, &entries).map(|limit| limit.requests_per_unit)
    };
    assert_eq!(limit(&[("user_id", Some("alice"))]), Some(10));
    assert_eq!(limit(&[("user_id", Some("vip"))]), Some(99));
    // Any value: only a rule for every value limits it.
    assert_eq!(limit(&[("user_id", None)]), Some(10));
    assert_eq!(limit(&[("org_id", Some("team-a"))]), Some(5));
    assert_eq!(limit(&[("org_id", Some("acme"))]), None);
    assert_eq!(limit(&[("org_id", None)]), None);
    assert_eq!(limit(&[("plan", Some("free")), ("user_id", None)]), Some(1));
    // Depth must match: the plan alone has no limit, nor has a descriptor deeper than the rules.
    assert_eq!(limit(&[("plan", Some("free"))]), None);
    assert_eq!(
        limit(&[("user_id", Some("a")), ("org_id", Some("b"))]),
        None
    );
    assert_eq!(limit(&[]), None);
}

// ---------------------------------------------------------------------------------------------
// In the real Envoy

/// The example running in Envoy on loopback: the app cluster is echo-upstream, the rate limit
/// service's cluster goes to `service`, keyservice's to a closed port (the keys here have `exp`,
/// so keygate checks them in-process and never calls keyservice).
struct Example {
    envoy: Envoy,
    client: reqwest::blocking::Client,
    _echo: Server,
    _dir: tempfile::TempDir,
}

impl Example {
    fn start(service: SocketAddr, edit: impl FnOnce(&mut Value)) -> Example {
        let dir = testkit::tempdir("keygate-global-ratelimit-");
        let echo = {
            let mut command = Command::new(bins::echo_upstream());
            command.args(["--listen", "127.0.0.1:0"]);
            spawn_listening("echo-upstream", command, dir.path())
        };
        let mut config = loopback_bootstrap(
            shipped_bootstrap(EXAMPLE),
            &bins::keygate_wasm(),
            echo.addr,
            closed_port(),
        );
        let clusters = config["static_resources"]["clusters"]
            .as_array_mut()
            .expect("the example's clusters");
        let ratelimit = clusters
            .iter_mut()
            .find(|cluster| cluster["name"] == "ratelimit")
            .expect("the example's ratelimit cluster");
        // Its endpoint only: the HTTP/2 options stay as shipped.
        ratelimit["load_assignment"] = load_assignment("ratelimit", service);
        edit(&mut config);
        assert!(
            cluster(&config, "ratelimit")["typed_extension_protocol_options"]
                [HTTP_PROTOCOL_OPTIONS]
                .is_object()
        );
        let envoy = Envoy::start(&config, dir.path(), Some(SECRET), 1);
        Example {
            envoy,
            client: client(),
            _echo: echo,
            _dir: dir,
        }
    }

    fn get(&self, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.client.get(self.envoy.url("/jobs"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap_or_else(|err| {
            panic!(
                "GET /jobs through Envoy: {err}\n{}",
                self.envoy.log_tail(30)
            )
        });
        Reply::read(response)
    }

    /// Envoy's counter `name` (0 before it counts anything).
    fn counter(&self, name: &str) -> u64 {
        let body: Value = self
            .client
            .get(format!("http://{}/stats", self.envoy.admin))
            .query(&[("format", "json"), ("usedonly", "")])
            .send()
            .and_then(|response| response.json())
            .unwrap_or_else(|err| panic!("GET /stats: {err}"));
        body["stats"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|stat| stat["name"] == name)
            .and_then(|stat| stat["value"].as_u64())
            .unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        self.envoy.log_tail(40)
    }
}

/// An API key with an expiry (checked in-process only), for `user_id` in `org_id`.
fn key(user_id: &str, org_id: Option<&str>) -> String {
    let mut claims = json!({"user_id": user_id, "iat": now(), "exp": now() + 600});
    if let Some(org_id) = org_id {
        claims["org_id"] = json!(org_id);
    }
    format!("Bearer {}", sign(&claims, SECRET))
}

fn entries(descriptors: &[&[(&str, &str)]]) -> Vec<Vec<(String, String)>> {
    descriptors
        .iter()
        .map(|entries| {
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        })
        .collect()
}

/// The one call the service received since it had `before`, with these descriptors.
fn expect_call(
    service: &RateLimitService,
    before: usize,
    domain: &str,
    descriptors: &[&[(&str, &str)]],
) -> Result<(), String> {
    let calls = service.calls();
    let expected = Call {
        domain: domain.to_owned(),
        descriptors: entries(descriptors),
    };
    match &calls[before.min(calls.len())..] {
        [call] if *call == expected => Ok(()),
        new => Err(format!(
            "expected the one call {expected:?}, the service got {new:?}"
        )),
    }
}

fn expect_no_call(service: &RateLimitService, before: usize) -> Result<(), String> {
    let calls = service.calls();
    if calls.len() == before {
        Ok(())
    } else {
        Err(format!("the service was called: {:?}", &calls[before..]))
    }
}

fn expect_header(reply: &Reply, name: &str, check: impl Fn(&str) -> bool) -> Result<(), String> {
    let value = reply.header(name)?;
    if check(value) {
        Ok(())
    } else {
        Err(format!(
            "unexpected {name}: {value:?} ({})",
            reply.describe()
        ))
    }
}

/// 429 from the rate limit filter: the upstream never saw the request.
fn expect_limited(reply: &Reply) -> Result<(), String> {
    expect_status(reply, 429)?;
    if reply.echo().is_ok() {
        return Err(format!("the upstream answered: {}", reply.describe()));
    }
    expect_header(reply, "x-ratelimit-remaining", |v| v == "0")
}

#[test]
fn the_service_counts_keygates_verified_identity_and_its_over_limit_is_429() {
    let (domain, descriptors) = service_config();
    let service = RateLimitService::start(descriptors);
    // The shipped timeout (50 ms) is for a service next to Envoy; a test machine busy with other
    // Envoys may take longer to answer, which would pass requests unlimited (the failure mode).
    let example = Example::start(service.addr, |config| {
        ratelimit_filter_mut(config)["timeout"] = json!("5s");
    });
    let mut cases = Cases::new();
    let forged = [("x-user-id", "mallory"), ("x-org-id", "evil")];

    let before = service.calls().len();
    let reply = example.get(&[("authorization", &key("alice", Some("acme")))]);
    cases.check(
        "alice at acme: on to the upstream, with her identity",
        expect_allowed(&reply, Some("alice"), Some("acme")),
    );
    cases.check(
        "alice at acme: descriptors (user_id, alice) and (org_id, acme)",
        expect_call(
            &service,
            before,
            &domain,
            &[&[("user_id", "alice")], &[("org_id", "acme")]],
        ),
    );
    cases.check(
        "the RateLimit headers as docs/deploy.md shows them: the tightest limit (user_id's, 100 \
         a minute), then each descriptor's; 99 left",
        expect_header(&reply, "x-ratelimit-limit", |v| {
            v == "100, 100;w=60, 1000;w=60"
        })
        .and_then(|()| expect_header(&reply, "x-ratelimit-remaining", |v| v == "99")),
    );

    let before = service.calls().len();
    let mut headers = vec![("authorization", key("alice", Some("acme")))];
    headers.extend(forged.iter().map(|(n, v)| (*n, (*v).to_owned())));
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = example.get(&headers);
    cases.check(
        "alice with forged x-user-id and x-org-id: the upstream sees hers",
        expect_allowed(&reply, Some("alice"), Some("acme")),
    );
    cases.check(
        "alice with forged headers: counted as alice at acme, never mallory or evil",
        expect_call(
            &service,
            before,
            &domain,
            &[&[("user_id", "alice")], &[("org_id", "acme")]],
        ),
    );

    let before = service.calls().len();
    let reply = example.get(&[("authorization", &key("bob", None)), ("x-org-id", "evil")]);
    cases.check(
        "bob, no organisation (and a forged one): on, without x-org-id",
        expect_allowed(&reply, Some("bob"), None),
    );
    cases.check(
        "bob: only (user_id, bob), no organisation descriptor",
        expect_call(&service, before, &domain, &[&[("user_id", "bob")]]),
    );

    let before = service.calls().len();
    let reply = example.get(&forged);
    cases.check(
        "no key, forged identity: keygate's 401",
        expect_missing_credential(&reply),
    );
    let forged_key = format!(
        "Bearer {}",
        sign(
            &json!({"user_id": "mallory", "iat": now(), "exp": now() + 600}),
            "not-the-secret"
        )
    );
    let reply = example.get(&[("authorization", &forged_key)]);
    cases.check(
        "a key signed with another secret: 401",
        expect_status(&reply, 401),
    );
    cases.check(
        "requests keygate refuses never reach the service",
        expect_no_call(&service, before),
    );

    // Over the limit, per user: carol is refused, alice in the same organisation is not.
    service.over_limit("user_id", "carol");
    let before = service.calls().len();
    let reply = example.get(&[("authorization", &key("carol", Some("acme")))]);
    cases.check("carol over her limit: 429", expect_limited(&reply));
    cases.check(
        "carol: asked as (user_id, carol), (org_id, acme)",
        expect_call(
            &service,
            before,
            &domain,
            &[&[("user_id", "carol")], &[("org_id", "acme")]],
        ),
    );
    cases.check(
        "alice, same organisation, still on",
        expect_allowed(
            &example.get(&[("authorization", &key("alice", Some("acme")))]),
            Some("alice"),
            Some("acme"),
        ),
    );

    // Over the limit, per organisation: every user of bigcorp, whatever key.
    service.over_limit("org_id", "bigcorp");
    for user in ["dave", "erin"] {
        cases.check(
            &format!("{user} at bigcorp, over the organisation's limit: 429"),
            expect_limited(&example.get(&[("authorization", &key(user, Some("bigcorp")))])),
        );
    }
    cases.check(
        "a user of another organisation still on",
        expect_allowed(
            &example.get(&[("authorization", &key("frank", Some("acme")))]),
            Some("frank"),
            Some("acme"),
        ),
    );

    // Envoy counted the answers; and every descriptor it sent has a limit in the service's
    // configuration (the same check as offline, on what Envoy really sent).
    cases.check(
        "Envoy counted 3 over the limit and the rest OK",
        match (
            example.counter("cluster.app.ratelimit.over_limit"),
            example.counter("cluster.app.ratelimit.ok"),
            example.counter("cluster.app.ratelimit.error"),
        ) {
            (3, 5, 0) => Ok(()),
            counts => Err(format!("over_limit, ok, error: {counts:?}")),
        },
    );
    let (_, descriptors) = service_config();
    for call in service.calls() {
        for descriptor in &call.descriptors {
            let entries: Vec<Entry> = descriptor
                .iter()
                .map(|(key, value)| (key.clone(), Some(value.clone())))
                .collect();
            cases.check(
                &format!("sent descriptor {descriptor:?} has a limit in {SERVICE_CONFIG}"),
                limit_for(&descriptors, &entries)
                    .map(|_| ())
                    .ok_or_else(|| "none".to_owned()),
            );
        }
    }
    cases.finish(|| example.log_tail());
}

/// The rate limit service down (its port closed): the example as shipped lets the request
/// through, with keygate's identity, and counts it.
#[test]
fn with_the_service_down_as_shipped_requests_go_on() {
    let example = Example::start(closed_port(), |_| {});
    let mut cases = Cases::new();
    cases.check(
        "a valid key reaches the upstream",
        expect_allowed(
            &example.get(&[("authorization", &key("alice", Some("acme")))]),
            Some("alice"),
            Some("acme"),
        ),
    );
    cases.check(
        "no key: still keygate's 401",
        expect_missing_credential(&example.get(&[])),
    );
    cases.check(
        "counted in cluster.app.ratelimit.failure_mode_allowed",
        match (
            example.counter("cluster.app.ratelimit.error"),
            example.counter("cluster.app.ratelimit.failure_mode_allowed"),
        ) {
            (1, 1) => Ok(()),
            counts => Err(format!("error, failure_mode_allowed: {counts:?}")),
        },
    );
    cases.finish(|| example.log_tail());
}

/// The other choice, `failure_mode_deny: true`: the service down answers 500.
#[test]
fn with_the_service_down_and_failure_mode_deny_requests_are_refused() {
    let example = Example::start(closed_port(), |config| {
        ratelimit_filter_mut(config)["failure_mode_deny"] = json!(true);
    });
    let mut cases = Cases::new();
    let reply = example.get(&[("authorization", &key("alice", Some("acme")))]);
    cases.check(
        "a valid key: 500, the upstream never reached",
        expect_status(&reply, 500).and_then(|()| match reply.echo() {
            Ok(_) => Err(format!("the upstream answered: {}", reply.describe())),
            Err(_) => Ok(()),
        }),
    );
    cases.check(
        "no key: keygate's 401 (keygate answers first)",
        expect_missing_credential(&example.get(&[])),
    );
    cases.check(
        "counted as an error, none allowed",
        match (
            example.counter("cluster.app.ratelimit.error"),
            example.counter("cluster.app.ratelimit.failure_mode_allowed"),
        ) {
            (1, 0) => Ok(()),
            counts => Err(format!("error, failure_mode_allowed: {counts:?}")),
        },
    );
    cases.finish(|| example.log_tail());
}
