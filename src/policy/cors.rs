//! CORS for keygate's own traffic: whether a preflight needs a token, and the headers that let a
//! page on an allowed origin read a denial (a `401` without them reaches the page as an opaque
//! network error). Responses from the upstream keep whatever CORS headers the upstream sets.
//!
//! Without `cors` in the configuration, preflights are authenticated like any request and
//! denials carry no CORS headers.

use thiserror::Error;

use serde::Deserialize;

const DEFAULT_EXPOSE_HEADERS: &[&str] = &["www-authenticate"];
const NOT_AN_ORIGIN: &str = "must be scheme://host[:port] with no path, query or trailing slash, e.g. https://app.example.com";

/// The `cors` object as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    allowed_origins: Vec<String>,
    #[serde(default)]
    preflight: Preflight,
    #[serde(default)]
    allow_credentials: bool,
    expose_headers: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Preflight {
    /// Preflights go upstream without a token: browsers never attach credentials to them.
    #[default]
    Pass,
    Authenticate,
}

/// The validated CORS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    origins: AllowedOrigins,
    preflight: Preflight,
    allow_credentials: bool,
    /// The `access-control-expose-headers` value, joined once; `None` for an empty list.
    expose_headers: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigins {
    /// `"*"`: every origin, answered with `access-control-allow-origin: *`.
    Any,
    Listed(Vec<AllowedOrigin>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigin {
    /// A whole origin, lowercase.
    Exact(String),
    /// `scheme://*.host[:port]`: any subdomain of `host`, at any depth, but not `host` itself.
    Subdomains {
        scheme: String,
        /// `.host`, with the leading dot.
        suffix: String,
        port: Option<String>,
    },
}

/// An origin split into `scheme://host[:port]`; the parts are not validated beyond the split.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CorsError {
    #[error("`cors.allowed_origins`: the list is empty; list the origins whose pages may read keygate's denials, e.g. \"https://app.example.com\", or leave `cors` out")]
    NoOrigins,
    #[error("`cors.allowed_origins[{index}]`: {value:?} {reason}")]
    InvalidOrigin {
        index: usize,
        value: String,
        reason: &'static str,
    },
    #[error("`cors.allowed_origins[{index}]`: \"*\" cannot be combined with allow_credentials, as browsers then refuse the response; list the origins or set allow_credentials to false")]
    WildcardWithCredentials {
        index: usize,
    },
    #[error("`cors.expose_headers[{index}]`: {value:?} must be a lowercase header name, e.g. www-authenticate")]
    InvalidExposeHeader {
        index: usize,
        value: String,
    },
}



/// Whether a request is a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. Empty values do not count, so a request has to look like a
/// browser's preflight to skip authentication.
pub fn is_preflight(method: &str, origin: Option<&str>, request_method: Option<&str>) -> bool {
    let present = |value: Option<&str>| value.is_some_and(|v| !v.is_empty());
    method == "OPTIONS" && present(origin) && present(request_method)
}

impl Cors {
    /// Validates the `cors` object; `None` (no `cors` field) turns CORS off.
    pub fn from_config(raw: Option<RawCors>) -> Result<Option<Self>, CorsError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let origins = parse_origins(&raw.allowed_origins, raw.allow_credentials)?;
        let expose_headers = match raw.expose_headers {
            Some(names) => {
                if let Some((index, value)) =
                    names.iter().enumerate().find(|(_, n)| !is_header_name(n))
                {
                    return Err(CorsError::InvalidExposeHeader {
                        index,
                        value: value.clone(),
                    });
                }
                names
            }
            None => DEFAULT_EXPOSE_HEADERS
                .iter()
                .map(|&n| n.to_owned())
                .collect(),
        };
        Ok(Some(Self {
            origins,
            preflight: raw.preflight,
            allow_credentials: raw.allow_credentials,
            expose_headers: (!expose_headers.is_empty()).then(|| expose_headers.join(", ")),
        }))
    }

    /// Whether preflights go upstream without a token (`"preflight": "pass"`). The upstream then
    /// sees unauthenticated `OPTIONS` requests, and answers them itself.
    pub fn passes_preflight(&self) -> bool {
        self.preflight == Preflight::Pass
    }

    /// Whether `origin` (the request's `Origin`) is allowed. Scheme and host compare
    /// case-insensitively; the port must be the same (browsers leave out the default one).
    pub fn allows_origin(&self, origin: &str) -> bool {
        let list = match &self.origins {
            AllowedOrigins::Any => return !origin.is_empty(),
            AllowedOrigins::Listed(list) => list,
        };
        let parsed = split_origin(origin);
        list.iter().any(|allowed| match allowed {
            AllowedOrigin::Exact(exact) => exact.eq_ignore_ascii_case(origin),
            AllowedOrigin::Subdomains {
                scheme,
                suffix,
                port,
            } => parsed.as_ref().is_some_and(|o| {
                o.scheme.eq_ignore_ascii_case(scheme)
                    && o.port == port.as_deref()
                    && is_subdomain(o.host, suffix)
            }),
        })
    }

    /// The CORS headers of a denial for a request with this `Origin`: none when it is absent or
    /// not allowed. An allowed origin is echoed, which is only done after it matched a validated
    /// entry, so it is safe as a header value.
    pub fn denial_headers(&self, origin: Option<&str>) -> Vec<(&'static str, String)> {
        let Some(origin) = origin.filter(|o| self.allows_origin(o)) else {
            return Vec::new();
        };
        let allow_origin = match self.origins {
            AllowedOrigins::Any => "*".to_owned(),
            AllowedOrigins::Listed(_) => origin.to_owned(),
        };
        let mut headers = Vec::with_capacity(4);
        headers.push(("access-control-allow-origin", allow_origin));
        // The reply depends on `Origin` (with or without these headers), so caches must know.
        headers.push(("vary", "origin".to_owned()));
        if let Some(expose) = &self.expose_headers {
            headers.push(("access-control-expose-headers", expose.clone()));
        }
        if self.allow_credentials {
            headers.push(("access-control-allow-credentials", "true".to_owned()));
        }
        headers
    }
}

