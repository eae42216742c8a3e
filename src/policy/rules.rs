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

use thiserror::Error;

use serde::Deserialize;

use crate::policy::path::{PathError, RoutePath};
use crate::policy::scopes::validate_scope;

const MAX_RULES: usize = 256;

/// What happens to a request no rule matches.
static DEFAULT_ROUTE: Route = Route {
    action: RuleAction::Authenticate,
    requirement: None,
};

/// One entry of the `rules` list as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    matcher: RawMatch,
    action: RawAction,
    scopes: Option<Vec<String>>,
    /// The requirement (by name) a request matching the rule must meet, for `authenticate` and
    /// `require_scopes`; the default requirement when absent.
    requirement: Option<String>,
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

/// What a matching rule decides: the action and, for one that authenticates, the requirement
/// (an index into the configuration's requirements; `None` is the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub action: RuleAction,
    pub requirement: Option<usize>,
}

/// The validated rules, in order. Empty when none are configured: every request authenticates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(Vec<Rule>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    pattern: Pattern,
    /// `None`: any method.
    methods: Option<Vec<String>>,
    route: Route,
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

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("`rules`: {count} rules is over the limit of {MAX_RULES}; merge rules with prefix or glob patterns")]
    TooMany {
        count: usize,
    },
    #[error("`rules[{rule}].match`: give exactly one of path, prefix, glob")]
    MatchKind {
        rule: usize,
    },
    #[error("`rules[{rule}].match.{kind}`: {value:?} must start with '/'")]
    PatternNotAbsolute {
        rule: usize,
        kind: &'static str,
        value: String,
    },
    #[error("`rules[{rule}].match.{kind}`: {value:?} can never match, as rules see paths percent-decoded, without ';' parameters or repeated '/'; {}", normal_form_hint(normalized.as_deref()))]
    PatternNotNormal {
        rule: usize,
        kind: &'static str,
        value: String,
        /// What the pattern normalises to, when that is a usable pattern.
        normalized: Option<String>,
    },
    #[error("`rules[{rule}].match.methods`: the list is empty; leave `methods` out to match every method")]
    NoMethods {
        rule: usize,
    },
    #[error("`rules[{rule}].match.methods[{index}]`: {value:?} is not an uppercase HTTP method; methods are case-sensitive, e.g. GET")]
    InvalidMethod {
        rule: usize,
        index: usize,
        value: String,
    },
    #[error("`rules[{rule}].scopes`: action require_scopes needs a non-empty list of scopes, e.g. [\"admin\"]")]
    NoScopes {
        rule: usize,
    },
    #[error("`rules[{rule}].scopes[{index}]`: {value:?} is not a scope; use 1 to 128 printable ASCII characters without spaces, '\"' or '\\'")]
    InvalidScope {
        rule: usize,
        index: usize,
        value: String,
    },
    #[error("`rules[{rule}].scopes`: only action require_scopes takes scopes; remove `scopes` or change the action")]
    UnexpectedScopes {
        rule: usize,
    },
    #[error("`rules[{rule}].requirement`: no requirement is named {name:?}; name one of `requirements`")]
    UnknownRequirement {
        rule: usize,
        name: String,
    },
    #[error("`rules[{rule}].requirement`: only actions authenticate and require_scopes take a requirement; remove `requirement` or change the action")]
    UnexpectedRequirement {
        rule: usize,
    },
}



impl Rules {
    /// Validates and compiles the configured rules; `None` (no `rules` field) gives no rules.
    /// `requirements` are the names rules may select, by index.
    pub fn from_config(
        raw: Option<Vec<RawRule>>,
        requirements: &[&str],
    ) -> Result<Self, RuleError> {
        let raw = raw.unwrap_or_default();
        if raw.len() > MAX_RULES {
            return Err(RuleError::TooMany { count: raw.len() });
        }
        raw.into_iter()
            .enumerate()
            .map(|(index, rule)| rule.compile(index, requirements))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The rules that require scopes, by position, with the requirement each selects.
    pub fn scoped(&self) -> impl Iterator<Item = (usize, Option<usize>)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, rule)| matches!(rule.route.action, RuleAction::RequireScopes(_)))
            .map(|(index, rule)| (index, rule.route.requirement))
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
        self.route_for(path, method).map(|route| &route.action)
    }

    /// [`Self::action_for`], with the requirement the rule selects.
    pub fn route_for(&self, path: &RoutePath<'_>, method: &str) -> Result<&Route, PathError> {
        let route = self.first_match(path.as_str(), method);
        match path.lenient()? {
            Some(lenient) if self.first_match(&lenient, method) != route => {
                Err(PathError::Ambiguous)
            }
            _ => Ok(route),
        }
    }

    #[cfg(test)]
    fn first_match_action(&self, path: &str, method: &str) -> &RuleAction {
        &self.first_match(path, method).action
    }

    fn first_match(&self, path: &str, method: &str) -> &Route {
        self.0
            .iter()
            .find(|rule| rule.matches(path, method))
            .map_or(&DEFAULT_ROUTE, |rule| &rule.route)
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
    fn compile(self, rule: usize, requirements: &[&str]) -> Result<Rule, RuleError> {
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
        let requirement = match (self.requirement, &action) {
            (None, _) => None,
            (Some(_), RuleAction::Allow | RuleAction::Deny) => {
                return Err(RuleError::UnexpectedRequirement { rule });
            }
            (Some(name), _) => Some(
                requirements
                    .iter()
                    .position(|known| *known == name)
                    .ok_or(RuleError::UnknownRequirement { rule, name })?,
            ),
        };
        Ok(Rule {
            pattern,
            methods,
            route: Route {
                action,
                requirement,
            },
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
#[path = "rules_tests.rs"]
mod tests;

/// The end of a `PatternNotNormal` message: the pattern to write instead, or what to leave out.
fn normal_form_hint(normalized: Option<&str>) -> String {
    match normalized {
        Some(normalized) => format!("write {normalized:?}"),
        None => "write it percent-decoded, without '%', '?', '#', ';', '\\', control characters, or empty, '.' or '..' segments".to_owned(),
    }
}
