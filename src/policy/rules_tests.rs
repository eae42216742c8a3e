//! Unit tests of `rules`.

use super::*;

fn raw(json: &str) -> Vec<RawRule> {
    serde_json::from_str(json).unwrap()
}

fn rules(json: &str) -> Rules {
    Rules::from_config(Some(raw(json)), &["dashboard"]).unwrap()
}

fn error(json: &str) -> String {
    Rules::from_config(Some(raw(json)), &["dashboard"]).unwrap_err().to_string()
}

fn glob(pattern: &str) -> Rules {
    rules(&format!(
        r#"[{{"match": {{"glob": "{pattern}"}}, "action": "deny"}}]"#
    ))
}

const EXAMPLE: &str = r#"[
  {"match": {"path": "/healthz"}, "action": "allow"},
  {"match": {"prefix": "/public/", "methods": ["GET", "HEAD"]}, "action": "allow"},
  {"match": {"glob": "/v1/orgs/*/admin/**"}, "action": "require_scopes", "scopes": ["admin"]},
  {"match": {"prefix": "/internal/"}, "action": "deny"},
  {"match": {"prefix": "/"}, "action": "authenticate"}
]"#;

#[test]
fn the_first_matching_rule_decides() {
    let rules = rules(EXAMPLE);
    let admin = RuleAction::RequireScopes(vec!["admin".into()]);
    let cases = [
        ("/healthz", "GET", RuleAction::Allow),
        ("/healthz", "POST", RuleAction::Allow),
        ("/healthz/", "GET", RuleAction::Authenticate),
        ("/healthzz", "GET", RuleAction::Authenticate),
        ("/public/", "GET", RuleAction::Allow),
        ("/public/a/b.css", "HEAD", RuleAction::Allow),
        ("/public/a", "POST", RuleAction::Authenticate),
        ("/public/a", "get", RuleAction::Authenticate),
        ("/public", "GET", RuleAction::Authenticate),
        ("/v1/orgs/o1/admin", "GET", admin.clone()),
        ("/v1/orgs/o1/admin/", "GET", admin.clone()),
        ("/v1/orgs/o1/admin/users/7", "DELETE", admin.clone()),
        (
            "/v1/orgs/o1/administrators",
            "GET",
            RuleAction::Authenticate,
        ),
        ("/v1/orgs/o1/o2/admin", "GET", RuleAction::Authenticate),
        ("/v1/orgs/admin", "GET", RuleAction::Authenticate),
        ("/internal/x", "GET", RuleAction::Deny),
        ("/internal/", "OPTIONS", RuleAction::Deny),
        ("/internal", "GET", RuleAction::Authenticate),
        ("/", "GET", RuleAction::Authenticate),
    ];
    for (path, method, expected) in cases {
        assert_eq!(
            rules.first_match_action(path, method),
            &expected,
            "{method} {path}"
        );
    }
}

#[test]
fn without_a_match_requests_authenticate() {
    let rules = rules(r#"[{"match": {"path": "/healthz"}, "action": "allow"}]"#);
    assert_eq!(
        rules.first_match_action("/other", "GET"),
        &RuleAction::Authenticate
    );
    for none in [Rules::from_config(None, &[]), Rules::from_config(Some(vec![]), &[])] {
        let none = none.unwrap();
        assert!(none.is_empty());
        assert_eq!(
            none.first_match_action("/healthz", "GET"),
            &RuleAction::Authenticate
        );
    }
    assert!(!rules.is_empty());
}

#[test]
fn an_earlier_rule_shadows_a_later_one() {
    let rules = rules(
        r#"[
          {"match": {"prefix": "/a/", "methods": ["DELETE"]}, "action": "deny"},
          {"match": {"prefix": "/a/"}, "action": "allow"},
          {"match": {"path": "/a/x"}, "action": "deny"}
        ]"#,
    );
    assert_eq!(rules.first_match_action("/a/x", "DELETE"), &RuleAction::Deny);
    assert_eq!(rules.first_match_action("/a/x", "GET"), &RuleAction::Allow);
}

