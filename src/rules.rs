//! Ordered route rules: the first rule whose pattern and methods match the request decides
//! whether it goes through without a token, needs one, needs scopes too, or is refused.
//!
//! Rules see the path as `path::RoutePath` reads it (escapes of ordinary characters decoded, the
//! query dropped), so patterns are written as such paths, and a pattern that no such path can
//! equal (`/a//b`, `/a/../b`, `/%61`, `/a;b`) is a configuration error rather than a rule that
//! silently never matches. A request path whose reading without `;` parameters and repeated `/`
//! would select another rule is refused: upstreams differ on those. Paths and methods are
//! case-sensitive (RFC 3986 §6.2.2.1, RFC 9110 §9.1): on an upstream that reads them
//! case-insensitively, list what is allowed and let a catch-all rule authenticate or deny the
//! rest, rather than deny specific spellings.
//!
//! A `path` matches that path only; a `prefix` is a plain string prefix (`/admin` also matches
//! `/administrators`, `/admin/` does not match `/admin`); the glob `/admin/**` matches `/admin`,
//! `/admin/` and everything below. Patterns are compiled once, at configuration time; matching
//! allocates nothing.

use std::fmt;

use serde::Deserialize;

use crate::path::{PathError, RoutePath};
use crate::scopes::validate_scope;

const MAX_RULES: usize = 256;

/// What happens to a request no rule matches.
static DEFAULT_ACTION: RuleAction = RuleAction::Authenticate;

/// One entry of the `rules` list as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    matcher: RawMatch,
    action: RawAction,
    scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    path: Option<String>,
    prefix: Option<String>,
    glob: Option<String>,
    methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawAction {
    Allow,
    Authenticate,
    Deny,
    RequireScopes,
}

/// What a matching rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Forward without looking for a token. The headers keygate owns must still be removed, or a
    /// client could send its own `x-user-id` to an allowed path.
    Allow,
    /// The usual token checks.
    Authenticate,
    /// Refuse, token or not.
    Deny,
    /// The usual token checks, and the token must grant every one of these scopes.
    RequireScopes(Vec<String>),
}

/// The validated rules, in order. Empty when none are configured: every request authenticates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(Vec<Rule>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: Pattern,
    /// `None`: any method.
    methods: Option<Vec<String>>,
    action: RuleAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Glob(Glob),
}

