//! The request path and the rules: `RoutePath::parse`, `RoutePath::lenient` and
//! `Rules::action_for`, on any `:path`; and `Rules::from_config` on any pattern.
//!
//! Input: a first line that is a rule pattern (a glob), then the `:path` (the rest).
//!
//! Properties:
//! - reading is idempotent: an accepted path's reading is read as itself, and holds no `%`,
//!   `\`, `?`, `#`, control character or `.`/`..` segment;
//! - an accepted path is read as an independent reference reads it: the raw path split on `/`,
//!   each segment percent-decoded, none of them holding a decoded `/`, `\`, `;`, `?`, `#` or
//!   `%` (readers disagree on those, so keygate must have refused);
//! - the rule decision on a path equals the decision on its reading, and both readings (with and
//!   without `;` parameters and repeated `/`) get it, and it is the first rule an independent
//!   segment matcher picks;
//! - a pattern `Rules::from_config` accepts is a path that is read as itself, and a path equal
//!   to a literal pattern (no wildcards) matches it.
#![no_main]

use keygate::policy::path::RoutePath;
use keygate::policy::rules::{RawRule, RuleAction, Rules};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// The rules every path is decided by: one of each kind, with wildcards.
fn fixed_rules() -> Value {
    json!([
        {"match": {"path": "/healthz", "methods": ["GET", "HEAD"]}, "action": "allow"},
        {"match": {"glob": "/v1/keys/**"}, "action": "require_scopes", "scopes": ["keys:write"]},
        {"match": {"prefix": "/public/"}, "action": "allow"},
        {"match": {"glob": "/admin/**"}, "action": "deny"},
        {"match": {"glob": "/orgs/*/billing/**"}, "action": "require_scopes", "scopes": ["billing"]},
        {"match": {"glob": "/f?les/*.txt"}, "action": "deny"},
        {"match": {"prefix": "/static"}, "action": "allow"}
    ])
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, raw) = text.split_once('\n').unwrap_or(("", text));
    let raws: Vec<RawRule> =
        serde_json::from_value(fixed_rules()).expect("the fixed rules are well-formed");
    let rules = Rules::from_config(Some(raws), &[]).expect("the fixed rules are valid");

    if let Ok(path) = RoutePath::parse(raw) {
        let reading = path.as_str();
        assert!(
            !reading.contains(['%', '\\', '?', '#']),
            "{raw:?} -> {reading:?}"
        );
        assert!(
            !reading.chars().any(char::is_control),
            "{raw:?} -> {reading:?}"
        );
        assert!(
            reading.split('/').all(|s| s != "." && s != ".."),
            "{raw:?} -> {reading:?}"
        );
        let again = RoutePath::parse(reading).expect("a reading reads again");
        assert_eq!(again.as_str(), reading, "{raw:?} read twice");

        match reference_segments(raw) {
            Reference::Ambiguous(why) => panic!("{raw:?} accepted as {reading:?}, but {why}"),
            Reference::Segments(segments) => {
                assert_eq!(format!("/{}", segments.join("/")), reading, "{raw:?}");
            }
        }

        let decided = rules.action_for(&path, "GET").cloned();
        assert_eq!(
            decided,
            rules.action_for(&again, "GET").cloned(),
            "{raw:?}: the decision on the path and on its reading"
        );
        if let Ok(action) = &decided {
            let segments: Vec<String> = reading[1..].split('/').map(str::to_owned).collect();
            assert_eq!(
                action,
                &reference_action(&segments),
                "{raw:?} read as {reading:?}"
            );
            if let Ok(Some(lenient)) = path.lenient() {
                let lenient_path = RoutePath::parse(&lenient).expect("a lenient reading reads");
                assert_eq!(lenient_path.lenient(), Ok(None), "{lenient:?}");
                let segments: Vec<String> = lenient[1..].split('/').map(str::to_owned).collect();
                assert_eq!(
                    action,
                    &reference_action(&segments),
                    "{raw:?} as {lenient:?}"
                );
            }
        }
    }

    let rule: Vec<RawRule> = match serde_json::from_value(json!([
        {"match": {"glob": pattern}, "action": "deny"}
    ])) {
        Ok(rule) => rule,
        Err(_) => return,
    };
    if Rules::from_config(Some(rule), &[]).is_ok() {
        let stand_in = pattern.replace(['*', '?'], "x");
        let reading = RoutePath::parse(&stand_in).expect("an accepted pattern reads");
        assert_eq!(reading.as_str(), stand_in, "{pattern:?}");
        assert_eq!(reading.lenient(), Ok(None), "{pattern:?}");
        if !pattern.contains(['*', '?']) {
            let literal: Vec<RawRule> = serde_json::from_value(json!([
                {"match": {"path": pattern}, "action": "deny"}
            ]))
            .expect("a path rule");
            let literal =
                Rules::from_config(Some(literal), &[]).expect("a glob without wildcards is a path");
            assert_eq!(literal.action_for(&reading, "GET"), Ok(&RuleAction::Deny));
        }
    }
});

enum Reference {
    Segments(Vec<String>),
    Ambiguous(String),
}

/// Split on `/`, then each segment fully percent-decoded; ambiguous where a decoded segment holds
/// what readers disagree on.
fn reference_segments(raw: &str) -> Reference {
    let path = raw.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix('/') else {
        return Reference::Ambiguous("not origin-form".into());
    };
    let mut segments = Vec::new();
    for segment in rest.split('/') {
        let bytes = segment.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => decoded.push(byte),
                    None => return Reference::Ambiguous(format!("{segment:?} has a bad escape")),
                }
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        let Ok(text) = String::from_utf8(decoded) else {
            return Reference::Ambiguous(format!("{segment:?} is not UTF-8"));
        };
        if segment.to_ascii_lowercase().contains("%3b") || text.contains(['/', '\\', '?', '#', '%'])
        {
            return Reference::Ambiguous(format!("{segment:?} decodes to {text:?}"));
        }
        segments.push(text);
    }
    Reference::Segments(segments)
}

/// The first of [`fixed_rules`] matching the segments, for GET, by matching segments.
fn reference_action(segments: &[String]) -> RuleAction {
    let joined = format!("/{}", segments.join("/"));
    for rule in fixed_rules().as_array().expect("a list") {
        let matcher = &rule["match"];
        let matched = if let Some(path) = matcher["path"].as_str() {
            pattern_segments(path) == segments
        } else if let Some(prefix) = matcher["prefix"].as_str() {
            joined.starts_with(prefix)
        } else {
            let glob = pattern_segments(matcher["glob"].as_str().expect("a glob"));
            glob_matches(&glob, segments)
        };
        if matched {
            return match rule["action"].as_str().expect("an action") {
                "allow" => RuleAction::Allow,
                "deny" => RuleAction::Deny,
                _ => RuleAction::RequireScopes(
                    rule["scopes"]
                        .as_array()
                        .expect("scopes")
                        .iter()
                        .map(|s| s.as_str().expect("a scope").to_owned())
                        .collect(),
                ),
            };
        }
    }
    RuleAction::Authenticate
}

fn pattern_segments(pattern: &str) -> Vec<String> {
    pattern[1..].split('/').map(str::to_owned).collect()
}

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
