//! CORS origins: the `cors` configuration (`Cors::from_config`), `allows_origin` and the
//! headers of a denial, on any configured list and any request `Origin`.
//!
//! Input: lines. The configured origins, one a line (a first line `!credentials` sets
//! `allow_credentials`), then a line `--`, then the request's `Origin`.
//!
//! Properties:
//! - an accepted configuration lists `"*"` alone (and never with credentials), or lowercase
//!   origins `scheme://host[:port]`, a host possibly `*.` + a domain;
//! - an origin is allowed exactly when it equals a listed origin ignoring ASCII case, or is a
//!   subdomain (labels of letters, digits and `-`) of a listed `*.` domain with the same scheme
//!   and port (checked against a matcher written here);
//! - a denial carries CORS headers only for an allowed origin; the echoed origin is visible
//!   ASCII (safe as a header value); `*` is never echoed with credentials.
#![no_main]

use keygate::policy::cors::{Cors, RawCors};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (list, origin) = text.split_once("\n--\n").unwrap_or((text, ""));
    let mut lines: Vec<&str> = list.split('\n').collect();
    let credentials = lines.first() == Some(&"!credentials");
    if credentials {
        lines.remove(0);
    }
    let raw: RawCors =
        serde_json::from_value(json!({"allowed_origins": lines, "allow_credentials": credentials}))
            .expect("the raw form takes any strings");
    let Ok(Some(cors)) = Cors::from_config(Some(raw)) else {
        return;
    };
    let any = lines == ["*"];
    assert!(!(any && credentials), "\"*\" with credentials");
    if !any {
        for entry in &lines {
            assert!(valid_entry(entry), "{entry:?} was accepted");
        }
    }

    let allowed = cors.allows_origin(origin);
    let expected = if any {
        !origin.is_empty()
    } else {
        lines.iter().any(|entry| matches(entry, origin))
    };
    assert_eq!(allowed, expected, "{lines:?} allows {origin:?}?");

    let headers = cors.denial_headers(Some(origin));
    assert_eq!(!headers.is_empty(), allowed);
    if allowed {
        assert_eq!(headers[0].0, "access-control-allow-origin");
        if any {
            assert_eq!(headers[0].1, "*");
        } else {
            assert_eq!(headers[0].1, origin);
            assert!(origin.bytes().all(|b| b.is_ascii_graphic()), "{origin:?}");
        }
        assert!(headers.contains(&("vary", "origin".to_owned())));
        assert_eq!(
            headers
                .iter()
                .any(|(name, _)| *name == "access-control-allow-credentials"),
            credentials
        );
    }
    assert!(cors.denial_headers(None).is_empty());
});

/// `scheme://host[:port]`, lowercase, no default port, the host a DNS name (possibly `*.`
/// first) or a bracketed IPv6 literal.
fn valid_entry(entry: &str) -> bool {
    let Some((scheme, authority)) = entry.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    let (host, port) = split_port(authority);
    let port_ok = port.is_none_or(|p| {
        !p.starts_with('0') && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    let default_port = matches!(
        (scheme, port),
        ("https", Some("443")) | ("http", Some("80"))
    );
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => {
            !ipv6.is_empty()
                && ipv6
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"abcdef:.".contains(&b))
        }
        None => labels(host.strip_prefix("*.").unwrap_or(host)),
    };
    scheme_ok && port_ok && !default_port && host_ok
}

fn split_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => match &authority[end + 1..] {
                "" => (authority, None),
                rest => (&authority[..=end], rest.strip_prefix(':').or(Some(rest))),
            },
            None => (authority, None),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// Dot-separated labels of 1 to 63 lowercase letters, digits and `-`, at most 253 in all.
fn labels(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn matches(entry: &str, origin: &str) -> bool {
    let Some((scheme, authority)) = entry.split_once("://") else {
        return false;
    };
    let (host, port) = split_port(authority);
    let Some(domain) = host.strip_prefix("*.") else {
        return origin.eq_ignore_ascii_case(entry);
    };
    let origin = origin.to_ascii_lowercase();
    let Some(rest) = origin.strip_prefix(&format!("{scheme}://")) else {
        return false;
    };
    let rest = match port {
        Some(port) => match rest.strip_suffix(&format!(":{port}")) {
            Some(rest) => rest,
            None => return false,
        },
        None => rest,
    };
    rest.strip_suffix(&format!(".{domain}"))
        .is_some_and(|sub| !sub.is_empty() && labels(sub))
}
