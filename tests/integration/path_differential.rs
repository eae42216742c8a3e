//! Differential test of the path: hundreds of spellings of paths, sent through the shipped Envoy
//! configurations with keygate and through the same Envoy without it. For each, either keygate
//! (or Envoy) refused it, or the rule keygate applied is the rule that matches the path the
//! upstream received, read by an independent reference: split on `/`, each segment fully
//! percent-decoded, dot segments removed (RFC 3986 §5.2.4), and refused as ambiguous where a
//! decoded segment holds a `/`, `\`, `;`, `?`, `#` or `%` (readers disagree on those, so keygate
//! must have refused it).
//!
//! keygate's decision is read from its answers to three requests: no token (200 allow, 403
//! deny, 401 needs a token), a token without scopes (200 authenticate, 403 insufficient_scope
//! names the scopes) and a token with every scope (200: the upstream's echo shows the path).
//! Every configuration gets the same rules: the two the rig ships, and a few of each kind.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Value, json};
use testkit::bootstrap_edit::{edit_plugin_config, shipped_bootstrap, without_keygate};
use testkit::http::Reply;
use testkit::token::{now, sign};

use crate::support::{Rig, SECRET};

fn rules() -> Value {
    json!([
        {"match": {"path": "/healthz", "methods": ["GET", "HEAD"]}, "action": "allow"},
        {"match": {"glob": "/v1/keys/**"}, "action": "require_scopes", "scopes": ["keys:write"]},
        {"match": {"prefix": "/public/"}, "action": "allow"},
        {"match": {"glob": "/admin/**"}, "action": "deny"},
        {"match": {"glob": "/orgs/*/billing/**"}, "action": "require_scopes", "scopes": ["billing"]},
        {"match": {"prefix": "/static"}, "action": "allow"}
    ])
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Allow,
    Authenticate,
    Deny,
    RequireScopes(String),
}

// ---------------------------------------------------------------------------------------------
// The reference reading of the path the upstream received.

#[derive(Debug)]
enum Reading {
    Segments(Vec<String>),
    /// Readers disagree on it; keygate must have refused it.
    Ambiguous(String),
}

fn read_received(received: &str) -> Reading {
    let path = received.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix('/') else {
        return Reading::Ambiguous(format!("{path:?} is not origin-form"));
    };
    let raw_segments: Vec<&str> = rest.split('/').collect();
    let mut decoded = Vec::with_capacity(raw_segments.len());
    for raw in raw_segments {
        let Some(bytes) = percent_decode(raw) else {
            return Reading::Ambiguous(format!("segment {raw:?} has an invalid escape"));
        };
        let Ok(text) = String::from_utf8(bytes) else {
            return Reading::Ambiguous(format!("segment {raw:?} is not UTF-8"));
        };
        let escaped_semicolon = raw.to_ascii_lowercase().contains("%3b");
        if escaped_semicolon
            || text.contains(['/', '\\', '?', '#', '%'])
            || text.chars().any(char::is_control)
        {
            return Reading::Ambiguous(format!("segment {raw:?} decodes to {text:?}"));
        }
        decoded.push(text);
    }
    // RFC 3986 §5.2.4 on whole segments: a trailing `.` or `..` leaves a trailing slash.
    let last = decoded.len() - 1;
    let mut out: Vec<String> = Vec::new();
    for (index, segment) in decoded.into_iter().enumerate() {
        match segment.as_str() {
            "." => {}
            ".." => {
                out.pop();
            }
            _ => {
                out.push(segment);
                continue;
            }
        }
        if index == last {
            out.push(String::new());
        }
    }
    if out.is_empty() {
        out.push(String::new());
    }
    Reading::Segments(out)
}

fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The first rule of [`rules`] matching the segments, for GET.
fn reference_action(segments: &[String]) -> Action {
    let joined = format!("/{}", segments.join("/"));
    for rule in rules().as_array().unwrap() {
        let matcher = &rule["match"];
        if let Some(methods) = matcher["methods"].as_array()
            && !methods.iter().any(|m| m == "GET")
        {
            continue;
        }
        let matched = if let Some(path) = matcher["path"].as_str() {
            pattern_segments(path) == segments
        } else if let Some(prefix) = matcher["prefix"].as_str() {
            joined.starts_with(prefix)
        } else {
            let glob = pattern_segments(matcher["glob"].as_str().unwrap());
            glob_matches(&glob, segments)
        };
        if matched {
            return match rule["action"].as_str().unwrap() {
                "allow" => Action::Allow,
                "deny" => Action::Deny,
                "require_scopes" => {
                    let scopes: Vec<&str> = rule["scopes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap())
                        .collect();
                    Action::RequireScopes(scopes.join(" "))
                }
                other => panic!("unexpected action {other}"),
            };
        }
    }
    Action::Authenticate
}

fn pattern_segments(pattern: &str) -> Vec<String> {
    pattern[1..].split('/').map(str::to_owned).collect()
}

/// `**` spans any number of segments; within a segment `*` is any run and `?` one character.
fn glob_matches(glob: &[String], segments: &[String]) -> bool {
    match glob.split_first() {
        None => segments.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=segments.len()).any(|skip| glob_matches(rest, &segments[skip..]))
        }
        Some((first, rest)) => segments.split_first().is_some_and(|(segment, tail)| {
            let pattern: Vec<char> = first.chars().collect();
            let text: Vec<char> = segment.chars().collect();
            segment_matches(&pattern, &text) && glob_matches(rest, tail)
        }),
    }
}