#[test]
fn globs_match_within_and_across_segments() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "/a/**",
            &["/a", "/a/", "/a/b", "/a/b/c/"],
            &["/", "/ab", "/b/a"],
        ),
        (
            "/a/**/z",
            &["/a/z", "/a/b/z", "/a/b/c/z", "/a/z/z"],
            &["/a", "/a/z/", "/a/zz", "/a/b/c", "/z"],
        ),
        ("/**", &["/", "/a", "/a/b/"], &[]),
        ("/**/z", &["/z", "/a/z", "/a/b/z"], &["/", "/a/z/", "/za"]),
        (
            "/**/a/**/b",
            &["/a/b", "/x/a/y/b", "/a/a/b/b"],
            &["/a/b/c", "/b/a"],
        ),
        ("/*", &["/", "/a", "/abc"], &["/a/", "/a/b"]),
        ("/*/", &["//", "/a/"], &["/a", "/a/b/"]),
        (
            "/a/*.css",
            &["/a/.css", "/a/x.css", "/a/x.y.css"],
            &["/a/x.cssx", "/a/b/x.css"],
        ),
        (
            "/a*b*c",
            &["/abc", "/aXbYc", "/abbcc", "/abcbc"],
            &["/ab", "/acb", "/a/b/c"],
        ),
        ("/?", &["/a", "/é"], &["/", "/ab"]),
        ("/a?c", &["/abc", "/a-c"], &["/ac", "/a/c", "/abbc"]),
        ("/***", &["/", "/abc"], &["/a/b"]),
        ("/a**b", &["/ab", "/axxb"], &["/a/b"]),
        ("/a/**/**/b", &["/a/b", "/a/x/y/b"], &["/a/x"]),
        ("/", &["/"], &["/a"]),
        ("/a/", &["/a/"], &["/a", "/a/b"]),
        ("/café/*", &["/café/x"], &["/cafe/x"]),
    ];
    for (pattern, hits, misses) in cases {
        let rules = glob(pattern);
        for path in *hits {
            assert_eq!(
                rules.first_match_action(path, "GET"),
                &RuleAction::Deny,
                "{pattern} should match {path}"
            );
        }
        for path in *misses {
            assert_eq!(
                rules.first_match_action(path, "GET"),
                &RuleAction::Authenticate,
                "{pattern} should not match {path}"
            );
        }
    }
}

#[test]
fn globs_compile_to_segments() {
    assert_eq!(
        Glob::compile("/v1/*/a?b*/**/**"),
        Glob(vec![
            GlobSegment::Parts(vec![Part::Literal("v1".into())]),
            GlobSegment::Parts(vec![Part::AnyRun]),
            GlobSegment::Parts(vec![
                Part::Literal("a".into()),
                Part::AnyChar,
                Part::Literal("b".into()),
                Part::AnyRun,
            ]),
            GlobSegment::AnyDepth,
        ])
    );
}

/// The glob semantics written as plainly as possible, to check the compiled matcher against.
fn reference_match(pattern: &[&str], path: &[&str]) -> bool {
    fn segment(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| segment(rest, &text[skip..])),
            Some(('?', rest)) => !text.is_empty() && segment(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && segment(rest, &text[1..]),
        }
    }
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => {
            (0..=path.len()).any(|skip| reference_match(rest, &path[skip..]))
        }
        Some((first, rest)) => path.split_first().is_some_and(|(text, path_rest)| {
            let first: Vec<char> = first.chars().collect();
            let text: Vec<char> = text.chars().collect();
            segment(&first, &text) && reference_match(rest, path_rest)
        }),
    }
}

