use super::*;

fn read(raw: &str) -> Result<String, PathError> {
    RoutePath::parse(raw).map(|path| path.as_str().to_owned())
}

#[test]
fn ordinary_escapes_are_decoded_and_nothing_else_changes() {
    let cases = [
        ("/", "/"),
        ("/admin", "/admin"),
        ("/admin/", "/admin/"),
        ("/%61dmin", "/admin"),
        ("/%41%2d%5f%7E", "/A-_~"),
        ("/a%2Eb", "/a.b"),
        ("/a%2E%2E", "/a.."),
        ("/...", "/..."),
        ("/a/.../b", "/a/.../b"),
        ("/.hidden/..x", "/.hidden/..x"),
        ("/caf%C3%A9", "/café"),
        ("/café", "/café"),
        ("/a%20b", "/a b"),
        ("/a%2Cb%21%40%3A%3D%2B%26", "/a,b!@:=+&"),
        ("/admin?x=1", "/admin"),
        ("/admin?x=/../y%2F#z", "/admin"),
        ("/admin?", "/admin"),
        // Kept as sent; `lenient` and the rules decide whether they are ambiguous.
        ("/admin;x=1", "/admin;x=1"),
        ("//admin", "//admin"),
        ("/a;b=1/c", "/a;b=1/c"),
    ];
    for (raw, expected) in cases {
        assert_eq!(read(raw).as_deref(), Ok(expected), "{raw:?}");
    }
}

#[test]
fn a_path_without_escapes_is_borrowed() {
    let path = RoutePath::parse("/v1/keys/abc?x=%2F").unwrap();
    assert!(matches!(path.0, Cow::Borrowed("/v1/keys/abc")));
}

#[test]
fn refuses_what_upstreams_read_differently() {
    let cases = [
        ("", PathError::NotOrigin),
        ("*", PathError::NotOrigin),
        ("admin", PathError::NotOrigin),
        ("http://example.com/admin", PathError::NotOrigin),
        ("?/admin", PathError::NotOrigin),
        ("\\admin", PathError::NotOrigin),
        ("/admin#/../x", PathError::Fragment),
        ("#/admin", PathError::NotOrigin),
        ("/%zz", PathError::BadEncoding),
        ("/%", PathError::BadEncoding),
        ("/%4", PathError::BadEncoding),
        ("/a%", PathError::BadEncoding),
        ("/%g1", PathError::BadEncoding),
        ("/%00", PathError::BadEncoding),
        ("/a%0d%0aX-Injected:1", PathError::BadEncoding),
        ("/%7f", PathError::BadEncoding),
        ("/%c2%85", PathError::BadEncoding),
        ("/%ff", PathError::BadEncoding),
        ("/%c3", PathError::BadEncoding),
        ("/a\tb", PathError::BadEncoding),
        ("/a\0b", PathError::BadEncoding),
        ("/a\u{85}b", PathError::BadEncoding),
        ("/%2561dmin", PathError::EncodedPercent),
        ("/%25zz", PathError::EncodedPercent),
        ("/a/%252e%252e/admin", PathError::EncodedPercent),
        ("/atk/..%2Fhealthz", PathError::EncodedDelimiter),
        ("/atk/..%2fhealthz", PathError::EncodedDelimiter),
        ("/atk/..%5Chealthz", PathError::EncodedDelimiter),
        ("/atk%2F..%2Fhealthz", PathError::EncodedDelimiter),
        ("/atk/..%3B/healthz", PathError::EncodedDelimiter),
        ("/atk/%2E%2E%2Fhealthz", PathError::EncodedDelimiter),
        ("/v1/keys/..%2F", PathError::EncodedDelimiter),
        ("/admin%3Fx", PathError::EncodedDelimiter),
        ("/admin%23x", PathError::EncodedDelimiter),
        ("/a\\..\\admin", PathError::Backslash),
        ("/admin\\", PathError::Backslash),
        ("/a/../admin", PathError::DotSegment),
        ("/a/./admin", PathError::DotSegment),
        ("/..", PathError::DotSegment),
        ("/admin/.", PathError::DotSegment),
        ("/a/%2e%2e/admin", PathError::DotSegment),
        ("/a/.%2E/admin", PathError::DotSegment),
        ("/a/%2e/admin", PathError::DotSegment),
    ];
    for (raw, expected) in cases {
        assert_eq!(read(raw), Err(expected), "{raw:?}");
    }
}