fn segment_matches(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| segment_matches(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && segment_matches(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && segment_matches(rest, &text[1..]),
    }
}

#[test]
fn the_reference_reads_the_issues_examples_as_the_upstream_does() {
    let segments = |path: &str| match read_received(path) {
        Reading::Segments(segments) => segments,
        Reading::Ambiguous(why) => panic!("{path}: {why}"),
    };
    assert_eq!(segments("/a/b/../c"), ["a", "c"]);
    assert_eq!(segments("/a/b/.."), ["a", ""]);
    assert_eq!(segments("/.."), [""]);
    assert_eq!(segments("/a/%2E%2E/b"), ["b"]);
    assert_eq!(segments("/atk/..;/healthz"), ["atk", "..;", "healthz"]);
    assert!(matches!(
        read_received("/atk/..%2Fhealthz"),
        Reading::Ambiguous(_)
    ));
    assert!(matches!(
        read_received("/atk/..%3B/healthz"),
        Reading::Ambiguous(_)
    ));
    assert_eq!(reference_action(&segments("/healthz")), Action::Allow);
    assert_eq!(
        reference_action(&segments("/atk/..;/healthz")),
        Action::Authenticate
    );
    assert_eq!(
        reference_action(&segments("/v1/keys")),
        Action::RequireScopes("keys:write".into())
    );
    assert_eq!(
        reference_action(&segments("/orgs/o1/billing")),
        Action::RequireScopes("billing".into())
    );
    assert_eq!(
        reference_action(&segments("/orgs/o1/x/billing")),
        Action::Authenticate
    );
    assert_eq!(reference_action(&segments("/admin")), Action::Deny);
    assert_eq!(
        reference_action(&segments("/administrator")),
        Action::Authenticate
    );
    assert_eq!(reference_action(&segments("/statics")), Action::Allow);
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// Deterministic: the issue's examples, every rule's target spelled plainly and with escapes of
/// ordinary characters, parameters and repeated slashes, and traversals from one target to
/// another with every spelling of a dot segment and a separator (a sample of the product).
fn corpus() -> Vec<String> {
    let mut paths: BTreeSet<String> = [
        "/atk/..%2Fhealthz",
        "/atk/..%2fhealthz",
        "/atk/..%5Chealthz",
        "/atk%2F..%2Fhealthz",
        "/atk/..%3B/healthz",
        "/atk/%2E%2E%2Fhealthz",
        "/v1/keys/..%2F",
        "/v1/keys/..%3B",
        "/v1/keys/x/..%2F..%2F..%2Fatk",
        "http://127.0.0.1/atk/..%2Fhealthz",
        "/healthz#frag",
        "/%zz",
        "/%",
        "/%0",
        "/healthz%00",
        "/healthz%0a",
        "/%ff",
        "/%c3",
        "/%c2%85",
        "/caf%C3%A9",
        "/healthz%20",
        "/100%25",
        "/a%25zz",
        "/%2561dmin",
        "/healthz%3F/../admin",
        "/admin%3F/../healthz",
        "/admin%23/../healthz",
        "/healthz?/../admin",
        "/HEALTHZ",
        "/Admin",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let targets = [
        "/healthz",
        "/v1/keys",
        "/v1/keys/k1",
        "/public/app.css",
        "/admin",
        "/admin/users",
        "/orgs/o1/billing/x",
        "/static/x",
        "/atk",
        "/",
    ];
    for target in targets {
        for suffix in [
            "", "/", "?q=1", ";x=1", ";", "//", "/.", "/..", "/;/", "%2F", "%3B",
        ] {
            paths.insert(format!("{target}{suffix}"));
        }
        paths.insert(format!("/{target}"));
        paths.insert(target.replacen('/', "//", 2));
        paths.insert(target.replace('/', "/./"));
        paths.insert(target.replace('/', ";/"));
        // Each character escaped in turn, upper- and lowercase hex.
        for (index, c) in target.char_indices().filter(|(_, c)| *c != '/') {
            let escaped = format!("%{:02X}", c as u32);
            paths.insert(format!(
                "{}{escaped}{}",
                &target[..index],
                &target[index + 1..]
            ));
            let lower = escaped.to_ascii_lowercase();
            paths.insert(format!(
                "{}{lower}{}",
                &target[..index],
                &target[index + 1..]
            ));
        }
    }
    let froms = ["/atk", "/admin", "/v1/keys", "/public", "/x/y", "/orgs/o1"];
    let dots = [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E",
        ".%2e",
        "%2e.",
        "%2e",
        "..;",
        "..;x=1",
        "..%3B",
        "..%3b",
        ".%2e;",
        "..%00",
        "%252e%252e",
        "...",
    ];
    let separators = [
        "/", "%2F", "%2f", "%5C", "%5c", "\\", "//", "/./", "%252F", ";/", "/;/", "%3B/",
    ];
    let tos = [
        "healthz",
        "public/app.css",
        "admin",
        "v1/keys/x",
        "static",
        "billing/x",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    // Every dot spelling with plain separators, then a sample of all combinations.
    for from in froms {
        for dot in dots {
            for to in tos {
                paths.insert(format!("{from}/{dot}/{to}"));
            }
        }
    }
    for _ in 0..400 {
        let from = froms[next(froms.len())];
        let first = separators[next(separators.len())];
        let dot = dots[next(dots.len())];
        let second = separators[next(separators.len())];
        let to = tos[next(tos.len())];
        paths.insert(format!("{from}{first}{dot}{second}{to}"));
    }
    paths.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// What keygate decided, from its answers.

#[derive(Debug, PartialEq, Eq)]
enum Observed {
    /// keygate's own 400.
    RefusedByKeygate,
    /// Envoy refused it before any filter (as Envoy without keygate did).
    RefusedByEnvoy(u16),
    Decided(Action),
}

fn scope_of(reply: &Reply) -> Option<String> {
    let challenge = reply.header("www-authenticate").ok()?;
    let (_, scope) = challenge.split_once("scope=\"")?;
    Some(scope.trim_end_matches('"').to_owned())
}

fn observe(
    rig: &Rig,
    path: &str,
    plain: &str,
    full: &str,
) -> Result<(Observed, Option<String>), String> {
    let anonymous = rig.raw_request("GET", path, &[]);
    let scoped_out = rig.raw_request("GET", path, &[("authorization", plain)]);
    let granted = rig.raw_request("GET", path, &[("authorization", full)]);
    let replies = format!(
        "no token: {}\ntoken without scopes: {}\ntoken with every scope: {}",
        anonymous.describe(),
        scoped_out.describe(),
        granted.describe()
    );
    let keygate_400 = |reply: &Reply| reply.status == 400 && reply.body == "Bad request";
    if [&anonymous, &scoped_out, &granted]
        .iter()
        .all(|r| keygate_400(r))
    {
        return Ok((Observed::RefusedByKeygate, None));
    }
    if anonymous.status >= 400
        && anonymous.status != 401
        && anonymous.status != 403
        && [&scoped_out, &granted]
            .iter()
            .all(|r| r.status == anonymous.status)
    {
        return Ok((Observed::RefusedByEnvoy(anonymous.status), None));
    }
    let upstream = |reply: &Reply| -> Result<Option<String>, String> {
        if reply.status != 200 {
            return Ok(None);
        }
        let echo = reply.echo()?;
        Ok(echo["path"].as_str().map(str::to_owned))
    };
    let action = match (anonymous.status, scoped_out.status, granted.status) {
        (200, 200, 200) => Action::Allow,
        (403, 403, 403) if anonymous.body == "Forbidden" => Action::Deny,
        (401, 200, 200) => Action::Authenticate,
        (401, 403, 200) => Action::RequireScopes(
            scope_of(&scoped_out).ok_or_else(|| format!("no scope in the challenge\n{replies}"))?,
        ),
        _ => return Err(format!("answers that fit no rule\n{replies}")),
    };
    Ok((Observed::Decided(action), upstream(&granted)?))
}

// ---------------------------------------------------------------------------------------------
// The configurations.

struct Setup {
    name: &'static str,
    bootstrap: Value,
}

/// The shipped bootstrap with the test's rules, and every route going to the upstream (the rig
/// sends `/v1/keys` to keyservice): the echo shows what the upstream received.
fn with_rules(mut bootstrap: Value) -> Value {
    edit_plugin_config(&mut bootstrap, |plugin| plugin["rules"] = rules());
    let routes =
        &mut connection_manager(&mut bootstrap)["route_config"]["virtual_hosts"][0]["routes"];
    let upstream = routes.as_array().unwrap().last().unwrap()["route"]["cluster"].clone();
    for route in routes.as_array_mut().unwrap() {
        route["route"]["cluster"] = upstream.clone();
        // A route that selects a requirement is not decided by the path rules (Envoy matched
        // it on the forwarded path already); here the rules must decide every path.
        if let Some(route) = route.as_object_mut() {
            route.remove("metadata");
        }
    }
    bootstrap
}

fn connection_manager(bootstrap: &mut Value) -> &mut Value {
    &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
}

fn setups() -> Vec<Setup> {
    let shipped = |path| with_rules(shipped_bootstrap(path));
    let mut envoy_defaults = shipped("envoy/envoy.yaml");
    let manager = connection_manager(&mut envoy_defaults);
    for option in [
        "normalize_path",
        "merge_slashes",
        "path_with_escaped_slashes_action",
    ] {
        manager.as_object_mut().unwrap().remove(option);
    }
    let mut unescaping = shipped("envoy/envoy.yaml");
    connection_manager(&mut unescaping)["path_with_escaped_slashes_action"] =
        json!("UNESCAPE_AND_FORWARD");
    vec![
        Setup {
            name: "envoy/envoy.yaml",
            bootstrap: shipped("envoy/envoy.yaml"),
        },
        Setup {
            name: "deploy/compose/envoy.yaml",
            bootstrap: shipped("deploy/compose/envoy.yaml"),
        },
        Setup {
            name: "deploy/envoy/minimal.yaml",
            bootstrap: shipped("deploy/envoy/minimal.yaml"),
        },
        Setup {
            name: "envoy/envoy.yaml with Envoy's default path handling (keygate alone)",
            bootstrap: envoy_defaults,
        },
        Setup {
            name: "envoy/envoy.yaml with path_with_escaped_slashes_action UNESCAPE_AND_FORWARD",
            bootstrap: unescaping,
        },
    ]
}

struct Tally {
    checked: usize,
    by_keygate: usize,
    by_envoy: usize,
    decided: usize,
}

fn run(setup: &Setup, paths: &[String], failures: &mut Vec<String>) -> Tally {
    let rig = Rig::builder().bootstrap(setup.bootstrap.clone()).start();
    let bare = Rig::builder()
        .bootstrap(without_keygate(&setup.bootstrap))
        .start();
    let exp = now() + 600;
    let plain = format!(
        "Bearer {}",
        sign(&json!({"user_id": "diff", "exp": exp}), SECRET)
    );
    let full = format!(
        "Bearer {}",
        sign(
            &json!({"user_id": "diff", "exp": exp, "scopes": ["keys:write", "billing"]}),
            SECRET
        )
    );
    let mut tally = Tally {
        checked: 0,
        by_keygate: 0,
        by_envoy: 0,
        decided: 0,
    };
    for path in paths {
        tally.checked += 1;
        let mut fail = |why: String| failures.push(format!("[{}] GET {path:?}: {why}", setup.name));
        let forwarded = bare.raw_request("GET", path, &[]);
        let (observed, keygate_upstream) = match observe(&rig, path, &plain, &full) {
            Ok(observed) => observed,
            Err(why) => {
                fail(why);
                continue;
            }
        };
        if forwarded.status != 200 {
            // Envoy itself refuses it, with or without keygate.
            match observed {
                Observed::RefusedByEnvoy(status) if status == forwarded.status => {
                    tally.by_envoy += 1;
                }
                other => fail(format!(
                    "Envoy without keygate answered {}, with keygate {other:?}",
                    forwarded.describe()
                )),
            }
            continue;
        }
        let received = match forwarded.echo() {
            Ok(echo) => echo["path"].as_str().unwrap_or_default().to_owned(),
            Err(why) => {
                fail(why);
                continue;
            }
        };
        match (observed, read_received(&received)) {
            (Observed::RefusedByKeygate, _) => tally.by_keygate += 1,
            (Observed::Decided(action), Reading::Ambiguous(why)) => fail(format!(
                "keygate applied {action:?}, but the upstream received {received:?}: {why}"
            )),
            (Observed::Decided(action), Reading::Segments(segments)) => {
                let expected = reference_action(&segments);
                if action != expected {
                    fail(format!(
                        "keygate applied {action:?}; the upstream received {received:?}, whose rule is {expected:?}"
                    ));
                } else if keygate_upstream.is_some_and(|seen| seen != received) {
                    fail(format!(
                        "through keygate the upstream received another path than {received:?}"
                    ));
                } else {
                    tally.decided += 1;
                }
            }
            (Observed::RefusedByEnvoy(status), _) => fail(format!(
                "refused ({status}) with keygate, forwarded as {received:?} without it"
            )),
        }
    }
    let counters = rig.keygate_counters();
    let bad_path = counters
        .get("requests_denied_bad_path")
        .copied()
        .unwrap_or_default();
    let expected = 3 * tally.by_keygate as u64;
    if bad_path != expected {
        failures.push(format!(
            "[{}] keygate.requests_denied_bad_path is {bad_path}, expected {expected} (3 requests for each of {} paths)",
            setup.name, tally.by_keygate
        ));
    }
    tally
}

#[test]
fn every_spelling_is_refused_or_gets_the_rule_of_the_path_the_upstream_receives() {
    let paths = corpus();
    assert!(paths.len() >= 500, "only {} spellings", paths.len());
    let mut failures = Vec::new();
    let mut summary = String::new();
    for setup in setups() {
        let tally = run(&setup, &paths, &mut failures);
        let _ = writeln!(
            summary,
            "{}: {} spellings, {} refused by keygate, {} by Envoy, {} decided as the upstream reads them",
            setup.name, tally.checked, tally.by_keygate, tally.by_envoy, tally.decided
        );
        // Each configuration must both refuse and decide, or the comparison says little.
        assert!(
            tally.by_keygate > 0 && tally.decided > 100,
            "{}: {summary}",
            setup.name
        );
    }
    println!("{summary}");
    assert!(
        failures.is_empty(),
        "{} of the spellings went wrong:\n{}\n\n{summary}",
        failures.len(),
        failures.join("\n")
    );
}

/// HTTP/2 (h2c, prior knowledge) gets the answers HTTP/1.1 gets: Envoy's path handling and
/// keygate's reading do not depend on the protocol. curl sends the paths as they are
/// (`--path-as-is`); the ones it cannot send (a `#`, a space, a `\`, non-ASCII) are left out.
#[test]
fn http2_gets_the_answers_http1_gets() {
    let rig = Rig::builder()
        .bootstrap(with_rules(shipped_bootstrap("envoy/envoy.yaml")))
        .start();
    let mut compared = 0;
    let mut failures = Vec::new();
    for path in corpus().iter().filter(|path| {
        path.starts_with('/')
            && path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'#' && b != b'\\')
    }) {
        let http1 = rig.raw_request("GET", path, &[]);
        let output = std::process::Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge", "--path-as-is", "-o", "-"])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg(format!("http://{}{path}", rig.listener))
            .output()
            .expect("running curl (Debian package curl) for HTTP/2");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let Some((body, status_line)) = text.rsplit_once('\n') else {
            failures.push(format!(
                "{path:?}: curl printed {text:?} {:?}",
                output.stderr
            ));
            continue;
        };
        let Some(status) = status_line.strip_suffix(" 2") else {
            failures.push(format!("{path:?}: not HTTP/2: {status_line:?}"));
            continue;
        };
        // The echo's JSON differs by protocol (headers); the status and keygate's bodies do not.
        let same_body = http1.status == 200 || body == http1.body;
        if status != http1.status.to_string() || !same_body {
            failures.push(format!(
                "{path:?}: HTTP/2 {status} {body:?}, HTTP/1.1 {}",
                http1.describe()
            ));
        }
        compared += 1;
    }
    assert!(compared > 900, "only {compared} paths compared");
    assert!(
        failures.is_empty(),
        "{} paths answered differently over HTTP/2:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