fn parse_origins(values: &[String], allow_credentials: bool) -> Result<AllowedOrigins, CorsError> {
    if values.is_empty() {
        return Err(CorsError::NoOrigins);
    }
    let mut origins = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let invalid = |reason| CorsError::InvalidOrigin {
            index,
            value: value.clone(),
            reason,
        };
        if value == "*" {
            if values.len() > 1 {
                return Err(invalid("must be the only entry, as it allows every origin"));
            }
            if allow_credentials {
                return Err(CorsError::WildcardWithCredentials { index });
            }
            return Ok(AllowedOrigins::Any);
        }
        if value.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("must be lowercase, as browsers send it"));
        }
        let Some(origin) = split_origin(value).filter(|o| is_scheme(o.scheme)) else {
            return Err(invalid(NOT_AN_ORIGIN));
        };
        if matches!(
            (origin.scheme, origin.port),
            ("https", Some("443")) | ("http", Some("80"))
        ) {
            return Err(invalid(
                "has the default port; leave it out, as browsers do",
            ));
        }
        let allowed = match origin.host.strip_prefix("*.") {
            Some(base) if is_dns_host(base) => AllowedOrigin::Subdomains {
                scheme: origin.scheme.to_owned(),
                suffix: format!(".{base}"),
                port: origin.port.map(str::to_owned),
            },
            _ if origin.host.contains('*') => {
                return Err(invalid(
                    "may hold '*' only as a leading \"*.\" of the host, e.g. https://*.example.com",
                ));
            }
            _ if is_host(origin.host) => AllowedOrigin::Exact(value.clone()),
            _ => {
                return Err(invalid(NOT_AN_ORIGIN));
            }
        };
        origins.push(allowed);
    }
    Ok(AllowedOrigins::Listed(origins))
}

/// Splits `scheme://host[:port]`, checking the port; `None` for anything else. The host is
/// checked by the caller, which knows whether a wildcard may stand in it.
fn split_origin(origin: &str) -> Option<Origin<'_>> {
    let (scheme, authority) = origin.split_once("://")?;
    let (host, port) = if authority.starts_with('[') {
        // An IPv6 literal: its colons are not the port's.
        let end = authority.find(']')? + 1;
        let host = authority.get(..end)?;
        match authority.get(end..)? {
            "" => (host, None),
            rest => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if port.is_some_and(|p| !is_port(p)) {
        return None;
    }
    Some(Origin { scheme, host, port })
}

/// RFC 3986 §3.1: a letter, then letters, digits, '+', '-' or '.'.
fn is_scheme(scheme: &str) -> bool {
    scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// 1 to 65535, without leading zeros, as browsers serialise it.
fn is_port(port: &str) -> bool {
    !port.starts_with('0')
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn is_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => {
            !ipv6.is_empty()
                && ipv6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => is_dns_host(host),
    }
}

/// Dot-separated labels of letters, digits and '-' (an IPv4 address is one too).
fn is_dns_host(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether `host` is `<labels>` + `suffix` (`.example.com`), ignoring case.
fn is_subdomain(host: &str, suffix: &str) -> bool {
    let Some(split) = host.len().checked_sub(suffix.len()) else {
        return false;
    };
    match (host.get(..split), host.get(split..)) {
        (Some(sub), Some(end)) => {
            !sub.is_empty() && end.eq_ignore_ascii_case(suffix) && is_dns_host(sub)
        }
        _ => false,
    }
}

/// A lowercase RFC 9110 token, as Envoy stores header names.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

#[cfg(test)]
#[path = "cors_tests.rs"]
mod tests;