#[test]
fn lenient_reading_drops_parameters_and_merges_slashes() {
    let cases = [
        ("/admin", None),
        ("/admin/", None),
        ("/", None),
        ("/admin;x=1", Some("/admin")),
        ("/admin;/users;jsessionid=1", Some("/admin/users")),
        ("/a;b=1/c", Some("/a/c")),
        ("//admin", Some("/admin")),
        ("///admin//users", Some("/admin/users")),
        ("/admin//", Some("/admin/")),
        ("/;x", Some("/")),
        ("/a;", Some("/a")),
    ];
    for (raw, expected) in cases {
        let path = RoutePath::parse(raw).unwrap();
        assert_eq!(path.lenient(), Ok(expected.map(str::to_owned)), "{raw:?}");
    }
    for raw in ["/x/..;/admin", "/x/.;a/admin", "/x/..;"] {
        let path = RoutePath::parse(raw).unwrap();
        assert_eq!(path.lenient(), Err(PathError::DotSegment), "{raw:?}");
    }
}

#[test]
fn errors_read_as_reasons() {
    for error in [
        PathError::NotOrigin,
        PathError::Fragment,
        PathError::BadEncoding,
        PathError::EncodedPercent,
        PathError::EncodedDelimiter,
        PathError::Backslash,
        PathError::DotSegment,
        PathError::Ambiguous,
    ] {
        let text = error.to_string();
        assert!(text.starts_with("request path "), "{text}");
    }
    assert_eq!(
        PathError::EncodedDelimiter.to_string(),
        "request path has an encoded '/', '\\', ';', '?' or '#' (%2F, %5C, %3B, %3F, %23)"
    );
}

/// What every accepted path looks like, and that reading it again changes nothing.
fn assert_read_once(raw: &str, path: &RoutePath<'_>) {
    let out = path.as_str();
    assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
    assert!(!out.contains(['\\', '%', '?', '#']), "{raw:?} -> {out:?}");
    assert!(!out.chars().any(char::is_control), "{raw:?} -> {out:?}");
    assert!(
        out.split('/').all(|s| s != "." && s != ".."),
        "{raw:?} -> {out:?}"
    );
    assert_eq!(read(out).as_deref(), Ok(out), "{raw:?} read again");
    if let Ok(Some(lenient)) = path.lenient() {
        assert!(
            !lenient.contains(';') && !lenient.contains("//"),
            "{lenient:?}"
        );
        let again = RoutePath::parse(&lenient).unwrap();
        assert_eq!(again.lenient(), Ok(None), "{raw:?} -> {lenient:?}");
    }
}

#[test]
fn arbitrary_input_never_panics_and_is_read_once() {
    let mut next = crate::testing::rng::xorshift(0x2545_f491_4f6c_dd1d);
    // Pieces that exercise every branch, mixed with raw bytes.
    const PIECES: &[&str] = &[
        "/", "\\", ".", "..", ";", "%", "%2", "%2e", "%2E", "%25", "%2F", "%5c", "%3b", "%00",
        "%c3", "%a9", "%ff", "%61", "?", "#", "a", "é", "\u{85}", "\t", "*", "1", "f",
    ];
    let mut accepted = 0;
    for round in 0..20_000 {
        let len = (next() % 24) as usize;
        let raw = if round % 3 == 0 {
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            let mut raw = String::from(if round % 5 == 0 { "" } else { "/" });
            for _ in 0..len {
                raw.push_str(PIECES[(next() as usize) % PIECES.len()]);
            }
            raw
        };
        if let Ok(path) = RoutePath::parse(&raw) {
            accepted += 1;
            assert_read_once(&raw, &path);
        }
    }
    // The generator must reach the accepting branches, or the property says nothing.
    assert!(accepted > 1_000, "{accepted}");
}
