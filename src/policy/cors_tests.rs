//! Unit tests of `cors`.

use super::*;

fn parse(json: &str) -> Cors {
    let raw: RawCors = serde_json::from_str(json).unwrap();
    Cors::from_config(Some(raw)).unwrap().unwrap()
}

fn error(json: &str) -> String {
    let raw: RawCors = serde_json::from_str(json).unwrap();
    Cors::from_config(Some(raw)).unwrap_err().to_string()
}

fn headers(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    pairs
        .iter()
        .map(|(name, value)| (*name, value.to_string()))
        .collect()
}

const EXAMPLE: &str =
    r#"{"allowed_origins": ["https://app.example.com", "https://*.example.org"]}"#;

#[test]
fn absent_cors_is_off() {
    assert_eq!(Cors::from_config(None), Ok(None));
}

#[test]
fn defaults_pass_preflights_and_expose_the_challenge() {
    let cors = parse(EXAMPLE);
    assert!(cors.passes_preflight());
    assert_eq!(
        cors.denial_headers(Some("https://app.example.com")),
        headers(&[
            ("access-control-allow-origin", "https://app.example.com"),
            ("vary", "origin"),
            ("access-control-expose-headers", "www-authenticate"),
        ])
    );
}

#[test]
fn every_field_is_taken_as_written() {
    let cors = parse(
        r#"{"allowed_origins": ["http://localhost:3000"], "preflight": "authenticate",
            "allow_credentials": true, "expose_headers": ["www-authenticate", "x-request-id"]}"#,
    );
    assert!(!cors.passes_preflight());
    assert_eq!(
        cors.denial_headers(Some("http://localhost:3000")),
        headers(&[
            ("access-control-allow-origin", "http://localhost:3000"),
            ("vary", "origin"),
            (
                "access-control-expose-headers",
                "www-authenticate, x-request-id"
            ),
            ("access-control-allow-credentials", "true"),
        ])
    );
    let none_exposed = parse(r#"{"allowed_origins": ["https://a.com"], "expose_headers": []}"#);
    assert_eq!(
        none_exposed.denial_headers(Some("https://a.com")),
        headers(&[
            ("access-control-allow-origin", "https://a.com"),
            ("vary", "origin")
        ])
    );
}

#[test]
fn only_allowed_origins_get_headers() {
    let cors = parse(EXAMPLE);
    let allowed = [
        "https://app.example.com",
        "HTTPS://APP.Example.COM",
        "https://a.example.org",
        "https://a.b.example.org",
        "https://evil.com.example.org",
        "https://A.EXAMPLE.ORG",
    ];
    for origin in allowed {
        let headers = cors.denial_headers(Some(origin));
        assert_eq!(
            headers[0],
            ("access-control-allow-origin", origin.to_owned()),
            "{origin}"
        );
    }
    let refused = [
        "",
        "null",
        "https://app.example.com.",
        "https://app.example.com/",
        "https://app.example.com:8443",
        "https://app.example.com:443",
        "http://app.example.com",
        "https://example.com",
        "https://example.org",
        "https://.example.org",
        "https://a..example.org",
        "https://evilexample.org",
        "https://a.example.org.evil.com",
        "https://a.example.org:8443",
        "http://a.example.org",
        "https://a/.example.org",
        "https://user@a.example.org",
        "https://a_b.example.org",
        "https://a.example.org\r\nx: y",
        "https://*.example.org",
        "https://a.example.org/path",
        "a.example.org",
        "https://é.example.org",
    ];
    for origin in refused {
        assert_eq!(cors.denial_headers(Some(origin)), vec![], "{origin:?}");
    }
    assert_eq!(cors.denial_headers(None), vec![]);
}