/// A glob compiled into path segments, split on '/' after the leading one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Glob(Vec<GlobSegment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobSegment {
    /// `**`: zero or more whole segments.
    AnyDepth,
    /// Exactly one segment, matched by these parts in order.
    Parts(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// `*`: any run of characters, empty included.
    AnyRun,
    /// `?`: one character.
    AnyChar,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    TooMany {
        count: usize,
    },
    MatchKind {
        rule: usize,
    },
    PatternNotAbsolute {
        rule: usize,
        kind: &'static str,
        value: String,
    },
    PatternNotNormal {
        rule: usize,
        kind: &'static str,
        value: String,
        /// What the pattern normalises to, when that is a usable pattern.
        normalized: Option<String>,
    },
    NoMethods {
        rule: usize,
    },
    InvalidMethod {
        rule: usize,
        index: usize,
        value: String,
    },
    NoScopes {
        rule: usize,
    },
    InvalidScope {
        rule: usize,
        index: usize,
        value: String,
    },
    UnexpectedScopes {
        rule: usize,
    },
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany { count } => write!(
                f,
                "`rules`: {count} rules is over the limit of {MAX_RULES}; merge rules with prefix or glob patterns"
            ),
            Self::MatchKind { rule } => write!(
                f,
                "`rules[{rule}].match`: give exactly one of path, prefix, glob"
            ),
            Self::PatternNotAbsolute { rule, kind, value } => write!(
                f,
                "`rules[{rule}].match.{kind}`: {value:?} must start with '/'"
            ),
            Self::PatternNotNormal {
                rule,
                kind,
                value,
                normalized: Some(normalized),
            } => write!(
                f,
                "`rules[{rule}].match.{kind}`: {value:?} can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write {normalized:?}"
            ),
            Self::PatternNotNormal {
                rule,
                kind,
                value,
                normalized: None,
            } => write!(
                f,
                "`rules[{rule}].match.{kind}`: {value:?} can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; write it percent-decoded, without '%', '?', '#', ';', '\\', control characters, or empty, '.' or '..' segments"
            ),
            Self::NoMethods { rule } => write!(
                f,
                "`rules[{rule}].match.methods`: the list is empty; leave `methods` out to match every method"
            ),
            Self::InvalidMethod { rule, index, value } => write!(
                f,
                "`rules[{rule}].match.methods[{index}]`: {value:?} is not an uppercase HTTP method; methods are case-sensitive, e.g. GET"
            ),
            Self::NoScopes { rule } => write!(
                f,
                "`rules[{rule}].scopes`: action require_scopes needs a non-empty list of scopes, e.g. [\"admin\"]"
            ),
            Self::InvalidScope { rule, index, value } => write!(
                f,
                "`rules[{rule}].scopes[{index}]`: {value:?} is not a scope; use 1 to 128 printable ASCII characters without spaces, '\"' or '\\'"
            ),
            Self::UnexpectedScopes { rule } => write!(
                f,
                "`rules[{rule}].scopes`: only action require_scopes takes scopes; remove `scopes` or change the action"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

impl Rules {
    /// Validates and compiles the configured rules; `None` (no `rules` field) gives no rules.
    pub fn from_config(raw: Option<Vec<RawRule>>) -> Result<Self, RuleError> {
        let raw = raw.unwrap_or_default();
        if raw.len() > MAX_RULES {
            return Err(RuleError::TooMany { count: raw.len() });
        }
        raw.into_iter()
            .enumerate()
            .map(|(index, rule)| rule.compile(index))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no rules are configured, so every request authenticates and the path need not
    /// be normalised.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The action of the first rule matching the path and the method; `Authenticate` when none
    /// does. Refused when the path read without its `;` parameters and repeated `/` (as some
    /// upstreams read it) would get another action.
    pub fn action_for(&self, path: &RoutePath<'_>, method: &str) -> Result<&RuleAction, PathError> {
        let action = self.first_match(path.as_str(), method);
        match path.lenient()? {
            Some(lenient) if self.first_match(&lenient, method) != action => {
                Err(PathError::Ambiguous)
            }
            _ => Ok(action),
        }
    }

    fn first_match(&self, path: &str, method: &str) -> &RuleAction {
        self.0
            .iter()
            .find(|rule| rule.matches(path, method))
            .map_or(&DEFAULT_ACTION, |rule| &rule.action)
    }
}

impl Rule {
    fn matches(&self, path: &str, method: &str) -> bool {
        let method_matches = match &self.methods {
            Some(methods) => methods.iter().any(|m| m == method),
            None => true,
        };
        method_matches
            && match &self.pattern {
                Pattern::Exact(exact) => path == exact,
                Pattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
                Pattern::Glob(glob) => glob.matches(path),
            }
    }
}

impl RawRule {
    fn compile(self, rule: usize) -> Result<Rule, RuleError> {
        let RawMatch {
            path,
            prefix,
            glob,
            methods,
        } = self.matcher;
        let pattern = match (path, prefix, glob) {
            (Some(path), None, None) => Pattern::Exact(check_pattern(rule, "path", path)?),
            (None, Some(prefix), None) => Pattern::Prefix(check_pattern(rule, "prefix", prefix)?),
            (None, None, Some(glob)) => {
                Pattern::Glob(Glob::compile(&check_pattern(rule, "glob", glob)?))
            }
            _ => return Err(RuleError::MatchKind { rule }),
        };
        let methods = methods
            .map(|methods| check_methods(rule, methods))
            .transpose()?;
        let action = match (self.action, self.scopes) {
            (RawAction::RequireScopes, Some(scopes)) => {
                RuleAction::RequireScopes(check_scopes(rule, scopes)?)
            }
            (RawAction::RequireScopes, None) => return Err(RuleError::NoScopes { rule }),
            (_, Some(_)) => return Err(RuleError::UnexpectedScopes { rule }),
            (RawAction::Allow, None) => RuleAction::Allow,
            (RawAction::Authenticate, None) => RuleAction::Authenticate,
            (RawAction::Deny, None) => RuleAction::Deny,
        };
        Ok(Rule {
            pattern,
            methods,
            action,
        })
    }
}

/// A pattern must be a path that `RoutePath` reads as it is, with no `;` parameters or repeated
/// `/`: no request path could match it otherwise. In a glob, wildcards stand in for plain
/// characters in this check.
fn check_pattern(rule: usize, kind: &'static str, value: String) -> Result<String, RuleError> {
    if !value.starts_with('/') {
        return Err(RuleError::PatternNotAbsolute { rule, kind, value });
    }
    let is_glob = kind == "glob";
    let path = if is_glob {
        value.replace(['*', '?'], "x")
    } else {
        value.clone()
    };
    let reading = pattern_reading(&path);
    if reading.as_deref() == Some(path.as_str()) {
        return Ok(value);
    }
    // Suggest what the pattern reads as only where that is a pattern meaning the same: not for
    // a glob with wildcards (`path` is a stand-in), nor one that decoded to a wildcard.
    let normalized = reading
        .filter(|reading| path == value && !(is_glob && reading.contains(['*', '?'])))
        .filter(|reading| pattern_reading(reading).as_ref() == Some(reading));
    Err(RuleError::PatternNotNormal {
        rule,
        kind,
        value,
        normalized,
    })
}

/// What a request path spelled as `pattern` is matched as: read once, then without `;`
/// parameters and repeated `/`. `None` when such a request would be refused.
fn pattern_reading(pattern: &str) -> Option<String> {
    let path = RoutePath::parse(pattern).ok()?;
    match path.lenient().ok()? {
        Some(lenient) => Some(lenient),
        None => Some(path.as_str().to_owned()),
    }
}

fn check_methods(rule: usize, methods: Vec<String>) -> Result<Vec<String>, RuleError> {
    if methods.is_empty() {
        return Err(RuleError::NoMethods { rule });
    }
    let mut checked: Vec<String> = Vec::with_capacity(methods.len());
    for (index, method) in methods.into_iter().enumerate() {
        if !is_uppercase_method(&method) {
            return Err(RuleError::InvalidMethod {
                rule,
                index,
                value: method,
            });
        }
        if !checked.contains(&method) {
            checked.push(method);
        }
    }
    Ok(checked)
}

/// An RFC 9110 method token without lowercase letters: methods are case-sensitive, and a
/// lowercase `get` would never match what clients send.
fn is_uppercase_method(method: &str) -> bool {
    !method.is_empty()
        && method.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn check_scopes(rule: usize, scopes: Vec<String>) -> Result<Vec<String>, RuleError> {
    if scopes.is_empty() {
        return Err(RuleError::NoScopes { rule });
    }
    let mut checked: Vec<String> = Vec::with_capacity(scopes.len());
    for (index, scope) in scopes.into_iter().enumerate() {
        if !validate_scope(&scope) {
            return Err(RuleError::InvalidScope {
                rule,
                index,
                value: scope,
            });
        }
        if !checked.contains(&scope) {
            checked.push(scope);
        }
    }
    Ok(checked)
}

impl Glob {
    /// `pattern` starts with '/'. A segment that is exactly `**` spans any number of segments;
    /// elsewhere `*` is a run within one segment (`***` is one `*`).
    fn compile(pattern: &str) -> Self {
        let mut segments: Vec<GlobSegment> = Vec::new();
        for segment in pattern.strip_prefix('/').unwrap_or(pattern).split('/') {
            if segment == "**" {
                // `/**/**/` matches what `/**/` does, with less backtracking.
                if segments.last() != Some(&GlobSegment::AnyDepth) {
                    segments.push(GlobSegment::AnyDepth);
                }
                continue;
            }
            let mut parts: Vec<Part> = Vec::new();
            for c in segment.chars() {
                match (c, parts.last_mut()) {
                    ('*', Some(Part::AnyRun)) => {}
                    ('*', _) => parts.push(Part::AnyRun),
                    ('?', _) => parts.push(Part::AnyChar),
                    (c, Some(Part::Literal(literal))) => literal.push(c),
                    (c, _) => parts.push(Part::Literal(c.to_string())),
                }
            }
            segments.push(GlobSegment::Parts(parts));
        }
        Self(segments)
    }

    /// Matches segment by segment. On a mismatch, the last `**` takes one more segment and
    /// matching resumes after it: the usual wildcard algorithm, with segments for characters.
    fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut index = 0;
        // Offset in `rest` of the next path segment; `None` once all are consumed. The root
        // path `/` is a single empty segment, as the pattern `/` is.
        let mut cursor = Some(0);
        // After the last `**`: the pattern index to resume at, and where its span ends.
        let mut resume: Option<(usize, Option<usize>)> = None;
        loop {
            // Where the next path segment starts once this pattern segment has matched.
            let matched = match self.0.get(index) {
                Some(GlobSegment::AnyDepth) => {
                    resume = Some((index + 1, cursor));
                    Some(cursor)
                }
                Some(GlobSegment::Parts(parts)) => cursor
                    .map(|start| segment_at(rest, start))
                    .filter(|(segment, _)| parts_match(parts, segment))
                    .map(|(_, next)| next),
                None if cursor.is_none() => return true,
                None => None,
            };
            if let Some(next) = matched {
                index += 1;
                cursor = next;
                continue;
            }
            let Some((resume_index, Some(start))) = resume else {
                return false;
            };
            let (_, next) = segment_at(rest, start);
            resume = Some((resume_index, next));
            index = resume_index;
            cursor = next;
        }
    }
}

/// The segment of `rest` starting at `start`, and where the one after it starts.
fn segment_at(rest: &str, start: usize) -> (&str, Option<usize>) {
    let tail = rest.get(start..).unwrap_or_default();
    match tail.split_once('/') {
        Some((segment, _)) => (segment, Some(start + segment.len() + 1)),
        None => (tail, None),
    }
}

/// Matches one segment: the same algorithm with characters, backtracking to the last `*`.
fn parts_match(parts: &[Part], text: &str) -> bool {
    let mut index = 0;
    let mut position = 0;
    let mut resume: Option<(usize, usize)> = None;
    loop {
        let tail = text.get(position..).unwrap_or_default();
        // How many bytes this part consumed, if it matched.
        let matched = match parts.get(index) {
            Some(Part::AnyRun) => {
                resume = Some((index + 1, position));
                Some(0)
            }
            Some(Part::AnyChar) => tail.chars().next().map(char::len_utf8),
            Some(Part::Literal(literal)) => {
                tail.starts_with(literal.as_str()).then_some(literal.len())
            }
            None if tail.is_empty() => return true,
            None => None,
        };
        if let Some(len) = matched {
            index += 1;
            position += len;
            continue;
        }
        let Some((resume_index, start)) = resume else {
            return false;
        };
        let Some(c) = text.get(start..).and_then(|t| t.chars().next()) else {
            return false;
        };
        let start = start + c.len_utf8();
        resume = Some((resume_index, start));
        index = resume_index;
        position = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Vec<RawRule> {
        serde_json::from_str(json).unwrap()
    }

    fn rules(json: &str) -> Rules {
        Rules::from_config(Some(raw(json))).unwrap()
    }

    fn error(json: &str) -> String {
        Rules::from_config(Some(raw(json))).unwrap_err().to_string()
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
                rules.first_match(path, method),
                &expected,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn without_a_match_requests_authenticate() {
        let rules = rules(r#"[{"match": {"path": "/healthz"}, "action": "allow"}]"#);
        assert_eq!(
            rules.first_match("/other", "GET"),
            &RuleAction::Authenticate
        );
        for none in [Rules::from_config(None), Rules::from_config(Some(vec![]))] {
            let none = none.unwrap();
            assert!(none.is_empty());
            assert_eq!(
                none.first_match("/healthz", "GET"),
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
        assert_eq!(rules.first_match("/a/x", "DELETE"), &RuleAction::Deny);
        assert_eq!(rules.first_match("/a/x", "GET"), &RuleAction::Allow);
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
                    rules.first_match(path, "GET"),
                    &RuleAction::Deny,
                    "{pattern} should match {path}"
                );
            }
            for path in *misses {
                assert_eq!(
                    rules.first_match(path, "GET"),
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
        let mut random = crate::test_rng::xorshift(0x0bad_5eed_dead_beef);
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
        assert_eq!(rules.first_match(&long, "GET"), &RuleAction::Authenticate);
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
        assert!(Rules::from_config(Some(raw(&list(256)))).is_ok());
        assert_eq!(
            Rules::from_config(Some(raw(&list(257)))),
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
            rules.0[0].action,
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
}