#[test]
fn globs_agree_with_the_plain_definition() {
    let mut random = crate::testing::rng::xorshift(0x0bad_5eed_dead_beef);
    let mut next = move |n: usize| (random() % n as u64) as usize;
    const PATTERN_SEGMENTS: &[&str] = &["a", "b", "ab", "*", "a*", "*b", "?", "a?", "**", ""];
    const PATH_SEGMENTS: &[&str] = &["a", "b", "ab", "ba", "aab", "é", ""];
    for _ in 0..3_000 {
        let pattern: Vec<&str> = (0..=next(4))
            .map(|_| PATTERN_SEGMENTS[next(PATTERN_SEGMENTS.len())])
            .collect();
        // Only the last segment may be empty, as in a normalised path.
        let mut path: Vec<&str> = (0..=next(5))
            .map(|_| PATH_SEGMENTS[next(PATH_SEGMENTS.len() - 1)])
            .collect();
        if next(3) == 0 {
            path.push("");
        }
        let pattern_text = format!("/{}", pattern.join("/"));
        let path_text = format!("/{}", path.join("/"));
        let compiled = Glob::compile(&pattern_text);
        // Consecutive `**` are one in the compiled form, and in the definition.
        assert_eq!(
            compiled.matches(&path_text),
            reference_match(&pattern, &path),
            "{pattern_text} against {path_text}"
        );
    }
}

#[test]
fn pathological_globs_finish_quickly() {
    let rules = glob("/**/*a*a*a*a*a*b/**/*a*a*a*a*b");
    let long = format!("/{}", ["a".repeat(200).as_str(); 50].join("/"));
    assert_eq!(rules.first_match_action(&long, "GET"), &RuleAction::Authenticate);
}

#[test]
fn configuration_errors_name_the_field_and_the_fix() {
    let cases = [
        (
            r#"[{"match": {}, "action": "allow"}]"#,
            "`rules[0].match`: give exactly one of path, prefix, glob",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "allow"},
                {"match": {"path": "/a", "prefix": "/a"}, "action": "allow"}]"#,
            "`rules[1].match`: give exactly one of path, prefix, glob",
        ),
        (
            r#"[{"match": {"prefix": "/a", "glob": "/a"}, "action": "allow"}]"#,
            "`rules[0].match`",
        ),
        (
            r#"[{"match": {"path": "healthz"}, "action": "allow"}]"#,
            "`rules[0].match.path`: \"healthz\" must start with '/'",
        ),
        (
            r#"[{"match": {"prefix": ""}, "action": "allow"}]"#,
            "`rules[0].match.prefix`: \"\" must start with '/'",
        ),
        (
            r#"[{"match": {"glob": "**"}, "action": "allow"}]"#,
            "`rules[0].match.glob`: \"**\" must start with '/'",
        ),
        (
            r#"[{"match": {"prefix": "//admin"}, "action": "deny"}]"#,
            "`rules[0].match.prefix`: \"//admin\" can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write \"/admin\"",
        ),
        (
            r#"[{"match": {"path": "/a/../admin"}, "action": "deny"}]"#,
            "without '%', '?', '#', ';', '\\', control characters, or empty, '.' or '..' segments",
        ),
        (
            r#"[{"match": {"path": "/admin;x"}, "action": "deny"}]"#,
            "`rules[0].match.path`: \"/admin;x\" can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write \"/admin\"",
        ),
        (
            r#"[{"match": {"path": "/%61dmin"}, "action": "deny"}]"#,
            "write \"/admin\"",
        ),
        (
            r#"[{"match": {"path": "/a\\b"}, "action": "deny"}]"#,
            "write it percent-decoded",
        ),
        (
            r#"[{"match": {"path": "/a?x=1"}, "action": "deny"}]"#,
            "`rules[0].match.path`: \"/a?x=1\" can never match",
        ),
        (
            r#"[{"match": {"path": "/%zz"}, "action": "deny"}]"#,
            "write it percent-decoded",
        ),
        (
            r#"[{"match": {"path": "/%25zz"}, "action": "deny"}]"#,
            "write it percent-decoded",
        ),
        (
            r#"[{"match": {"glob": "/a/./*"}, "action": "deny"}]"#,
            "`rules[0].match.glob`: \"/a/./*\" can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write it percent-decoded",
        ),
        (
            r#"[{"match": {"glob": "/a//**"}, "action": "deny"}]"#,
            "`rules[0].match.glob`: \"/a//**\" can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write it percent-decoded",
        ),
        (
            r#"[{"match": {"glob": "/a//b"}, "action": "deny"}]"#,
            "`rules[0].match.glob`: \"/a//b\" can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write \"/a/b\"",
        ),
        (
            r#"[{"match": {"glob": "/a/%2A"}, "action": "deny"}]"#,
            "`rules[0].match.glob`: \"/a/%2A\" can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write it percent-decoded",
        ),
        (
            r#"[{"match": {"path": "/a", "methods": []}, "action": "allow"}]"#,
            "`rules[0].match.methods`: the list is empty; leave `methods` out",
        ),
        (
            r#"[{"match": {"path": "/a", "methods": ["GET", "post"]}, "action": "allow"}]"#,
            "`rules[0].match.methods[1]`: \"post\" is not an uppercase HTTP method",
        ),
        (
            r#"[{"match": {"path": "/a", "methods": ["GET "]}, "action": "allow"}]"#,
            "`rules[0].match.methods[0]`",
        ),
        (
            r#"[{"match": {"path": "/a", "methods": [""]}, "action": "allow"}]"#,
            "`rules[0].match.methods[0]`",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "require_scopes"}]"#,
            "`rules[0].scopes`: action require_scopes needs a non-empty list",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "require_scopes", "scopes": []}]"#,
            "`rules[0].scopes`: action require_scopes needs",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "require_scopes", "scopes": ["a", "b c"]}]"#,
            "`rules[0].scopes[1]`: \"b c\" is not a scope",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "deny"},
                {"match": {"path": "/b"}, "action": "allow"},
                {"match": {"path": "/c"}, "action": "allow"},
                {"match": {"path": "/d"}, "action": "allow", "scopes": ["admin"]}]"#,
            "`rules[3].scopes`: only action require_scopes takes scopes",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "authenticate", "scopes": []}]"#,
            "`rules[0].scopes`: only action require_scopes",
        ),
    ];
    for (json, expected) in cases {
        let message = error(json);
        assert!(
            message.contains(expected),
            "rules {json}: error {message:?} does not contain {expected:?}"
        );
    }
}