#[test]
fn a_wildcard_with_a_port_needs_that_port() {
    let cors =
        parse(r#"{"allowed_origins": ["http://*.localhost:8080", "http://[::1]:3000"]}"#);
    assert!(cors.allows_origin("http://app.localhost:8080"));
    assert!(!cors.allows_origin("http://app.localhost"));
    assert!(!cors.allows_origin("http://app.localhost:8081"));
    assert!(cors.allows_origin("http://[::1]:3000"));
    assert!(!cors.allows_origin("http://[::1]"));
}

#[test]
fn any_origin_is_answered_with_a_star() {
    let cors = parse(r#"{"allowed_origins": ["*"]}"#);
    assert_eq!(
        cors.denial_headers(Some("https://anything.test")),
        headers(&[
            ("access-control-allow-origin", "*"),
            ("vary", "origin"),
            ("access-control-expose-headers", "www-authenticate"),
        ])
    );
    assert_eq!(cors.denial_headers(None), vec![]);
    assert_eq!(cors.denial_headers(Some("")), vec![]);
}

#[test]
fn configuration_errors_name_the_field_and_the_fix() {
    let cases = [
        (
            r#"{"allowed_origins": []}"#,
            "`cors.allowed_origins`: the list is empty",
        ),
        (
            r#"{"allowed_origins": ["*"], "allow_credentials": true}"#,
            "`cors.allowed_origins[0]`: \"*\" cannot be combined with allow_credentials",
        ),
        (
            r#"{"allowed_origins": ["https://a.com", "*"]}"#,
            "`cors.allowed_origins[1]`: \"*\" must be the only entry",
        ),
        (
            r#"{"allowed_origins": ["https://a.com", "https://App.example.com"]}"#,
            "`cors.allowed_origins[1]`: \"https://App.example.com\" must be lowercase",
        ),
        (
            r#"{"allowed_origins": ["https://a.com/"]}"#,
            "`cors.allowed_origins[0]`: \"https://a.com/\" must be scheme://host[:port] with no path",
        ),
        (
            r#"{"allowed_origins": ["https://a.com/app"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["a.com"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["null"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["1http://a.com"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://a.com:0"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://a.com:65536"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://a.com:"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://u@a.com"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://a.com?x"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://[]"]}"#,
            "must be scheme://host[:port]",
        ),
        (
            r#"{"allowed_origins": ["https://a.com:443"]}"#,
            "has the default port; leave it out",
        ),
        (
            r#"{"allowed_origins": ["http://a.com:80"]}"#,
            "has the default port",
        ),
        (
            r#"{"allowed_origins": ["https://a.*.com"]}"#,
            "may hold '*' only as a leading \"*.\" of the host",
        ),
        (
            r#"{"allowed_origins": ["https://*example.com"]}"#,
            "may hold '*' only as a leading",
        ),
        (
            r#"{"allowed_origins": ["https://*.*.com"]}"#,
            "may hold '*' only",
        ),
        (
            r#"{"allowed_origins": ["https://*."]}"#,
            "may hold '*' only",
        ),
        (
            r#"{"allowed_origins": ["https://a.com"], "expose_headers": ["x-ok", "X-Request-Id"]}"#,
            "`cors.expose_headers[1]`: \"X-Request-Id\" must be a lowercase header name",
        ),
        (
            r#"{"allowed_origins": ["https://a.com"], "expose_headers": [""]}"#,
            "`cors.expose_headers[0]`",
        ),
        (
            r#"{"allowed_origins": ["https://a.com"], "expose_headers": ["a b"]}"#,
            "`cors.expose_headers[0]`",
        ),
    ];
    for (json, expected) in cases {
        let message = error(json);
        assert!(
            message.contains(expected),
            "cors {json}: error {message:?} does not contain {expected:?}"
        );
    }
}

#[test]
fn the_raw_form_refuses_unknown_fields_and_values() {
    let cases = [
        (
            r#"{"allowed_origins": ["*"], "max_age": 5}"#,
            "unknown field `max_age`",
        ),
        (
            r#"{"allowed_origins": ["*"], "preflight": "skip"}"#,
            "unknown variant `skip`",
        ),
        (r#"{}"#, "missing field `allowed_origins`"),
    ];
    for (json, expected) in cases {
        let message = serde_json::from_str::<RawCors>(json)
            .unwrap_err()
            .to_string();
        assert!(message.contains(expected), "{json}: {message:?}");
    }
}

#[test]
fn preflights_are_options_with_origin_and_request_method() {
    let origin = Some("https://a.com");
    let cases = [
        ("OPTIONS", origin, Some("POST"), true),
        ("OPTIONS", origin, None, false),
        ("OPTIONS", None, Some("POST"), false),
        ("OPTIONS", Some(""), Some("POST"), false),
        ("OPTIONS", origin, Some(""), false),
        ("options", origin, Some("POST"), false),
        ("GET", origin, Some("POST"), false),
    ];
    for (method, origin, request_method, expected) in cases {
        assert_eq!(
            is_preflight(method, origin, request_method),
            expected,
            "{method} {origin:?} {request_method:?}"
        );
    }
}

#[test]
fn arbitrary_origins_never_panic() {
    let cors = parse(r#"{"allowed_origins": ["https://*.example.org", "http://[::1]:8080"]}"#);
    let mut next = crate::testing::rng::xorshift(0x1234_5678_9abc_def1);
    const PIECES: &[&str] = &[
        "https", "://", ":", "[", "]", ".", "*", "example", "org", "a", "é", "/", "@", "8",
    ];
    for _ in 0..5_000 {
        let mut origin = String::new();
        for _ in 0..(next() % 10) {
            origin.push_str(PIECES[(next() as usize) % PIECES.len()]);
        }
        for header in cors.denial_headers(Some(&origin)) {
            assert!(!header.1.chars().any(char::is_control), "{origin:?}");
        }
    }
}