#[test]
fn the_raw_form_refuses_unknown_fields_and_actions() {
    let cases = [
        (
            r#"[{"match": {"path": "/a", "regex": ".*"}, "action": "allow"}]"#,
            "unknown field `regex`",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "allow", "scope": ["a"]}]"#,
            "unknown field `scope`",
        ),
        (
            r#"[{"match": {"path": "/a"}, "action": "permit"}]"#,
            "unknown variant `permit`",
        ),
        (r#"[{"match": {"path": "/a"}}]"#, "missing field `action`"),
        (r#"[{"action": "allow"}]"#, "missing field `match`"),
    ];
    for (json, expected) in cases {
        let message = serde_json::from_str::<Vec<RawRule>>(json)
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{json}: {message:?}");
    }
}

#[test]
fn at_most_256_rules() {
    let rule = r#"{"match": {"prefix": "/"}, "action": "allow"}"#;
    let list = |n: usize| format!("[{}]", vec![rule; n].join(","));
    assert!(Rules::from_config(Some(raw(&list(256))), &[]).is_ok());
    assert_eq!(
        Rules::from_config(Some(raw(&list(257))), &[]),
        Err(RuleError::TooMany { count: 257 })
    );
    assert!(error(&list(300)).starts_with("`rules`: 300 rules is over the limit of 256"));
}

#[test]
fn methods_and_scopes_are_kept_once_each() {
    let rules = rules(
        r#"[{"match": {"path": "/a", "methods": ["GET", "GET", "M-SEARCH"]},
             "action": "require_scopes", "scopes": ["x", "y", "x"]}]"#,
    );
    assert_eq!(
        rules.0[0].methods,
        Some(vec!["GET".into(), "M-SEARCH".into()])
    );
    assert_eq!(
        rules.0[0].route.action,
        RuleAction::RequireScopes(vec!["x".into(), "y".into()])
    );
}

fn action(rules: &Rules, raw: &str) -> Result<RuleAction, PathError> {
    let path = RoutePath::parse(raw)?;
    rules.action_for(&path, "GET").cloned()
}

/// Reading and rules together: every spelling of `/admin` reaches the admin rule, and a path
/// that upstreams read in different ways is refused before rules are consulted.
#[test]
fn path_tricks_reach_the_rule_that_protects_the_path_or_are_refused() {
    let rules = rules(
        r#"[
          {"match": {"glob": "/admin/**"}, "action": "deny"},
          {"match": {"prefix": "/"}, "action": "allow"}
        ]"#,
    );
    let denied = [
        "/admin",
        "/admin/",
        "/%61dmin",
        "/admin?x=/public",
        "/admin/x;y",
        "/admin//users",
    ];
    for raw in denied {
        assert_eq!(action(&rules, raw), Ok(RuleAction::Deny), "{raw}");
    }
    let refused = [
        ("//admin", PathError::Ambiguous),
        ("/admin;x", PathError::Ambiguous),
        ("/x/..;/admin", PathError::DotSegment),
        ("/./admin", PathError::DotSegment),
        ("/a/../admin", PathError::DotSegment),
        ("/a/%2e%2e/admin", PathError::DotSegment),
        ("/a%2F..%2Fadmin", PathError::EncodedDelimiter),
        ("/public/..%5cadmin", PathError::EncodedDelimiter),
        ("/public/..%3B/admin", PathError::EncodedDelimiter),
        ("/a\\..\\admin", PathError::Backslash),
        ("/%2561dmin", PathError::EncodedPercent),
        ("/%zz/admin", PathError::BadEncoding),
        ("*", PathError::NotOrigin),
    ];
    for (raw, error) in refused {
        assert_eq!(action(&rules, raw), Err(error), "{raw}");
    }
    // Paths are case-sensitive: `/ADMIN` is another path. On an upstream that ignores case,
    // protect with an allow-list and a denying or authenticating catch-all instead.
    assert_eq!(action(&rules, "/ADMIN"), Ok(RuleAction::Allow));
}

#[test]
fn rules_select_requirements_by_name() {
    let rules = rules(
        r#"[
        {"match": {"prefix": "/dashboard/"}, "action": "authenticate", "requirement": "dashboard"},
        {"match": {"prefix": "/admin/"}, "action": "require_scopes", "scopes": ["admin"], "requirement": "dashboard"},
        {"match": {"prefix": "/"}, "action": "authenticate"}
    ]"#,
    );
    let route = |path: &str| rules.route_for(&RoutePath::parse(path).unwrap(), "GET").unwrap().clone();
    assert_eq!(
        route("/dashboard/keys"),
        Route { action: RuleAction::Authenticate, requirement: Some(0) }
    );
    assert_eq!(
        route("/admin/x"),
        Route { action: RuleAction::RequireScopes(vec!["admin".into()]), requirement: Some(0) }
    );
    assert_eq!(route("/api"), Route { action: RuleAction::Authenticate, requirement: None });
    assert_eq!(
        error(r#"[{"match": {"path": "/a"}, "action": "authenticate", "requirement": "nope"}]"#),
        "`rules[0].requirement`: no requirement is named \"nope\"; name one of `requirements`"
    );
    assert!(
        error(r#"[{"match": {"path": "/a"}, "action": "allow", "requirement": "dashboard"}]"#)
            .starts_with("`rules[0].requirement`: only actions authenticate and require_scopes")
    );
}

#[test]
fn a_path_read_two_ways_that_selects_two_requirements_is_refused() {
    let rules = rules(
        r#"[
        {"match": {"path": "/a/b"}, "action": "authenticate", "requirement": "dashboard"},
        {"match": {"prefix": "/"}, "action": "authenticate"}
    ]"#,
    );
    assert_eq!(
        rules.route_for(&RoutePath::parse("/a;x/b").unwrap(), "GET"),
        Err(PathError::Ambiguous)
    );
}
